//! OpenAPI v3 as kubectl reads it before it writes: `/openapi/v3` lists one document per group
//! version, and each document has the paths of its resources, every operation tagged with the
//! group, version and kind it acts on and the query parameters it takes. kubectl learns from
//! the `fieldValidation` parameter of the PATCH operations that the server validates fields
//! itself (pier always does, strictly), so `kubectl create` and `apply` need no
//! `--validate=false`. The PATCH operations leave out strategic merge patch on purpose:
//! kubectl then computes strategic patches from its own built-in types, with their merge keys,
//! which pier applies (`patch.rs`). Object schemas come from `schemas.rs`. Documents are built
//! once and kept: kubectl fetches one before every write.

use std::sync::OnceLock;

use serde_json::{json, Map, Value};

use super::catalog::{self, Resource};
use super::schemas;

/// `GET /openapi/v3`: the group versions and where their documents are.
pub(crate) fn index() -> Value {
    let mut paths = Map::new();
    for (group, version) in group_versions() {
        let key = gv_path(group, version);
        paths.insert(
            key.clone(),
            json!({ "serverRelativeURL": format!("/openapi/v3/{key}?hash={}", hash(&key)) }),
        );
    }
    json!({ "paths": paths })
}

/// `GET /openapi/v3/<api/v1 | apis/group/version>`, if pier serves that group version.
pub(crate) fn document(gv: &str) -> Option<Value> {
    static DOCUMENTS: OnceLock<Vec<(String, Value)>> = OnceLock::new();
    let documents = DOCUMENTS.get_or_init(|| {
        group_versions()
            .into_iter()
            .map(|(group, version)| (gv_path(group, version), build(group, version)))
            .collect()
    });
    documents
        .iter()
        .find(|(path, _)| path == gv)
        .map(|(_, doc)| doc.clone())
}

/// The document of one group version.
fn build(group: &str, version: &str) -> Value {
    let resources: Vec<Resource> = catalog::resources()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    let mut paths = Map::new();
    for r in resources.iter().copied() {
        let prefix = format!("/{}", gv_path(group, version));
        let gvk = schemas::gvk(&r);
        let scoped = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{prefix}/{}", r.plural)
        };
        paths.insert(
            scoped.clone(),
            json!({
                "get": operation("list", &gvk, &r, &["labelSelector", "fieldSelector", "watch", "resourceVersion", "allowWatchBookmarks", "timeoutSeconds"]),
                "post": with_body(operation("post", &gvk, &r, WRITE_PARAMS), &["application/json", "application/yaml"]),
            }),
        );
        if r.namespaced {
            paths.insert(
                format!("{prefix}/{}", r.plural),
                json!({ "get": operation("list", &gvk, &r, &["labelSelector", "fieldSelector", "watch"]) }),
            );
        }
        paths.insert(
            format!("{scoped}/{{name}}"),
            json!({
                "get": operation("get", &gvk, &r, &[]),
                "put": with_body(operation("put", &gvk, &r, WRITE_PARAMS), &["application/json", "application/yaml"]),
                "patch": with_body(operation("patch", &gvk, &r, WRITE_PARAMS), &["application/json-patch+json", "application/merge-patch+json"]),
                "delete": operation("delete", &gvk, &r, &["dryRun"]),
            }),
        );
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "pier", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {"schemas": schemas::components(&resources)},
    })
}

/// The query parameters every write takes.
const WRITE_PARAMS: &[&str] = &["dryRun", "fieldManager", "fieldValidation"];

fn operation(action: &str, gvk: &Value, r: &Resource, params: &[&str]) -> Value {
    let schema = json!({"$ref": format!("#/components/schemas/{}", schemas::name(r))});
    json!({
        "operationId": format!("{action}{}", r.kind.as_str()),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk,
        "parameters": params.iter().map(|p| json!({"name": p, "in": "query", "schema": {"type": "string"}})).collect::<Vec<_>>(),
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": schema}}}},
    })
}

fn with_body(mut op: Value, media: &[&str]) -> Value {
    let content: Map<String, Value> = media
        .iter()
        .map(|m| ((*m).to_string(), json!({"schema": {"type": "object"}})))
        .collect();
    op["requestBody"] = json!({ "content": content, "required": true });
    op
}

fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for r in catalog::resources() {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

/// `api/v1` or `apis/<group>/<version>`.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// A cache key for a document: it changes when pier's version does.
fn hash(key: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{key}@{}", env!("CARGO_PKG_VERSION")).as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_group_version_has_a_document_whose_patches_take_field_validation() {
        let index = index();
        let paths = index["paths"].as_object().unwrap();
        assert!(paths.contains_key("api/v1") && paths.contains_key("apis/apps/v1"));
        let core = document("api/v1").unwrap();
        let patch = &core["paths"]["/api/v1/namespaces/{namespace}/services/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Service");
        assert!(patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation"));
        assert!(patch["requestBody"]["content"]
            .get("application/strategic-merge-patch+json")
            .is_none());
        assert!(core["paths"].get("/api/v1/nodes/{name}").is_some());
        assert!(document("apis/nope/v1").is_none());
    }
}

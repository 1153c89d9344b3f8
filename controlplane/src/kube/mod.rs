//! The Kubernetes REST API over pier's store, for kubectl and Kubernetes client libraries:
//! which paths are the API's, and what each answers. `catalog.rs` says which resources exist,
//! `discovery.rs` describes them, `read.rs` serves get and list, `status.rs` words failures
//! as `metav1.Status`.

mod catalog;
mod discovery;
mod read;
mod status;
mod table;

use std::sync::Arc;

use hyper::{Method, StatusCode};
use serde_json::Value;

use crate::store::Store;
pub(crate) use status::{unauthorized, Failure};

/// Whether `path` belongs to the Kubernetes API (rather than pier's own `/v1/...`).
pub(crate) fn is_api_path(path: &str) -> bool {
    path == "/version"
        || path == "/api"
        || path == "/apis"
        || path.starts_with("/api/")
        || path.starts_with("/apis/")
}

/// One Kubernetes API request, as the handlers need it.
pub(crate) struct Request<'a> {
    pub(crate) method: &'a Method,
    pub(crate) path: &'a str,
    pub(crate) query: &'a std::collections::HashMap<String, String>,
    /// The `Accept` header: a Table, or plain JSON.
    pub(crate) accept: Option<&'a str>,
}

/// Answers one Kubernetes API request: its status code and JSON body.
pub(crate) async fn handle(store: &Arc<Store>, req: &Request<'_>) -> (StatusCode, Value) {
    match answer(store, req).await {
        Ok(body) => (StatusCode::OK, body),
        Err(failure) => (failure.code, failure.body),
    }
}

async fn answer(store: &Arc<Store>, req: &Request<'_>) -> Result<Value, Failure> {
    let (method, path, query) = (req.method, req.path, req.query);
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let not_found = || {
        status::failure(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
            None,
        )
    };
    if method != Method::GET {
        return Err(status::failure(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{method} is not served on {path} yet; pier's API answers get and list"),
            None,
        ));
    }
    if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
        return Err(status::failure(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "watch is not served on the Kubernetes API yet; pier's own /v1/watch is",
            None,
        ));
    }
    let (group, version, rest) = match segments.as_slice() {
        ["version"] => return Ok(discovery::version()),
        ["api"] => return Ok(discovery::core_versions()),
        ["apis"] => return Ok(discovery::groups()),
        ["apis", group] => return discovery::group(group).ok_or_else(not_found),
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(not_found()),
    };
    if rest.is_empty() {
        return discovery::resources(group, version).ok_or_else(not_found);
    }
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, rest @ ..] => (Some(*ns), [&[*plural][..], rest].concat()),
        other => (None, other.to_vec()),
    };
    let resource = catalog::find(group, version, rest[0]).ok_or_else(not_found)?;
    if namespace.is_some() && !resource.namespaced {
        return Err(not_found());
    }
    let include = query.get("includeObject").map(String::as_str);
    match rest.as_slice() {
        [_] => {
            let list = read::list(
                store,
                resource,
                namespace,
                query.get("labelSelector").map(String::as_str),
                query.get("fieldSelector").map(String::as_str),
            )
            .await?;
            if !table::wanted(req.accept) {
                return Ok(list);
            }
            let items = list["items"].as_array().map_or(&[][..], Vec::as_slice);
            let rv = list["metadata"]["resourceVersion"].as_str();
            Ok(table::of(resource.kind, items, rv, include))
        }
        [_, name] => {
            if resource.namespaced && namespace.is_none() {
                return Err(not_found());
            }
            let object = read::get(store, resource, namespace.unwrap_or(""), name).await?;
            if !table::wanted(req.accept) {
                return Ok(object);
            }
            Ok(table::of(resource.kind, &[object], None, include))
        }
        _ => Err(not_found()),
    }
}

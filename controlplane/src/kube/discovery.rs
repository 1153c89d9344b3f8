//! Discovery as kubectl reads it: `/version`, the core group's versions (`/api`) and
//! resources (`/api/v1`), the named groups (`/apis`, `/apis/<group>`) and their resources
//! (`/apis/<group>/<version>`), in k8s-openapi's wire types. Clients that ask for aggregated
//! discovery get these too and fall back to reading each group version, as against any
//! server that does not aggregate.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroup, APIGroupList, APIResource, APIResourceList, APIVersions, GroupVersionForDiscovery,
};
use k8s_openapi::apimachinery::pkg::version::Info;
use serde_json::Value;

use super::catalog::{self, VERBS};

/// The Kubernetes version whose API pier serves (the wire types it is built with).
const MAJOR: &str = "1";
const MINOR: &str = "33";

/// `GET /version`.
pub(crate) fn version() -> Value {
    to_value(&Info {
        major: MAJOR.into(),
        minor: MINOR.into(),
        git_version: format!("v{MAJOR}.{MINOR}.0-pier.{}", env!("CARGO_PKG_VERSION")),
        git_commit: String::new(),
        git_tree_state: "clean".into(),
        build_date: String::new(),
        go_version: "none (pier is written in Rust)".into(),
        compiler: "rustc".into(),
        platform: format!("{}/{}", std::env::consts::OS, go_arch()),
        ..Info::default()
    })
}

/// `GET /api`.
pub(crate) fn core_versions() -> Value {
    to_value(&APIVersions {
        versions: vec!["v1".into()],
        server_address_by_client_cidrs: Vec::new(),
    })
}

/// `GET /apis`.
pub(crate) fn groups() -> Value {
    to_value(&APIGroupList {
        groups: catalog::groups()
            .into_iter()
            .map(|(name, versions)| group_of(name, &versions))
            .collect(),
    })
}

/// `GET /apis/<group>`, if pier serves the group.
pub(crate) fn group(name: &str) -> Option<Value> {
    let (name, versions) = catalog::groups().into_iter().find(|(g, _)| *g == name)?;
    Some(to_value(&group_of(name, &versions)))
}

/// `GET /api/v1` or `/apis/<group>/<version>`, if pier serves that group version.
pub(crate) fn resources(group: &str, version: &str) -> Option<Value> {
    let mut resources: Vec<APIResource> = catalog::resources()
        .filter(|r| r.group == group && r.version == version)
        .map(|r| APIResource {
            name: r.plural.into(),
            singular_name: r.singular.into(),
            namespaced: r.namespaced,
            kind: r.kind.as_str().into(),
            verbs: VERBS.iter().map(|v| (*v).to_string()).collect(),
            short_names: (!r.short_names.is_empty())
                .then(|| r.short_names.iter().map(|s| (*s).to_string()).collect()),
            categories: Some(vec!["all".into()]).filter(|_| in_all(r.kind)),
            ..APIResource::default()
        })
        .collect();
    if resources.is_empty() {
        return None;
    }
    let here = |r: &catalog::Resource| r.group == group && r.version == version;
    for r in catalog::resources().filter(|r| here(r) && r.kind.has_status_subresource()) {
        resources.push(APIResource {
            name: format!("{}/status", r.plural),
            namespaced: r.namespaced,
            kind: r.kind.as_str().into(),
            verbs: ["get", "patch", "update"]
                .iter()
                .map(|v| (*v).to_string())
                .collect(),
            ..APIResource::default()
        });
    }
    let scalable: Vec<String> = catalog::resources()
        .filter(|r| here(r) && super::scale::scalable(r.kind))
        .map(|r| r.plural.to_string())
        .collect();
    for plural in scalable {
        resources.push(APIResource {
            name: format!("{plural}/scale"),
            namespaced: true,
            group: Some("autoscaling".into()),
            version: Some("v1".into()),
            kind: "Scale".into(),
            verbs: ["get", "patch", "update"]
                .iter()
                .map(|v| (*v).to_string())
                .collect(),
            ..APIResource::default()
        });
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(to_value(&APIResourceList {
        group_version,
        resources,
    }))
}

fn group_of(name: &str, versions: &[&str]) -> APIGroup {
    let versions: Vec<GroupVersionForDiscovery> = versions
        .iter()
        .map(|v| GroupVersionForDiscovery {
            group_version: format!("{name}/{v}"),
            version: (*v).to_string(),
        })
        .collect();
    APIGroup {
        name: name.into(),
        preferred_version: versions.first().cloned(),
        versions,
        server_address_by_client_cidrs: None,
    }
}

/// Whether `kubectl get all` includes the kind, as on a real cluster.
fn in_all(kind: pier_model::Kind) -> bool {
    use pier_model::Kind;
    matches!(kind, Kind::Service | Kind::Pod | Kind::Deployment)
}

/// Go's name for this machine's architecture, as `/version` reports it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn to_value<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

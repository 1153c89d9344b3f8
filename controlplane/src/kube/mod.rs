//! The Kubernetes REST API over pier's store, for kubectl and Kubernetes client libraries:
//! which paths are the API's, and what each answers. `catalog.rs` says which resources exist,
//! `discovery.rs` describes them, `read.rs` serves get and list, `watch.rs` watches,
//! `table.rs` answers kubectl's Table requests, `status.rs` words failures as `metav1.Status`.

mod catalog;
mod discovery;
mod read;
mod status;
mod table;
mod watch;

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
    /// Turns true when the daemon stops (ends watches).
    pub(crate) shutdown: tokio::sync::watch::Receiver<bool>,
}

/// What a Kubernetes API request gets.
pub(crate) enum Answer {
    /// A status code and a JSON body.
    Json(StatusCode, Value),
    /// A watch: JSON events, one per line, as they come.
    Stream(tokio::sync::mpsc::Receiver<bytes::Bytes>),
}

/// Answers one Kubernetes API request.
pub(crate) async fn handle(store: &Arc<Store>, req: &Request<'_>) -> Answer {
    match answer(store, req).await {
        Ok(answer) => answer,
        Err(failure) => Answer::Json(failure.code, failure.body),
    }
}

fn not_found() -> Failure {
    status::failure(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource",
        None,
    )
}

async fn answer(store: &Arc<Store>, req: &Request<'_>) -> Result<Answer, Failure> {
    let (method, path, query) = (req.method, req.path, req.query);
    let ok = |body| Ok(Answer::Json(StatusCode::OK, body));
    if method != Method::GET {
        return Err(status::failure(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{method} is not served on {path} yet; pier's API answers get, list and watch"),
            None,
        ));
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["version"] => return ok(discovery::version()),
        ["api"] => return ok(discovery::core_versions()),
        ["apis"] => return ok(discovery::groups()),
        ["apis", group] => return discovery::group(group).map_or_else(|| Err(not_found()), ok),
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(not_found()),
    };
    if rest.is_empty() {
        return discovery::resources(group, version).map_or_else(|| Err(not_found()), ok);
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
    let table = table::wanted(req.accept);
    match rest.as_slice() {
        [_] if query.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            let request = watch::WatchRequest::parse(resource, namespace, query, table)?;
            let events = watch::start(store, request, req.shutdown.clone()).await?;
            Ok(Answer::Stream(events))
        }
        [_] => {
            let selectors = read::Selectors::parse(resource.kind, query)?;
            let list = read::list(store, resource, namespace, &selectors).await?;
            if !table {
                return ok(list);
            }
            let items = list["items"].as_array().map_or(&[][..], Vec::as_slice);
            let rv = list["metadata"]["resourceVersion"].as_str();
            ok(table::of(resource.kind, items, rv, include))
        }
        [_, name] => {
            if resource.namespaced && namespace.is_none() {
                return Err(not_found());
            }
            let object = read::get(store, resource, namespace.unwrap_or(""), name).await?;
            if !table {
                return ok(object);
            }
            ok(table::of(resource.kind, &[object], None, include))
        }
        _ => Err(not_found()),
    }
}

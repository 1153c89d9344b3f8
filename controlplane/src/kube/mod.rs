//! The Kubernetes REST API over pier's store, for kubectl and Kubernetes client libraries:
//! which paths are the API's, and what each answers. `catalog.rs` says which resources exist,
//! `discovery.rs` describes them, `read.rs` serves get and list, `watch.rs` watches,
//! `table.rs` answers kubectl's Table requests, `status.rs` words failures as `metav1.Status`.

mod apply;
mod cascade;
mod catalog;
mod convert;
mod discovery;
mod events_v1;
mod fields;
mod hpa_v1;
mod keys;
mod managed;
mod openapi;
mod page;
mod patch;
mod protobuf;
mod read;
mod scale;
mod schemas;
mod status;
mod table;
mod watch;
mod write;

use std::sync::Arc;

use hyper::{Method, StatusCode};
use serde_json::Value;

use crate::store::Store;
pub(crate) use status::{failure, from_error, unauthorized, Failure};

/// `object` marked for deletion when its finalizers hold it there (pier's own API deletes as
/// the Kubernetes API does); `None` when it can go now.
pub(crate) fn held_by_finalizers(object: pier_model::Object) -> Option<pier_model::Object> {
    cascade::held(object, cascade::Policy::Background)
}

/// Whether `path` belongs to the Kubernetes API (rather than pier's own `/v1/...`).
pub(crate) fn is_api_path(path: &str) -> bool {
    path == "/version"
        || path == "/openapi/v3"
        || path.starts_with("/openapi/v3/")
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
    /// The `Content-Type` header (which patch format).
    pub(crate) content_type: Option<&'a str>,
    /// The `User-Agent` header (the field manager of a write that names none).
    pub(crate) user_agent: Option<&'a str>,
    /// The request body (empty for reads).
    pub(crate) body: &'a [u8],
}

/// What a Kubernetes API request gets.
pub(crate) enum Answer {
    /// A status code, a JSON body and `Warning` headers.
    Json(StatusCode, Value, Vec<String>),
    /// A watch: JSON events, one per line, as they come.
    Stream(tokio::sync::mpsc::Receiver<bytes::Bytes>),
}

/// Answers one Kubernetes API request.
pub(crate) async fn handle(store: &Arc<Store>, req: &Request<'_>) -> Answer {
    let transcoded;
    let req = match req.content_type.filter(|c| protobuf::is_protobuf(c)) {
        Some(_) => match from_protobuf(req.body) {
            Ok(json) => {
                transcoded = json;
                &Request {
                    content_type: Some("application/json"),
                    body: &transcoded,
                    shutdown: req.shutdown.clone(),
                    ..*req
                }
            }
            Err(failure) => return Answer::Json(failure.code, failure.body, Vec::new()),
        },
        None => req,
    };
    match answer(store, req).await {
        Ok(answer) => answer,
        Err(failure) => Answer::Json(failure.code, failure.body, Vec::new()),
    }
}

/// A protobuf body (kubectl's typed clients) as the JSON the handlers read.
fn from_protobuf(body: &[u8]) -> Result<Vec<u8>, Failure> {
    let bad = |message: String| {
        let message = format!(
            "the protobuf body ({}) is invalid: {message}",
            protobuf::MEDIA_TYPE
        );
        status::failure(StatusCode::BAD_REQUEST, "BadRequest", message, None)
    };
    let json = protobuf::to_json(body).map_err(bad)?;
    serde_json::to_vec(&json).map_err(|e| bad(e.to_string()))
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
    let ok = |body| Ok(Answer::Json(StatusCode::OK, body, Vec::new()));
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        _ if method != Method::GET && segments.len() < 3 => return Err(not_allowed(method, path)),
        ["version"] => return ok(discovery::version()),
        ["openapi", "v3"] => return ok(openapi::index()),
        ["openapi", "v3", gv @ ..] => {
            return openapi::document(&gv.join("/")).map_or_else(|| Err(not_found()), ok)
        }
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
    let manager = field_manager(req);
    let target = write::Target {
        resource,
        namespace,
        dry_run: query.get("dryRun").is_some_and(|d| d == "All"),
        manager: &manager,
        subresource: "",
    };
    let written = |w: write::Written| Ok(Answer::Json(w.code, w.body, w.warnings));
    match (rest.as_slice(), method) {
        ([_], &Method::GET) if query.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            let request = watch::WatchRequest::parse(resource, namespace, query, table)?;
            let events = watch::start(store, request, req.shutdown.clone()).await?;
            Ok(Answer::Stream(events))
        }
        ([_], &Method::GET) => {
            let selectors = read::Selectors::parse(resource.kind, query)?;
            let page = page::Page::parse(query)?;
            let mut list = read::list(store, resource, namespace, &selectors).await?;
            page.cut(&mut list);
            if !table {
                return ok(list);
            }
            let items = list["items"].as_array().map_or(&[][..], Vec::as_slice);
            let rv = list["metadata"]["resourceVersion"].as_str();
            let mut rows = table::of(resource.kind, items, rv, include);
            for paging in ["continue", "remainingItemCount"] {
                if let Some(v) = list["metadata"].get(paging) {
                    rows["metadata"][paging] = v.clone();
                }
            }
            ok(rows)
        }
        ([_], &Method::POST) => written(write::create(store, &target, req.body).await?),
        ([_], &Method::DELETE) => {
            let selectors = read::Selectors::parse(resource.kind, query)?;
            written(write::delete_collection(store, &target, &selectors).await?)
        }
        ([_, _], _) if resource.namespaced && namespace.is_none() => Err(not_found()),
        ([_, name], &Method::GET) => {
            let object = read::get(store, resource, namespace.unwrap_or(""), name).await?;
            if !table {
                return ok(object);
            }
            ok(table::of(resource.kind, &[object], None, include))
        }
        ([_, name], &Method::PUT) => written(write::update(store, &target, name, req.body).await?),
        ([_, name], &Method::PATCH) if apply::is_apply(req.content_type) => {
            let force = query.get("force").is_some_and(|f| f == "true");
            written(apply::server_side(store, &target, name, req.body, force).await?)
        }
        ([_, name], &Method::PATCH) => {
            let content_type = req.content_type.unwrap_or("");
            written(write::patch(store, &target, name, content_type, req.body).await?)
        }
        ([_, name], &Method::DELETE) => {
            written(write::delete(store, &target, name, req.body).await?)
        }
        ([_, name, "scale"], _) if scale::scalable(resource.kind) => {
            let target = write::Target {
                subresource: "scale",
                ..target
            };
            scale(store, req, &target, name).await
        }
        ([_, name, "status"], _) if resource.kind.has_status_subresource() => match *method {
            Method::GET => ok(read::get(store, resource, namespace.unwrap_or(""), name).await?),
            Method::PUT => written(write::status(store, &target, name, None, req.body).await?),
            Method::PATCH => {
                let media = req.content_type.unwrap_or("");
                written(write::status(store, &target, name, Some(media), req.body).await?)
            }
            _ => Err(not_allowed(method, path)),
        },
        ([_] | [_, _], _) => Err(not_allowed(method, path)),
        _ => Err(not_found()),
    }
}

/// `GET`, `PUT` or `PATCH` of a Deployment's `scale` subresource.
async fn scale(
    store: &Arc<Store>,
    req: &Request<'_>,
    target: &write::Target<'_>,
    name: &str,
) -> Result<Answer, Failure> {
    let written = |w: write::Written| Ok(Answer::Json(w.code, w.body, w.warnings));
    match *req.method {
        Method::GET => Ok(Answer::Json(
            StatusCode::OK,
            scale::get(store, target, name).await?,
            Vec::new(),
        )),
        Method::PUT => written(scale::set(store, target, name, None, req.body).await?),
        Method::PATCH => {
            let content_type = req.content_type.unwrap_or("");
            written(scale::set(store, target, name, Some(content_type), req.body).await?)
        }
        _ => Err(not_allowed(req.method, req.path)),
    }
}

/// The field manager of a write: `?fieldManager=`, else the client's name from its
/// `User-Agent` (`kubectl/v1.32.0 (linux/amd64)` → `kubectl`), as the API server does.
fn field_manager(req: &Request<'_>) -> String {
    if let Some(named) = req.query.get("fieldManager").filter(|m| !m.is_empty()) {
        return named.clone();
    }
    let agent = req.user_agent.unwrap_or("").split('/').next().unwrap_or("");
    if agent.trim().is_empty() {
        "unknown".into()
    } else {
        agent.trim().to_string()
    }
}

fn not_allowed(method: &Method, path: &str) -> Failure {
    status::failure(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!("{method} is not supported on {path}"),
        None,
    )
}

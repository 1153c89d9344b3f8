//! The pod `log` subresource (`GET /api/v1/namespaces/<ns>/pods/<name>/log`), which `kubectl
//! logs` reads: the pod's container log from this node's engine, as text, the last
//! `tailLines`, with `timestamps`, and with `follow` until the container ends or the client
//! goes. A pod whose container runs on another node, or has not started, gets a `Status`
//! saying so.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use hyper::{Method, Response, StatusCode};

use super::server::{full, ApiContext, Body, ExtensionResponse};
use crate::kube::{failure, Failure};
use pier_model::pod::CONTAINER_ANNOTATION;
use pier_model::{Kind, Object};

/// The namespace and pod name of a pod log path.
pub(crate) fn path(path: &str) -> Option<(&str, &str)> {
    match path
        .trim_matches('/')
        .split('/')
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["api", "v1", "namespaces", ns, "pods", name, "log"] => Some((ns, name)),
        _ => None,
    }
}

/// Answers a pod log request.
pub(crate) async fn serve(
    ctx: &ApiContext,
    namespace: &str,
    name: &str,
    query: &HashMap<String, String>,
) -> Response<Body> {
    match stream(ctx, namespace, name, query).await {
        Ok(rx) => super::server::streamed(rx, "text/plain"),
        Err(f) => full(f.code, f.body),
    }
}

async fn stream(
    ctx: &ApiContext,
    namespace: &str,
    name: &str,
    query: &HashMap<String, String>,
) -> Result<tokio::sync::mpsc::Receiver<Bytes>, Failure> {
    let bad = |m: String| failure(StatusCode::BAD_REQUEST, "BadRequest", m, None);
    let store = Arc::clone(&ctx.store);
    let (ns, n) = (namespace.to_string(), name.to_string());
    let found = tokio::task::spawn_blocking(move || store.get(Kind::Pod, &ns, &n))
        .await
        .map_err(|e| bad(format!("reading the pod: {e}")))?
        .map_err(|e| bad(crate::error::chain(&e)))?;
    let Some(Object::Pod(pod)) = found else {
        return Err(failure(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("pods \"{name}\" not found"),
            Some(("pods", name)),
        ));
    };
    let containers: Vec<&str> = pod
        .spec
        .containers
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    let container = match query.get("container") {
        Some(c) if !containers.contains(&c.as_str()) => {
            return Err(bad(format!("container {c} is not valid for pod {name}")))
        }
        Some(c) => c.clone(),
        None => containers
            .first()
            .map(|c| (*c).to_string())
            .unwrap_or_default(),
    };
    if query.get("previous").is_some_and(|p| p == "true") {
        return Err(bad(format!(
            "previous terminated container \"{container}\" in pod \"{name}\" not found: pier keeps one log per container across restarts"
        )));
    }
    let Some(id) = pod.metadata.annotations.get(CONTAINER_ANNOTATION) else {
        return Err(bad(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start"
        )));
    };
    let Some(engine) = ctx.extension.as_ref() else {
        return Err(bad("this daemon runs no containers (--no-runtime)".into()));
    };
    let mut engine_query = HashMap::new();
    if query.get("follow").is_some_and(|f| f == "true") {
        engine_query.insert("follow".to_string(), "true".to_string());
    }
    if query.get("timestamps").is_some_and(|t| t == "true") {
        engine_query.insert("timestamps".to_string(), "true".to_string());
    }
    if let Some(tail) = query.get("tailLines") {
        engine_query.insert("tail".to_string(), tail.clone());
    }
    let path = vec!["containers".to_string(), id.clone(), "logs".to_string()];
    match engine
        .handle(Method::GET, path, engine_query, Bytes::new())
        .await
    {
        ExtensionResponse::Stream(rx) => Ok(rx),
        ExtensionResponse::Json(status, body) => {
            let message = body["error"]
                .as_str()
                .unwrap_or("the engine refused")
                .to_string();
            let node = pod.spec.node_name.as_deref().unwrap_or("another node");
            Err(failure(
                if status == StatusCode::NOT_FOUND { StatusCode::NOT_FOUND } else { StatusCode::BAD_REQUEST },
                "NotFound",
                format!("the log of pod \"{name}\" is not on this node (its container runs on {node}): {message}"),
                Some(("pods", name)),
            ))
        }
    }
}

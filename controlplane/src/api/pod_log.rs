//! The pod `log` subresource (`GET /api/v1/namespaces/<ns>/pods/<name>/log`), which `kubectl
//! logs` reads: the pod's container log from this node's engine, as text, the last
//! `tailLines`, with `timestamps`, and with `follow` until the container ends or the client
//! goes. A pod whose container runs on another node, or has not started, gets a `Status`
//! saying so.

use std::collections::HashMap;

use bytes::Bytes;
use hyper::{Method, Response};

use super::pod_container::{self, bad};
use super::server::{ApiContext, Body, ExtensionResponse};
use crate::kube::Failure;

/// Answers a pod log request.
pub(crate) async fn serve(
    ctx: &ApiContext,
    namespace: &str,
    name: &str,
    query: &HashMap<String, String>,
) -> Result<Response<Body>, Failure> {
    let rx = stream(ctx, namespace, name, query).await?;
    Ok(super::server::streamed(rx, "text/plain"))
}

async fn stream(
    ctx: &ApiContext,
    namespace: &str,
    name: &str,
    query: &HashMap<String, String>,
) -> Result<tokio::sync::mpsc::Receiver<Bytes>, Failure> {
    let found = pod_container::find(
        ctx,
        namespace,
        name,
        query.get("container").map(String::as_str),
    )
    .await?;
    if query.get("previous").is_some_and(|p| p == "true") {
        return Err(bad(format!(
            "previous terminated container \"{}\" in pod \"{name}\" not found: pier keeps one log per container across restarts",
            found.name
        )));
    }
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
    let path = vec![
        "containers".to_string(),
        found.id.clone(),
        "logs".to_string(),
    ];
    match engine
        .handle(Method::GET, path, engine_query, Bytes::new())
        .await
    {
        ExtensionResponse::Stream(rx) => Ok(rx),
        ExtensionResponse::Json(_, body) => {
            let message = body["error"].as_str().unwrap_or("the engine refused");
            Err(pod_container::elsewhere(&found, "log", message))
        }
    }
}

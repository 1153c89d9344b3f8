//! The Kubernetes API's HTTP side: a hyper request becomes a `crate::kube::Request` (query,
//! `Accept`, `Content-Type`, body), and its answer a response (JSON with `Warning` headers,
//! or a watch stream).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use tokio::sync::watch;

use super::pod_relay::Routed;
use super::routes;
use super::server::{
    error_response, full, json_stream, status_response, ApiContext, Body, MAX_BODY,
};
use crate::error::Error;

/// A Kubernetes API request (`crate::kube`), counted under the `kubernetes` verb.
pub(crate) async fn serve(
    ctx: Arc<ApiContext>,
    req: Request<Incoming>,
    path: &str,
    shutdown: watch::Receiver<bool>,
) -> Response<Body> {
    let resp = answer(&ctx, req, path, shutdown).await;
    ctx.metrics
        .api_requests
        .with_label_values(&["kubernetes", resp.status().as_str()])
        .inc();
    resp
}

async fn answer(
    ctx: &Arc<ApiContext>,
    mut req: Request<Incoming>,
    path: &str,
    shutdown: watch::Receiver<bool>,
) -> Response<Body> {
    if let Some((node, which)) = super::node_proxy::parse(path) {
        return super::node_proxy::serve(ctx, req, node, which).await;
    }
    if let Some((namespace, name, subresource)) = super::pod_container::subresource(path) {
        if let Some(relay) = &ctx.relay {
            match relay.route(ctx, req, namespace, name, subresource).await {
                Routed::Answered(resp) => return resp,
                Routed::Local(local) => req = local,
            }
        }
        let served = match subresource {
            "log" if req.method() == Method::GET => {
                let q = routes::query(req.uri().query());
                super::pod_log::serve(ctx, namespace, name, &q).await
            }
            "exec" => super::pod_exec::serve(ctx, req, namespace, name).await,
            "portforward" => super::pod_portforward::serve(ctx, req, namespace, name).await,
            _ => return answer_object(ctx, req, path, shutdown).await,
        };
        return served.unwrap_or_else(status_response);
    }
    answer_object(ctx, req, path, shutdown).await
}

/// A request about objects (everything but a pod's container).
async fn answer_object(
    ctx: &Arc<ApiContext>,
    req: Request<Incoming>,
    path: &str,
    shutdown: watch::Receiver<bool>,
) -> Response<Body> {
    let q = routes::query(req.uri().query());
    let header = |name| {
        req.headers()
            .get(name)
            .and_then(|v: &hyper::header::HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    let (accept, content_type, user_agent) = (
        header(hyper::header::ACCEPT),
        header(hyper::header::CONTENT_TYPE),
        header(hyper::header::USER_AGENT),
    );
    let method = req.method().clone();
    let body = if method == Method::GET {
        Bytes::new()
    } else {
        match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => return error_response(&Error::BadRequest(format!("reading body: {e}"))),
        }
    };
    let request = crate::kube::Request {
        method: &method,
        path,
        query: &q,
        accept: accept.as_deref(),
        shutdown,
        content_type: content_type.as_deref(),
        user_agent: user_agent.as_deref(),
        body: &body,
    };
    match crate::kube::handle(&ctx.store, &request).await {
        crate::kube::Answer::Json(status, body, warnings) => {
            let mut resp = full(status, body);
            for warning in warnings {
                let text = format!("299 - \"{}\"", warning.replace('"', "'"));
                if let Ok(value) = hyper::header::HeaderValue::from_str(&text) {
                    resp.headers_mut().append("warning", value);
                }
            }
            resp
        }
        crate::kube::Answer::Stream(rx) => json_stream(rx),
    }
}

//! Admin listener: `/metrics`, `/healthz`, `/readyz`, `/snapshot`, `/snapshot/applied` (the
//! revision each dataplane part serves), `/snapshot/builds`, and the live dashboard at `/ui`
//! (`ui.rs`).

mod ui;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Result;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use pier_controlplane::metrics::Metrics;
use pier_snapshot::SnapshotHandle;
use prometheus::{Encoder, Registry, TextEncoder};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What the admin endpoints read.
pub(crate) struct Admin {
    /// Every pier metric.
    pub registry: Registry,
    /// Control-plane metrics (for recent build times).
    pub metrics: Arc<Metrics>,
    /// The published snapshot.
    pub snapshot: Arc<SnapshotHandle>,
    /// Set once the first snapshot is published and the API is listening.
    pub ready: AtomicBool,
    /// The store, for what the dashboard shows beyond the snapshot (Rollouts' messages).
    pub store: Arc<pier_controlplane::store::Store>,
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

fn handle(admin: &Admin, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/metrics" => {
            let mut buf = Vec::new();
            let encoder = TextEncoder::new();
            match encoder.encode(&admin.registry.gather(), &mut buf) {
                Ok(()) => respond(StatusCode::OK, "text/plain; version=0.0.4", buf),
                Err(e) => respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    e.to_string(),
                ),
            }
        }
        "/healthz" => respond(StatusCode::OK, "text/plain", "ok\n"),
        "/readyz" => {
            if admin.ready.load(Ordering::Acquire) {
                respond(StatusCode::OK, "text/plain", "ok\n")
            } else {
                respond(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "starting\n")
            }
        }
        "/snapshot" => respond(
            StatusCode::OK,
            "application/json",
            admin.snapshot.load().to_json().to_string(),
        ),
        "/snapshot/applied" => {
            let parts: serde_json::Map<String, serde_json::Value> = admin
                .metrics
                .applied_revisions()
                .into_iter()
                .map(|(part, revision)| (part.to_string(), json!(revision)))
                .collect();
            let body = json!({"revision": admin.snapshot.load().revision, "parts": parts});
            respond(StatusCode::OK, "application/json", body.to_string())
        }
        "/snapshot/builds" => {
            let secs = admin.metrics.recent_builds();
            let body = json!({"count": secs.len(), "seconds": secs});
            respond(StatusCode::OK, "application/json", body.to_string())
        }
        "/ui" | "/ui/" => respond(StatusCode::OK, "text/html; charset=utf-8", ui::PAGE),
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

/// `GET /ui/state`: the dashboard's state, with the Rollouts' status messages from the store
/// (a failed read leaves them out and is logged).
async fn ui_state(admin: &Admin) -> Response<Full<Bytes>> {
    let messages = admin
        .store
        .blocking("reading Rollouts for the dashboard", |s| {
            s.list(pier_model::Kind::Rollout, None, None)
        })
        .await
        .map(|(rollouts, _)| ui::messages(&rollouts))
        .unwrap_or_else(|e| {
            tracing::warn!(error = %pier_controlplane::error::chain(&e), "dashboard: Rollouts unread");
            Default::default()
        });
    let state = ui::state(&admin.snapshot.load().to_json(), &admin.registry, &messages);
    respond(StatusCode::OK, "application/json", state.to_string())
}

/// Serves the admin endpoints on `listener` until `shutdown` turns true.
pub(crate) async fn serve(
    admin: Arc<Admin>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = shutdown.changed() => return Ok(()),
        };
        let admin = Arc::clone(&admin);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let admin = Arc::clone(&admin);
                async move {
                    let resp = match req.uri().path() {
                        "/ui/state" => ui_state(&admin).await,
                        _ => handle(&admin, &req),
                    };
                    Ok::<_, Infallible>(resp)
                }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "admin connection ended");
            }
        });
    }
}

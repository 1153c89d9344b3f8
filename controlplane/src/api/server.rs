//! Control API server.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use super::routes::{self, Endpoint};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::store::{Op, Store};
use pier_model::{Kind, Object, SelectorQuery};
use pier_snapshot::SnapshotHandle;

/// Largest accepted request body.
pub(crate) const MAX_BODY: usize = 64 << 20;

/// A response body.
pub(crate) type Body = BoxBody<Bytes, Infallible>;

/// What API handlers need.
pub struct ApiContext {
    /// The store.
    pub store: Arc<Store>,
    /// The published snapshot.
    pub snapshot: Arc<SnapshotHandle>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Where the admin listener is, reported by `/v1/status`.
    pub admin_addr: Option<SocketAddr>,
    /// Where the DNS server listens, reported by `/v1/status`.
    pub dns_addrs: Vec<SocketAddr>,
    /// Routes another part of the daemon serves (the container engine).
    pub extension: Option<Arc<dyn Extension>>,
    /// Bearer tokens for the TCP listener, managed through `/v1/tokens`.
    pub tokens: Option<Arc<super::tokens::Tokens>>,
    /// The TCP listener, when there is one: its address and the CA clients should trust.
    pub api_listener: Option<(SocketAddr, String)>,
    /// Relays pod subresources to the node that runs the pod (a cluster node with a TCP
    /// listener).
    pub relay: Option<Arc<super::pod_relay::PodRelay>>,
    /// This node's metrics, served at `/api/v1/nodes/NODE/proxy/metrics[/resource]`.
    pub node_metrics: Option<Arc<crate::cluster::NodeMetrics>>,
}

/// What an [`Extension`] answers.
pub enum ExtensionResponse {
    /// A JSON body.
    Json(StatusCode, Value),
    /// Newline-delimited JSON or text, sent as it comes.
    Stream(tokio::sync::mpsc::Receiver<Bytes>),
}

/// The future an [`Extension`] returns.
pub type ExtensionFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = ExtensionResponse> + Send>>;

/// Routes under `/v1/<resource>` served by another part of the daemon.
pub trait Extension: Send + Sync {
    /// Whether `/v1/<resource>/…` is served here.
    fn handles(&self, resource: &str) -> bool;
    /// Answers a request; `path` is the segments after `/v1/`.
    fn handle(
        &self,
        method: Method,
        path: Vec<String>,
        query: HashMap<String, String>,
        body: Bytes,
    ) -> ExtensionFuture;
    /// A command that runs `argv` inside running container `id` with the stdio it is given
    /// (pod `exec`); an error saying why when the container does not run here.
    fn exec_command(&self, id: &str, argv: &[String]) -> Result<tokio::process::Command, String>;
    /// A connection to `port` on running container `id`'s own loopback (pod `portforward`);
    /// an error saying why when the container does not run here or nothing listens. Blocks.
    fn connect(&self, id: &str, port: u16) -> Result<std::net::TcpStream, String>;
}

async fn extension(
    ext: Arc<dyn Extension>,
    req: Request<Incoming>,
    path: Vec<String>,
    query: HashMap<String, String>,
) -> Result<Response<Body>, Error> {
    let method = req.method().clone();
    let bytes = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| Error::BadRequest(format!("reading body: {e}")))?
        .to_bytes();
    match ext.handle(method, path, query, bytes).await {
        ExtensionResponse::Json(status, value) => Ok(full(status, value)),
        ExtensionResponse::Stream(rx) => Ok(ndjson(rx)),
    }
}

fn not_found(req: &Request<Incoming>) -> Response<Body> {
    full(
        StatusCode::NOT_FOUND,
        json!({"error": format!("no route for {} {}", req.method(), req.uri().path()), "reason": "NotFound", "code": 404}),
    )
}

/// A request's body as JSON, refused past `limit` bytes.
pub(crate) async fn json_body(req: Request<Incoming>, limit: usize) -> Result<Value, Error> {
    let bytes = Limited::new(req.into_body(), limit)
        .collect()
        .await
        .map_err(|e| Error::BadRequest(format!("reading body: {e}")))?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| Error::BadRequest(format!("invalid JSON: {e}")))
}

/// A Kubernetes API failure as its `Status` response.
pub(crate) fn status_response(failure: crate::kube::Failure) -> Response<Body> {
    full(failure.code, failure.body)
}

/// A JSON response.
pub(crate) fn full(status: StatusCode, body: Value) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

pub(crate) fn error_response(e: &Error) -> Response<Body> {
    let (status, reason) = match e {
        Error::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid"),
        Error::Conflict(_) => (StatusCode::CONFLICT, "Conflict"),
        Error::NotFound { .. } => (StatusCode::NOT_FOUND, "NotFound"),
        Error::Compacted { .. } => (StatusCode::GONE, "Expired"),
        Error::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequest"),
        Error::Exhausted(_) => (StatusCode::INSUFFICIENT_STORAGE, "Exhausted"),
        Error::Store { .. } | Error::Transport(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "InternalError")
        }
    };
    let details: Vec<Value> = match e {
        Error::Invalid { errors, .. } => errors
            .iter()
            .map(|f| json!({"field": f.path, "message": f.message}))
            .collect(),
        _ => Vec::new(),
    };
    full(
        status,
        json!({"error": crate::error::chain(e), "reason": reason, "code": status.as_u16(), "details": details}),
    )
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::store_from("an API worker", e))?
}

async fn apply(ctx: Arc<ApiContext>, body: Value) -> Result<Response<Body>, Error> {
    let started = Instant::now();
    let Value::Object(mut body) = body else {
        return Err(Error::BadRequest(
            "body must be {\"objects\": [...]}".into(),
        ));
    };
    let Some(Value::Array(items)) = body.remove("objects") else {
        return Err(Error::BadRequest(
            "body must be {\"objects\": [...]}".into(),
        ));
    };
    let mut objects = Vec::with_capacity(items.len());
    let mut ignored = Vec::new();
    let mut errors = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        match Object::from_value(item) {
            Ok(mut parsed) => {
                // Field ownership is the Kubernetes API's to record (`kube/managed.rs`); a
                // manifest exported from a cluster carries that cluster's, which mean nothing here.
                if !parsed.object.meta().managed_fields.is_empty() {
                    parsed.object.meta_mut().managed_fields.clear();
                    parsed.ignored.push("metadata.managedFields".into());
                }
                for path in parsed.ignored {
                    ignored.push(json!({"object": parsed.object.describe(), "field": path}));
                }
                objects.push(parsed.object);
            }
            Err(e) => errors.push(json!({"index": i, "error": e.to_string()})),
        }
    }
    if !errors.is_empty() {
        let status = StatusCode::UNPROCESSABLE_ENTITY;
        let msg = errors
            .iter()
            .filter_map(|e| e["error"].as_str())
            .collect::<Vec<_>>()
            .join("; ");
        return Ok(full(
            status,
            json!({"error": msg, "reason": "Invalid", "code": status.as_u16(), "details": errors}),
        ));
    }
    let store = Arc::clone(&ctx.store);
    let written = blocking(move || store.apply(objects)).await?;
    ctx.metrics
        .apply_seconds
        .observe(started.elapsed().as_secs_f64());
    let results: Vec<Value> = written
        .iter()
        .filter_map(|w| {
            let o = w.object.as_ref()?;
            Some(json!({
                "kind": o.kind().as_str(),
                "resource": o.kind().plural(),
                "namespace": o.meta().namespace(),
                "name": o.meta().name,
                "outcome": w.outcome,
                "object": o.to_value(),
            }))
        })
        .collect();
    Ok(full(
        StatusCode::OK,
        json!({"revision": ctx.store.revision(), "results": results, "ignored": ignored}),
    ))
}

fn resource(name: &str) -> Result<Kind, Error> {
    Kind::ALL
        .into_iter()
        .find(|k| k.plural() == name)
        .ok_or_else(|| Error::NotFound {
            kind: "resource".into(),
            namespace: String::new(),
            name: name.into(),
        })
}

async fn watch_stream(
    ctx: Arc<ApiContext>,
    from: u64,
    shutdown: watch::Receiver<bool>,
) -> Result<Response<Body>, Error> {
    let mut watch = ctx.store.watch(from)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let mut shutdown = shutdown;
        loop {
            let event = tokio::select! {
                e = watch.next() => e,
                _ = shutdown.changed() => break,
                _ = tx.closed() => break,
            };
            let line = match event {
                Ok(e) => format!("{}\n", e.to_json()),
                Err(e) => format!(
                    "{}\n",
                    json!({"type": "ERROR", "error": crate::error::chain(&e)})
                ),
            };
            if tx.send(Bytes::from(line)).await.is_err() {
                break;
            }
        }
    });
    Ok(ndjson(rx))
}

/// A streamed newline-delimited JSON response fed by `rx`.
fn ndjson(rx: tokio::sync::mpsc::Receiver<Bytes>) -> Response<Body> {
    streamed(rx, "application/x-ndjson")
}

/// A Kubernetes watch response: JSON events, one per line, fed by `rx`.
pub(crate) fn json_stream(rx: tokio::sync::mpsc::Receiver<Bytes>) -> Response<Body> {
    streamed(rx, "application/json")
}

pub(crate) fn streamed(
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    content_type: &'static str,
) -> Response<Body> {
    let stream = ReceiverStream::new(rx).map(|b| Ok::<_, Infallible>(Frame::data(b)));
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    resp
}

async fn route(
    ctx: Arc<ApiContext>,
    req: Request<Incoming>,
    endpoint: Endpoint,
    shutdown: watch::Receiver<bool>,
) -> Result<Response<Body>, Error> {
    let q = routes::query(req.uri().query());
    match endpoint {
        Endpoint::Extension(path) => match &ctx.extension {
            Some(ext) => extension(Arc::clone(ext), req, path, q).await,
            None => Ok(not_found(&req)),
        },
        Endpoint::Status => Ok(full(
            StatusCode::OK,
            json!({
                "version": env!("CARGO_PKG_VERSION"),
                "revision": ctx.store.revision(),
                "snapshotRevision": ctx.snapshot.load().revision,
                "adminAddress": ctx.admin_addr.map(|a| a.to_string()),
                "dnsAddresses": ctx.dns_addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "apiAddress": ctx.api_listener.as_ref().map(|(a, _)| a.to_string()),
                "apiCa": ctx.api_listener.as_ref().map(|(_, ca)| ca.clone()),
            }),
        )),
        Endpoint::Snapshot => Ok(full(StatusCode::OK, ctx.snapshot.load().to_json())),
        Endpoint::Apply => {
            let body = json_body(req, MAX_BODY).await?;
            apply(ctx, body).await
        }
        Endpoint::Watch => {
            let from = match q.get("from") {
                Some(f) => f
                    .parse()
                    .map_err(|_| Error::BadRequest(format!("from={f:?} is not a revision")))?,
                None => ctx.store.revision() + 1,
            };
            watch_stream(ctx, from, shutdown).await
        }
        Endpoint::List { resource: res } => {
            let kind = resource(&res)?;
            let selector = q
                .get("labelSelector")
                .map(|s| SelectorQuery::parse(s).map_err(Error::BadRequest))
                .transpose()?;
            let ns = q.get("namespace").cloned();
            let store = Arc::clone(&ctx.store);
            let (items, revision) =
                blocking(move || store.list(kind, ns.as_deref(), selector.as_ref())).await?;
            let items: Vec<Value> = items.iter().map(Object::to_value).collect();
            Ok(full(
                StatusCode::OK,
                json!({"revision": revision, "items": items}),
            ))
        }
        Endpoint::Get {
            resource: res,
            namespace: ns,
            name,
        } => {
            let kind = resource(&res)?;
            let store = Arc::clone(&ctx.store);
            let found = {
                let (ns, name) = (ns.clone(), name.clone());
                blocking(move || store.get(kind, &ns, &name)).await?
            };
            match found {
                Some(o) => Ok(full(StatusCode::OK, o.to_value())),
                None => Err(Error::NotFound {
                    kind: kind.to_string(),
                    namespace: ns,
                    name,
                }),
            }
        }
        Endpoint::Delete {
            resource: res,
            namespace,
            name,
        } => {
            let kind = resource(&res)?;
            let resource_version = q.get("resourceVersion").cloned();
            let store = Arc::clone(&ctx.store);
            let written = blocking(move || {
                // Finalizers hold an object: it is only marked, and goes when the last is
                // removed.
                let held = store
                    .get(kind, &namespace, &name)?
                    .and_then(crate::kube::held_by_finalizers);
                let op = match held {
                    Some(mut marked) => {
                        if let Some(rv) = resource_version {
                            marked.meta_mut().resource_version = rv;
                        }
                        Op::Put(marked)
                    }
                    None => Op::Delete {
                        kind,
                        namespace,
                        name,
                        resource_version,
                        must_exist: true,
                    },
                };
                store.write(vec![op])
            })
            .await?;
            let object = written
                .into_iter()
                .next()
                .and_then(|w| w.object)
                .map(|o| o.to_value());
            Ok(full(StatusCode::OK, json!({"deleted": object})))
        }
        Endpoint::Tokens => super::access::tokens(&ctx, req).await,
        Endpoint::RevokeToken { name } => super::access::revoke(&ctx, &name).await,
        Endpoint::NotFound => Ok(not_found(&req)),
    }
}

/// Answers one request on either listener: the Kubernetes API's paths, or pier's own.
pub(crate) async fn handle_request(
    ctx: Arc<ApiContext>,
    req: Request<Incoming>,
    shutdown: watch::Receiver<bool>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    if crate::kube::is_api_path(&path) {
        return super::kubernetes::serve(ctx, req, &path, shutdown).await;
    }
    let endpoint = routes::resolve(req.method(), &path, |r| {
        ctx.extension.as_ref().is_some_and(|e| e.handles(r))
    });
    let verb = endpoint.verb();
    let metrics = Arc::clone(&ctx.metrics);
    let resp = route(ctx, req, endpoint, shutdown)
        .await
        .unwrap_or_else(|e| error_response(&e));
    metrics
        .api_requests
        .with_label_values(&[verb, resp.status().as_str()])
        .inc();
    resp
}

/// Binds the control socket: mode 0600, parent directory 0700 when created, a stale socket replaced.
pub fn bind(socket: &Path) -> Result<UnixListener, Error> {
    let io = |what: &str, e: std::io::Error| {
        Error::Transport(format!("{what} {}: {e}", socket.display()))
    };
    if let Some(dir) = socket.parent() {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io("creating directory for", e))?;
        }
    }
    if socket.exists() {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Err(Error::Transport(format!(
                "{} is in use: another pier daemon is running",
                socket.display()
            )));
        }
        std::fs::remove_file(socket).map_err(|e| io("removing stale", e))?;
    }
    let listener = UnixListener::bind(socket).map_err(|e| io("binding", e))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| io("chmod", e))?;
    Ok(listener)
}

/// Serves the API on `listener` (bound at `socket`) until `shutdown` turns true; then removes the socket.
pub async fn serve(
    ctx: Arc<ApiContext>,
    listener: UnixListener,
    socket: &Path,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let io = |what: &str, e: std::io::Error| {
        Error::Transport(format!("{what} {}: {e}", socket.display()))
    };
    let uid = super::current_uid();
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted.map_err(|e| io("accepting on", e))?,
            _ = shutdown.changed() => break,
        };
        let peer = stream.peer_cred().map(|c| c.uid()).ok();
        if peer.is_none_or(|p| p != uid && p != 0) {
            tracing::warn!(peer_uid = ?peer, "refused control connection from another user");
            continue;
        }
        let ctx = Arc::clone(&ctx);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (ctx, shutdown) = (Arc::clone(&ctx), shutdown.clone());
                async move { Ok::<_, Infallible>(handle_request(ctx, req, shutdown).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "control connection ended");
            }
        });
    }
    match std::fs::remove_file(socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            tracing::warn!(socket = %socket.display(), error = %e, "control socket left in place");
        }
        _ => {}
    }
    Ok(())
}

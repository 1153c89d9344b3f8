//! The pod `portforward` subresource, as kubectl speaks it: `/api/v1/namespaces/<ns>/pods/
//! <name>/portforward` upgraded either to a WebSocket carrying SPDY (subprotocol
//! `SPDY/3.1+portforward.k8s.io`, kubectl 1.31+) or to SPDY/3.1 itself (older kubectl, and
//! 1.31+ when told to). Each forwarded connection is a pair of streams sharing a `requestID`:
//! `error` (a failure's text, then its end) and `data` (the bytes both ways), relayed to the
//! port on the pod's own loopback.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::{future, SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::pod_container::{self, bad};
use super::server::{ApiContext, Body, Extension};
use super::spdy::{self, Stream};
use crate::kube::Failure;

/// The port-forward protocol served.
const PROTOCOL: &str = "portforward.k8s.io";
/// The WebSocket subprotocol that tunnels it.
const TUNNELED: &str = "SPDY/3.1+portforward.k8s.io";
/// How long the first stream of a pair waits for the second, as the kubelet's default.
const PAIR_TIMEOUT: Duration = Duration::from_secs(30);
/// The most read from the pod per data frame.
const CHUNK: usize = 32 * 1024;
/// How long the other direction may take to end once one has.
const GRACE: Duration = Duration::from_secs(1);

/// How the client asked to upgrade.
enum Transport {
    /// A WebSocket (its key) tunnelling SPDY.
    WebSocket(String),
    /// SPDY/3.1 on the connection itself.
    Spdy,
}

/// Answers a port-forward request: `101 Switching Protocols` and the session on the upgraded
/// connection, or a `Status` saying why not.
pub(crate) async fn serve(
    ctx: &Arc<ApiContext>,
    req: Request<Incoming>,
    namespace: &str,
    name: &str,
) -> Result<Response<Body>, Failure> {
    let transport = transport(&req)?;
    let found = pod_container::find(ctx, namespace, name, None).await?;
    let Some(engine) = ctx.extension.clone() else {
        return Err(bad("this daemon runs no containers (--no-runtime)".into()));
    };
    let pod = found.pod.metadata.name.clone();
    let websocket = matches!(transport, Transport::WebSocket(_));
    let target = Target {
        engine,
        container: found.id,
        pod: pod.clone(),
        connections: ctx
            .metrics
            .portforward_connections
            .with_label_values(&[if websocket { "websocket" } else { "spdy" }]),
    };
    tokio::spawn(async move {
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(upgraded) => TokioIo::new(upgraded),
            Err(e) => {
                tracing::debug!(pod = %pod, error = %e, "portforward: the connection was not upgraded");
                return;
            }
        };
        tracing::info!(pod = %pod, websocket, "portforward");
        let (accept_tx, accept_rx) = mpsc::channel(8);
        let pairs = tokio::spawn(pair_streams(accept_rx, Arc::new(target)));
        let served = if websocket {
            let socket = WebSocketStream::from_raw_socket(upgraded, Role::Server, None).await;
            let (sink, source) = socket.split();
            let incoming = source
                .take_while(|m| future::ready(!matches!(m, Ok(Message::Close(_)))))
                .filter_map(|m| {
                    future::ready(match m {
                        Ok(Message::Binary(data)) => Some(Ok(data)),
                        Ok(_) => None,
                        Err(e) => Some(Err(std::io::Error::other(e))),
                    })
                });
            let outgoing = sink.with(|data: Bytes| {
                future::ready(Ok::<_, tokio_tungstenite::tungstenite::Error>(
                    Message::Binary(data),
                ))
            });
            spdy::serve(Box::pin(incoming), Box::pin(outgoing), accept_tx).await
        } else {
            let (reader, writer) = tokio::io::split(upgraded);
            let incoming = futures_util::stream::unfold(reader, |mut reader| async move {
                let mut buf = BytesMut::with_capacity(CHUNK);
                match reader.read_buf(&mut buf).await {
                    Ok(0) => None,
                    Ok(_) => Some((Ok(buf.freeze()), reader)),
                    Err(e) => Some((Err(e), reader)),
                }
            });
            let outgoing =
                futures_util::sink::unfold(writer, |mut writer, data: Bytes| async move {
                    writer.write_all(&data).await?;
                    Ok::<_, std::io::Error>(writer)
                });
            spdy::serve(Box::pin(incoming), Box::pin(outgoing), accept_tx).await
        };
        if let Err(e) = served {
            tracing::info!(pod = %pod, error = %e, "portforward session ended");
        }
        if let Err(e) = pairs.await {
            tracing::warn!(pod = %pod, error = %e, "portforward: pairing streams failed");
        }
    });
    upgrade_response(&transport)
}

/// The transport the request asks for, or why it cannot be served.
fn transport(req: &Request<Incoming>) -> Result<Transport, Failure> {
    let header = |name: &str| {
        req.headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",")
    };
    let listed = |name: &str, wanted: &str| {
        header(name)
            .split(',')
            .any(|v| v.trim().eq_ignore_ascii_case(wanted))
    };
    let upgrade = header("upgrade");
    if upgrade.eq_ignore_ascii_case("websocket") {
        let key = header("sec-websocket-key");
        if key.is_empty() || !listed("sec-websocket-protocol", TUNNELED) {
            return Err(bad(format!(
                "unable to upgrade: pod portforward over WebSocket needs the {TUNNELED} subprotocol"
            )));
        }
        return Ok(Transport::WebSocket(key));
    }
    if upgrade.eq_ignore_ascii_case("SPDY/3.1") {
        if !listed("x-stream-protocol-version", PROTOCOL) {
            return Err(bad(format!(
                "unable to upgrade: unable to negotiate protocol: client supports {:?}, server supports [\"{PROTOCOL}\"]",
                header("x-stream-protocol-version")
            )));
        }
        return Ok(Transport::Spdy);
    }
    Err(bad(
        "Upgrade request required: pod portforward is served over SPDY/3.1 or a WebSocket tunnelling it".into(),
    ))
}

fn upgrade_response(transport: &Transport) -> Result<Response<Body>, Failure> {
    let mut resp = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = resp.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    match transport {
        Transport::WebSocket(key) => {
            headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
            let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
                .map_err(|e| bad(format!("Sec-WebSocket-Key: {e}")))?;
            headers.insert("sec-websocket-accept", accept);
            headers.insert("sec-websocket-protocol", HeaderValue::from_static(TUNNELED));
        }
        Transport::Spdy => {
            headers.insert(UPGRADE, HeaderValue::from_static("SPDY/3.1"));
            headers.insert(
                "x-stream-protocol-version",
                HeaderValue::from_static(PROTOCOL),
            );
        }
    }
    Ok(resp)
}

/// Where forwarded connections go.
struct Target {
    engine: Arc<dyn Extension>,
    container: String,
    pod: String,
    /// Counts the connections forwarded.
    connections: prometheus::IntCounter,
}

/// The streams of one forwarded connection, as they arrive.
#[derive(Default)]
struct Pair {
    error: Option<Stream>,
    data: Option<Stream>,
    since: Option<Instant>,
}

/// Pairs the streams the client opens by `requestID` and forwards each complete pair; a
/// stream left alone past `PAIR_TIMEOUT` is reset.
async fn pair_streams(mut accepted: mpsc::Receiver<Stream>, target: Arc<Target>) {
    let mut pending: HashMap<String, Pair> = HashMap::new();
    while let Some(stream) = accepted.recv().await {
        let kind = stream.header("streamtype").unwrap_or("").to_string();
        let request = request_id(&stream, &kind);
        let pair = pending.entry(request.clone()).or_default();
        pair.since.get_or_insert_with(Instant::now);
        let slot = match kind.as_str() {
            "error" => &mut pair.error,
            "data" => &mut pair.data,
            other => {
                tracing::debug!(pod = %target.pod, stream_type = other, "portforward: unknown stream type");
                stream.out.reset().await;
                continue;
            }
        };
        if slot.is_some() {
            tracing::debug!(pod = %target.pod, request = %request, "portforward: a repeated stream");
            stream.out.reset().await;
            continue;
        }
        *slot = Some(stream);
        if pair.error.is_some() && pair.data.is_some() {
            if let Some(Pair {
                error: Some(error),
                data: Some(data),
                ..
            }) = pending.remove(&request)
            {
                target.connections.inc();
                tokio::spawn(forward(Arc::clone(&target), error, data));
            }
        }
        for (request, pair) in expired(&mut pending) {
            tracing::info!(pod = %target.pod, request = %request, "portforward: a stream's pair never came");
            for stream in [pair.error, pair.data].into_iter().flatten() {
                stream.out.reset().await;
            }
        }
    }
}

/// Takes the pairs that waited too long out of `pending`.
fn expired(pending: &mut HashMap<String, Pair>) -> Vec<(String, Pair)> {
    let old: Vec<String> = pending
        .iter()
        .filter(|(_, p)| p.since.is_some_and(|t| t.elapsed() > PAIR_TIMEOUT))
        .map(|(k, _)| k.clone())
        .collect();
    old.into_iter()
        .filter_map(|k| pending.remove(&k).map(|p| (k, p)))
        .collect()
}

/// The stream's `requestID`; for clients too old to send one, derived from the stream ids as
/// the kubelet does (a data stream follows its error stream, two ids on).
fn request_id(stream: &Stream, kind: &str) -> String {
    match stream.header("requestid") {
        Some(id) => id.to_string(),
        None if kind == "data" => stream.id.saturating_sub(2).to_string(),
        None => stream.id.to_string(),
    }
}

/// Relays one forwarded connection between its data stream and the pod's port, then ends
/// both streams, a failure's text first on the error stream (the kubelet's order).
async fn forward(target: Arc<Target>, error: Stream, mut data: Stream) {
    let outcome = match data.header("port").map(str::parse::<u16>) {
        Some(Ok(port)) if port > 0 => relay(&target, port, &mut data).await,
        _ => Err(format!(
            "invalid port {:?}: a port in 1-65535 is required",
            data.header("port").unwrap_or("")
        )),
    };
    if let Err(why) = outcome {
        tracing::info!(pod = %target.pod, error = %why, "portforward");
        error.out.send(Bytes::from(why)).await;
    }
    error.out.finish().await;
    data.out.finish().await;
}

/// Connects to `port` in the pod and copies both ways until one way ends, then gives the
/// other `GRACE` to end too (as containerd's port-forward does).
async fn relay(target: &Target, port: u16, data: &mut Stream) -> Result<(), String> {
    let (engine, container) = (Arc::clone(&target.engine), target.container.clone());
    let failed = |why: String| format!("error forwarding port {port} to pod {}: {why}", target.pod);
    let std_stream = tokio::task::spawn_blocking(move || engine.connect(&container, port))
        .await
        .map_err(|e| failed(e.to_string()))?
        .map_err(failed)?;
    let tcp = std_stream
        .set_nonblocking(true)
        .and_then(|()| TcpStream::from_std(std_stream))
        .map_err(|e| failed(e.to_string()))?;
    let (mut from_pod, mut to_pod) = tcp.into_split();
    let out = data.out.clone();
    let incoming = &mut data.incoming;
    let upstream = async {
        while let Some(chunk) = incoming.recv().await {
            to_pod.write_all(&chunk).await?;
        }
        to_pod.shutdown().await
    };
    let downstream = async {
        let mut buf = BytesMut::with_capacity(CHUNK);
        loop {
            buf.reserve(CHUNK);
            if from_pod.read_buf(&mut buf).await? == 0 {
                return Ok::<_, std::io::Error>(());
            }
            if !out.send(buf.split().freeze()).await {
                return Ok(());
            }
        }
    };
    tokio::pin!(upstream, downstream);
    let (first, up_first) = tokio::select! {
        up = &mut upstream => (up, true),
        down = &mut downstream => (down, false),
        () = out.session_closed() => return Ok(()),
    };
    let second = if up_first {
        tokio::time::timeout(GRACE, &mut downstream).await
    } else {
        tokio::time::timeout(GRACE, &mut upstream).await
    };
    first
        .and(second.unwrap_or(Ok(())))
        .map_err(|e| failed(e.to_string()))
}

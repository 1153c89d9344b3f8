//! The pod `exec` subresource as kubectl 1.30+ speaks it: `GET
//! /api/v1/namespaces/<ns>/pods/<name>/exec?command=...` upgraded to a WebSocket with the
//! `v5.channel.k8s.io` (or `v4`) subprotocol. The command runs in the pod's container through
//! the engine's exec helper; `exec_stream.rs` carries its stdio over the channels.

use std::sync::Arc;

use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use super::exec_stream::{self, Streams};
use super::pod_container::{self, bad};
use super::server::{ApiContext, Body};
use crate::kube::Failure;

/// The subprotocols served, best first.
const PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// What the client asked to run, and with which streams.
#[derive(Debug, PartialEq, Eq)]
struct Options {
    command: Vec<String>,
    container: Option<String>,
    streams: Streams,
}

impl Options {
    /// Reads `command` (repeated, one per argument), `container`, `stdin`, `stdout`, `stderr`
    /// and `tty` from the query.
    fn parse(query: Option<&str>) -> Result<Options, Failure> {
        let mut options = Options {
            command: Vec::new(),
            container: None,
            streams: Streams::default(),
        };
        let on = |v: &str| v == "true" || v == "1";
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match key.as_ref() {
                "command" => options.command.push(value.into_owned()),
                "container" => options.container = Some(value.into_owned()),
                "stdin" => options.streams.stdin = on(&value),
                "stdout" => options.streams.stdout = on(&value),
                "stderr" => options.streams.stderr = on(&value),
                "tty" => options.streams.tty = on(&value),
                _ => {}
            }
        }
        if options.command.is_empty() {
            return Err(bad("you must specify at least 1 command".into()));
        }
        if !(options.streams.stdin || options.streams.stdout || options.streams.stderr) {
            return Err(bad(
                "you must specify at least 1 of stdin, stdout, stderr".into()
            ));
        }
        Ok(options)
    }
}

/// Answers an exec request: `101 Switching Protocols` and the session on the upgraded
/// connection, or a `Status` saying why not.
pub(crate) async fn serve(
    ctx: &Arc<ApiContext>,
    req: Request<Incoming>,
    namespace: &str,
    name: &str,
) -> Result<Response<Body>, Failure> {
    let options = Options::parse(req.uri().query())?;
    let (key, protocol) = handshake(&req)?;
    let container = options.container.as_deref();
    let found = pod_container::find(ctx, namespace, name, container).await?;
    let Some(engine) = ctx.extension.as_ref() else {
        return Err(bad("this daemon runs no containers (--no-runtime)".into()));
    };
    let command = engine
        .exec_command(&found.id, &options.command)
        .map_err(|why| pod_container::elsewhere(&found, "container", &why))?;
    let (pod, argv, streams) = (
        found.pod.metadata.name.clone(),
        options.command,
        options.streams,
    );
    tokio::spawn(async move {
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!(pod = %pod, error = %e, "exec: the connection was not upgraded");
                return;
            }
        };
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        tracing::info!(pod = %pod, command = ?argv, "exec");
        exec_stream::run(socket, command, &argv, streams).await;
    });
    let mut resp = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = resp.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
        .map_err(|e| bad(format!("Sec-WebSocket-Key: {e}")))?;
    headers.insert("sec-websocket-accept", accept);
    headers.insert("sec-websocket-protocol", HeaderValue::from_static(protocol));
    Ok(resp)
}

/// The client's WebSocket key and the subprotocol chosen from those it offers.
fn handshake(req: &Request<Incoming>) -> Result<(String, &'static str), Failure> {
    let header = |name: &str| {
        req.headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",")
    };
    let upgrade_required = || {
        bad("Upgrade request required: pod exec is served over WebSocket (v5.channel.k8s.io, kubectl 1.30 or later)".into())
    };
    if !header("upgrade").eq_ignore_ascii_case("websocket") {
        return Err(upgrade_required());
    }
    let key = header("sec-websocket-key");
    if key.is_empty() {
        return Err(upgrade_required());
    }
    let offered = header("sec-websocket-protocol");
    let offered: Vec<&str> = offered.split(',').map(str::trim).collect();
    let protocol = PROTOCOLS
        .iter()
        .find(|p| offered.contains(p))
        .ok_or_else(|| {
            bad(format!(
                "none of the offered subprotocols {offered:?} is served; pier speaks {PROTOCOLS:?}"
            ))
        })?;
    Ok((key, protocol))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_options_come_from_the_query_as_kubectl_sends_them() {
        let options = Options::parse(Some(
            "command=sh&command=-c&command=echo+%22hi%22&container=web&stdin=true&stdout=true&stderr=true&tty=false",
        ))
        .unwrap();
        assert_eq!(options.command, ["sh", "-c", "echo \"hi\""]);
        assert_eq!(options.container.as_deref(), Some("web"));
        assert!(options.streams.stdin && options.streams.stdout && !options.streams.tty);
        assert!(Options::parse(Some("stdout=true")).is_err());
        assert!(Options::parse(Some("command=ls")).is_err());
        assert_eq!(
            pod_container::subresource("/api/v1/namespaces/default/pods/web/exec"),
            Some(("default", "web", "exec"))
        );
    }
}

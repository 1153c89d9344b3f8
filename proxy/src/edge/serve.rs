//! One edge connection and its requests: TLS (ALPN picks HTTP/2 or HTTP/1.1), then per request
//! the Gateway site of the listener port by host, else (on an Ingress socket) the Ingress site
//! by host, the path, redirects to HTTPS, the body limit, the canary decision in
//! ingress-nginx's order (header, cookie, weight), the rewrite, and the backend's answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, COOKIE, HOST, LOCATION};
use hyper::{Request, Response, StatusCode, Uri};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::gateway::GatewayTable;
use super::metrics::EdgeMetrics;
use super::table::{rewritten, Backend, EdgeTable, Target};
use crate::io::{Activity, Tracked};
use crate::l7::body::ClientRequestBody;
use crate::l7::headers::ClientHeaders;
use crate::l7::{ClientBody, Http};
use crate::metrics::{FrontendMetrics, Lazy};
use crate::route_filters::with_path;
use crate::tls::accept;

/// What every edge connection shares.
pub(crate) struct EdgeShared {
    /// The Ingress routing table, swapped whole on a change.
    pub table: ArcSwap<EdgeTable>,
    /// The Gateway listeners' sites by port, swapped whole on a change.
    pub gateways: ArcSwap<GatewayTable>,
    /// The HTTP machinery shared with the proxy.
    pub http: Arc<Http>,
    /// Request and handshake metrics.
    pub metrics: EdgeMetrics,
    /// Byte counters and open connections of the edge listeners.
    pub listener_metrics: Lazy<FrontendMetrics>,
    /// The HTTPS listener's port, for redirects (none: no HTTPS listener).
    pub https_port: Option<u16>,
}

/// What a listening socket serves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Role {
    /// Its port: Gateway listeners on it serve here.
    pub port: u16,
    /// The Ingresses are served here too.
    pub ingress: bool,
    /// TLS is passed through by SNI name (TLSRoutes) rather than HTTP served.
    pub passthrough: bool,
}

/// Serves one edge connection: over TLS when `tls` is given.
pub(crate) async fn connection(
    shared: Arc<EdgeShared>,
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    role: Role,
) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%peer, error = %e, "could not set TCP_NODELAY");
    }
    let activity = Activity::new();
    let m = &shared.listener_metrics;
    let io = Tracked::new(
        stream,
        activity.clone(),
        m.bytes_in.clone(),
        m.bytes_out.clone(),
    );
    let https = tls.is_some();
    let client = Arc::new(ClientHeaders::edge(peer, https, role.port));
    let for_requests = Arc::clone(&shared);
    let handler = move |req| {
        let shared = Arc::clone(&for_requests);
        let client = Arc::clone(&client);
        async move { request(&shared, req, &client, https, role).await }
    };
    let http = &shared.http;
    let Some(acceptor) = tls else {
        http.serve_connection(io, activity, peer, false, handler)
            .await;
        return;
    };
    match accept::accept(&acceptor, io, http.header_read_timeout()).await {
        Ok((tls, handshake)) => {
            shared.metrics.handshake(&handshake);
            let h2 = handshake.alpn.as_deref() == Some(b"h2");
            http.serve_connection(tls, activity, peer, h2, handler)
                .await;
        }
        Err(failure) => {
            tracing::debug!(%peer, reason = failure.reason(), "TLS handshake failed");
            shared.metrics.handshake_failed(&failure);
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<ClientBody> {
    let mut r = Response::new(Either::Right(Full::new(Bytes::from_static(
        body.as_bytes(),
    ))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    r
}

/// The request's host: `:authority` (HTTP/2) or `Host`, lowercase, without the port.
fn host_of(req: &Request<ClientRequestBody>) -> String {
    let raw = req
        .uri()
        .host()
        .map(str::to_string)
        .or_else(|| {
            let h = req.headers().get(HOST)?.to_str().ok()?;
            let h = h.parse::<hyper::http::uri::Authority>().ok()?;
            Some(h.host().to_string())
        })
        .unwrap_or_default();
    raw.trim_end_matches('.').to_ascii_lowercase()
}

/// Answers one request.
async fn request(
    shared: &EdgeShared,
    mut req: Request<ClientRequestBody>,
    client: &ClientHeaders,
    https: bool,
    role: Role,
) -> Response<ClientBody> {
    let host = host_of(&req);
    let gateway = shared
        .gateways
        .load()
        .port(role.port)
        .and_then(|p| p.site(&host))
        .cloned();
    if let Some(frontend) = gateway {
        return shared.http.handle(req, client, frontend).await;
    }
    if !role.ingress {
        return text(StatusCode::NOT_FOUND, "no listener takes this host\n");
    }
    let started = Instant::now();
    let table = shared.table.load_full();
    let site = table.site(&host);
    let Some(target) = site.target(req.uri().path()) else {
        return text(StatusCode::NOT_FOUND, "default backend - 404\n");
    };
    let s = &target.settings;
    if !https && (s.force_ssl_redirect || (s.ssl_redirect && site.tls)) {
        if let Some(port) = shared.https_port {
            return redirect(&host, port, req.uri());
        }
    }
    if s.max_body > 0 && content_length(req.headers()).is_some_and(|n| n > s.max_body) {
        return text(StatusCode::PAYLOAD_TOO_LARGE, "request entity too large\n");
    }
    let backend = choose(target, req.headers());
    if let Some((pattern, to)) = &target.rewrite {
        let path = rewritten(pattern, to, req.uri().path());
        if let Some(uri) = with_path(req.uri(), &path) {
            *req.uri_mut() = uri;
        }
    }
    let response = shared
        .http
        .handle(req, client, Arc::clone(&backend.frontend))
        .await;
    backend
        .counters
        .observe(response.status().as_u16(), started.elapsed());
    response
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// ingress-nginx's order: the header (`always`, `never`, or the configured value or pattern),
/// then the cookie (`always`, `never`), then the weight.
fn choose<'a>(target: &'a Target, headers: &HeaderMap) -> &'a Backend {
    let Some(canary) = &target.canary else {
        return &target.main;
    };
    let rules = &canary.rules;
    let header = rules
        .by_header
        .as_deref()
        .and_then(|name| headers.get(name))
        .and_then(|v| v.to_str().ok());
    if let Some(value) = header {
        let verdict = if let Some(want) = rules.by_header_value.as_deref().filter(|w| !w.is_empty())
        {
            (value == want).then_some(true)
        } else if let Some(pattern) = &canary.pattern {
            pattern.is_match(value).then_some(true)
        } else {
            match value {
                "always" => Some(true),
                "never" => Some(false),
                _ => None,
            }
        };
        if let Some(to_canary) = verdict {
            return if to_canary {
                &canary.backend
            } else {
                &target.main
            };
        }
    }
    if let Some(name) = rules.by_cookie.as_deref() {
        match cookie(headers, name) {
            Some("always") => return &canary.backend,
            Some("never") => return &target.main,
            _ => {}
        }
    }
    if canary.weighted_turn() {
        &canary.backend
    } else {
        &target.main
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// `308 Permanent Redirect` to the same host, path and query over HTTPS, as ingress-nginx.
fn redirect(host: &str, port: u16, uri: &Uri) -> Response<ClientBody> {
    let pq = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let location = if port == 443 {
        format!("https://{host}{pq}")
    } else {
        format!("https://{host}:{port}{pq}")
    };
    let mut r = text(StatusCode::PERMANENT_REDIRECT, "redirecting to https\n");
    match HeaderValue::from_str(&location) {
        Ok(v) => {
            r.headers_mut().insert(LOCATION, v);
            r
        }
        Err(_) => text(StatusCode::BAD_REQUEST, "bad host\n"),
    }
}

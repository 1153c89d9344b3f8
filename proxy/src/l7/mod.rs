//! L7 HTTP/1.1 and h2c: route each request, pick a weighted group and an endpoint, forward over
//! pooled upstream connections, retry within budget, answer 502/503/504 when nothing can serve.

mod body;
pub mod budget;
pub mod h1;
mod h2c;
mod headers;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::{Body, Incoming};
use hyper::http::uri::{Authority, PathAndQuery, Scheme};
use hyper::server::conn::http1;
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::balance::maglev::fnv1a;
use crate::config::ProxyConfig;
use crate::frontend::{Frontend, Mode};
use crate::io::{Activity, Tracked};
use crate::l4::tcp::InFlight;
pub use body::ClientRequestBody;

/// Request body sent upstream: buffered (replayable) or streamed.
pub type UpstreamBody = Either<Full<Bytes>, ClientRequestBody>;
/// Response body sent to clients: an h2c or HTTP/1.1 upstream's, or a short error text.
pub type ClientBody = Either<Either<Incoming, h1::ResponseBody>, Full<Bytes>>;
type HttpClient = Client<HttpConnector, UpstreamBody>;

/// Time open requests get to finish once an idle connection is being closed.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Bodies up to this size are buffered so the request can be retried.
const REPLAY_LIMIT: u64 = 64 * 1024;

/// Shared HTTP machinery: the server settings and the h2c upstream pool.
pub struct Http {
    h1: http1::Builder,
    h2: h2c::Limits,
    header_read_timeout: Duration,
    /// Upstream pool for h2c backends (HTTP/1.1 ones go through [`h1`]).
    h2c_upstream: HttpClient,
    idle: Duration,
}

fn error(status: StatusCode, text: &'static str) -> Response<ClientBody> {
    let mut r = Response::new(Either::Right(Full::new(Bytes::from_static(
        text.as_bytes(),
    ))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    r
}

enum RequestBody {
    Replay(Bytes),
    Stream(Option<ClientRequestBody>),
}

impl Http {
    /// Builds the server and clients from node settings.
    pub fn new(config: &ProxyConfig) -> Self {
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout)
            .max_buf_size(config.max_header_bytes.max(8192))
            .writev(false)
            .keep_alive(true);
        let h2 = h2c::Limits {
            max_concurrent_streams: 256,
            max_header_list_size: u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX),
            handshake_timeout: config.header_read_timeout,
            drain_timeout: DRAIN_TIMEOUT,
        };
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let h2c_upstream = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .set_host(false)
            .http2_only(true)
            .build(connector);
        Self {
            h1,
            h2,
            header_read_timeout: config.header_read_timeout,
            h2c_upstream,
            idle: config.http_idle_timeout,
        }
    }

    /// Serves one client connection, HTTP/1.1 or h2c (told apart by the h2 preface); the
    /// frontend is re-read per request, so route changes apply to open connections too.
    pub async fn serve(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        frontend: Arc<ArcSwap<Frontend>>,
    ) {
        let _ = stream.set_nodelay(true);
        let activity = Activity::new();
        let metrics = frontend.load().metrics.clone();
        let mut io = Tracked::new(
            stream,
            activity.clone(),
            metrics.bytes_in,
            metrics.bytes_out,
        );
        let (is_h2, prefix) =
            match tokio::time::timeout(self.header_read_timeout, h2c::sniff(&mut io)).await {
                Ok(Ok(sniffed)) => sniffed,
                _ => return,
            };
        io.unread(prefix);
        let client = Arc::new(headers::ClientHeaders::new(peer));
        if is_h2 {
            let http = Arc::clone(&self);
            let handler = move |req: Request<ClientRequestBody>| {
                let fe = frontend.load_full();
                let http = Arc::clone(&http);
                let client = Arc::clone(&client);
                async move { http.handle(req, &client, fe).await }
            };
            h2c::serve(io, self.h2, activity.idle(self.idle), handler).await;
            return;
        }
        let http = Arc::clone(&self);
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let fe = frontend.load_full();
            let http = Arc::clone(&http);
            let client = Arc::clone(&client);
            async move {
                let req = req.map(ClientRequestBody::H1);
                Ok::<_, Infallible>(http.handle(req, &client, fe).await)
            }
        });
        let conn = self.h1.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "http connection ended");
                }
            }
            () = activity.idle(self.idle) => {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(DRAIN_TIMEOUT, conn).await;
            }
        }
    }

    /// Whether `GET path` on `member` answers 2xx or 3xx within `timeout` (over its pooled
    /// connections, like traffic).
    pub async fn probe(member: &crate::balance::Member, path: &str, timeout: Duration) -> bool {
        let Ok(req) = Request::get(path)
            .header(hyper::header::HOST, member.addr.to_string())
            .header(hyper::header::USER_AGENT, "pier-health-check")
            .body(())
        else {
            return false;
        };
        let (parts, ()) = req.into_parts();
        let pool = Arc::clone(&member.state) as h1::SharedPool;
        let sent = h1::send(
            &pool,
            member.addr,
            timeout,
            &parts,
            None,
            h1::OutBody::Full(Bytes::new()),
        );
        match tokio::time::timeout(timeout, sent).await {
            Ok(Ok(resp)) => {
                let ok = resp.status().is_success() || resp.status().is_redirection();
                // Read to the end so the connection goes back to the pool.
                let _ = tokio::time::timeout(timeout, resp.into_body().collect()).await;
                ok
            }
            _ => false,
        }
    }

    async fn handle(
        &self,
        req: Request<ClientRequestBody>,
        client: &headers::ClientHeaders,
        fe: Arc<Frontend>,
    ) -> Response<ClientBody> {
        let Mode::L7(router) = &fe.mode else {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "service port is not HTTP\n",
            );
        };
        let (parts, body) = req.into_parts();
        let Some(rule) = router.route(&parts) else {
            return error(StatusCode::NOT_FOUND, "no route matches\n");
        };
        let sticky = fe
            .policy
            .sticky
            .as_ref()
            .and_then(|s| headers::sticky_value(s, &parts.headers))
            .map(fnv1a);
        let Some(cluster) = rule.groups.pick(sticky) else {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "route has no backend\n");
        };
        fe.budget.deposit();
        let body = if body.is_end_stream() {
            RequestBody::Replay(Bytes::new())
        } else if body.size_hint().upper().is_some_and(|n| n <= REPLAY_LIMIT) {
            match Limited::new(body, REPLAY_LIMIT as usize).collect().await {
                Ok(b) => RequestBody::Replay(b.to_bytes()),
                Err(_) => return error(StatusCode::BAD_REQUEST, "bad request body\n"),
            }
        } else {
            RequestBody::Stream(Some(body))
        };
        let attempts = self.attempts(&fe, cluster, &parts, client, body, rule.backend_timeout);
        match rule.request_timeout {
            Some(t) => tokio::time::timeout(t, attempts)
                .await
                .unwrap_or_else(|_| error(StatusCode::GATEWAY_TIMEOUT, "upstream timed out\n")),
            None => attempts.await,
        }
    }

    async fn attempts(
        &self,
        fe: &Frontend,
        cluster: &crate::balance::Cluster,
        parts: &hyper::http::request::Parts,
        client: &headers::ClientHeaders,
        mut body: RequestBody,
        backend_timeout: Option<Duration>,
    ) -> Response<ClientBody> {
        let idempotent = matches!(
            parts.method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::PUT
                | Method::DELETE
                | Method::TRACE
        );
        let hash: u64 = rand::random();
        let mut tried: Vec<SocketAddr> = Vec::new();
        let max = 1 + fe.policy.retries;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let member = match cluster.pick(hash, &tried) {
                Ok(m) => m,
                Err(_) if attempt == 1 => {
                    fe.metrics.no_endpoint.inc();
                    return error(StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream\n");
                }
                Err(_) => return error(StatusCode::BAD_GATEWAY, "upstream failed\n"),
            };
            let h2c = cluster.members().h2c;
            let replayable = matches!(body, RequestBody::Replay(_));
            let Some(out) = body.next_attempt() else {
                return error(StatusCode::BAD_GATEWAY, "upstream failed\n");
            };
            let in_flight = InFlight::new(Arc::clone(&member));
            let started = Instant::now();
            let sent = self.exchange(&member, h2c, fe.policy.connect_timeout, parts, client, out);
            let result = match backend_timeout {
                Some(t) => tokio::time::timeout(t, sent).await.map_err(|_| ()),
                None => Ok(sent.await),
            };
            drop(in_flight);
            let may_retry = |fe: &Frontend| attempt < max && replayable && fe.budget.withdraw();
            match result {
                Ok(Ok(resp)) => {
                    cluster
                        .metrics
                        .upstream_duration
                        .observe(started.elapsed().as_secs_f64());
                    let status = resp.status();
                    cluster.metrics_of(&member).request(Some(status.as_u16()));
                    if status.is_server_error() {
                        cluster.failure(&member);
                        if idempotent && may_retry(fe) {
                            fe.metrics.retries.inc();
                            tried.push(member.addr);
                            continue;
                        }
                    } else {
                        cluster.success(&member);
                    }
                    return resp;
                }
                Ok(Err(e)) => {
                    cluster.metrics_of(&member).request(None);
                    cluster.failure(&member);
                    tracing::debug!(endpoint = %member.addr, error = %e.message, "upstream request failed");
                    if (e.connect || idempotent) && may_retry(fe) {
                        fe.metrics.retries.inc();
                        tried.push(member.addr);
                        continue;
                    }
                    return error(StatusCode::BAD_GATEWAY, "upstream failed\n");
                }
                Err(()) => {
                    cluster.metrics_of(&member).request(None);
                    cluster.failure(&member);
                    if idempotent && may_retry(fe) {
                        fe.metrics.retries.inc();
                        tried.push(member.addr);
                        continue;
                    }
                    return error(StatusCode::GATEWAY_TIMEOUT, "upstream timed out\n");
                }
            }
        }
    }
}

/// A failed attempt.
struct AttemptError {
    /// Nothing reached the endpoint.
    connect: bool,
    message: String,
}

impl RequestBody {
    /// The body for the next attempt; `None` once a streamed body has been used.
    fn next_attempt(&mut self) -> Option<h1::OutBody> {
        match self {
            RequestBody::Replay(b) => Some(h1::OutBody::Full(b.clone())),
            RequestBody::Stream(s) => s.take().map(h1::OutBody::Stream),
        }
    }
}

impl Http {
    /// One attempt against one endpoint: inline HTTP/1.1, or the pooled h2c client.
    async fn exchange(
        &self,
        member: &crate::balance::Member,
        h2c: bool,
        connect_timeout: Duration,
        parts: &hyper::http::request::Parts,
        client: &headers::ClientHeaders,
        body: h1::OutBody,
    ) -> Result<Response<ClientBody>, AttemptError> {
        if !h2c {
            return match h1::send(
                &(Arc::clone(&member.state) as h1::SharedPool),
                member.addr,
                connect_timeout,
                parts,
                Some(client),
                body,
            )
            .await
            {
                Ok(resp) => Ok(resp.map(|b| Either::Left(Either::Right(b)))),
                Err(e) => Err(AttemptError {
                    connect: e.is_connect(),
                    message: e.to_string(),
                }),
            };
        }
        let body = match body {
            h1::OutBody::Full(b) => Either::Left(Full::new(b)),
            h1::OutBody::Stream(b) => Either::Right(b),
        };
        let mut req_headers = parts.headers.clone();
        headers::prepare_request(&mut req_headers, &parts.uri, client);
        let req = build_upstream(parts, req_headers, member.addr, body).ok_or(AttemptError {
            connect: true,
            message: "bad request target".into(),
        })?;
        match self.h2c_upstream.request(req).await {
            Ok(resp) => {
                let (mut rparts, rbody) = resp.into_parts();
                headers::strip_hop_by_hop(&mut rparts.headers);
                Ok(Response::from_parts(
                    rparts,
                    Either::Left(Either::Left(rbody)),
                ))
            }
            Err(e) => Err(AttemptError {
                connect: e.is_connect(),
                message: e.to_string(),
            }),
        }
    }
}

fn build_upstream(
    parts: &hyper::http::request::Parts,
    headers: hyper::HeaderMap,
    addr: SocketAddr,
    body: UpstreamBody,
) -> Option<Request<UpstreamBody>> {
    let mut uri = hyper::http::uri::Parts::default();
    uri.scheme = Some(Scheme::HTTP);
    uri.authority = Some(Authority::try_from(addr.to_string()).ok()?);
    uri.path_and_query = Some(
        parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    );
    let uri = Uri::from_parts(uri).ok()?;
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_2;
    *req.headers_mut() = headers;
    Some(req)
}

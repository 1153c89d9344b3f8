//! L7 HTTP/1.1 and h2c: route each request, pick a weighted group and an endpoint, forward over
//! pooled upstream connections, retry within budget, answer 502/503/504 when nothing can serve.
//!
//! `mod.rs` serves clients; `attempt.rs` decides retries; `upstream.rs` runs one exchange
//! (`h1/` or `h2.rs` by the group's protocol); `headers.rs` is the header policy for both.

mod attempt;
pub(crate) mod body;
pub(crate) mod budget;
pub(crate) mod conn;
mod h1;
mod h2;
mod h2c;
pub(crate) mod headers;
mod upstream;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::balance::maglev::fnv1a;
use crate::config::ProxyConfig;
use crate::frontend::{Frontend, Mode};
use crate::io::{Activity, Tracked};
use attempt::Attempts;
use body::{ClientRequestBody, UpstreamBody};

/// Response body sent to clients: an h2c or HTTP/1.1 upstream's, or a short error text.
pub(crate) type ClientBody = Either<Either<Incoming, h1::ResponseBody>, Full<Bytes>>;

/// Time open requests get to finish once an idle connection is being closed.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Shared HTTP machinery: the server settings and the h2c upstream pool.
pub(crate) struct Http {
    h1: http1::Builder,
    h2c_limits: h2c::Limits,
    header_read_timeout: Duration,
    /// h2c upstream connections (HTTP/1.1 ones are pooled per endpoint, see [`h1`]).
    h2: h2::H2Upstreams,
    idle: Duration,
}

pub(crate) fn error(status: StatusCode, text: &'static str) -> Response<ClientBody> {
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

impl Http {
    /// Builds the server and clients from node settings.
    pub(crate) fn new(config: &ProxyConfig) -> Self {
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout)
            .max_buf_size(config.max_header_bytes.max(8192))
            .writev(false)
            .keep_alive(true);
        let h2c_limits = h2c::Limits {
            max_concurrent_streams: 256,
            max_header_list_size: u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX),
            handshake_timeout: config.header_read_timeout,
            drain_timeout: DRAIN_TIMEOUT,
        };
        Self {
            h1,
            h2c_limits,
            header_read_timeout: config.header_read_timeout,
            h2: h2::H2Upstreams::default(),
            idle: config.http_idle_timeout,
        }
    }

    /// The time a client gets to send a request head; the edge gives TLS handshakes as long.
    pub(crate) fn header_read_timeout(&self) -> Duration {
        self.header_read_timeout
    }

    /// Serves one client connection, HTTP/1.1 or h2c (told apart by the h2 preface); the
    /// frontend is re-read per request, so route changes apply to open connections too.
    pub(crate) async fn serve(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        frontend: Arc<ArcSwap<Frontend>>,
    ) {
        h1::set_nodelay(&stream);
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
        let http = Arc::clone(&self);
        let handler = move |req: Request<ClientRequestBody>| {
            let fe = frontend.load_full();
            let http = Arc::clone(&http);
            let client = Arc::clone(&client);
            async move { http.handle(req, &client, fe).await }
        };
        self.serve_connection(io, activity, peer, is_h2, handler)
            .await;
    }

    /// Serves requests on an open connection with `handler` until the client leaves or it
    /// stays idle: HTTP/2 (`h2`) on the h2 crate, else HTTP/1.1 on hyper.
    pub(crate) async fn serve_connection<IO, H, F>(
        &self,
        io: IO,
        activity: Activity,
        peer: SocketAddr,
        h2: bool,
        handler: H,
    ) where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
        H: Fn(Request<ClientRequestBody>) -> F + Send + Sync + 'static,
        F: std::future::Future<Output = Response<ClientBody>> + Send + 'static,
    {
        if h2 {
            h2c::serve(io, self.h2c_limits, activity.idle(self.idle), handler).await;
            return;
        }
        let handler = Arc::new(handler);
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let answer = handler(req.map(ClientRequestBody::H1));
            async move { Ok::<_, Infallible>(answer.await) }
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
                match tokio::time::timeout(DRAIN_TIMEOUT, conn).await {
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "idle http connection ended"),
                    Err(_) => tracing::debug!(%peer, "idle http connection closed after the drain timeout"),
                    Ok(Ok(())) => {}
                }
            }
        }
    }

    /// Answers one request of `fe`: route, group, attempts, timeouts.
    pub(crate) async fn handle(
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
        let (mut parts, body) = req.into_parts();
        let Some((rule, matched)) = router.route(&parts) else {
            return error(StatusCode::NOT_FOUND, "no route matches\n");
        };
        if let Some((status, location)) = rule.filters.redirect(&parts, matched, client.arrival) {
            let mut r = error(status, "");
            r.headers_mut().insert(hyper::header::LOCATION, location);
            return r;
        }
        rule.filters.rewrite_request(&mut parts, matched);
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
        let Ok(body) = UpstreamBody::from_client(body).await else {
            return error(StatusCode::BAD_REQUEST, "bad request body\n");
        };
        let attempts = Attempts {
            fe: &fe,
            cluster,
            parts: &parts,
            client,
            backend_timeout: rule.backend_timeout,
        }
        .run(self, body);
        let mut response = match rule.request_timeout {
            Some(t) => tokio::time::timeout(t, attempts)
                .await
                .unwrap_or_else(|_| error(StatusCode::GATEWAY_TIMEOUT, "upstream timed out\n")),
            None => attempts.await,
        };
        if let Some(h) = &rule.filters.response_headers {
            h.apply(response.headers_mut());
        }
        response
    }
}

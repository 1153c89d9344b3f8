//! The HTTP/1.1 upstream side, driven inline by the task serving the client: the request head
//! (and a buffered body) goes out in one write, the response head is parsed with httparse, and
//! the body is relayed frame by frame by [`ResponseBody`], which hands the connection back to
//! the endpoint's idle pool once the response is complete. No connection task and no channel
//! per request, unlike a general-purpose client (Pingora makes the same choice).

mod body;
mod request;
mod response;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use hyper::{Method, Response};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

pub(super) use body::ResponseBody;

use super::body::UpstreamBody;
use super::headers::ClientHeaders;
use crate::balance::EndpointState;
use crate::l7::conn::{self, Alpn};
use crate::tls::upstream::TlsClient;

/// Why an attempt failed.
#[derive(Debug)]
pub(super) enum SendError {
    /// No connection could be made: nothing was sent.
    Connect(io::Error),
    /// The exchange broke after the request was (maybe) sent.
    Io(io::Error),
    /// The endpoint answered something that is not HTTP/1.x.
    Protocol(&'static str),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "connect: {e}"),
            SendError::Io(e) => write!(f, "exchange: {e}"),
            SendError::Protocol(e) => write!(f, "bad response: {e}"),
        }
    }
}

impl SendError {
    /// Nothing reached the endpoint, so any request may be retried.
    pub(super) fn is_connect(&self) -> bool {
        matches!(self, SendError::Connect(_))
    }
}

/// Sends one request to `addr` (over TLS when `tls` is given) and returns the response once
/// its head arrived.
pub(super) async fn send(
    endpoint: &Arc<EndpointState>,
    addr: SocketAddr,
    tls: Option<&TlsClient>,
    connect_timeout: Duration,
    parts: &hyper::http::request::Parts,
    client: Option<&ClientHeaders>,
    body: UpstreamBody,
) -> Result<Response<ResponseBody>, SendError> {
    let head_bytes = request::head(parts, &body, client);
    let is_head = parts.method == Method::HEAD;
    // A pooled connection may have been closed by the endpoint meanwhile: if it fails before
    // any response byte, the request goes again on a fresh connection (as hyper does).
    let mut stream_body = match body {
        UpstreamBody::Stream(b) => Some(b),
        UpstreamBody::Full(_) => None,
    };
    let replayable = stream_body.is_none();
    loop {
        let (mut conn, mut buf, reused) = match endpoint.idle.take() {
            Some((c, b)) => (c, b, true),
            None => {
                let c = conn::connect(addr, connect_timeout, tls, Alpn::H1)
                    .await
                    .map_err(SendError::Connect)?;
                (c, BytesMut::with_capacity(8192), false)
            }
        };
        let exchange = async {
            conn.write_all(&head_bytes).await?;
            if let Some(b) = stream_body.take() {
                request::write_stream(&mut conn, b).await?;
            }
            response::read_head(&mut conn, &mut buf).await
        };
        match exchange.await {
            Ok(Some(parsed)) => {
                return response::respond(parsed, conn, buf, is_head, endpoint)
                    .map_err(response::HeadError::into_send_error)
            }
            Ok(None) if reused && replayable => continue,
            Ok(None) => return Err(SendError::Io(io::ErrorKind::UnexpectedEof.into())),
            Err(response::HeadError::Io(_)) if reused && replayable && buf.is_empty() => continue,
            Err(e) => return Err(e.into_send_error()),
        }
    }
}

/// Turns Nagle off: requests and responses go out whole, and a delayed ACK must not hold them.
pub(crate) fn set_nodelay(conn: &TcpStream) {
    if let Err(e) = conn.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY not set");
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http_body_util::BodyExt;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

    /// A server that answers each request read with the next canned response, on one
    /// connection, and returns the requests it saw.
    async fn server(
        responses: Vec<&'static [u8]>,
    ) -> (SocketAddr, tokio::task::JoinHandle<Vec<String>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            let (mut s, _) = l.accept().await.unwrap();
            for r in responses {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap();
                seen.push(String::from_utf8_lossy(&buf[..n]).to_string());
                s.write_all(r).await.unwrap();
            }
            seen
        });
        (addr, task)
    }

    fn parts(method: &str) -> hyper::http::request::Parts {
        hyper::Request::builder()
            .method(method)
            .uri("/p?q=1")
            .header("host", "web")
            .header("connection", "keep-alive, x-drop")
            .header("x-drop", "1")
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    /// One request through `pool`, as a client at 10.0.0.9 would send it.
    async fn request(
        pool: &Arc<EndpointState>,
        addr: SocketAddr,
        method: &str,
        body: &'static [u8],
    ) -> Result<Response<ResponseBody>, SendError> {
        let client = ClientHeaders::new("10.0.0.9:1234".parse().unwrap());
        let body = UpstreamBody::Full(Bytes::from_static(body));
        send(
            pool,
            addr,
            None,
            Duration::from_secs(1),
            &parts(method),
            Some(&client),
            body,
        )
        .await
    }

    async fn body_of(resp: Response<ResponseBody>) -> String {
        let b = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8_lossy(&b).to_string()
    }

    fn new_pool() -> Arc<EndpointState> {
        Arc::new(EndpointState::default())
    }

    #[tokio::test]
    async fn framings_and_connection_reuse() {
        let (addr, srv) = server(vec![
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: 1\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nx-trailer: t\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil eof",
        ])
        .await;
        let pool = new_pool();
        let r = request(&pool, addr, "GET", b"").await.unwrap();
        assert_eq!(r.headers()["x-a"], "1");
        assert_eq!(body_of(r).await, "hello");
        let r = request(&pool, addr, "POST", b"xy").await.unwrap();
        assert!(r.headers().get("transfer-encoding").is_none());
        assert_eq!(body_of(r).await, "abcde");
        let r = request(&pool, addr, "GET", b"").await.unwrap();
        assert_eq!(r.status(), 204);
        assert_eq!(body_of(r).await, "");
        let r = request(&pool, addr, "HEAD", b"").await.unwrap();
        assert_eq!(body_of(r).await, "");
        let r = request(&pool, addr, "GET", b"").await.unwrap();
        assert_eq!(body_of(r).await, "until eof");
        let seen = srv.await.unwrap();
        assert_eq!(
            seen.len(),
            5,
            "one connection served every request: {seen:?}"
        );
        let first = &seen[0];
        assert!(first.starts_with("GET /p?q=1 HTTP/1.1\r\n"), "{first}");
        assert!(
            first.contains("host: web\r\n")
                && !first.contains("x-drop")
                && !first.contains("connection"),
            "{first}"
        );
        assert!(
            first.contains("x-forwarded-for: 10.0.0.9\r\n")
                && first.contains("forwarded: for=10.0.0.9;proto=http\r\n"),
            "{first}"
        );
        assert!(
            seen[1].contains("content-length: 2\r\n") && seen[1].ends_with("\r\n\r\nxy"),
            "{}",
            seen[1]
        );
        assert!(
            pool.idle.take().is_none(),
            "a connection: close response is not pooled"
        );
    }

    #[tokio::test]
    async fn a_stale_pooled_connection_is_replaced() {
        // Every connection gets one keep-alive response and is then closed by the server, so
        // the connection pooled after the first request is dead when the second is sent.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = tokio::spawn(async move {
            for answer in [&b"a"[..], &b"b"[..]] {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await.unwrap();
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n")
                    .await
                    .unwrap();
                s.write_all(answer).await.unwrap();
            }
        });
        let pool = new_pool();
        let r = request(&pool, addr, "GET", b"").await.unwrap();
        assert_eq!(body_of(r).await, "a");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let r = request(&pool, addr, "GET", b"").await.unwrap();
        assert_eq!(body_of(r).await, "b", "retried on a fresh connection");
        accepted.await.unwrap();
    }

    #[tokio::test]
    async fn garbage_and_truncated_bodies_are_errors() {
        let (addr, _srv) = server(vec![b"SSH-2.0-OpenSSH\r\n\r\n"]).await;
        let r = request(&new_pool(), addr, "GET", b"").await;
        assert!(matches!(r, Err(SendError::Protocol(_))));
        let (addr, srv) = server(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort"]).await;
        let r = request(&new_pool(), addr, "GET", b"").await.unwrap();
        srv.await.unwrap();
        assert!(r.into_body().collect().await.is_err());
    }

    /// Answers one request with `response` on a connection of its own, then reports whether
    /// pier closed that connection (rather than keeping it for another request).
    async fn one_shot(response: &'static [u8]) -> (SocketAddr, tokio::task::JoinHandle<bool>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(response).await.unwrap();
            let closed = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
            matches!(closed, Ok(Ok(0)))
        });
        (addr, task)
    }

    #[tokio::test]
    async fn ambiguous_framing_is_refused_and_the_connection_closed() {
        for (response, why) in [
            (
                &b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd"[..],
                "conflicting content-length values",
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 3, 4\r\n\r\nabcd",
                "conflicting content-length values",
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
                "both content-length and transfer-encoding",
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\nhello",
                "content-length",
            ),
        ] {
            let (addr, srv) = one_shot(response).await;
            let pool = new_pool();
            match request(&pool, addr, "GET", b"").await {
                Err(SendError::Protocol(p)) => assert_eq!(p, why),
                Err(e) => panic!("{why}: {e}"),
                Ok(r) => panic!("{why}: relayed {}", r.status()),
            }
            assert!(pool.idle.take().is_none(), "{why}: not pooled");
            assert!(srv.await.unwrap(), "{why}: the connection is closed");
        }
    }

    #[tokio::test]
    async fn repeated_equal_content_lengths_and_final_codings_frame_as_sent() {
        let (addr, srv) = server(vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
        ])
        .await;
        let pool = new_pool();
        let r = request(&pool, addr, "GET", b"").await.unwrap();
        assert_eq!(body_of(r).await, "ok");
        let r = request(&pool, addr, "GET", b"").await.unwrap();
        assert_eq!(body_of(r).await, "x");
        assert_eq!(srv.await.unwrap().len(), 2, "both on one connection");
    }
}

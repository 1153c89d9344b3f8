//! The h2c server side, straight on the h2 crate: a task drives each connection and each
//! request gets a task whose handler future is boxed once and never moved again.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use hyper::body::{Body, Frame};
use hyper::header::{HeaderValue, CONTENT_LENGTH, DATE};
use hyper::http::response::Parts;
use hyper::{Method, Request, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite};

use super::body::{BodyError, ClientRequestBody, H2RequestBody};
use super::ClientBody;

/// What pier announces and enforces on each h2c connection.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    /// Streams a client may have open at once.
    pub max_concurrent_streams: u32,
    /// Largest header list a client may send, in bytes (HPACK-decoded size).
    pub max_header_list_size: u32,
    /// Time for the client's preface and SETTINGS.
    pub handshake_timeout: Duration,
    /// Time open streams get to finish once the connection is shutting down.
    pub drain_timeout: Duration,
}

/// Windows and buffers as hyper sets them for its h2 server.
const STREAM_WINDOW: u32 = 1024 * 1024;
const CONNECTION_WINDOW: u32 = 1024 * 1024;
const MAX_FRAME_SIZE: u32 = 16 * 1024;
const MAX_SEND_BUFFER: usize = 400 * 1024;
/// Streams a client may reset or have reset by errors before the connection is closed
/// (the "rapid reset" attack, CVE-2023-44487).
const MAX_LOCAL_ERROR_RESETS: usize = 1024;

fn builder(limits: &Limits) -> h2::server::Builder {
    let mut b = h2::server::Builder::new();
    b.initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME_SIZE)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(limits.max_header_list_size);
    b
}

/// Serves one h2c connection whose preface is next on `io`, answering each request with
/// `handler` in a task of its own, until the client leaves, a protocol error, or `idle`
/// resolves (then the connection drains with GOAWAY, for at most the drain timeout).
pub(super) async fn serve<T, H, F>(
    io: T,
    limits: Limits,
    idle: impl Future<Output = ()>,
    mut handler: H,
) where
    T: AsyncRead + AsyncWrite + Unpin,
    H: FnMut(Request<ClientRequestBody>) -> F,
    F: Future<Output = Response<ClientBody>> + Send + 'static,
{
    let handshake = builder(&limits).handshake::<_, Bytes>(io);
    let mut conn = match tokio::time::timeout(limits.handshake_timeout, handshake).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "h2c handshake failed");
            return;
        }
        Err(_) => return,
    };
    let mut idle = pin!(idle);
    let mut drain: Option<Pin<Box<tokio::time::Sleep>>> = None;
    poll_fn(|cx| loop {
        match conn.poll_accept(cx) {
            Poll::Ready(Some(Ok((req, respond)))) => {
                tokio::spawn(answer(req, respond, &mut handler));
            }
            Poll::Ready(Some(Err(e))) => {
                tracing::debug!(error = %e, "h2c connection ended");
                return Poll::Ready(());
            }
            Poll::Ready(None) => return Poll::Ready(()),
            Poll::Pending => match drain.as_mut() {
                Some(d) => return d.as_mut().poll(cx),
                None if idle.as_mut().poll(cx).is_ready() => {
                    conn.graceful_shutdown();
                    drain = Some(Box::pin(tokio::time::sleep(limits.drain_timeout)));
                }
                None => return Poll::Pending,
            },
        }
    })
    .await;
}

/// Starts one request's handling and returns the future that answers it.
fn answer<H, F>(
    req: Request<RecvStream>,
    respond: SendResponse<Bytes>,
    handler: &mut H,
) -> impl Future<Output = ()> + Send + 'static
where
    H: FnMut(Request<ClientRequestBody>) -> F,
    F: Future<Output = Response<ClientBody>> + Send + 'static,
{
    let is_head = req.method() == Method::HEAD;
    let is_connect = req.method() == Method::CONNECT;
    let length = content_length(req.headers());
    let req = req.map(|recv| ClientRequestBody::H2(H2RequestBody::new(recv, length)));
    // Boxed once here, the handler's large state machine is never moved again.
    let handled: Pin<Box<dyn Future<Output = Response<ClientBody>> + Send>> = if is_connect {
        Box::pin(std::future::ready(super::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "CONNECT is not supported\n",
        )))
    } else {
        Box::pin(handler(req))
    };
    respond_with(handled, respond, is_head)
}

fn content_length(headers: &hyper::HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// A response body frame as polled.
type Polled = Poll<Option<Result<Frame<Bytes>, BodyError>>>;

/// Waits for the handler's response (dropping it if the client resets the stream) and sends it.
async fn respond_with(
    mut handled: Pin<Box<dyn Future<Output = Response<ClientBody>> + Send>>,
    mut respond: SendResponse<Bytes>,
    is_head: bool,
) {
    let resp = poll_fn(|cx| {
        if let Poll::Ready(resp) = handled.as_mut().poll(cx) {
            return Poll::Ready(Some(resp));
        }
        respond.poll_reset(cx).map(|_| None)
    })
    .await;
    let Some(resp) = resp else {
        return;
    };
    let (head, mut body) = resp.into_parts();
    // A short response is usually whole by now: one poll tells, and then it goes out at once.
    let first = if body.is_end_stream() {
        Poll::Ready(None)
    } else {
        poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await
    };
    if let Some(rest) = start(&mut respond, head, body, first, is_head) {
        rest.await;
    }
}

/// Sends the response head, and the body with it when `first` completed it; otherwise returns
/// the sending of the rest.
fn start(
    respond: &mut SendResponse<Bytes>,
    mut head: Parts,
    body: ClientBody,
    first: Polled,
    is_head: bool,
) -> Option<Pin<Box<dyn Future<Output = ()> + Send>>> {
    if !head.headers.contains_key(DATE) {
        head.headers.insert(DATE, http_date());
    }
    let whole = match first {
        Poll::Ready(None) => Some(Bytes::new()),
        Poll::Ready(Some(Ok(frame))) if frame.is_data() && body.is_end_stream() => {
            frame.into_data().ok()
        }
        first => {
            if !is_head && !head.headers.contains_key(CONTENT_LENGTH) {
                if let Some(n) = body.size_hint().exact() {
                    head.headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
                }
            }
            return match respond.send_response(Response::from_parts(head, ()), false) {
                Ok(send) => Some(Box::pin(pipe(body, send, first))),
                Err(e) => {
                    tracing::debug!(error = %e, "h2c response not sent");
                    None
                }
            };
        }
    };
    let data = whole.unwrap_or_default();
    if !is_head && !data.is_empty() && !head.headers.contains_key(CONTENT_LENGTH) {
        head.headers
            .insert(CONTENT_LENGTH, HeaderValue::from(data.len()));
    }
    match respond.send_response(Response::from_parts(head, ()), data.is_empty()) {
        // Sent past the flow-control window if need be: h2 holds it until the window opens.
        Ok(mut send) if !data.is_empty() => {
            if let Err(e) = send.send_data(data, true) {
                tracing::debug!(error = %e, "h2c response body not sent");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::debug!(error = %e, "h2c response not sent"),
    }
    None
}

/// Sends a response body as DATA frames (and trailers), starting with the frame `first` polled,
/// holding at most one frame beyond what the client's flow-control window allows; stops if the
/// client resets the stream.
async fn pipe(mut body: ClientBody, mut send: SendStream<Bytes>, mut first: Polled) {
    loop {
        let frame = match std::mem::replace(&mut first, Poll::Pending) {
            Poll::Ready(frame) => Some(frame),
            Poll::Pending => {
                poll_fn(|cx| {
                    if send.poll_reset(cx).is_ready() {
                        return Poll::Ready(None);
                    }
                    Pin::new(&mut body).poll_frame(cx).map(Some)
                })
                .await
            }
        };
        let frame = match frame {
            None => return,
            Some(None) => {
                if let Err(e) = send.send_data(Bytes::new(), true) {
                    tracing::debug!(error = %e, "h2c response not ended");
                }
                return;
            }
            Some(Some(Err(e))) => {
                tracing::debug!(error = %e, "upstream response body failed");
                send.send_reset(Reason::INTERNAL_ERROR);
                return;
            }
            Some(Some(Ok(frame))) => frame,
        };
        let data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    send.reserve_capacity(0);
                    if let Err(e) = send.send_trailers(trailers) {
                        tracing::debug!(error = %e, "h2c response trailers not sent");
                    }
                    return;
                }
                continue;
            }
        };
        let eos = body.is_end_stream();
        if !data.is_empty() && !capacity(&mut send).await {
            return;
        }
        if send.send_data(data, eos).is_err() || eos {
            return;
        }
    }
}

/// Waits until the stream may send at least one byte; false if it was reset or closed.
async fn capacity(send: &mut SendStream<Bytes>) -> bool {
    send.reserve_capacity(1);
    poll_fn(|cx| {
        while send.capacity() == 0 {
            match send.poll_capacity(cx) {
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Ready(Some(Err(_)) | None) => return Poll::Ready(false),
                Poll::Pending => {
                    return match send.poll_reset(cx) {
                        Poll::Ready(_) => Poll::Ready(false),
                        Poll::Pending => Poll::Pending,
                    }
                }
            }
        }
        Poll::Ready(true)
    })
    .await
}

/// The Date header value for now, formatted once per second.
fn http_date() -> HeaderValue {
    thread_local! {
        static CACHED: std::cell::RefCell<(u64, HeaderValue)> =
            const { std::cell::RefCell::new((u64::MAX, HeaderValue::from_static(""))) };
    }
    let now = std::time::SystemTime::now();
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHED.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            let text = httpdate::fmt_http_date(now);
            c.1 = HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""));
            c.0 = secs;
        }
        c.1.clone()
    })
}

/// The HTTP/2 connection preface (RFC 9113, section 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How much the first read of a connection may take: a whole HTTP/1.1 request head usually,
/// so telling the protocol apart costs no extra read.
const SNIFF_BUFFER: usize = 4096;

/// Reads a connection's first bytes until they are or cannot be the HTTP/2 preface: whether
/// they are, and the bytes read (to be given back with [`crate::io::Tracked::unread`]).
pub(super) async fn sniff<S: AsyncRead + Unpin>(io: &mut S) -> std::io::Result<(bool, Bytes)> {
    use tokio::io::AsyncReadExt;
    let mut buf = bytes::BytesMut::with_capacity(SNIFF_BUFFER);
    loop {
        let n = io.read_buf(&mut buf).await?;
        let seen = buf.len().min(PREFACE.len());
        if n == 0 || seen == PREFACE.len() || buf[..seen] != PREFACE[..seen] {
            break;
        }
    }
    Ok((buf.starts_with(PREFACE), buf.freeze()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    use http_body_util::{BodyExt, Either, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::io::{Activity, Tracked};

    /// `stream` as the proxy holds a client's: byte counting and a place for unread bytes.
    fn tracked(stream: TcpStream) -> Tracked<TcpStream> {
        let counter = || prometheus::IntCounter::new("bytes", "bytes").unwrap();
        Tracked::new(stream, Activity::new(), counter(), counter())
    }

    const LIMITS: Limits = Limits {
        max_concurrent_streams: 256,
        max_header_list_size: 16 * 1024,
        handshake_timeout: Duration::from_secs(5),
        drain_timeout: Duration::from_secs(1),
    };

    fn full(b: impl Into<Bytes>) -> ClientBody {
        Either::Right(Full::new(b.into()))
    }

    /// Serves h2c on a loopback port with `handler`; each connection goes idle after `idle`.
    async fn server<H, F>(idle: Duration, handler: H) -> std::net::SocketAddr
    where
        H: Fn(Request<ClientRequestBody>) -> F + Clone + Send + 'static,
        F: Future<Output = Response<ClientBody>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let handler = handler.clone();
                tokio::spawn(async move {
                    let mut io = tracked(stream);
                    let (is_h2, prefix) = sniff(&mut io).await.unwrap();
                    assert!(is_h2);
                    io.unread(prefix);
                    serve(io, LIMITS, tokio::time::sleep(idle), handler).await;
                });
            }
        });
        addr
    }

    type H2Client = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

    fn client() -> H2Client {
        Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http()
    }

    #[tokio::test]
    async fn bodies_larger_than_the_flow_control_windows_pass_both_ways() {
        let addr = server(
            Duration::from_secs(60),
            |req: Request<ClientRequestBody>| async move {
                let size: usize = req.headers()["x-size"].to_str().unwrap().parse().unwrap();
                let got = req.into_body().collect().await.unwrap().to_bytes();
                let mut resp = Response::new(full(vec![b'y'; size]));
                resp.headers_mut()
                    .insert("x-got", HeaderValue::from(got.len()));
                resp
            },
        )
        .await;
        let c = client();
        // 3 MB up and 5 MB down, against 1 MB windows: only WINDOW_UPDATEs let them through.
        let req = Request::post(format!("http://{addr}/"))
            .header("x-size", "5000000")
            .body(Full::new(Bytes::from(vec![b'x'; 3_000_000])))
            .unwrap();
        let resp = c.request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-got"], "3000000");
        assert_eq!(resp.headers()[CONTENT_LENGTH], "5000000");
        assert!(resp.headers().contains_key(DATE));
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 5_000_000);
        assert!(body.iter().all(|b| *b == b'y'));
    }

    #[tokio::test]
    async fn many_streams_share_one_connection() {
        let addr = server(
            Duration::from_secs(60),
            |req: Request<ClientRequestBody>| async move {
                let path = req.uri().path().to_string();
                Response::new(full(path))
            },
        )
        .await;
        let c = client();
        let mut all = Vec::new();
        for i in 0..200 {
            let c = c.clone();
            all.push(tokio::spawn(async move {
                let req = Request::get(format!("http://{addr}/{i}"))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let resp = c.request(req).await.unwrap();
                resp.into_body().collect().await.unwrap().to_bytes()
            }));
        }
        for (i, t) in all.into_iter().enumerate() {
            assert_eq!(t.await.unwrap(), format!("/{i}"));
        }
    }

    #[tokio::test]
    async fn head_connect_and_empty_bodies_are_framed_right() {
        let addr = server(
            Duration::from_secs(60),
            |req: Request<ClientRequestBody>| async move {
                let mut resp = Response::new(if req.uri().path() == "/empty" {
                    full(Bytes::new())
                } else {
                    full("twelve bytes")
                });
                if req.method() == Method::HEAD {
                    resp.headers_mut()
                        .insert(CONTENT_LENGTH, HeaderValue::from(12));
                    *resp.body_mut() = full(Bytes::new());
                }
                resp
            },
        )
        .await;
        let c = client();
        let send = |method: Method, path: &'static str| {
            let c = c.clone();
            async move {
                let req = Request::builder()
                    .method(method)
                    .uri(format!("http://{addr}{path}"))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let resp = c.request(req).await.unwrap();
                let (parts, body) = resp.into_parts();
                (parts, body.collect().await.unwrap().to_bytes())
            }
        };
        let (head, body) = send(Method::GET, "/").await;
        assert_eq!(
            (head.status, &body[..]),
            (StatusCode::OK, &b"twelve bytes"[..])
        );
        assert_eq!(head.headers[CONTENT_LENGTH], "12");
        let (head, body) = send(Method::HEAD, "/").await;
        assert_eq!(head.headers[CONTENT_LENGTH], "12", "HEAD keeps the length");
        assert!(body.is_empty());
        let (head, body) = send(Method::GET, "/empty").await;
        assert_eq!(head.status, StatusCode::OK);
        assert!(body.is_empty());
        let (head, _) = send(Method::CONNECT, "/").await;
        assert_eq!(head.status, StatusCode::METHOD_NOT_ALLOWED);
    }

    #[tokio::test]
    async fn a_reset_stream_drops_its_handler_and_spares_the_connection() {
        struct Dropped(Arc<AtomicBool>);
        impl Drop for Dropped {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let (d, n) = (Arc::clone(&dropped), Arc::clone(&connections));
        let addr = server(
            Duration::from_secs(60),
            move |req: Request<ClientRequestBody>| {
                let guard = Dropped(Arc::clone(&d));
                let n = Arc::clone(&n);
                async move {
                    if req.uri().path() == "/hang" {
                        std::future::pending::<()>().await;
                    }
                    drop(guard);
                    n.fetch_add(1, Ordering::SeqCst);
                    Response::new(full("ok"))
                }
            },
        )
        .await;
        let (io, _) = (TcpStream::connect(addr).await.unwrap(), ());
        let (mut h2, conn) = h2::client::handshake(io).await.unwrap();
        tokio::spawn(conn);
        let (resp, _) = h2
            .send_request(Request::get("http://x/hang").body(()).unwrap(), true)
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!dropped.load(Ordering::SeqCst));
        drop(resp); // the client cancels: RST_STREAM
        let started = std::time::Instant::now();
        while !dropped.load(Ordering::SeqCst) {
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "handler dropped"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut h2 = h2.ready().await.unwrap();
        let (resp, _) = h2
            .send_request(Request::get("http://x/ok").body(()).unwrap(), true)
            .unwrap();
        assert_eq!(resp.await.unwrap().status(), 200);
        assert_eq!(connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_idle_connection_is_sent_goaway_and_closed() {
        let addr = server(
            Duration::from_millis(200),
            |_req: Request<ClientRequestBody>| async { Response::new(full("ok")) },
        )
        .await;
        let io = TcpStream::connect(addr).await.unwrap();
        let (mut h2, conn) = h2::client::handshake(io).await.unwrap();
        let conn = tokio::spawn(conn);
        let (resp, _) = h2
            .send_request(Request::get("http://x/").body(()).unwrap(), true)
            .unwrap();
        assert_eq!(resp.await.unwrap().status(), 200);
        let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
        assert!(matches!(ended, Ok(Ok(Ok(())))), "closed cleanly: {ended:?}");
    }

    #[tokio::test]
    async fn sniff_tells_the_preface_and_gives_back_what_it_read() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let with_settings = [PREFACE, &[0, 0, 0, 4, 0, 0, 0, 0, 0]].concat();
        let long_h1 = format!("GET / HTTP/1.1\r\nx-big: {}\r\n\r\n", "b".repeat(10_000));
        for (sent, h2) in [
            (PREFACE, true),
            (&with_settings[..], true),
            (&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], false),
            (long_h1.as_bytes(), false),
            (&b"PRI * HTTP/1.1\r\n"[..], false),
            (&b"PR"[..], false),
        ] {
            let mut c = TcpStream::connect(addr).await.unwrap();
            let (s, _) = listener.accept().await.unwrap();
            tokio::io::AsyncWriteExt::write_all(&mut c, sent)
                .await
                .unwrap();
            drop(c);
            let mut io = tracked(s);
            let (is_h2, prefix) = sniff(&mut io).await.unwrap();
            assert_eq!(is_h2, h2, "{:?}", &sent[..sent.len().min(32)]);
            // Read back in small pieces: the unread bytes first, then the stream's own.
            io.unread(prefix);
            let mut all = Vec::new();
            let mut piece = [0u8; 7];
            loop {
                let n = tokio::io::AsyncReadExt::read(&mut io, &mut piece)
                    .await
                    .unwrap();
                if n == 0 {
                    break;
                }
                all.extend_from_slice(&piece[..n]);
            }
            assert!(all == sent, "nothing lost or reordered");
        }
    }
}

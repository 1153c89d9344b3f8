//! The HTTP/1.1 upstream side, driven inline by the task serving the client: the request head
//! (and a buffered body) goes out in one write, the response head is parsed with httparse, and
//! the body is relayed frame by frame by [`ResponseBody`], which hands the connection back to
//! the endpoint's idle pool once the response is complete. No connection task and no channel
//! per request, unlike a general-purpose client (Pingora makes the same choice).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use hyper::header::{HeaderName, HeaderValue, CONTENT_LENGTH};
use hyper::{HeaderMap, Method, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::headers::{self, ClientHeaders};

/// Largest response head accepted from an endpoint.
const MAX_HEAD: usize = 64 * 1024;
/// Most idle connections kept per endpoint.
const MAX_IDLE: usize = 512;
/// Longest chunk-size line.
const MAX_LINE: usize = 4096;

/// Idle keep-alive connections to one endpoint.
#[derive(Default)]
pub struct IdlePool {
    conns: Mutex<Vec<(TcpStream, BytesMut)>>,
}

impl AsRef<IdlePool> for IdlePool {
    fn as_ref(&self) -> &IdlePool {
        self
    }
}

impl IdlePool {
    fn take(&self) -> Option<(TcpStream, BytesMut)> {
        self.conns.lock().ok()?.pop()
    }

    fn put(&self, conn: TcpStream, buf: BytesMut) {
        if let Ok(mut c) = self.conns.lock() {
            if c.len() < MAX_IDLE {
                c.push((conn, buf));
            }
        }
    }
}

/// Whatever owns an endpoint's idle pool (kept alive while a response body is out).
pub type SharedPool = Arc<dyn AsRef<IdlePool> + Send + Sync>;

/// Why an attempt failed.
#[derive(Debug)]
pub enum SendError {
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
    pub fn is_connect(&self) -> bool {
        matches!(self, SendError::Connect(_))
    }
}

/// A request body as the attempt loop holds it.
pub enum OutBody {
    /// Fully buffered (replayable).
    Full(Bytes),
    /// Streamed from the client, sent chunked.
    Stream(super::ClientRequestBody),
}

/// The request head (and a buffered body) as bytes: hop-by-hop headers dropped, Host kept,
/// forwarding headers added for a proxied `client` (none for pier's own requests), framing set
/// for the body being sent.
fn head(
    parts: &hyper::http::request::Parts,
    body: &OutBody,
    client: Option<&ClientHeaders>,
) -> Vec<u8> {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let named = if parts.headers.contains_key(hyper::header::CONNECTION) {
        headers::connection_named(&parts.headers)
    } else {
        Vec::new()
    };
    let (mut has_host, mut has_proto) = (false, false);
    let line = |out: &mut Vec<u8>, name: &[u8], value: &[u8]| {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    };
    for (name, value) in &parts.headers {
        if name == CONTENT_LENGTH || headers::is_hop_by_hop(name) || named.contains(name) {
            continue;
        }
        has_host |= name == hyper::header::HOST;
        has_proto |= name == headers::X_FORWARDED_PROTO;
        line(&mut out, name.as_str().as_bytes(), value.as_bytes());
    }
    if !has_host {
        if let Some(a) = parts.uri.authority() {
            line(&mut out, b"host", a.as_str().as_bytes());
        }
    }
    if let Some(client) = client {
        // Prior x-forwarded-for lines are kept and this hop's is added as one more: a list
        // header split over lines means the same as one comma-joined line (RFC 9110, 5.3).
        line(&mut out, b"x-forwarded-for", client.ip().as_bytes());
        if !has_proto {
            line(&mut out, b"x-forwarded-proto", b"http");
        }
        line(&mut out, b"forwarded", client.forwarded().as_bytes());
    }
    match body {
        OutBody::Full(b) if b.is_empty() && !method_implies_body(&parts.method) => {}
        OutBody::Full(b) => line(&mut out, b"content-length", b.len().to_string().as_bytes()),
        OutBody::Stream(_) => line(&mut out, b"transfer-encoding", b"chunked"),
    }
    out.extend_from_slice(b"\r\n");
    if let OutBody::Full(b) = body {
        out.extend_from_slice(b);
    }
    out
}

fn method_implies_body(m: &Method) -> bool {
    matches!(*m, Method::POST | Method::PUT | Method::PATCH)
}

async fn write_stream(conn: &mut TcpStream, mut body: super::ClientRequestBody) -> io::Result<()> {
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(io::Error::other)?;
        if let Ok(data) = frame.into_data() {
            if data.is_empty() {
                continue;
            }
            conn.write_all(format!("{:x}\r\n", data.len()).as_bytes())
                .await?;
            conn.write_all(&data).await?;
            conn.write_all(b"\r\n").await?;
        }
    }
    conn.write_all(b"0\r\n\r\n").await
}

/// Sends one request to `addr` and returns the response once its head arrived.
pub async fn send(
    pool: &SharedPool,
    addr: SocketAddr,
    connect_timeout: Duration,
    parts: &hyper::http::request::Parts,
    client: Option<&ClientHeaders>,
    body: OutBody,
) -> Result<Response<ResponseBody>, SendError> {
    let head_bytes = head(parts, &body, client);
    let is_head = parts.method == Method::HEAD;
    // A pooled connection may have been closed by the endpoint meanwhile: if it fails before
    // any response byte, the request goes again on a fresh connection (as hyper does).
    let mut stream_body = match body {
        OutBody::Stream(b) => Some(b),
        OutBody::Full(_) => None,
    };
    let replayable = stream_body.is_none();
    loop {
        let (mut conn, mut buf, reused) = match pool.as_ref().as_ref().take() {
            Some((c, b)) => (c, b, true),
            None => {
                let c = tokio::time::timeout(connect_timeout, TcpStream::connect(addr))
                    .await
                    .map_err(|_| SendError::Connect(io::ErrorKind::TimedOut.into()))?
                    .map_err(SendError::Connect)?;
                let _ = c.set_nodelay(true);
                (c, BytesMut::with_capacity(8192), false)
            }
        };
        let exchange = async {
            conn.write_all(&head_bytes).await?;
            if let Some(b) = stream_body.take() {
                write_stream(&mut conn, b).await?;
            }
            read_head(&mut conn, &mut buf).await
        };
        match exchange.await {
            Ok(Some(parsed)) => return respond(parsed, conn, buf, is_head, pool),
            Ok(None) if reused && replayable => continue,
            Ok(None) => return Err(SendError::Io(io::ErrorKind::UnexpectedEof.into())),
            Err(HeadError::Io(_)) if reused && replayable && buf.is_empty() => continue,
            Err(e) => return Err(e.into_send_error()),
        }
    }
}

struct ParsedHead {
    status: StatusCode,
    headers: HeaderMap,
    head_len: usize,
    /// `Connection: close`, or HTTP/1.0.
    close: bool,
    chunked: bool,
    length: Option<u64>,
    /// The Connection header named other headers to drop.
    named: bool,
}

impl ParsedHead {
    /// Takes one response header: framing and hop-by-hop ones are read, not forwarded.
    fn add(&mut self, name: &str, value: &[u8]) -> Result<(), HeadError> {
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if is("connection") {
            for token in value.split(|b| *b == b',') {
                let t = token.trim_ascii();
                if t.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    self.close = false;
                } else if !t.is_empty() {
                    self.named = true;
                    if let Ok(n) = HeaderName::from_bytes(t) {
                        // Remembered as a placeholder so the named header is dropped below.
                        self.headers.append(
                            HOP_MARK,
                            HeaderValue::from_bytes(n.as_str().as_bytes())
                                .map_err(|_| HeadError::Protocol("connection"))?,
                        );
                    }
                }
            }
            return Ok(());
        }
        if is("transfer-encoding") {
            self.chunked |= value
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            return Ok(());
        }
        if is("keep-alive") || is("proxy-connection") || is("te") || is("trailer") || is("upgrade")
        {
            return Ok(());
        }
        if is("content-length") {
            let n = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or(HeadError::Protocol("content-length"))?;
            self.length = Some(n);
        }
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| HeadError::Protocol("header name"))?;
        let value =
            HeaderValue::from_bytes(value).map_err(|_| HeadError::Protocol("header value"))?;
        self.headers.append(name, value);
        Ok(())
    }
}

/// Internal marker header listing names the Connection header asked to drop.
const HOP_MARK: HeaderName = HeaderName::from_static("x-pier-connection-named");

enum HeadError {
    Io(io::Error),
    Protocol(&'static str),
}

impl From<io::Error> for HeadError {
    fn from(e: io::Error) -> Self {
        HeadError::Io(e)
    }
}

impl HeadError {
    fn into_send_error(self) -> SendError {
        match self {
            HeadError::Io(e) => SendError::Io(e),
            HeadError::Protocol(p) => SendError::Protocol(p),
        }
    }
}

/// Reads until a final (non-1xx) response head is complete; `None` on EOF before any byte.
async fn read_head(
    conn: &mut TcpStream,
    buf: &mut BytesMut,
) -> Result<Option<ParsedHead>, HeadError> {
    loop {
        if !buf.is_empty() {
            let mut slots = [httparse::EMPTY_HEADER; 100];
            let mut resp = httparse::Response::new(&mut slots);
            match resp.parse(buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let code = resp.code.unwrap_or(0);
                    if (100..200).contains(&code) && code != 101 {
                        // 100 Continue and the like: not forwarded; the final head follows.
                        buf.advance(len);
                        continue;
                    }
                    let status =
                        StatusCode::from_u16(code).map_err(|_| HeadError::Protocol("status"))?;
                    if code == 101 {
                        return Err(HeadError::Protocol("upgrades are not proxied"));
                    }
                    let mut head = ParsedHead {
                        status,
                        headers: HeaderMap::with_capacity(resp.headers.len()),
                        head_len: len,
                        close: resp.version == Some(0),
                        chunked: false,
                        length: None,
                        named: false,
                    };
                    for h in resp.headers.iter() {
                        head.add(h.name, h.value)?;
                    }
                    return Ok(Some(head));
                }
                Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
                Ok(httparse::Status::Partial) => return Err(HeadError::Protocol("head too large")),
                Err(_) => return Err(HeadError::Protocol("not HTTP/1.x")),
            }
        }
        if conn.read_buf(buf).await? == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(HeadError::Io(io::ErrorKind::UnexpectedEof.into()))
            };
        }
    }
}

fn respond(
    parsed: ParsedHead,
    conn: TcpStream,
    mut buf: BytesMut,
    is_head: bool,
    pool: &SharedPool,
) -> Result<Response<ResponseBody>, SendError> {
    buf.advance(parsed.head_len);
    let mut headers = parsed.headers;
    if parsed.named {
        let named: Vec<HeaderValue> = headers.get_all(HOP_MARK).iter().cloned().collect();
        headers.remove(HOP_MARK);
        for n in named {
            if let Ok(name) = HeaderName::from_bytes(n.as_bytes()) {
                headers.remove(name);
            }
        }
    }
    let status = parsed.status;
    let close = parsed.close;
    let framing =
        if is_head || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            Framing::Length(0)
        } else if parsed.chunked {
            headers.remove(CONTENT_LENGTH);
            Framing::Chunked(Chunk::Size)
        } else if let Some(n) = parsed.length {
            Framing::Length(n)
        } else {
            Framing::Eof
        };
    let length = parsed.length;
    let reusable = !close && !matches!(framing, Framing::Eof);
    let body = ResponseBody {
        conn: Some(conn),
        buf,
        framing,
        reusable,
        pool: Arc::clone(pool),
        size_hint: length,
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    Ok(resp)
}

#[derive(Debug, Clone, Copy)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

#[derive(Debug, Clone, Copy)]
enum Framing {
    Length(u64),
    Chunked(Chunk),
    Eof,
    Done,
}

/// A response body read from the endpoint as the client consumes it.
pub struct ResponseBody {
    conn: Option<TcpStream>,
    buf: BytesMut,
    framing: Framing,
    reusable: bool,
    pool: SharedPool,
    size_hint: Option<u64>,
}

impl ResponseBody {
    /// Reads more from the endpoint; `Ok(0)` at EOF.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Some(conn) = self.conn.as_ref() else {
            return Poll::Ready(Ok(0));
        };
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(16 * 1024);
        }
        loop {
            match conn.try_read_buf(&mut self.buf) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(conn.poll_read_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn finish(&mut self) {
        self.framing = Framing::Done;
        if let Some(conn) = self.conn.take() {
            if self.reusable && self.buf.is_empty() {
                (*self.pool)
                    .as_ref()
                    .put(conn, std::mem::take(&mut self.buf));
            }
        }
    }

    fn take_data(&mut self, max: u64) -> Bytes {
        let n = usize::try_from(max)
            .unwrap_or(usize::MAX)
            .min(self.buf.len());
        self.buf.split_to(n).freeze()
    }

    fn line(&mut self) -> Option<Result<BytesMut, io::Error>> {
        let pos = self.buf.windows(2).position(|w| w == b"\r\n");
        match pos {
            Some(p) => {
                let line = self.buf.split_to(p);
                self.buf.advance(2);
                Some(Ok(line))
            }
            None if self.buf.len() > MAX_LINE => Some(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "chunk line too long",
            ))),
            None => None,
        }
    }
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        loop {
            match this.framing {
                Framing::Done => return Poll::Ready(None),
                Framing::Length(0) => this.finish(),
                Framing::Length(n) => {
                    if !this.buf.is_empty() {
                        let data = this.take_data(n);
                        this.framing = Framing::Length(n - data.len() as u64);
                        if let Framing::Length(0) = this.framing {
                            this.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    if ready!(this.poll_fill(cx))? == 0 {
                        this.conn = None;
                        return Poll::Ready(Some(Err(invalid("endpoint closed mid-body"))));
                    }
                }
                Framing::Eof => {
                    if !this.buf.is_empty() {
                        let data = this.take_data(u64::MAX);
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    if ready!(this.poll_fill(cx))? == 0 {
                        this.reusable = false;
                        this.finish();
                    }
                }
                Framing::Chunked(state) => {
                    let progressed = match state {
                        Chunk::Size => match this.line() {
                            Some(line) => {
                                let line = line?;
                                let hex = line[..].split(|b: &u8| *b == b';').next().unwrap_or(&[]);
                                let text =
                                    std::str::from_utf8(hex).map_err(|_| invalid("chunk size"))?;
                                let size = u64::from_str_radix(text.trim(), 16)
                                    .map_err(|_| invalid("chunk size"))?;
                                this.framing = Framing::Chunked(if size == 0 {
                                    Chunk::Trailers
                                } else {
                                    Chunk::Data(size)
                                });
                                true
                            }
                            None => false,
                        },
                        Chunk::Data(n) => {
                            if !this.buf.is_empty() {
                                let data = this.take_data(n);
                                let left = n - data.len() as u64;
                                this.framing = Framing::Chunked(if left == 0 {
                                    Chunk::DataEnd
                                } else {
                                    Chunk::Data(left)
                                });
                                return Poll::Ready(Some(Ok(Frame::data(data))));
                            }
                            false
                        }
                        Chunk::DataEnd => {
                            if this.buf.len() >= 2 {
                                if &this.buf[..2] != b"\r\n" {
                                    return Poll::Ready(Some(Err(invalid("chunk end"))));
                                }
                                this.buf.advance(2);
                                this.framing = Framing::Chunked(Chunk::Size);
                                true
                            } else {
                                false
                            }
                        }
                        Chunk::Trailers => match this.line() {
                            // Trailers are dropped; an empty line ends the body.
                            Some(line) => {
                                if line?.is_empty() {
                                    this.finish();
                                }
                                true
                            }
                            None => false,
                        },
                    };
                    if !progressed && ready!(this.poll_fill(cx))? == 0 {
                        this.conn = None;
                        return Poll::Ready(Some(Err(invalid("endpoint closed mid-body"))));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.framing, Framing::Done | Framing::Length(0))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match (self.framing, self.size_hint) {
            (Framing::Length(0) | Framing::Done, _) => hyper::body::SizeHint::with_exact(0),
            (Framing::Length(n), Some(total)) if n == total => hyper::body::SizeHint::with_exact(n),
            _ => hyper::body::SizeHint::default(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // A body dropped before its end leaves the connection mid-response: close it.
        if !matches!(self.framing, Framing::Done) {
            self.conn = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

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
        pool: &SharedPool,
        addr: SocketAddr,
        method: &str,
        body: &'static [u8],
    ) -> Result<Response<ResponseBody>, SendError> {
        let client = ClientHeaders::new("10.0.0.9:1234".parse().unwrap());
        let body = OutBody::Full(Bytes::from_static(body));
        send(
            pool,
            addr,
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

    fn new_pool() -> SharedPool {
        Arc::new(IdlePool::default())
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
            (*pool).as_ref().take().is_none(),
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
}

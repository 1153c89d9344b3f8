//! An HTTP/1.1 endpoint's response head: parsed with httparse, hop-by-hop headers read and not
//! forwarded, and the body's framing decided. A head whose framing is ambiguous (conflicting
//! Content-Length values, or Content-Length with Transfer-Encoding) is refused, because reading
//! it one way when the endpoint meant another desyncs every later response on that connection.

use std::io;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use hyper::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use hyper::{HeaderMap, Response, StatusCode};
use tokio::io::AsyncReadExt;

use super::body::{Chunk, Framing, ResponseBody};
use super::SendError;
use crate::balance::EndpointState;
use crate::l7::conn::UpstreamConn;
use crate::l7::headers;

/// Largest response head accepted from an endpoint.
const MAX_HEAD: usize = 64 * 1024;

/// A final response head, read.
pub(super) struct ParsedHead {
    status: StatusCode,
    headers: HeaderMap,
    head_len: usize,
    /// `Connection: close`, or HTTP/1.0.
    close: bool,
    /// Transfer-Encoding was sent; its last coding was chunked.
    transfer_encoding: Option<bool>,
    length: Option<u64>,
    /// Headers the Connection header names, to drop.
    named: Vec<HeaderName>,
}

impl ParsedHead {
    /// Takes one response header: framing and hop-by-hop ones are read, not forwarded.
    fn add(&mut self, name: &str, value: &[u8]) -> Result<(), HeadError> {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| HeadError::Protocol("header name"))?;
        if name == CONNECTION {
            for token in headers::tokens(value) {
                if token.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    self.close = false;
                } else if let Ok(n) = HeaderName::from_bytes(token) {
                    self.named.push(n);
                }
            }
            return Ok(());
        }
        if name == TRANSFER_ENCODING {
            if let Some(last) = headers::tokens(value).last() {
                self.transfer_encoding = Some(last.eq_ignore_ascii_case(b"chunked"));
            }
            return Ok(());
        }
        if headers::is_hop_by_hop(&name) {
            return Ok(());
        }
        if name == CONTENT_LENGTH {
            self.content_length(value)?;
        }
        let value =
            HeaderValue::from_bytes(value).map_err(|_| HeadError::Protocol("header value"))?;
        self.headers.append(name, value);
        Ok(())
    }

    /// Reads a Content-Length line (a list of equal values counts as one, RFC 9110 8.6).
    fn content_length(&mut self, value: &[u8]) -> Result<(), HeadError> {
        for item in headers::tokens(value) {
            let n = std::str::from_utf8(item)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or(HeadError::Protocol("content-length"))?;
            if self.length.is_some_and(|seen| seen != n) {
                return Err(HeadError::Protocol("conflicting content-length values"));
            }
            self.length = Some(n);
        }
        Ok(())
    }

    /// How the body is delimited (RFC 9112 section 6.3), or an error when that is ambiguous.
    fn framing(&self, is_head: bool) -> Result<Framing, HeadError> {
        if self.transfer_encoding.is_some() && self.length.is_some() {
            return Err(HeadError::Protocol(
                "both content-length and transfer-encoding",
            ));
        }
        let status = self.status;
        Ok(
            if is_head || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
                Framing::Length(0)
            } else {
                match (self.transfer_encoding, self.length) {
                    (Some(true), _) => Framing::Chunked(Chunk::Size),
                    (Some(false), _) => Framing::Eof,
                    (None, Some(n)) => Framing::Length(n),
                    (None, None) => Framing::Eof,
                }
            },
        )
    }
}

/// Why a response head could not be read.
pub(super) enum HeadError {
    /// The connection failed.
    Io(io::Error),
    /// What came back is not a response pier can relay safely.
    Protocol(&'static str),
}

impl From<io::Error> for HeadError {
    fn from(e: io::Error) -> Self {
        HeadError::Io(e)
    }
}

impl HeadError {
    pub(super) fn into_send_error(self) -> SendError {
        match self {
            HeadError::Io(e) => SendError::Io(e),
            HeadError::Protocol(p) => SendError::Protocol(p),
        }
    }
}

/// Reads until a final (non-1xx) response head is complete; `None` on EOF before any byte.
pub(super) async fn read_head(
    conn: &mut UpstreamConn,
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
                        transfer_encoding: None,
                        length: None,
                        named: Vec::new(),
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

/// The response to relay: the head's headers without the ones the Connection header named,
/// and a body reading the rest of the connection. An ambiguous head is an error, and the
/// connection is dropped (closed) with it rather than pooled.
pub(super) fn respond(
    parsed: ParsedHead,
    conn: UpstreamConn,
    mut buf: BytesMut,
    is_head: bool,
    endpoint: &Arc<EndpointState>,
) -> Result<Response<ResponseBody>, HeadError> {
    let framing = parsed.framing(is_head)?;
    buf.advance(parsed.head_len);
    let mut headers = parsed.headers;
    for name in &parsed.named {
        headers.remove(name);
    }
    let body = ResponseBody {
        conn: Some(conn),
        buf,
        framing,
        reusable: !parsed.close && !matches!(framing, Framing::Eof),
        endpoint: Arc::clone(endpoint),
        size_hint: parsed.length,
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = parsed.status;
    *resp.headers_mut() = headers;
    Ok(resp)
}

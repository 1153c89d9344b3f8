//! The HTTP/1.1 request an endpoint gets: the head (with a buffered body) as one buffer, then
//! a streamed body sent chunked.

use std::io;

use http_body_util::BodyExt;
use hyper::Method;
use tokio::io::AsyncWriteExt;

use crate::l7::body::{ClientRequestBody, UpstreamBody};
use crate::l7::conn::UpstreamConn;
use crate::l7::headers::{self, ClientHeaders};

/// The request head (and a buffered body) as bytes: headers as [`headers::upstream_request`]
/// decides, then the framing of the body being sent.
pub(super) fn head(
    parts: &hyper::http::request::Parts,
    body: &UpstreamBody,
    client: Option<&ClientHeaders>,
) -> Vec<u8> {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let line = |out: &mut Vec<u8>, name: &[u8], value: &[u8]| {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    };
    headers::upstream_request(&parts.headers, &parts.uri, client, |name, value| {
        line(&mut out, name.as_str().as_bytes(), value.as_bytes());
    });
    match body {
        UpstreamBody::Full(b) if b.is_empty() && !method_implies_body(&parts.method) => {}
        UpstreamBody::Full(b) => {
            line(&mut out, b"content-length", b.len().to_string().as_bytes());
        }
        UpstreamBody::Stream(_) => line(&mut out, b"transfer-encoding", b"chunked"),
    }
    out.extend_from_slice(b"\r\n");
    if let UpstreamBody::Full(b) = body {
        out.extend_from_slice(b);
    }
    out
}

fn method_implies_body(m: &Method) -> bool {
    matches!(*m, Method::POST | Method::PUT | Method::PATCH)
}

/// Sends a client's streamed body chunked, then the last chunk.
pub(super) async fn write_stream(
    conn: &mut UpstreamConn,
    mut body: ClientRequestBody,
) -> io::Result<()> {
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

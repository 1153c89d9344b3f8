//! A response body relayed from an HTTP/1.1 endpoint as the client reads it: by length, chunked
//! (the decoder is here) or to the end of the connection, which goes back to the endpoint's
//! idle pool once the body is complete.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use hyper::body::{Body, Frame};

use crate::balance::EndpointState;
use crate::l7::conn::UpstreamConn;

/// Longest chunk-size line.
const MAX_LINE: usize = 4096;

#[derive(Debug, Clone, Copy)]
pub(super) enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Framing {
    Length(u64),
    Chunked(Chunk),
    Eof,
    Done,
}

/// A response body read from the endpoint as the client consumes it.
pub(crate) struct ResponseBody {
    pub(super) conn: Option<UpstreamConn>,
    pub(super) buf: BytesMut,
    pub(super) framing: Framing,
    pub(super) reusable: bool,
    /// The endpoint whose idle pool takes the connection back.
    pub(super) endpoint: Arc<EndpointState>,
    pub(super) size_hint: Option<u64>,
}

impl ResponseBody {
    /// Reads more from the endpoint; `Ok(0)` at EOF.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(16 * 1024);
        }
        tokio_util::io::poll_read_buf(Pin::new(conn), cx, &mut self.buf)
    }

    fn finish(&mut self) {
        self.framing = Framing::Done;
        if let Some(conn) = self.conn.take() {
            if self.reusable && self.buf.is_empty() {
                self.endpoint.idle.put(conn, std::mem::take(&mut self.buf));
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

//! Request bodies: the client's, whichever server read it (hyper's HTTP/1.1 or the h2
//! crate's h2c), and the one body type every upstream attempt sends.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};

/// Bodies up to this size are buffered so the request can be retried.
const REPLAY_LIMIT: u64 = 64 * 1024;

/// Error reading a client's request body.
pub(super) type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// A request body streamed from the client.
pub(crate) enum ClientRequestBody {
    /// Read by hyper's HTTP/1.1 server.
    H1(Incoming),
    /// Read from an h2c stream.
    H2(H2RequestBody),
}

impl Body for ClientRequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Self::H1(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            Self::H2(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::H1(b) => b.is_end_stream(),
            Self::H2(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::H1(b) => b.size_hint(),
            Self::H2(b) => b.size_hint(),
        }
    }
}

/// The body of one upstream attempt, for HTTP/1.1 and h2c upstreams alike.
pub(super) enum UpstreamBody {
    /// Fully buffered, so another attempt can send it again.
    Full(Bytes),
    /// Streamed from the client: one attempt only.
    Stream(ClientRequestBody),
}

impl UpstreamBody {
    /// Buffers a small body (up to 64 KiB, by its declared size) so it can be replayed, and
    /// streams a larger one; `Err` if the client's body breaks while being buffered.
    pub(super) async fn from_client(body: ClientRequestBody) -> Result<Self, BodyError> {
        if body.is_end_stream() {
            return Ok(UpstreamBody::Full(Bytes::new()));
        }
        if body.size_hint().upper().is_some_and(|n| n <= REPLAY_LIMIT) {
            let limit = usize::try_from(REPLAY_LIMIT).unwrap_or(usize::MAX);
            let collected = Limited::new(body, limit).collect().await?;
            return Ok(UpstreamBody::Full(collected.to_bytes()));
        }
        Ok(UpstreamBody::Stream(body))
    }

    /// The body for the next attempt: a copy of a buffered one, or the stream the first
    /// time (`None` once a stream has been sent).
    pub(super) fn for_attempt(held: &mut Option<UpstreamBody>) -> Option<UpstreamBody> {
        match held {
            Some(UpstreamBody::Full(b)) => Some(UpstreamBody::Full(b.clone())),
            _ => held.take(),
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Self::Full(b) if b.is_empty() => Poll::Ready(None),
            Self::Full(b) => Poll::Ready(Some(Ok(Frame::data(std::mem::take(b))))),
            Self::Stream(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(b) => b.is_empty(),
            Self::Stream(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(b) => SizeHint::with_exact(b.len() as u64),
            Self::Stream(b) => b.size_hint(),
        }
    }
}

/// An h2c request body: DATA frames, then trailers. Each frame read gives its bytes back to the
/// client's flow-control window, so a body that is not read stops the client, not the connection.
pub(crate) struct H2RequestBody {
    recv: h2::RecvStream,
    /// What is left of the request's content-length, when it had one.
    remaining: Option<u64>,
    data_done: bool,
}

impl H2RequestBody {
    /// Wraps a stream's receiving half; `length` is the request's content-length.
    pub(super) fn new(recv: h2::RecvStream, length: Option<u64>) -> Self {
        Self {
            recv,
            remaining: length,
            data_done: false,
        }
    }
}

impl Body for H2RequestBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let this = &mut *self;
        if !this.data_done {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Only fails once the stream is gone, which the next read reports.
                    if let Err(e) = this.recv.flow_control().release_capacity(data.len()) {
                        tracing::trace!(error = %e, "request window not released");
                    }
                    if let Some(n) = &mut this.remaining {
                        *n = n.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => this.data_done = true,
            }
        }
        match ready!(this.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) if !self.data_done => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

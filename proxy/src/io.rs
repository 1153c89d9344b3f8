//! A stream wrapper that counts bytes read and remembers when it last moved, for idle timeouts.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Whether a connection moved data lately, for idle timeouts. I/O only sets a flag (no clock
/// read per read or write); the watchdog samples it four times per timeout period.
#[derive(Clone)]
pub(crate) struct Activity(Arc<AtomicBool>);

impl Activity {
    /// Starts as active.
    pub(crate) fn new() -> Self {
        Self(Arc::new(AtomicBool::new(true)))
    }

    /// Records that data moved.
    pub(crate) fn touch(&self) {
        if !self.0.load(Ordering::Relaxed) {
            self.0.store(true, Ordering::Relaxed);
        }
    }

    /// Resolves once nothing moved for `idle` (at most a quarter longer).
    pub(crate) async fn idle(&self, idle: Duration) {
        let tick = (idle / 4).max(Duration::from_millis(5));
        let mut quiet = Duration::ZERO;
        loop {
            tokio::time::sleep(tick).await;
            if self.0.swap(false, Ordering::Relaxed) {
                quiet = Duration::ZERO;
            } else {
                quiet += tick;
                if quiet >= idle {
                    return;
                }
            }
        }
    }
}

/// A client stream, counting bytes each way and touching `activity` whenever data moves; bytes
/// already read can be put back in front of it ([`Tracked::unread`]).
pub(crate) struct Tracked<S> {
    inner: S,
    activity: Activity,
    read_bytes: IntCounter,
    written_bytes: IntCounter,
    unread: bytes::Bytes,
}

impl<S> Tracked<S> {
    /// Wraps a stream.
    pub(crate) fn new(
        inner: S,
        activity: Activity,
        read_bytes: IntCounter,
        written_bytes: IntCounter,
    ) -> Self {
        Self {
            inner,
            activity,
            read_bytes,
            written_bytes,
            unread: bytes::Bytes::new(),
        }
    }

    /// Puts bytes read from this stream (and counted already) back: the next reads return them
    /// before the stream's own.
    pub(crate) fn unread(&mut self, bytes: bytes::Bytes) {
        self.unread = bytes;
    }

    fn wrote(&self, r: &Poll<std::io::Result<usize>>) {
        if let Poll::Ready(Ok(n)) = r {
            if *n > 0 {
                self.activity.touch();
                self.written_bytes.inc_by(*n as u64);
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.unread.is_empty() {
            let n = self.unread.len().min(buf.remaining());
            let head = self.unread.split_to(n);
            buf.put_slice(&head);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.activity.touch();
            self.read_bytes.inc_by(n as u64);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(&r);
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Accepts connections on `listener` while the node's connection limit has room (refusals are
/// counted), serving each with `serve` in a task of its own that holds its permit.
pub(crate) async fn accept_each<F, Fut>(
    listener: tokio::net::TcpListener,
    limit: Arc<tokio::sync::Semaphore>,
    metrics: Arc<crate::ProxyMetrics>,
    serve: F,
) where
    F: Fn(tokio::net::TcpStream, std::net::SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            metrics.connections_refused.inc();
            continue;
        };
        let connection = serve(stream, peer);
        tokio::spawn(async move {
            let _permit = permit;
            connection.await;
        });
    }
}

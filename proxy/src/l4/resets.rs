//! An upstream TCP stream that counts the endpoint's resets: the first read or write that
//! fails because the endpoint reset or aborted the connection, counted once per connection.

use std::io::ErrorKind;
use std::pin::Pin;
use std::task::{Context, Poll};

use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// `inner`, with its resets counted in `resets`.
pub(crate) struct ResetCounted<S> {
    inner: S,
    resets: IntCounter,
    counted: bool,
}

impl<S> ResetCounted<S> {
    /// Wraps the stream to an endpoint.
    pub(crate) fn new(inner: S, resets: IntCounter) -> Self {
        Self {
            inner,
            resets,
            counted: false,
        }
    }

    fn see<T>(&mut self, r: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        if let Poll::Ready(Err(e)) = &r {
            let reset = matches!(
                e.kind(),
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
            );
            if reset && !self.counted {
                self.counted = true;
                self.resets.inc();
            }
        }
        r
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ResetCounted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.see(r)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ResetCounted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.see(r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.see(r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.see(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn an_endpoint_reset_is_counted_once() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            s.set_zero_linger().unwrap();
            drop(s);
        });
        let counter = IntCounter::new("resets", "r").unwrap();
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut counted = ResetCounted::new(stream, counter.clone());
        server.await.unwrap();
        let mut buf = [0u8; 16];
        let first = counted.read(&mut buf).await;
        assert!(first.is_err(), "{first:?}");
        let _second = counted.read(&mut buf).await;
        assert_eq!(counter.get(), 1);
    }
}

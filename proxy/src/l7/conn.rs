//! A connection to an endpoint: plain TCP, or TLS over it when a BackendTLSPolicy covers the
//! port. Both HTTP/1.1 (pooled) and HTTP/2 upstreams use it.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::tls::upstream::TlsClient;

/// An open connection to an endpoint.
pub(crate) enum UpstreamConn {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS, verified as the policy says.
    Tls(Box<TlsStream<TcpStream>>),
}

/// Which protocol the connection will carry, for ALPN.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Alpn {
    /// HTTP/1.1.
    H1,
    /// HTTP/2.
    H2,
}

/// Connects to `addr` within `timeout`, TLS included when `tls` is given.
pub(crate) async fn connect(
    addr: SocketAddr,
    timeout: Duration,
    tls: Option<&TlsClient>,
    alpn: Alpn,
) -> io::Result<UpstreamConn> {
    let open = async {
        let tcp = TcpStream::connect(addr).await?;
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        let Some(client) = tls else {
            return Ok(UpstreamConn::Plain(tcp));
        };
        let config = client
            .config
            .as_ref()
            .map_err(|e| io::Error::other(format!("{}: {e}", client.source.source)))?;
        let connector = match alpn {
            Alpn::H1 => &config.h1,
            Alpn::H2 => &config.h2,
        };
        let stream = connector.connect(config.name.clone(), tcp).await?;
        Ok(UpstreamConn::Tls(Box::new(stream)))
    };
    tokio::time::timeout(timeout, open)
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}

impl AsyncRead for UpstreamConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamConn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamConn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamConn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamConn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamConn::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamConn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamConn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamConn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamConn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamConn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamConn::Plain(s) => s.is_write_vectored(),
            UpstreamConn::Tls(s) => s.is_write_vectored(),
        }
    }
}

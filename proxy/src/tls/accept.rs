//! One TLS handshake on an accepted connection, bounded in time (a client that stalls or
//! trickles is cut off; rustls itself refuses a handshake message over 64 KiB, so an
//! oversized ClientHello costs bounded memory), with what happened named for metrics.

use std::time::Duration;

use rustls::{HandshakeKind, ProtocolVersion};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A finished handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: &'static str,
    /// Whether a ticket or session ID resumed an earlier session.
    pub resumed: bool,
    /// The protocol ALPN settled on (`h2`, `http/1.1`), if any.
    pub alpn: Option<Vec<u8>>,
}

/// Why a handshake did not finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// It took longer than the listener allows.
    Timeout,
    /// The client went away first.
    Closed,
    /// No certificate for the name the client asked for, and no default.
    UnknownName,
    /// The client sent something that is not TLS, or TLS this listener does not speak.
    Protocol(String),
}

impl Failure {
    /// The `reason` label of the failure's metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Closed => "closed",
            Self::UnknownName => "unknown_sni",
            Self::Protocol(_) => "protocol",
        }
    }
}

/// Runs the server side of a handshake on `io` for at most `limit`.
pub async fn accept<IO>(
    acceptor: &TlsAcceptor,
    io: IO,
    limit: Duration,
) -> Result<(TlsStream<IO>, Handshake), Failure>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let tls = match tokio::time::timeout(limit, acceptor.accept(io)).await {
        Err(_) => return Err(Failure::Timeout),
        Ok(Err(e)) => return Err(classify(&e)),
        Ok(Ok(tls)) => tls,
    };
    let conn = tls.get_ref().1;
    let version = match conn.protocol_version() {
        Some(ProtocolVersion::TLSv1_3) => "TLSv1.3",
        _ => "TLSv1.2",
    };
    let handshake = Handshake {
        version,
        resumed: conn.handshake_kind() == Some(HandshakeKind::Resumed),
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
    };
    Ok((tls, handshake))
}

fn classify(e: &std::io::Error) -> Failure {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::General(m)) if m.contains("no server certificate") => {
            Failure::UnknownName
        }
        Some(other) => Failure::Protocol(other.to_string()),
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => Failure::Closed,
        None => Failure::Protocol(e.to_string()),
    }
}

#[cfg(test)]
#[path = "accept_tests.rs"]
mod tests;

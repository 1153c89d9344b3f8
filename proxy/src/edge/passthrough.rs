//! A TLS passthrough connection: the ClientHello is read (by rustls's `Acceptor`, which needs
//! no key) for its SNI name, the name picks the site on the listener port (the TLSRoute), and
//! the connection is relayed to one of its backends, the ClientHello first, untouched.

use std::net::SocketAddr;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::serve::EdgeShared;

/// Largest ClientHello read before giving up (a TLS record is at most 16 KiB; a hello may
/// span a few).
const MAX_HELLO: usize = 64 * 1024;

/// A ClientHello as read: its SNI name (lowercase) and every byte read so far.
struct Hello {
    name: Option<String>,
    bytes: Vec<u8>,
}

/// Serves one connection of a passthrough listener on `port`; a client that sends no
/// ClientHello within the header timeout, or one no route takes, is closed.
pub(super) async fn connection(
    shared: &EdgeShared,
    mut stream: TcpStream,
    peer: SocketAddr,
    port: u16,
) {
    let limit = shared.http.header_read_timeout();
    let hello = match tokio::time::timeout(limit, read_hello(&mut stream)).await {
        Ok(Ok(h)) => h,
        Ok(Err(reason)) => {
            tracing::debug!(%peer, reason, "TLS passthrough: no ClientHello");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS passthrough: ClientHello timed out");
            return;
        }
    };
    let name = hello.name.as_deref().unwrap_or("");
    let site = shared
        .gateways
        .load()
        .port(port)
        .and_then(|p| p.site(name))
        .cloned();
    let Some(frontend) = site else {
        tracing::debug!(%peer, name, port, "TLS passthrough: no TLSRoute takes this name");
        return;
    };
    crate::l4::tcp::relay(stream, peer, frontend, &hello.bytes).await;
}

async fn read_hello(stream: &mut TcpStream) -> Result<Hello, &'static str> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut bytes = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|_| "closed")?;
        if n == 0 {
            return Err("closed");
        }
        bytes.extend_from_slice(&chunk[..n]);
        if bytes.len() > MAX_HELLO {
            return Err("ClientHello too large");
        }
        let mut fresh = &chunk[..n];
        while !fresh.is_empty() {
            acceptor.read_tls(&mut fresh).map_err(|_| "not TLS")?;
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                let name = accepted
                    .client_hello()
                    .server_name()
                    .map(|s| s.trim_end_matches('.').to_ascii_lowercase());
                return Ok(Hello { name, bytes });
            }
            Ok(None) => {}
            Err(_) => return Err("not a TLS ClientHello"),
        }
    }
}

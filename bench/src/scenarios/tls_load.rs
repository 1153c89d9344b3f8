//! The TLS benchmark's load generator: concurrent rustls clients that each make a new
//! connection per request (full or resumed handshakes) or keep one connection for many
//! requests. The client does not check the server's certificate or handshake signature, so its
//! own cost per handshake stays below the server's and the server is what is measured.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, HandshakeKind, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// What the clients do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Load {
    /// A new connection per request, no resumption: a full TLS 1.3 handshake each.
    Full,
    /// A new connection per request, resuming with the last session's ticket.
    Resumed,
    /// One connection per client, requests one after another.
    KeepAlive,
}

/// What a run did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counts {
    /// Requests answered.
    pub requests: u64,
    /// Handshakes completed.
    pub handshakes: u64,
    /// Of those, resumed ones.
    pub resumed: u64,
    /// Connections or requests that failed.
    pub errors: u64,
}

#[derive(Debug)]
struct TrustAnything(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for TrustAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn client_config(load: Load) -> Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(TrustAnything(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if load == Load::Full {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(config))
}

/// Reads one HTTP/1.1 `200` response with a Content-Length body; an error when the status is
/// another or the stream ends first.
async fn read_response<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
) -> Result<()> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).context("response head")?;
            if !head.starts_with("HTTP/1.1 200") {
                bail!("status: {}", head.lines().next().unwrap_or(""));
            }
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .context("no content-length")?;
            let want = end + 4 + length;
            while buf.len() < want {
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    bail!("closed in the body");
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Ok(());
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            bail!("closed before a response");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

struct Shared {
    addr: String,
    host: ServerName<'static>,
    request: Vec<u8>,
    until: Instant,
    requests: AtomicU64,
    handshakes: AtomicU64,
    resumed: AtomicU64,
    errors: AtomicU64,
}

impl Shared {
    async fn connect(
        &self,
        connector: &TlsConnector,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(&self.addr).await?;
        tcp.set_nodelay(true)?;
        let tls = connector.connect(self.host.clone(), tcp).await?;
        self.handshakes.fetch_add(1, Ordering::Relaxed);
        if tls.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed) {
            self.resumed.fetch_add(1, Ordering::Relaxed);
        }
        Ok(tls)
    }

    async fn one_per_connection(&self, connector: &TlsConnector) -> Result<()> {
        let mut buf = Vec::with_capacity(4096);
        while Instant::now() < self.until {
            let mut tls = self.connect(connector).await?;
            tls.write_all(&self.request).await?;
            read_response(&mut tls, &mut buf).await?;
            self.requests.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn keep_alive(&self, connector: &TlsConnector) -> Result<()> {
        let mut buf = Vec::with_capacity(4096);
        let mut tls = self.connect(connector).await?;
        while Instant::now() < self.until {
            tls.write_all(&self.request).await?;
            read_response(&mut tls, &mut buf).await?;
            self.requests.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Runs `clients` concurrent clients against `addr` (SNI `host`) for `duration`.
pub(crate) async fn run(
    addr: &str,
    host: &str,
    load: Load,
    clients: usize,
    duration: Duration,
) -> Result<Counts> {
    let close = if load == Load::KeepAlive {
        "keep-alive"
    } else {
        "close"
    };
    let shared = Arc::new(Shared {
        addr: addr.to_string(),
        host: ServerName::try_from(host.to_string()).context("server name")?,
        request: format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: {close}\r\n\r\n")
            .into_bytes(),
        until: Instant::now() + duration,
        requests: AtomicU64::new(0),
        handshakes: AtomicU64::new(0),
        resumed: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let shared = Arc::clone(&shared);
        // Each client its own session cache, as separate browsers or services have.
        let connector = TlsConnector::from(client_config(load)?);
        tasks.push(tokio::spawn(async move {
            // A client whose connection failed starts over until the time is up.
            while Instant::now() < shared.until {
                let result = match load {
                    Load::KeepAlive => shared.keep_alive(&connector).await,
                    Load::Full | Load::Resumed => shared.one_per_connection(&connector).await,
                };
                if let Err(e) = result {
                    if shared.errors.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("tls load {addr}: {e:#}", addr = shared.addr);
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.context("a load task")?;
    }
    Ok(Counts {
        requests: shared.requests.load(Ordering::Relaxed),
        handshakes: shared.handshakes.load(Ordering::Relaxed),
        resumed: shared.resumed.load(Ordering::Relaxed),
        errors: shared.errors.load(Ordering::Relaxed),
    })
}

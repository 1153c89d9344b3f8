//! A test certificate authority issuing `kubernetes.io/tls` Secrets, a TLS backend, and curl,
//! for the edge tests.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

/// Runs curl with `args` (silent, errors shown, 10 s at most): (success, stdout and stderr).
pub(crate) fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A test CA signing leaf certificates.
pub(crate) struct Ca {
    /// The CA certificate, PEM.
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// A new CA.
    pub(crate) fn new() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // OpenSSL takes a leaf whose issuer is its own subject for self-signed.
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "pier ingress test CA");
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `host` and its key, PEM.
    pub(crate) fn issue(&self, host: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![host.to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, host);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A `kubernetes.io/tls` Secret for `host`.
    pub(crate) fn secret(&self, name: &str, host: &str) -> String {
        let (cert, key) = self.issue(host);
        serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "type": "kubernetes.io/tls",
            "stringData": {"tls.crt": cert, "tls.key": key},
        })
        .to_string()
    }
}

/// A TLS server on loopback holding `cert` for its name, answering any request with
/// `served-by:<name>`.
pub(crate) async fn tls_backend(name: &'static str, cert: &str, key: &str) -> SocketAddr {
    TlsBackend {
        name,
        cert,
        key,
        client_ca: None,
    }
    .spawn()
    .await
}

/// A TLS server on loopback speaking HTTP/1.1 and HTTP/2 (ALPN), answering any request with
/// the body `served-by:<name>` and headers telling what it saw: `x-sni` (or `none`),
/// `x-http` (the version) and `x-client-cert` (`yes` or `no`).
pub(crate) struct TlsBackend<'a> {
    pub name: &'static str,
    pub cert: &'a str,
    pub key: &'a str,
    /// Asks for a client certificate of this CA, and refuses a connection without one.
    pub client_ca: Option<&'a str>,
}

impl TlsBackend<'_> {
    pub(crate) async fn spawn(self) -> SocketAddr {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.cert.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_slice(self.key.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match self.client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                    roots.add(c.unwrap()).unwrap();
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(certs, key).unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let name = self.name;
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let (_, session) = tls.get_ref();
                    let sni = session.server_name().unwrap_or("none").to_string();
                    let client_cert = if session.peer_certificates().is_some() {
                        "yes"
                    } else {
                        "no"
                    };
                    let answer = move |req: Request<hyper::body::Incoming>| {
                        let response = Response::builder()
                            .header("x-sni", sni.as_str())
                            .header("x-http", format!("{:?}", req.version()))
                            .header("x-client-cert", client_cert)
                            .body(Full::new(Bytes::from(format!("served-by:{name}\n"))));
                        async move { response }
                    };
                    let served = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), hyper::service::service_fn(answer))
                        .await;
                    if let Err(e) = served {
                        eprintln!("test TLS backend {name}: {e}");
                    }
                });
            }
        });
        addr
    }
}

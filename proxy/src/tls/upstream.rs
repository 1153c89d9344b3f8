//! TLS from the proxy to a Service's endpoints (a BackendTLSPolicy): a rustls client
//! configuration trusting the policy's CA certificates (or the system's), checking the
//! policy's host name, one connector per ALPN protocol.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use pier_snapshot::UpstreamTls;

/// How to open TLS to one port's endpoints.
pub struct TlsClient {
    /// The policy view it was built from (rebuilt only when that changes).
    pub source: Arc<UpstreamTls>,
    /// The connectors and name, or why the policy cannot be used (connections then fail:
    /// a request never goes out in plain text instead).
    pub config: Result<TlsConfig, String>,
}

/// A usable upstream TLS configuration.
pub struct TlsConfig {
    /// ALPN `http/1.1`.
    pub h1: TlsConnector,
    /// ALPN `h2`.
    pub h2: TlsConnector,
    /// SNI and the name checked.
    pub name: ServerName<'static>,
}

impl TlsClient {
    /// Builds the client of `source`; a problem is logged and kept.
    pub fn new(source: Arc<UpstreamTls>) -> Self {
        let config = build(&source);
        if let Err(e) = &config {
            tracing::warn!(policy = %source.policy, error = %e, "BackendTLSPolicy cannot be used; its endpoints get no requests");
        }
        Self { source, config }
    }
}

fn roots(tls: &UpstreamTls) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match &tls.ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("CA certificates: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("CA certificate: {e}"))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::debug!(error = %e, "a system CA certificate was not read");
            }
            let (added, _) = roots.add_parsable_certificates(found.certs);
            tracing::debug!(added, "system CA certificates");
        }
    }
    if roots.is_empty() {
        return Err("no CA certificate (is the ConfigMap's ca.crt there?)".into());
    }
    Ok(roots)
}

fn build(tls: &UpstreamTls) -> Result<TlsConfig, String> {
    let roots = Arc::new(roots(tls)?);
    let name = ServerName::try_from(tls.server_name.clone())
        .map_err(|e| format!("hostname {:?}: {e}", tls.server_name))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let connector = |alpn: &[u8]| -> Result<TlsConnector, String> {
        let mut config = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS versions: {e}"))?
            .with_root_certificates(Arc::clone(&roots))
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        Ok(TlsConnector::from(Arc::new(config)))
    };
    Ok(TlsConfig {
        h1: connector(b"http/1.1")?,
        h2: connector(b"h2")?,
        name,
    })
}

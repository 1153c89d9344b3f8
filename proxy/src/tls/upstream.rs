//! TLS from the proxy to a Service's endpoints (a BackendTLSPolicy, or an Ingress's
//! `backend-protocol: HTTPS`): a rustls client configuration trusting the given CA
//! certificates (or the system's) and checking the name, or, where ingress-nginx's
//! `proxy-ssl-verify: off` asks, checking only the handshake; one connector per ALPN protocol.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_rustls::TlsConnector;

use pier_snapshot::{ClientCertificate, UpstreamTls};

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
            tracing::warn!(source = %source.source, error = %e, "upstream TLS cannot be used; its endpoints get no requests");
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
        return Err("no CA certificate (is `ca.crt` in the ConfigMap or Secret?)".into());
    }
    Ok(roots)
}

fn build(tls: &UpstreamTls) -> Result<TlsConfig, String> {
    let name = ServerName::try_from(tls.server_name.clone())
        .map_err(|e| format!("hostname {:?}: {e}", tls.server_name))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let client = tls.client.as_ref().map(client_certificate).transpose()?;
    let verifier: Option<Arc<dyn ServerCertVerifier>> = match tls.verify {
        true => None,
        false => Some(Arc::new(HandshakeOnly(Arc::clone(&provider)))),
    };
    let roots = match verifier {
        None => Some(Arc::new(roots(tls)?)),
        Some(_) => None,
    };
    let connector = |alpn: &[u8]| -> Result<TlsConnector, String> {
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS versions: {e}"))?;
        let builder = match (&roots, &verifier) {
            (Some(roots), _) => builder.with_root_certificates(Arc::clone(roots)),
            (None, Some(v)) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::clone(v)),
            (None, None) => return Err("neither CA certificates nor a verifier".into()),
        };
        let mut config = match &client {
            Some((certs, key)) => builder
                .with_client_auth_cert(certs.clone(), key.clone_key())
                .map_err(|e| format!("client certificate: {e}"))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![alpn.to_vec()];
        config.enable_sni = tls.sni;
        Ok(TlsConnector::from(Arc::new(config)))
    };
    Ok(TlsConfig {
        h1: connector(b"http/1.1")?,
        h2: connector(b"h2")?,
        name,
    })
}

type ClientAuth = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// The certificate chain and key pier shows an endpoint that asks for one.
fn client_certificate(c: &ClientCertificate) -> Result<ClientAuth, String> {
    let certs = CertificateDer::pem_slice_iter(&c.cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("client certificate (tls.crt): {e}"))?;
    if certs.is_empty() {
        return Err("client certificate (tls.crt): no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(&c.key_pem)
        .map_err(|e| format!("client key (tls.key): {e}"))?;
    Ok((certs, key))
}

/// ingress-nginx's `proxy-ssl-verify: off`: any certificate chain and name are taken, but
/// the endpoint must still prove it holds the key of the certificate it shows.
#[derive(Debug)]
struct HandshakeOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for HandshakeOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

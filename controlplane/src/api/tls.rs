//! TLS for the API's TCP listener: a certificate given with `--api-cert`/`--api-key`, or a CA
//! made on first start under the state dir (kept 0600, so kubeconfigs stay valid across
//! restarts) that signs a fresh serving certificate for the node's names at every start.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};

/// The listener's TLS settings and the CA a client should trust.
pub struct ApiTls {
    /// The rustls server configuration.
    pub config: Arc<rustls::ServerConfig>,
    /// PEM of the CA (or, for a given certificate, the last certificate of its chain).
    pub ca_pem: String,
}

impl ApiTls {
    /// TLS from a PEM certificate chain and key the operator gave.
    pub fn from_files(cert: &Path, key: &Path) -> Result<ApiTls> {
        let chain_pem = read(cert)?;
        let key_pem = read(key)?;
        let ca_pem = last_certificate_pem(&chain_pem).ok_or_else(|| {
            Error::BadRequest(format!(
                "--api-cert {}: no certificate in it",
                cert.display()
            ))
        })?;
        let config = server_config(&chain_pem, &key_pem, &cert.display().to_string())?;
        Ok(ApiTls { config, ca_pem })
    }

    /// TLS from the CA under `dir` (made on first use) and a serving certificate for `names`
    /// (DNS names and IP addresses).
    pub fn generated(dir: &Path, names: &[String]) -> Result<ApiTls> {
        let (ca_pem, ca_key) = ca(dir)?;
        // The CA's name and key identify it; its parameters are the same at every start.
        let issuer = Issuer::new(ca_params()?, ca_key);
        let key = KeyPair::generate().map_err(tls_error("a serving key"))?;
        let mut params =
            CertificateParams::new(names.to_vec()).map_err(tls_error("the serving names"))?;
        params
            .distinguished_name
            .push(DnType::CommonName, "pier API server");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(tls_error("signing the serving certificate"))?;
        let chain = format!("{}{ca_pem}", cert.pem());
        let config = server_config(&chain, &key.serialize_pem(), "the generated certificate")?;
        Ok(ApiTls { config, ca_pem })
    }
}

/// The CA's certificate PEM and key, made and stored under `dir` the first time.
fn ca(dir: &Path) -> Result<(String, KeyPair)> {
    let (cert_path, key_path) = (dir.join("ca.crt"), dir.join("ca.key"));
    if cert_path.exists() && key_path.exists() {
        let key = KeyPair::from_pem(&read(&key_path)?).map_err(tls_error("the stored CA key"))?;
        return Ok((read(&cert_path)?, key));
    }
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| Error::store_from(format!("making {}", dir.display()), e))?;
    let key = KeyPair::generate().map_err(tls_error("the CA key"))?;
    let cert = ca_params()?
        .self_signed(&key)
        .map_err(tls_error("the CA"))?;
    write_private(&key_path, &key.serialize_pem())?;
    write_private(&cert_path, &cert.pem())?;
    Ok((cert.pem(), key))
}

/// The CA's certificate parameters (valid for rcgen's default span, until 4096).
fn ca_params() -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(tls_error("the CA"))?;
    params
        .distinguished_name
        .push(DnType::CommonName, "pier API CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

/// A rustls server configuration for a PEM chain and key, HTTP/1.1 over ALPN.
fn server_config(chain_pem: &str, key_pem: &str, what: &str) -> Result<Arc<rustls::ServerConfig>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::BadRequest(format!("{what}: not a PEM certificate chain: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| Error::BadRequest(format!("{what}: not a PEM private key: {e}")))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::BadRequest(format!("{what}: {e}")))?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| Error::BadRequest(format!("{what}: the key does not fit: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The last certificate of a PEM chain, as PEM.
fn last_certificate_pem(chain: &str) -> Option<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    let start = chain.rfind(BEGIN)?;
    let rest = &chain[start..];
    let end = rest.find("-----END CERTIFICATE-----")? + "-----END CERTIFICATE-----".len();
    Some(format!("{}\n", &rest[..end]))
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::store_from(format!("reading {}", path.display()), e))
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::store_from(format!("creating {}", path.display()), e))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::store_from(format!("writing {}", path.display()), e))
}

fn tls_error(what: &'static str) -> impl Fn(rcgen::Error) -> Error {
    move |e| Error::store(format!("{what}: {e}"))
}

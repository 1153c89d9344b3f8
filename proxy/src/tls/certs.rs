//! The certificates a TLS listener serves, picked by the client's SNI as ingress controllers
//! pick them: the exact host first, then a wildcard covering one label (`*.example.com`
//! serves `a.example.com`, not `example.com` or `a.b.example.com`), then the default; with
//! no default an unknown name gets no certificate and the handshake fails. The table is
//! swapped whole when a TLS Secret changes, so new handshakes see the new certificate while
//! open connections keep the one they started with.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// A certificate chain and its key, read from a `kubernetes.io/tls` Secret's `tls.crt` and
/// `tls.key`; the error names the Secret and the key at fault.
pub fn certified_key(
    secret: &str,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("secret {secret}: tls.crt: {e}"))?;
    if chain.is_empty() {
        return Err(format!("secret {secret}: tls.crt: no certificate in it"));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| format!("secret {secret}: tls.key: {e}"))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider)
        .map_err(|e| format!("secret {secret}: tls.key does not go with tls.crt: {e}"))?;
    Ok(certified)
}

/// Hosts and their certificates.
#[derive(Debug, Default, Clone)]
pub struct CertTable {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// By the suffix after `*.` (`example.com` for `*.example.com`).
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl CertTable {
    /// Serves `key` for `host` (`a.example.com` or `*.example.com`, any case); the first one
    /// given for a host stays, as ingress-nginx keeps the oldest Ingress's certificate.
    pub fn insert(&mut self, host: &str, key: Arc<CertifiedKey>) -> Result<(), String> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let (table, name) = match host.strip_prefix("*.") {
            Some(suffix) => (&mut self.wildcard, suffix.to_string()),
            None => (&mut self.exact, host.clone()),
        };
        if name.is_empty() || name.contains('*') {
            return Err(format!(
                "host {host:?}: a wildcard may only be a whole first label"
            ));
        }
        table.entry(name).or_insert(key);
        Ok(())
    }

    /// Serves `key` to clients whose name no entry covers, and to those that send no SNI.
    pub fn set_default(&mut self, key: Arc<CertifiedKey>) {
        self.default = Some(key);
    }

    /// The certificate for `server_name`, as the table picks it.
    pub fn lookup(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let found = server_name.and_then(|name| {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            self.exact.get(&name).or_else(|| {
                name.split_once('.')
                    .and_then(|(_, suffix)| self.wildcard.get(suffix))
            })
        });
        found.or(self.default.as_ref()).cloned()
    }
}

/// The resolver a listener's rustls configuration holds: the current table, replaced whole.
#[derive(Debug, Default)]
pub struct Certificates {
    table: ArcSwap<CertTable>,
}

impl Certificates {
    /// Puts `table` in place for the handshakes that start from now on.
    pub fn replace(&self, table: CertTable) {
        self.table.store(Arc::new(table));
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.table.load().lookup(hello.server_name())
    }
}

#[cfg(test)]
#[path = "certs_tests.rs"]
mod tests;

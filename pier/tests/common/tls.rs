//! A test certificate authority issuing `kubernetes.io/tls` Secrets, and curl, for the edge
//! tests.

use std::process::Command;

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

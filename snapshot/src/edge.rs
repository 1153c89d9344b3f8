//! What the edge listeners serve: the Ingresses of the classes pier controls, their settings
//! from ingress-nginx annotations, and the TLS certificates they name.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::ServiceKey;

/// Every served Ingress and the certificates they use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EdgeView {
    /// Served Ingresses, oldest first (an older Ingress wins a host and path both claim).
    pub ingresses: Vec<Arc<IngressView>>,
    /// `kubernetes.io/tls` Secrets the Ingresses name, by `namespace/name`.
    pub certificates: BTreeMap<String, Arc<CertificateView>>,
}

impl EdgeView {
    /// Whether there is nothing to serve.
    pub fn is_empty(&self) -> bool {
        self.ingresses.is_empty()
    }
}

/// A certificate chain and its key, PEM, from a TLS Secret (never serialized).
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct CertificateView {
    /// `namespace/name` of the Secret.
    pub secret: String,
    /// `tls.crt`.
    #[serde(skip)]
    pub cert_pem: Vec<u8>,
    /// `tls.key`.
    #[serde(skip)]
    pub key_pem: Vec<u8>,
}

impl fmt::Debug for CertificateView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateView")
            .field("secret", &self.secret)
            .finish_non_exhaustive()
    }
}

/// One Ingress as the edge serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressView {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Host rules.
    pub rules: Vec<IngressRuleView>,
    /// Where requests no rule matches go.
    pub default_backend: Option<IngressBackendView>,
    /// Certificates by host.
    pub tls: Vec<IngressTlsView>,
    /// Settings from its annotations.
    pub settings: IngressSettings,
}

impl IngressView {
    /// `namespace/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// One host's paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressRuleView {
    /// Lowercase host (`*.example.com` wildcards one label); none matches every host.
    pub host: Option<String>,
    /// Paths.
    pub paths: Vec<IngressPathView>,
}

/// One path to a backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressPathView {
    /// The path.
    pub path: String,
    /// `Exact`; otherwise a prefix of whole path elements.
    pub exact: bool,
    /// Where it goes.
    pub backend: IngressBackendView,
}

/// A Service port an Ingress sends to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressBackendView {
    /// The Service.
    pub service: ServiceKey,
    /// Its port.
    pub port: BackendPort,
}

/// A Service port by number or name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum BackendPort {
    /// The port number.
    Number(u16),
    /// The port name.
    Name(String),
}

/// `spec.tls[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressTlsView {
    /// Lowercase hosts (none: every host of the Ingress).
    pub hosts: Vec<String>,
    /// `namespace/name` of the Secret.
    pub secret: Option<String>,
}

/// The protocol the edge speaks to the backend (`backend-protocol`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum BackendProtocol {
    /// HTTP/1.1.
    #[default]
    Http,
    /// HTTP/2 without TLS (`GRPC`).
    Grpc,
}

/// An Ingress's ingress-nginx settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressSettings {
    /// Set on a canary Ingress: how its share of the main Ingress's traffic is chosen.
    pub canary: Option<Canary>,
    /// Redirect plain HTTP to HTTPS when the host has a certificate (`ssl-redirect`).
    pub ssl_redirect: bool,
    /// Redirect plain HTTP to HTTPS even without a certificate (`force-ssl-redirect`).
    pub force_ssl_redirect: bool,
    /// Path rewrite (`rewrite-target`; paths are then regular expressions).
    pub rewrite_target: Option<String>,
    /// Paths are regular expressions (`use-regex`, or implied by `rewrite-target`).
    pub use_regex: bool,
    /// `backend-protocol`.
    pub backend_protocol: BackendProtocol,
    /// Largest request body, bytes (`proxy-body-size`; 0 is no limit).
    pub max_body: u64,
    /// Time to wait for the backend's answer (`proxy-read-timeout`).
    pub read_timeout: Duration,
}

impl Default for IngressSettings {
    /// ingress-nginx's defaults.
    fn default() -> Self {
        Self {
            canary: None,
            ssl_redirect: true,
            force_ssl_redirect: false,
            rewrite_target: None,
            use_regex: false,
            backend_protocol: BackendProtocol::Http,
            max_body: 1024 * 1024,
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// The canary annotations, in the order ingress-nginx applies them: header, cookie, weight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Canary {
    /// `canary-by-header`: `always` sends to the canary, `never` away from it.
    pub by_header: Option<String>,
    /// `canary-by-header-value`: this value (instead of `always`) sends to the canary.
    pub by_header_value: Option<String>,
    /// `canary-by-header-pattern`: a value matching this sends to the canary.
    pub by_header_pattern: Option<String>,
    /// `canary-by-cookie`: `always` sends to the canary, `never` away from it.
    pub by_cookie: Option<String>,
    /// `canary-weight`.
    pub weight: u32,
    /// `canary-weight-total` (default 100).
    pub weight_total: u32,
}

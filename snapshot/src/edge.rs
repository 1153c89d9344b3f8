//! What the edge listeners serve: the Ingresses of the classes pier controls, their settings
//! from ingress-nginx annotations, and the TLS certificates they name.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::{BackendView, HttpRouteView, ServiceKey};

/// Every served Ingress and the certificates they use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EdgeView {
    /// Served Ingresses, oldest first (an older Ingress wins a host and path both claim).
    pub ingresses: Vec<Arc<IngressView>>,
    /// Listeners of the Gateways of pier's classes, with the routes attached to each.
    pub listeners: Vec<Arc<ListenerView>>,
    /// `kubernetes.io/tls` Secrets the Ingresses and listeners name, by `namespace/name`.
    pub certificates: BTreeMap<String, Arc<CertificateView>>,
}

impl EdgeView {
    /// Whether there is nothing to serve.
    pub fn is_empty(&self) -> bool {
        self.ingresses.is_empty() && self.listeners.is_empty()
    }
}

/// What a Gateway listener does with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ListenerMode {
    /// Plain HTTP: HTTPRoutes.
    Http,
    /// TLS terminated here, then HTTP: HTTPRoutes.
    Https,
    /// TLS passed through to the backend the SNI name picks: TLSRoutes.
    Passthrough,
}

impl ListenerMode {
    /// Whether the socket speaks TLS itself (terminates it).
    pub fn terminates_tls(self) -> bool {
        self == ListenerMode::Https
    }
}

/// One HTTP, HTTPS or TLS passthrough listener of a Gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerView {
    /// `namespace/name` of the Gateway.
    pub gateway: String,
    /// The listener's name.
    pub name: String,
    /// Port.
    pub port: u16,
    /// HTTP, HTTPS or TLS passthrough.
    pub mode: ListenerMode,
    /// Lowercase host name or `*.` wildcard (any number of labels); none takes every host.
    pub hostname: Option<String>,
    /// `namespace/name` of the certificate Secrets (HTTPS).
    pub certificates: Vec<String>,
    /// Attached HTTPRoutes, oldest first (HTTP and HTTPS).
    pub routes: Vec<AttachedRoute>,
    /// Attached TLSRoutes, oldest first (passthrough).
    pub tls_routes: Vec<AttachedTlsRoute>,
}

/// A TLSRoute as attached to one passthrough listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachedTlsRoute {
    /// `namespace/name` of the route.
    pub route: String,
    /// The SNI names it takes here (empty: every name the listener takes).
    pub hosts: Vec<String>,
    /// Weighted backends (all rules').
    pub backends: Vec<BackendView>,
}

/// An HTTPRoute as attached to one listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachedRoute {
    /// The host names it is served for here (the intersection with the listener's; empty:
    /// every host the listener takes).
    pub hosts: Vec<String>,
    /// The route.
    pub route: Arc<HttpRouteView>,
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
    /// HTTP/1.1 over TLS (`HTTPS`).
    Https,
    /// HTTP/2 over TLS (`GRPCS`).
    Grpcs,
}

impl BackendProtocol {
    /// Speaks TLS to the backend.
    pub fn tls(self) -> bool {
        matches!(self, Self::Https | Self::Grpcs)
    }

    /// Speaks HTTP/2 to the backend.
    pub fn h2(self) -> bool {
        matches!(self, Self::Grpc | Self::Grpcs)
    }
}

/// ingress-nginx's `proxy-ssl-*` annotations: how TLS to an `HTTPS`/`GRPCS` backend is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxySsl {
    /// `proxy-ssl-verify: on`: check the backend's certificate against the CA.
    pub verify: bool,
    /// `proxy-ssl-name`: the name checked and sent (default `service.namespace.svc`).
    pub name: Option<String>,
    /// `proxy-ssl-server-name: on`: send the name as SNI.
    pub server_name: bool,
    /// `proxy-ssl-secret`: `namespace/name` of the Secret with `ca.crt`, and optionally
    /// `tls.crt` and `tls.key` to show the backend.
    pub secret: Option<String>,
    /// The Secret's `ca.crt` (none: the Secret has none, or is missing).
    #[serde(skip)]
    pub ca_pem: Option<Vec<u8>>,
    /// The Secret's `tls.crt` and `tls.key`, when it has both.
    #[serde(skip)]
    pub client: Option<crate::ClientCertificate>,
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
    /// `proxy-ssl-*`.
    pub proxy_ssl: ProxySsl,
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
            proxy_ssl: ProxySsl::default(),
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

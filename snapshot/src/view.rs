//! What the dataplane sees of one Service: VIP, ports with their mode, endpoints, routes.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::policy::TrafficPolicy;
use crate::route::{HttpRouteFilter, HttpRouteMatch};
use crate::Endpoints;

/// `namespace/name` of a Service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceKey {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ServiceKey {
    /// A key from parts.
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl std::fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Transport protocol of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// The protocol a Kubernetes port names (`UDP`, else TCP).
    pub fn from_name(s: &str) -> Protocol {
        if s == "UDP" {
            Protocol::Udp
        } else {
            Protocol::Tcp
        }
    }
}

/// How a service port is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PortMode {
    /// Per connection or flow: socket-LB, or the L4 proxy.
    L4,
    /// Per request: the HTTP proxy.
    L7,
}

/// Where traffic for a service port goes on an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum TargetPort {
    /// A fixed port number.
    Number(u16),
    /// A container port name, resolved per endpoint from its slice ports.
    Named(String),
}

/// One service port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortView {
    /// Port name (may be empty for a single port).
    pub name: String,
    /// Protocol.
    pub protocol: Protocol,
    /// Port on the VIP.
    pub port: u16,
    /// Port on the endpoints.
    pub target_port: TargetPort,
    /// Node port, if any.
    pub node_port: Option<u16>,
    /// Application protocol.
    pub app_protocol: Option<String>,
    /// L4 or L7.
    pub mode: PortMode,
    /// TLS toward the endpoints when the proxy sends requests (a BackendTLSPolicy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_tls: Option<Arc<UpstreamTls>>,
}

/// How the proxy speaks TLS to a port's endpoints (a BackendTLSPolicy, or an Ingress's
/// `backend-protocol: HTTPS`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamTls {
    /// What asked for it, for logs: `BackendTLSPolicy namespace/name` or `Ingress namespace/name`.
    pub source: String,
    /// The SNI name, and the name the endpoint's certificate must carry.
    pub server_name: String,
    /// Send `server_name` as SNI (ingress-nginx's `proxy-ssl-server-name`; always for a policy).
    pub sni: bool,
    /// Check the endpoint's certificate chain and name; when false (ingress-nginx's default
    /// `proxy-ssl-verify: off`) only the handshake's signature is checked.
    pub verify: bool,
    /// The CA certificates, PEM (none: the system's).
    #[serde(skip)]
    pub ca_pem: Option<Vec<u8>>,
    /// The certificate and key, PEM, pier shows the endpoint when it asks for one.
    #[serde(skip)]
    pub client: Option<ClientCertificate>,
}

/// A client certificate and its private key, PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// The certificate chain.
    pub cert_pem: Vec<u8>,
    /// The private key.
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientCertificate(..)")
    }
}

/// A port an endpoint serves (from its slice).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointPortView {
    /// Matches a service port name.
    pub name: String,
    /// Protocol.
    pub protocol: Protocol,
    /// Port number.
    pub port: u16,
}

/// One endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointView {
    /// Address (the first of the endpoint's; traffic goes here, as with kube-proxy).
    pub address: IpAddr,
    /// The endpoint's further addresses, which DNS publishes too.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other_addresses: Vec<IpAddr>,
    /// DNS hostname.
    pub hostname: Option<String>,
    /// Node name.
    pub node_name: Option<String>,
    /// Ready for new traffic.
    pub ready: bool,
    /// Able to serve.
    pub serving: bool,
    /// Shutting down.
    pub terminating: bool,
    /// Ports, shared by every endpoint of a slice.
    pub ports: Arc<[EndpointPortView]>,
}

impl EndpointView {
    /// Whether the endpoint runs on `node` (one without a node name runs on none, as kube-proxy
    /// counts it).
    pub fn on_node(&self, node: &str) -> bool {
        self.node_name.as_deref() == Some(node)
    }

    /// The endpoint's port for a service port, matched by name and protocol.
    pub fn port_for(&self, port: &PortView) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.name == port.name && p.protocol == port.protocol)
            .map(|p| p.port)
    }
}

/// A weighted backend of a route: a Service port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendView {
    /// The Service (for an unresolved backend, the name the reference gave).
    pub service: ServiceKey,
    /// Its port.
    pub port: u16,
    /// Relative weight.
    pub weight: u32,
    /// Why the reference cannot be resolved (a kind pier does not route to), if it cannot:
    /// its share of the traffic is refused (HTTP 500), as Gateway API asks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unresolved: Option<String>,
}

impl BackendView {
    /// A Service port backend.
    pub fn service(service: ServiceKey, port: u16, weight: u32) -> Self {
        Self {
            service,
            port,
            weight,
            unresolved: None,
        }
    }
}

/// Which ports of a parent Service a route attaches to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// Parent service.
    pub service: ServiceKey,
    /// Only this port number, if set.
    pub port: Option<u16>,
    /// Only the port with this name, if set.
    pub section_name: Option<String>,
}

impl Attachment {
    /// Whether this attachment covers `port` of its service.
    pub fn covers(&self, port: &PortView) -> bool {
        self.port.is_none_or(|p| p == port.port)
            && self.section_name.as_ref().is_none_or(|s| *s == port.name)
    }
}

/// One HTTPRoute rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRuleView {
    /// Any match selects the rule; empty matches everything.
    pub matches: Vec<HttpRouteMatch>,
    /// Filters applied to matching requests and their answers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<HttpRouteFilter>,
    /// Weighted backends.
    pub backends: Vec<BackendView>,
    /// Whole-request timeout.
    pub request_timeout: Option<Duration>,
    /// Per-try timeout.
    pub backend_timeout: Option<Duration>,
}

/// An HTTPRoute as the proxy uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteView {
    /// Route namespace.
    pub namespace: String,
    /// Route name.
    pub name: String,
    /// Parents it attaches to.
    pub parents: Vec<Attachment>,
    /// Host names.
    pub hostnames: Vec<String>,
    /// Rules.
    pub rules: Vec<HttpRuleView>,
}

/// A TCPRoute or UDPRoute: one weighted backend set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct L4RouteView {
    /// Route namespace.
    pub namespace: String,
    /// Route name.
    pub name: String,
    /// TCP for TCPRoute, UDP for UDPRoute.
    pub protocol: Protocol,
    /// Parents it attaches to.
    pub parents: Vec<Attachment>,
    /// Weighted backends.
    pub backends: Vec<BackendView>,
}

/// Everything the dataplane needs about one Service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceView {
    /// `namespace/name`.
    pub key: ServiceKey,
    /// Virtual IP (none for headless and ExternalName services): the primary family's.
    pub cluster_ip: Option<IpAddr>,
    /// Every virtual IP, the primary first (two for a dual-stack Service).
    pub cluster_ips: Vec<IpAddr>,
    /// `clusterIP: None`.
    pub headless: bool,
    /// Service type.
    pub service_type: String,
    /// Alias target of an ExternalName service.
    pub external_name: Option<String>,
    /// ClientIP affinity timeout, when affinity is on.
    pub affinity_timeout: Option<Duration>,
    /// Publish not-ready endpoints in DNS.
    pub publish_not_ready: bool,
    /// `internalTrafficPolicy: Local`: traffic to a VIP goes only to the node's own endpoints.
    pub internal_local: bool,
    /// `externalTrafficPolicy: Local`: traffic from outside to a NodePort goes only to the
    /// node's own endpoints.
    pub external_local: bool,
    /// Ports.
    pub ports: Vec<PortView>,
    /// Endpoints from every slice of the service, in slice-name order.
    pub endpoints: Endpoints,
    /// HTTPRoutes attached to this service.
    pub http_routes: Vec<Arc<HttpRouteView>>,
    /// TCPRoutes and UDPRoutes attached to this service.
    pub l4_routes: Vec<Arc<L4RouteView>>,
    /// Proxy settings from `pier.dev/*` annotations.
    pub policy: Arc<TrafficPolicy>,
}

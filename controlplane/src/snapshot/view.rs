//! What the dataplane sees of one Service: VIP, ports with their mode, endpoints, routes.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::model::route::{HttpRouteMatch, ParentReference};
use crate::model::traffic_policy::TrafficPolicy;
use crate::model::validate::gateway_duration;
use crate::model::{
    BackendRef, EndpointSlice, HttpRoute, IntOrString, L4Route, ObjectReference, Service,
};

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
    fn parse(s: &str) -> Protocol {
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
    /// The pod behind it.
    pub target_ref: Option<ObjectReference>,
    /// Ports, shared by every endpoint of a slice.
    pub ports: Arc<[EndpointPortView]>,
}

impl EndpointView {
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
    /// Ports.
    pub ports: Vec<PortView>,
    /// Endpoints from every slice of the service, in slice-name order.
    pub endpoints: Vec<EndpointView>,
    /// HTTPRoutes attached to this service.
    pub http_routes: Vec<Arc<HttpRouteView>>,
    /// TCPRoutes and UDPRoutes attached to this service.
    pub l4_routes: Vec<Arc<L4RouteView>>,
    /// Proxy settings from `pier.dev/*` annotations.
    pub policy: Arc<TrafficPolicy>,
}

fn attachments(route_ns: &str, refs: &[ParentReference]) -> Vec<Attachment> {
    refs.iter()
        .filter(|p| {
            p.group.as_deref().unwrap_or("").is_empty() && p.kind.as_deref() == Some("Service")
        })
        .map(|p| Attachment {
            service: ServiceKey::new(p.namespace.as_deref().unwrap_or(route_ns), &p.name),
            port: p.port.and_then(|n| u16::try_from(n).ok()),
            section_name: p.section_name.clone(),
        })
        .collect()
}

fn backends(route_ns: &str, refs: &[BackendRef]) -> Vec<BackendView> {
    refs.iter()
        .filter_map(|b| {
            let service = ServiceKey::new(b.namespace.as_deref().unwrap_or(route_ns), &b.name);
            let weight = u32::try_from(b.weight()).ok()?;
            match b.unsupported_kind() {
                Some(kind) => Some(BackendView {
                    service,
                    port: b.port.and_then(|p| u16::try_from(p).ok()).unwrap_or(0),
                    weight,
                    unresolved: Some(format!("unsupported backend kind {kind}")),
                }),
                None => Some(BackendView::service(
                    service,
                    u16::try_from(b.port?).ok()?,
                    weight,
                )),
            }
        })
        .collect()
}

/// The dataplane view of an HTTPRoute.
pub fn http_route_view(route: &HttpRoute) -> HttpRouteView {
    let ns = route.metadata.namespace();
    HttpRouteView {
        namespace: ns.to_string(),
        name: route.metadata.name.clone(),
        parents: attachments(ns, &route.spec.parent_refs),
        hostnames: route.spec.hostnames.clone(),
        rules: route
            .spec
            .rules
            .iter()
            .map(|r| {
                let timeout = |t: Option<&String>| t.and_then(|t| gateway_duration(t).ok());
                HttpRuleView {
                    matches: r.matches.clone(),
                    backends: backends(ns, &r.backend_refs),
                    request_timeout: timeout(r.timeouts.as_ref().and_then(|t| t.request.as_ref())),
                    backend_timeout: timeout(
                        r.timeouts.as_ref().and_then(|t| t.backend_request.as_ref()),
                    ),
                }
            })
            .collect(),
    }
}

/// The dataplane view of a TCPRoute/UDPRoute (its first rule).
pub fn l4_route_view(route: &L4Route) -> L4RouteView {
    let ns = route.metadata.namespace();
    L4RouteView {
        namespace: ns.to_string(),
        name: route.metadata.name.clone(),
        protocol: if route.kind == "UDPRoute" {
            Protocol::Udp
        } else {
            Protocol::Tcp
        },
        parents: attachments(ns, &route.spec.parent_refs),
        backends: route
            .spec
            .rules
            .first()
            .map(|r| backends(ns, &r.backend_refs))
            .unwrap_or_default(),
    }
}

fn endpoints_of(slice: &EndpointSlice) -> impl Iterator<Item = EndpointView> + '_ {
    let ports: Arc<[EndpointPortView]> = slice
        .ports
        .iter()
        .filter_map(|p| {
            Some(EndpointPortView {
                name: p.name.clone().unwrap_or_default(),
                protocol: Protocol::parse(p.protocol.as_deref().unwrap_or("TCP")),
                port: u16::try_from(p.port?).ok()?,
            })
        })
        .collect();
    slice.endpoints.iter().filter_map(move |ep| {
        let mut addresses = ep.addresses.iter().filter_map(|a| a.parse().ok());
        let address = addresses.next()?;
        Some(EndpointView {
            address,
            other_addresses: addresses.collect(),
            hostname: ep.hostname.clone(),
            node_name: ep.node_name.clone(),
            ready: ep.conditions.is_ready(),
            serving: ep.conditions.is_serving(),
            terminating: ep.conditions.is_terminating(),
            target_ref: ep.target_ref.clone(),
            ports: Arc::clone(&ports),
        })
    })
}

/// Builds the view of `svc` from its slices and the routes attached to it.
pub fn service_view<'a>(
    svc: &Service,
    slices: impl Iterator<Item = &'a EndpointSlice>,
    http_routes: Vec<Arc<HttpRouteView>>,
    l4_routes: Vec<Arc<L4RouteView>>,
) -> ServiceView {
    let key = ServiceKey::new(svc.metadata.namespace(), &svc.metadata.name);
    let ports = svc
        .spec
        .ports
        .iter()
        .map(|p| {
            let port = u16::try_from(p.port).unwrap_or_default();
            let mut view = PortView {
                name: p.name.clone(),
                protocol: Protocol::parse(p.protocol()),
                port,
                target_port: match &p.target_port {
                    Some(IntOrString::Int(n)) => {
                        TargetPort::Number(u16::try_from(*n).unwrap_or(port))
                    }
                    Some(IntOrString::String(s)) => TargetPort::Named(s.clone()),
                    None => TargetPort::Number(port),
                },
                node_port: p
                    .node_port
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|n| *n != 0),
                app_protocol: p.app_protocol.clone(),
                mode: PortMode::L4,
            };
            let http_app = matches!(
                view.app_protocol.as_deref(),
                Some("http" | "kubernetes.io/h2c")
            );
            let routed = view.protocol == Protocol::Tcp
                && http_routes
                    .iter()
                    .flat_map(|r| &r.parents)
                    .any(|a| a.service == key && a.covers(&view));
            if http_app || routed {
                view.mode = PortMode::L7;
            }
            view
        })
        .collect();
    let affinity_timeout = (svc.spec.session_affinity == "ClientIP").then(|| {
        let secs = svc
            .spec
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .unwrap_or(10800);
        Duration::from_secs(u64::try_from(secs).unwrap_or(10800))
    });
    ServiceView {
        cluster_ip: svc.spec.cluster_ip.parse().ok(),
        cluster_ips: if svc.spec.cluster_ips.is_empty() {
            svc.spec.cluster_ip.parse().into_iter().collect()
        } else {
            svc.spec
                .cluster_ips
                .iter()
                .filter_map(|ip| ip.parse().ok())
                .collect()
        },
        headless: svc.is_headless(),
        service_type: svc.service_type().to_string(),
        external_name: Some(svc.spec.external_name.clone()).filter(|n| !n.is_empty()),
        affinity_timeout,
        publish_not_ready: svc.spec.publish_not_ready_addresses,
        ports,
        endpoints: slices.flat_map(endpoints_of).collect(),
        http_routes,
        l4_routes,
        // Validated at apply time; an object stored before a rule existed falls back to defaults.
        policy: Arc::new(
            TrafficPolicy::from_annotations(&svc.metadata.annotations).unwrap_or_default(),
        ),
        key,
    }
}

//! Building the dataplane's views of Services and routes from stored objects.

use std::sync::Arc;
use std::time::Duration;

use pier_snapshot::{
    Attachment, BackendView, EndpointPortView, EndpointView, Endpoints, HttpRouteView,
    HttpRuleView, L4RouteView, PortMode, PortView, Protocol, ServiceKey, ServiceView, TargetPort,
};

use crate::route::ParentReference;
use crate::syntax::gateway_duration;
use crate::traffic_policy;
use crate::{BackendRef, EndpointSlice, HttpRoute, IntOrString, L4Route, Service};

fn attachments(route_ns: &str, refs: &[ParentReference]) -> Vec<Attachment> {
    refs.iter()
        .filter(|p| {
            crate::route::is_core_group(p.group.as_deref().unwrap_or(""))
                && p.kind.as_deref() == Some("Service")
        })
        .map(|p| Attachment {
            service: ServiceKey::new(p.namespace.as_deref().unwrap_or(route_ns), &p.name),
            port: p.port.and_then(|n| u16::try_from(n).ok()),
            section_name: p.section_name.clone(),
        })
        .collect()
}

/// A route's backend references as views (unsupported kinds kept, marked unresolved).
pub(super) fn backends(route_ns: &str, refs: &[BackendRef]) -> Vec<BackendView> {
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
pub(super) fn http_route_view(route: &HttpRoute) -> HttpRouteView {
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
                    filters: r.filters.clone(),
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
pub(super) fn l4_route_view(route: &L4Route) -> L4RouteView {
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

/// The endpoints a slice lists, with the ports it gives them.
pub(super) fn endpoints_of(slice: &EndpointSlice) -> impl Iterator<Item = EndpointView> + '_ {
    let ports: Arc<[EndpointPortView]> = slice
        .ports
        .iter()
        .filter_map(|p| {
            Some(EndpointPortView {
                name: p.name.clone().unwrap_or_default(),
                protocol: Protocol::from_name(p.protocol.as_deref().unwrap_or("TCP")),
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
            ports: Arc::clone(&ports),
        })
    })
}

/// Builds the view of `svc` from its endpoints and the routes attached to it.
pub(super) fn service_view(
    svc: &Service,
    endpoints: Endpoints,
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
                protocol: Protocol::from_name(p.protocol()),
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
                upstream_tls: None,
                mode: PortMode::L4,
            };
            view.mode = port_mode(&view, &key, &http_routes);
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
        internal_local: svc.internal_traffic_local(),
        external_local: svc.external_traffic_local(),
        ports,
        endpoints,
        http_routes,
        l4_routes,
        // Validated at apply time; an object stored before a rule existed falls back to defaults.
        policy: traffic_policy::parse(&svc.metadata.annotations)
            .unwrap_or_default()
            .shared(),
        key,
    }
}

/// `old` with new endpoints and routes (the Service itself unchanged): its ports' modes
/// follow the routes.
pub(super) fn refreshed(
    old: &ServiceView,
    endpoints: Endpoints,
    http_routes: Vec<Arc<HttpRouteView>>,
    l4_routes: Vec<Arc<L4RouteView>>,
) -> ServiceView {
    let ports = old
        .ports
        .iter()
        .map(|p| PortView {
            mode: port_mode(p, &old.key, &http_routes),
            ..p.clone()
        })
        .collect();
    ServiceView {
        ports,
        endpoints,
        http_routes,
        l4_routes,
        ..old.clone()
    }
}

/// L7 for a port that speaks HTTP by its appProtocol or that an HTTPRoute attaches to.
fn port_mode(port: &PortView, key: &ServiceKey, http_routes: &[Arc<HttpRouteView>]) -> PortMode {
    let http_app = matches!(
        port.app_protocol.as_deref(),
        Some("http" | "kubernetes.io/h2c")
    );
    let routed = port.protocol == Protocol::Tcp
        && http_routes
            .iter()
            .flat_map(|r| &r.parents)
            .any(|a| a.service == *key && a.covers(port));
    if http_app || routed {
        PortMode::L7
    } else {
        PortMode::L4
    }
}

//! The route pier manages for a rollout that names none: with a stable and a canary Service
//! but no `trafficRouting`, a GAMMA route attached to the stable Service's first port sends
//! the plan's weight to the canary Service, so clients of the stable Service get the exact
//! split (an HTTPRoute for an HTTP port, else a TCPRoute or UDPRoute).

use std::collections::BTreeMap;

use pier_model::meta::OwnerReference;
use pier_model::route::{HttpRouteRule, HttpRouteSpec, L4RouteRule, L4RouteSpec};
use pier_model::{
    BackendRef, HttpRoute, L4Route, Object, ObjectMeta, ParentReference, Rollout, Service,
};

use super::rollout_controller::ROLLOUT_LABEL;

/// Name of the route pier manages for rollout `name`.
pub(super) fn managed_route_name(rollout: &str) -> String {
    format!("{rollout}-managed")
}

/// Whether `ro` gets a managed route: Services named, no routing of its own.
pub(super) fn wants_managed_route(ro: &Rollout) -> bool {
    let c = ro.canary();
    c.traffic_routing.is_none() && c.stable_service.is_some() && c.canary_service.is_some()
}

/// The managed route for `ro` in front of `stable`, with `weight` percent to the canary.
pub(super) fn managed_route(
    ro: &Rollout,
    stable: &Service,
    canary: &str,
    weight: i64,
) -> Option<Object> {
    let port = stable.spec.ports.first()?;
    let backend = |name: &str, weight: i64| BackendRef {
        name: name.to_string(),
        port: Some(port.port),
        weight: Some(weight),
        ..BackendRef::default()
    };
    let backends = vec![
        backend(&stable.metadata.name, 100 - weight),
        backend(canary, weight),
    ];
    let parent = ParentReference {
        group: Some(String::new()),
        kind: Some("Service".into()),
        name: stable.metadata.name.clone(),
        port: Some(port.port),
        ..ParentReference::default()
    };
    let metadata = ObjectMeta {
        name: managed_route_name(&ro.metadata.name),
        namespace: ro.metadata.namespace().to_string(),
        labels: BTreeMap::from([(ROLLOUT_LABEL.to_string(), ro.metadata.name.clone())]),
        owner_references: vec![OwnerReference::controller(
            "argoproj.io/v1alpha1",
            "Rollout",
            &ro.metadata,
        )],
        ..ObjectMeta::default()
    };
    let http = matches!(
        port.app_protocol.as_deref(),
        Some("http" | "kubernetes.io/h2c")
    );
    if http {
        return Some(Object::HttpRoute(HttpRoute {
            api_version: "gateway.networking.k8s.io/v1".into(),
            kind: "HTTPRoute".into(),
            metadata,
            spec: HttpRouteSpec {
                parent_refs: vec![parent],
                hostnames: Vec::new(),
                rules: vec![HttpRouteRule {
                    backend_refs: backends,
                    ..HttpRouteRule::default()
                }],
            },
            status: None,
        }));
    }
    let kind = if port.protocol == "UDP" {
        "UDPRoute"
    } else {
        "TCPRoute"
    };
    let route = L4Route {
        api_version: "gateway.networking.k8s.io/v1alpha2".into(),
        kind: kind.into(),
        metadata,
        spec: L4RouteSpec {
            parent_refs: vec![parent],
            hostnames: Vec::new(),
            rules: vec![L4RouteRule {
                name: None,
                backend_refs: backends,
            }],
        },
        status: None,
    };
    Some(if kind == "UDPRoute" {
        Object::UdpRoute(route)
    } else {
        Object::TcpRoute(route)
    })
}

//! The gateway status planner: what a class, a Gateway and its listeners, and a route are told.

use pier_model::gateway::{Condition, RouteParentStatus, RouteStatus, CONTROLLER};
use pier_model::{HttpRoute, Object};
use serde_json::json;

use super::gateway_status::{RouteInfo, World};

fn parse(v: serde_json::Value) -> Object {
    Object::from_value(v).unwrap().object
}

fn world() -> World {
    let mut w = World::default();
    for (name, controller) in [("pier", CONTROLLER), ("other", "example.net/lb")] {
        let Object::GatewayClass(c) = parse(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
            "metadata": {"name": name}, "spec": {"controllerName": controller}}))
        else {
            unreachable!()
        };
        w.classes.insert(name.into(), c);
    }
    let Object::Gateway(g) = parse(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": "default", "generation": 3},
        "spec": {"gatewayClassName": "pier", "listeners": [
            {"name": "web", "port": 80, "protocol": "HTTP"},
            {"name": "tls", "port": 443, "protocol": "HTTPS",
             "tls": {"certificateRefs": [{"name": "cert"}]}},
            {"name": "raw", "port": 9000, "protocol": "TCP"}]}}))
    else {
        unreachable!()
    };
    w.gateways.insert(("default".into(), "gw".into()), g);
    w.ready_nodes.insert("n1".into(), "10.0.0.1".into());
    w
}

fn route(parents: serde_json::Value) -> HttpRoute {
    let Object::HttpRoute(r) = parse(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "r", "namespace": "default"},
        "spec": {"parentRefs": parents,
                 "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}}))
    else {
        unreachable!()
    };
    r
}

fn cond<'a>(c: &'a [Condition], kind: &str) -> &'a Condition {
    c.iter().find(|c| c.condition_type == kind).unwrap()
}

#[test]
fn classes_of_pier_are_accepted_and_others_left_alone() {
    let w = world();
    let status = w.class_status(&w.classes["pier"], "t1").unwrap();
    assert_eq!(status.conditions[0].status, "True");
    assert!(w.class_status(&w.classes["other"], "t1").is_none());
}

#[test]
fn listeners_report_references_protocols_and_attached_routes() {
    let mut w = world();
    let gw = w.gateways[&("default".to_string(), "gw".to_string())].clone();
    w.routes.insert(
        ("default".into(), "r".into()),
        route(json!([{"name": "gw"}])),
    );
    let s = w.gateway_status(&gw, "t1").unwrap();
    assert_eq!(s.addresses[0].value, "10.0.0.1");
    let [web, tls, raw] = &s.listeners[..] else {
        panic!("three listeners")
    };
    assert_eq!(
        (
            web.attached_routes,
            tls.attached_routes,
            raw.attached_routes
        ),
        (1, 1, 0)
    );
    assert_eq!(cond(&web.conditions, "Programmed").status, "True");
    let refs = cond(&tls.conditions, "ResolvedRefs");
    assert_eq!(
        (refs.status.as_str(), refs.reason.as_str()),
        ("False", "InvalidCertificateRef")
    );
    assert_eq!(
        cond(&raw.conditions, "Accepted").reason,
        "UnsupportedProtocol"
    );
    assert_eq!(cond(&s.conditions, "Accepted").reason, "ListenersNotValid");
    assert_eq!(
        cond(&s.conditions, "Programmed").observed_generation,
        Some(3)
    );

    // The certificate appears: resolved, with a new transition time; the conditions whose
    // status held keep theirs.
    w.tls_secrets.insert(("default".into(), "cert".into()));
    let mut gw = gw;
    gw.status = Some(s);
    let s = w.gateway_status(&gw, "t2").unwrap();
    let tls = &s.listeners[1];
    assert_eq!(
        cond(&tls.conditions, "ResolvedRefs").last_transition_time,
        "t2"
    );
    assert_eq!(
        cond(&s.listeners[0].conditions, "Programmed").last_transition_time,
        "t1"
    );
}

#[test]
fn route_status_keeps_other_controllers_entries() {
    let mut w = world();
    let mut r = route(json!([{"name": "gw", "sectionName": "nope"}, {"name": "elsewhere"}]));
    r.status = Some(RouteStatus {
        parents: vec![RouteParentStatus {
            parent_ref: r.spec.parent_refs[1].clone(),
            controller_name: "example.net/lb".into(),
            conditions: Vec::new(),
        }],
    });
    let s = w.route_status(&RouteInfo::http(&r), "t1").unwrap();
    assert_eq!(s.parents.len(), 2);
    assert_eq!(s.parents[0].controller_name, "example.net/lb");
    let ours = &s.parents[1].conditions;
    assert_eq!(cond(ours, "Accepted").reason, "NoMatchingParent");
    assert_eq!(cond(ours, "ResolvedRefs").reason, "BackendNotFound");
    w.services.insert(("default".into(), "web".into()));
    let s = w.route_status(&RouteInfo::http(&r), "t2").unwrap();
    assert_eq!(
        cond(&s.parents[1].conditions, "ResolvedRefs").status,
        "True"
    );
}

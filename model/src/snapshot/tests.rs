use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use serde_json::json;

use pier_snapshot::{diff, PortMode, Protocol, ServiceChange};

use super::*;
use crate::{Event, EventType};
use crate::{Kind, Object};

fn object(v: serde_json::Value) -> Object {
    Object::from_value(v).unwrap().object
}

fn service(i: u8, udp: bool, http: bool, headless: bool) -> Object {
    let mut port = json!({"name": "p", "port": 80, "targetPort": 8080, "protocol": if udp {"UDP"} else {"TCP"}});
    if http {
        port["appProtocol"] = json!("http");
    }
    object(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("s{i}")},
        "spec": {"clusterIP": if headless {"None".to_string()} else {format!("10.96.0.{}", i + 1)}, "ports": [port]}
    }))
}

fn slice(i: u8, svc: u8, endpoints: &[(u8, bool)]) -> Object {
    let eps: Vec<_> = endpoints
        .iter()
        .map(|(a, ready)| json!({"addresses": [format!("10.88.0.{a}")], "conditions": {"ready": ready}}))
        .collect();
    object(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("e{i}"), "labels": {"kubernetes.io/service-name": format!("s{svc}")}},
        "addressType": "IPv4",
        "endpoints": eps,
        "ports": [{"name": "p", "port": 8080}]
    }))
}

fn http_route(i: u8, parent: u8, a: u8, wa: u32, b: u8, wb: u32) -> Object {
    object(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": format!("r{i}")},
        "spec": {
            "parentRefs": [{"kind": "Service", "group": "", "name": format!("s{parent}"), "port": 80}],
            "rules": [{"backendRefs": [
                {"name": format!("s{a}"), "port": 80, "weight": wa},
                {"name": format!("s{b}"), "port": 80, "weight": wb}
            ]}]
        }
    }))
}

fn tcp_route(i: u8, parent: u8, a: u8) -> Object {
    object(json!({
        "apiVersion": "gateway.networking.k8s.io/v1alpha2", "kind": "TCPRoute",
        "metadata": {"name": format!("t{i}")},
        "spec": {
            "parentRefs": [{"kind": "Service", "group": "", "name": format!("s{parent}")}],
            "rules": [{"backendRefs": [{"name": format!("s{a}"), "port": 80, "weight": 9}]}]
        }
    }))
}

#[derive(Debug, Clone)]
enum Op {
    Put(Object),
    Delete(Object),
}

fn arb_object() -> impl Strategy<Value = Object> {
    prop_oneof![
        (
            0u8..4,
            any::<bool>(),
            any::<bool>(),
            prop::bool::weighted(0.2)
        )
            .prop_map(|(i, udp, http, headless)| service(i, udp, http, headless)),
        (
            0u8..6,
            0u8..4,
            prop::collection::vec((1u8..50, any::<bool>()), 0..4)
        )
            .prop_map(|(i, s, eps)| slice(i, s, &eps)),
        (0u8..3, 0u8..4, 0u8..4, 0u32..100, 0u8..4, 0u32..100)
            .prop_map(|(i, p, a, wa, b, wb)| http_route(i, p, a, wa, b, wb)),
        (0u8..2, 0u8..4, 0u8..4).prop_map(|(i, p, a)| tcp_route(i, p, a)),
    ]
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![3 => arb_object().prop_map(Op::Put), 1 => arb_object().prop_map(Op::Delete)]
}

fn id(o: &Object) -> (Kind, String) {
    (o.kind(), o.meta().name.clone())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn diffs_replay_to_from_scratch_build(ops in prop::collection::vec(arb_op(), 1..40), batch in 1usize..4) {
        let mut state: BTreeMap<(Kind, String), Object> = BTreeMap::new();
        let mut builder = SnapshotBuilder::new();
        let mut previous = builder.build();
        let mut replica = previous.services.clone();
        for (n, op) in ops.iter().enumerate() {
            let revision = n as u64 + 1;
            let event = match op {
                Op::Put(o) => {
                    let existed = state.insert(id(o), o.clone()).is_some();
                    let event_type = if existed { EventType::Modified } else { EventType::Added };
                    Event { revision, event_type, object: Arc::new(o.clone()), ends_transaction: true }
                }
                Op::Delete(o) => match state.remove(&id(o)) {
                    Some(old) => Event { revision, event_type: EventType::Deleted, object: Arc::new(old), ends_transaction: true },
                    None => continue,
                },
            };
            builder.apply(&event);
            if n % batch == 0 {
                let next = builder.build();
                diff(&previous, &next).apply_to(&mut replica);
                prop_assert_eq!(&replica, &next.services);
                previous = next;
            }
        }
        let incremental = builder.build();
        diff(&previous, &incremental).apply_to(&mut replica);
        let scratch = SnapshotBuilder::from_objects(state.values(), incremental.revision);
        prop_assert_eq!(&incremental.services, &scratch.services);
        prop_assert_eq!(&replica, &scratch.services);
    }
}

#[test]
fn modes_routes_and_endpoints() {
    let objs = [
        service(0, false, false, false),
        service(1, false, false, false),
        service(2, false, true, false),
        service(3, true, false, false),
        slice(0, 1, &[(1, true), (2, false)]),
        http_route(0, 0, 1, 90, 2, 10),
        tcp_route(0, 3, 1),
    ];
    let snap = SnapshotBuilder::from_objects(objs.iter(), 7);
    assert_eq!(snap.revision, 7);
    let s0 = snap.service("default", "s0").unwrap();
    assert_eq!(
        s0.ports[0].mode,
        PortMode::L7,
        "HTTPRoute parent port is L7"
    );
    assert_eq!(s0.http_routes[0].rules[0].backends[0].weight, 90);
    let s1 = snap.service("default", "s1").unwrap();
    assert_eq!(s1.ports[0].mode, PortMode::L4);
    let endpoints: Vec<_> = s1.endpoints.iter().collect();
    assert_eq!(endpoints.len(), 2);
    assert!(endpoints[0].ready && !endpoints[1].ready);
    assert_eq!(endpoints[0].port_for(&s1.ports[0]), Some(8080));
    assert_eq!(
        snap.service("default", "s2").unwrap().ports[0].mode,
        PortMode::L7,
        "appProtocol http"
    );
    let s3 = snap.service("default", "s3").unwrap();
    assert_eq!(s3.ports[0].protocol, Protocol::Udp);
    assert_eq!(s3.l4_routes.len(), 1);
}

#[test]
fn endpoint_change_touches_only_its_service() {
    let mut builder = SnapshotBuilder::new();
    for i in 0..4 {
        builder.upsert(&Arc::new(service(i, false, false, false)));
        builder.upsert(&Arc::new(slice(i, i, &[(i + 1, true)])));
    }
    let before = builder.build();
    builder.upsert(&Arc::new(slice(2, 2, &[(3, false)])));
    let after = builder.build();
    let d = diff(&before, &after);
    assert_eq!(d.changes.len(), 1);
    match &d.changes[0] {
        ServiceChange::Upsert(v) => assert_eq!(v.key.name, "s2"),
        other => panic!("unexpected {other:?}"),
    }
    for name in ["s0", "s1", "s3"] {
        assert!(Arc::ptr_eq(
            before.service("default", name).unwrap(),
            after.service("default", name).unwrap()
        ));
    }
}

#[test]
fn the_builder_keeps_no_object_once_built() {
    let svc = Arc::new(service(1, false, false, false));
    let sl = Arc::new(slice(1, 1, &[(1, true), (2, true)]));
    let mut b = SnapshotBuilder::new();
    b.upsert(&svc);
    b.upsert(&sl);
    let snap = b.build();
    assert_eq!(snap.services.len(), 1);
    assert_eq!(Arc::strong_count(&svc), 1, "service kept");
    assert_eq!(Arc::strong_count(&sl), 1, "slice kept");
}

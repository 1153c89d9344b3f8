use std::net::Ipv4Addr;

use pier_model::snapshot::SnapshotBuilder;
use pier_model::Object;
use serde_json::json;

use super::*;

fn snapshot(objects: &[serde_json::Value]) -> NodeSnapshot {
    let objects: Vec<Object> = objects
        .iter()
        .map(|o| Object::from_value(o.clone()).unwrap().object)
        .collect();
    SnapshotBuilder::from_objects(&objects, 1)
}

fn service(name: &str, ip: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut spec = json!({"clusterIP": ip, "ports": [{"name": "p", "port": 80}]});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec})
}

fn slice(svc: &str, eps: &[(&str, bool, bool)], port: u16) -> serde_json::Value {
    let endpoints: Vec<_> = eps
        .iter()
        .map(|(ip, ready, term)| {
            json!({"addresses": [ip], "conditions": {"ready": ready, "serving": true, "terminating": term}})
        })
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{svc}-1"), "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4", "endpoints": endpoints, "ports": [{"name": "p", "port": port}]})
}

fn entries_of(snap: &NodeSnapshot, name: &str, steer: Option<&Steer>) -> Vec<Entry> {
    let local = Local {
        steer: steer.cloned(),
        node: None,
    };
    desired(snap.service("default", name).unwrap(), snap, &local).0
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn ready_endpoints_then_draining_ones() {
    let snap = snapshot(&[
        service("web", "10.96.0.1", json!({})),
        slice(
            "web",
            &[("10.88.0.1", true, false), ("10.88.0.2", false, true)],
            8080,
        ),
    ]);
    let e = entries_of(&snap, "web", None);
    assert_eq!(e.len(), 1);
    assert_eq!(
        e[0].addr.addr,
        SocketAddr::new(Ipv4Addr::new(10, 96, 0, 1).into(), 80)
    );
    assert_eq!(e[0].backends, vec![(sa("10.88.0.1:8080"), 1000)]);
    let snap = snapshot(&[
        service("web", "10.96.0.1", json!({})),
        slice("web", &[("10.88.0.2", false, true)], 8080),
    ]);
    assert_eq!(
        entries_of(&snap, "web", None)[0].backends,
        vec![(sa("10.88.0.2:8080"), 1000)]
    );
}

#[test]
fn tcp_route_weights_spread_over_group_endpoints() {
    let snap = snapshot(&[
        service("db", "10.96.0.1", json!({})),
        service("db-v1", "10.96.0.2", json!({})),
        service("db-v2", "10.96.0.3", json!({})),
        slice(
            "db-v1",
            &[("10.88.0.1", true, false), ("10.88.0.2", true, false)],
            5432,
        ),
        slice("db-v2", &[("10.88.0.3", true, false)], 5432),
        json!({"apiVersion": "gateway.networking.k8s.io/v1alpha2", "kind": "TCPRoute",
            "metadata": {"name": "db"},
            "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "db", "port": 80}],
                "rules": [{"backendRefs": [{"name": "db-v1", "port": 80, "weight": 90},
                                           {"name": "db-v2", "port": 80, "weight": 10}]}]}}),
    ]);
    let (e, uses) = desired(
        snap.service("default", "db").unwrap(),
        &snap,
        &Local::default(),
    );
    assert_eq!(
        e[0].backends,
        vec![
            (sa("10.88.0.1:5432"), 45_000),
            (sa("10.88.0.2:5432"), 45_000),
            (sa("10.88.0.3:5432"), 10_000)
        ]
    );
    assert_eq!(uses.len(), 2);
}

#[test]
fn l7_ports_are_steered_only_when_the_proxy_is_elsewhere() {
    let snap = snapshot(&[
        service(
            "web",
            "10.96.0.1",
            json!({"ports": [{"name": "p", "port": 80, "appProtocol": "http"}]}),
        ),
        slice("web", &[("10.88.0.1", true, false)], 8080),
    ]);
    assert!(entries_of(&snap, "web", None).is_empty());
    let steer: Steer = Arc::new(|_, port| Some(SocketAddr::from(([127, 96, 0, 1], port + 10000))));
    let e = entries_of(&snap, "web", Some(&steer));
    assert_eq!(e[0].backends, vec![(sa("127.96.0.1:10080"), 1)]);
}

#[test]
fn client_ip_affinity_carries_its_timeout() {
    let snap = snapshot(&[
        service(
            "s",
            "10.96.0.1",
            json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}),
        ),
        slice("s", &[("10.88.0.1", true, false)], 80),
    ]);
    assert_eq!(entries_of(&snap, "s", None)[0].affinity, 60);
}

#[test]
fn headless_and_external_names_get_nothing() {
    let snap = snapshot(&[service("h", "None", json!({}))]);
    assert!(entries_of(&snap, "h", None).is_empty());
}

#[test]
fn node_ports_get_a_wildcard_entry() {
    let snap = snapshot(&[
        service(
            "np",
            "10.96.0.1",
            json!({"type": "NodePort", "ports": [{"name": "p", "port": 80, "nodePort": 30080}]}),
        ),
        slice("np", &[("10.88.0.1", true, false)], 8080),
    ]);
    let e = entries_of(&snap, "np", None);
    let addrs: Vec<SocketAddr> = e.iter().map(|e| e.addr.addr).collect();
    assert_eq!(addrs, vec![sa("0.0.0.0:30080"), sa("10.96.0.1:80")]);
    assert_eq!(e[0].backends, e[1].backends);
}

#[test]
fn internal_traffic_policy_local_keeps_the_vip_on_the_nodes_own_endpoints() {
    let mut eps = slice(
        "np",
        &[
            ("10.88.1.1", true, false),
            ("10.88.2.1", true, false),
            ("10.88.2.2", false, true),
        ],
        8080,
    );
    for (i, node) in ["n1", "n2", "n2"].iter().enumerate() {
        eps["endpoints"][i]["nodeName"] = json!(node);
    }
    let snap = snapshot(&[
        service(
            "np",
            "10.96.0.1",
            json!({"type": "NodePort", "internalTrafficPolicy": "Local",
                   "externalTrafficPolicy": "Local",
                   "ports": [{"name": "p", "port": 80, "nodePort": 30080}]}),
        ),
        eps,
    ]);
    let on = |node: &str| {
        let local = Local {
            steer: None,
            node: Some(node.into()),
        };
        desired(snap.service("default", "np").unwrap(), &snap, &local).0
    };
    let e = on("n1");
    assert_eq!(e[1].addr.addr, sa("10.96.0.1:80"));
    assert_eq!(e[1].backends, vec![(sa("10.88.1.1:8080"), 1000)]);
    // The NodePort is dialled from this node: every endpoint, as kube-proxy does.
    assert_eq!(e[0].addr.addr, sa("0.0.0.0:30080"));
    assert_eq!(
        e[0].backends,
        vec![(sa("10.88.1.1:8080"), 500), (sa("10.88.2.1:8080"), 500)]
    );
    assert_eq!(on("n2")[1].backends, vec![(sa("10.88.2.1:8080"), 1000)]);
    // A node with no endpoint of its own has nothing to send the VIP's connections to.
    assert!(on("n3")[1].backends.is_empty());
}

#[test]
fn ipv6_services_get_ipv6_backends_and_an_ipv6_node_port() {
    let mut v6_slice = slice("web6", &[("fd00:88::1", true, false)], 8080);
    v6_slice["addressType"] = json!("IPv6");
    let mut v4_slice = slice("web6", &[("10.88.0.9", true, false)], 8080);
    v4_slice["metadata"]["name"] = json!("web6-v4");
    let snap = snapshot(&[
        service(
            "web6",
            "fd00:96::1",
            json!({"type": "NodePort", "ports": [{"name": "p", "port": 80, "nodePort": 30081}]}),
        ),
        v6_slice,
        v4_slice,
    ]);
    let e = entries_of(&snap, "web6", None);
    let addrs: Vec<SocketAddr> = e.iter().map(|e| e.addr.addr).collect();
    assert_eq!(addrs, vec![sa("[::]:30081"), sa("[fd00:96::1]:80")]);
    // Only the VIP's family: the IPv4 endpoint cannot serve an IPv6 VIP.
    assert_eq!(e[1].backends, vec![(sa("[fd00:88::1]:8080"), 1000)]);
}

#[test]
fn dual_stack_services_get_an_entry_per_family() {
    let mut v6_slice = slice("web", &[("fd00:88::1", true, false)], 8080);
    v6_slice["addressType"] = json!("IPv6");
    v6_slice["metadata"]["name"] = json!("web-v6");
    let v4_slice = slice("web", &[("10.88.0.9", true, false)], 8080);
    let snap = snapshot(&[
        service(
            "web",
            "10.96.0.7",
            json!({"clusterIPs": ["10.96.0.7", "fd00:96::7"], "ipFamilies": ["IPv4", "IPv6"],
                   "ipFamilyPolicy": "PreferDualStack", "ports": [{"name": "p", "port": 80}]}),
        ),
        v6_slice,
        v4_slice,
    ]);
    let e = entries_of(&snap, "web", None);
    let got: Vec<(SocketAddr, Vec<(SocketAddr, u32)>)> = e
        .iter()
        .map(|e| (e.addr.addr, e.backends.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (sa("10.96.0.7:80"), vec![(sa("10.88.0.9:8080"), 1000)]),
            (sa("[fd00:96::7]:80"), vec![(sa("[fd00:88::1]:8080"), 1000)]),
        ]
    );
}

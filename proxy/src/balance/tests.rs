use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use pier_snapshot::{EndpointView, PortMode, Protocol};

use super::*;

pub(crate) fn service(
    name: &str,
    policy: TrafficPolicy,
    endpoints: &[(&str, bool, bool)],
) -> ServiceView {
    ServiceView {
        key: ServiceKey::new("default", name),
        cluster_ip: Some("10.96.0.10".parse().unwrap()),
        cluster_ips: vec!["10.96.0.10".parse().unwrap()],
        headless: false,
        service_type: "ClusterIP".into(),
        external_name: None,
        affinity_timeout: None,
        publish_not_ready: false,
        internal_local: false,
        external_local: false,
        ports: vec![PortView {
            name: String::new(),
            protocol: Protocol::Tcp,
            port: 80,
            target_port: TargetPort::Number(8080),
            node_port: None,
            app_protocol: None,
            mode: PortMode::L4,
            upstream_tls: None,
        }],
        endpoints: endpoints
            .iter()
            .map(|(ip, ready, terminating)| EndpointView {
                other_addresses: Vec::new(),
                address: ip.parse::<IpAddr>().unwrap(),
                hostname: None,
                node_name: None,
                ready: *ready,
                serving: true,
                terminating: *terminating,
                ports: Arc::from(Vec::new()),
            })
            .collect(),
        http_routes: Vec::new(),
        l4_routes: Vec::new(),
        policy: Arc::new(policy),
    }
}

fn cluster(svc: &ServiceView) -> Cluster {
    cluster_on(svc, None)
}

fn cluster_on(svc: &ServiceView, node: Option<&str>) -> Cluster {
    let metrics = Arc::new(ProxyMetrics::register(&prometheus::Registry::new()).unwrap());
    let c = Cluster::new(
        ClusterKey {
            frontend: svc.key.clone(),
            backend: svc.key.clone(),
            port: 80,
            node: node.map(Arc::from),
        },
        false,
        &metrics,
    );
    c.update(Some(&Arc::new(svc.clone())));
    c
}

fn counts(c: &Cluster, n: usize) -> HashMap<SocketAddr, usize> {
    let mut out = HashMap::new();
    for i in 0..n {
        let m = c.pick(i as u64, &[]).unwrap();
        *out.entry(m.addr).or_default() += 1;
    }
    out
}

#[test]
fn round_robin_over_ready_only() {
    let svc = service(
        "a",
        TrafficPolicy::default(),
        &[
            ("10.0.0.1", true, false),
            ("10.0.0.2", true, false),
            ("10.0.0.3", false, false),
        ],
    );
    let c = cluster(&svc);
    let got = counts(&c, 100);
    assert_eq!(got.len(), 2);
    assert!(got.values().all(|n| *n == 50), "{got:?}");
}

#[test]
fn a_node_local_group_balances_over_that_nodes_endpoints_only() {
    let mut svc = service(
        "a",
        TrafficPolicy::default(),
        &[
            ("10.0.0.1", true, false),
            ("10.0.0.2", true, false),
            ("10.0.0.3", true, false),
            ("10.0.0.4", false, true),
        ],
    );
    svc.endpoints = svc
        .endpoints
        .iter()
        .zip(["n1", "n2", "n1", "n2"])
        .map(|(ep, node)| EndpointView {
            node_name: Some(node.into()),
            ..ep.clone()
        })
        .collect();
    let local = cluster_on(&svc, Some("n1"));
    let got = counts(&local, 10);
    let want: HashMap<SocketAddr, usize> = HashMap::from([
        ("10.0.0.1:8080".parse().unwrap(), 5),
        ("10.0.0.3:8080".parse().unwrap(), 5),
    ]);
    assert_eq!(got, want);
    // Only a terminating endpoint on n2: it drains there, and n1's ready ones are not used.
    let on_n2 = cluster_on(&svc, Some("n2"));
    assert_eq!(
        counts(&on_n2, 4).keys().collect::<Vec<_>>(),
        vec![&"10.0.0.2:8080".parse().unwrap()]
    );
    // No endpoint on the node: nothing to pick, however many the cluster has.
    let elsewhere = cluster_on(&svc, Some("n3"));
    assert_eq!(elsewhere.pick(0, &[]).err(), Some(NoEndpoint::Empty));
    assert_eq!(cluster(&svc).members().pool.len(), 3);
}

#[test]
fn draining_endpoints_only_when_nothing_is_ready() {
    let svc = service(
        "a",
        TrafficPolicy::default(),
        &[("10.0.0.1", false, true), ("10.0.0.2", true, false)],
    );
    let c = cluster(&svc);
    assert_eq!(
        counts(&c, 10).keys().collect::<Vec<_>>(),
        vec![&"10.0.0.2:8080".parse().unwrap()]
    );
    let svc = service("a", TrafficPolicy::default(), &[("10.0.0.1", false, true)]);
    c.update(Some(&Arc::new(svc.clone())));
    assert_eq!(
        c.pick(0, &[]).unwrap().addr,
        "10.0.0.1:8080".parse().unwrap()
    );
    let svc = service("a", TrafficPolicy::default(), &[("10.0.0.1", false, false)]);
    c.update(Some(&Arc::new(svc.clone())));
    assert_eq!(c.pick(0, &[]).err(), Some(NoEndpoint::Empty));
}

#[test]
fn ejection_after_consecutive_failures_and_state_survives_updates() {
    let svc = service(
        "a",
        TrafficPolicy::default(),
        &[("10.0.0.1", true, false), ("10.0.0.2", true, false)],
    );
    let c = cluster(&svc);
    let bad = c
        .members()
        .list
        .iter()
        .find(|m| m.addr.ip().to_string() == "10.0.0.1")
        .cloned()
        .unwrap();
    for _ in 0..5 {
        c.failure(&bad);
    }
    c.update(Some(&Arc::new(svc.clone())));
    let got = counts(&c, 20);
    assert_eq!(got.len(), 1, "{got:?}");
    // The other endpoint may not be ejected too: 50% at most.
    let good = c.pick(0, &[]).unwrap();
    for _ in 0..5 {
        c.failure(&good);
    }
    assert_eq!(counts(&c, 20).len(), 1);
}

#[test]
fn tried_endpoints_are_skipped() {
    let svc = service(
        "a",
        TrafficPolicy::default(),
        &[("10.0.0.1", true, false), ("10.0.0.2", true, false)],
    );
    let c = cluster(&svc);
    let first = c.pick(0, &[]).unwrap();
    let second = c.pick(0, &[first.addr]).unwrap();
    assert_ne!(first.addr, second.addr);
    assert_eq!(
        c.pick(0, &[first.addr, second.addr]).err(),
        Some(NoEndpoint::Exhausted)
    );
}

#[test]
fn maglev_is_sticky_per_hash() {
    let policy = TrafficPolicy {
        load_balancer: Some(LoadBalancer::Maglev),
        ..TrafficPolicy::default()
    };
    let eps: Vec<(String, bool, bool)> = (1..=5)
        .map(|i| (format!("10.0.0.{i}"), true, false))
        .collect();
    let eps: Vec<(&str, bool, bool)> = eps.iter().map(|(a, r, t)| (a.as_str(), *r, *t)).collect();
    let c = cluster(&service("a", policy, &eps));
    let mut seen = BTreeMap::new();
    for h in 0..200u64 {
        let hash = maglev::fnv1a(&h.to_le_bytes());
        let a = c.pick(hash, &[]).unwrap().addr;
        assert_eq!(c.pick(hash, &[]).unwrap().addr, a);
        *seen.entry(a).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 5);
}

#[test]
fn a_group_builds_its_endpoints_when_traffic_first_needs_them_then_on_every_update() {
    let one = service("a", TrafficPolicy::default(), &[("10.0.0.1", true, false)]);
    let two = service(
        "a",
        TrafficPolicy::default(),
        &[("10.0.0.1", true, false), ("10.0.0.2", true, false)],
    );
    let c = cluster(&one);
    assert!(
        c.members.load().list.is_empty(),
        "nothing built before traffic"
    );
    c.update(Some(&Arc::new(two.clone())));
    assert_eq!(
        counts(&c, 10).len(),
        2,
        "the latest view is built on first use"
    );
    c.update(Some(&Arc::new(one.clone())));
    assert_eq!(
        c.members.load().list.len(),
        1,
        "a used group builds at once, so removed endpoints' metrics go with the update"
    );
    c.update(None);
    assert_eq!(c.pick(0, &[]).err(), Some(NoEndpoint::Empty));
}

#[test]
fn a_health_checked_group_is_built_at_once() {
    let policy = TrafficPolicy {
        health_check: Some(pier_snapshot::policy::HealthCheck {
            probe: pier_snapshot::policy::HealthProbe::Tcp,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            healthy_threshold: 1,
            unhealthy_threshold: 1,
        }),
        ..TrafficPolicy::default()
    };
    let c = cluster(&service("a", policy, &[("10.0.0.1", true, false)]));
    assert_eq!(c.members.load().list.len(), 1);
    assert!(c.wants_health_checks());
}

use std::sync::Arc;

use hickory_proto::rr::{RData, RecordType};
use pier_model::snapshot::SnapshotBuilder;
use pier_model::Object;
use pier_snapshot::{diff, NodeSnapshot};
use serde_json::json;

use super::*;

fn object(v: serde_json::Value) -> Arc<Object> {
    Arc::new(Object::from_value(v).unwrap().object)
}

fn snapshot(objects: &[Arc<Object>]) -> NodeSnapshot {
    SnapshotBuilder::from_objects(objects.iter().map(Arc::as_ref), 7)
}

fn fixture() -> Vec<Arc<Object>> {
    vec![
        object(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "prod"},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80}, {"port": 9, "name": "discard", "protocol": "UDP"}]}}),
        ),
        object(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"},
            "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}}),
        ),
        object(
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "db-1", "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.88.0.5"], "hostname": "db-0", "conditions": {"ready": true}},
                {"addresses": ["10.88.0.6"], "conditions": {"ready": true}},
                {"addresses": ["10.88.0.7"], "conditions": {"ready": false}}
            ],
            "ports": [{"name": "pg", "port": 5433}]}),
        ),
        object(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext"},
            "spec": {"type": "ExternalName", "externalName": "example.com"}}),
        ),
        object(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "empty"},
            "spec": {"clusterIP": "None"}}),
        ),
    ]
}

fn zone() -> Zone {
    let snap = snapshot(&fixture());
    Zone::new(ZoneConfig::default())
        .unwrap()
        .apply(&diff(&NodeSnapshot::default(), &snap))
}

fn rdata(answer: Answer) -> Vec<String> {
    match answer {
        Answer::Records(r) => {
            let mut v: Vec<String> = r.iter().map(|r| r.data.to_string()).collect();
            v.sort();
            v
        }
        other => panic!("expected records, got {other:?}"),
    }
}

#[test]
fn cluster_ip_service_records() {
    let z = zone();
    assert_eq!(
        rdata(z.lookup("web.prod.svc.cluster.local.", RecordType::A)),
        ["10.96.0.10"]
    );
    assert_eq!(
        rdata(z.lookup("_http._tcp.web.prod.svc.cluster.local.", RecordType::SRV)),
        ["0 100 80 web.prod.svc.cluster.local."]
    );
    assert_eq!(
        rdata(z.lookup("_discard._udp.web.prod.svc.cluster.local.", RecordType::SRV)),
        ["0 100 9 web.prod.svc.cluster.local."]
    );
    assert_eq!(
        rdata(z.lookup("10.0.96.10.in-addr.arpa.", RecordType::PTR)),
        ["web.prod.svc.cluster.local."]
    );
    assert_eq!(
        z.lookup("web.prod.svc.cluster.local.", RecordType::AAAA),
        Answer::NoData
    );
    assert_eq!(
        z.lookup("_tcp.web.prod.svc.cluster.local.", RecordType::A),
        Answer::NoData,
        "empty non-terminal"
    );
    assert_eq!(
        z.lookup("prod.svc.cluster.local.", RecordType::A),
        Answer::NoData
    );
    assert_eq!(
        z.lookup("nope.prod.svc.cluster.local.", RecordType::A),
        Answer::NxDomain
    );
    assert_eq!(
        z.lookup("example.org.", RecordType::A),
        Answer::NotAuthoritative
    );
    assert_eq!(
        z.lookup("9.9.9.9.in-addr.arpa.", RecordType::PTR),
        Answer::NotAuthoritative
    );
}

#[test]
fn headless_service_records() {
    let z = zone();
    assert_eq!(
        rdata(z.lookup("db.default.svc.cluster.local.", RecordType::A)),
        ["10.88.0.5", "10.88.0.6"],
        "ready endpoints only"
    );
    assert_eq!(
        rdata(z.lookup("db-0.db.default.svc.cluster.local.", RecordType::A)),
        ["10.88.0.5"]
    );
    assert_eq!(
        rdata(z.lookup("10-88-0-6.db.default.svc.cluster.local.", RecordType::A)),
        ["10.88.0.6"]
    );
    assert_eq!(
        rdata(z.lookup("_pg._tcp.db.default.svc.cluster.local.", RecordType::SRV)),
        [
            "0 50 5433 10-88-0-6.db.default.svc.cluster.local.",
            "0 50 5433 db-0.db.default.svc.cluster.local."
        ]
    );
    assert_eq!(
        rdata(z.lookup("5.0.88.10.in-addr.arpa.", RecordType::PTR)),
        ["db-0.db.default.svc.cluster.local."]
    );
    // The specification: a headless service with no ready endpoint is NXDOMAIN.
    assert_eq!(
        z.lookup("empty.default.svc.cluster.local.", RecordType::A),
        Answer::NxDomain
    );
}

#[test]
fn headless_records_for_every_address_without_duplicates() {
    let objects = vec![
        object(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"},
            "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}}),
        ),
        // db-0 is in an IPv4 and an IPv6 slice; db-1 has two addresses; two endpoints share
        // the hostname db-2.
        object(
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "db-v4", "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.88.0.5"], "hostname": "db-0"},
                {"addresses": ["10.88.0.6", "10.88.1.6"], "hostname": "db-1"},
                {"addresses": ["10.88.0.7"], "hostname": "db-2"},
                {"addresses": ["10.88.0.8"], "hostname": "db-2"}
            ],
            "ports": [{"name": "pg", "port": 5432}]}),
        ),
        object(
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "db-v6", "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv6",
            "endpoints": [{"addresses": ["fd00::5"], "hostname": "db-0"}],
            "ports": [{"name": "pg", "port": 5432}]}),
        ),
    ];
    let z = Zone::new(ZoneConfig::default())
        .unwrap()
        .apply(&diff(&NodeSnapshot::default(), &snapshot(&objects)));
    let mut a = rdata(z.lookup("db.default.svc.cluster.local.", RecordType::A));
    a.sort();
    assert_eq!(
        a,
        [
            "10.88.0.5",
            "10.88.0.6",
            "10.88.0.7",
            "10.88.0.8",
            "10.88.1.6"
        ]
    );
    assert_eq!(
        rdata(z.lookup("db.default.svc.cluster.local.", RecordType::AAAA)),
        ["fd00::5"]
    );
    assert_eq!(
        rdata(z.lookup("db-1.db.default.svc.cluster.local.", RecordType::A)),
        ["10.88.0.6", "10.88.1.6"],
        "one record per address"
    );
    assert_eq!(
        rdata(z.lookup("6.1.88.10.in-addr.arpa.", RecordType::PTR)),
        ["db-1.db.default.svc.cluster.local."]
    );
    assert_eq!(
        rdata(z.lookup("_pg._tcp.db.default.svc.cluster.local.", RecordType::SRV)),
        [
            "0 33 5432 db-0.db.default.svc.cluster.local.",
            "0 33 5432 db-1.db.default.svc.cluster.local.",
            "0 33 5432 db-2.db.default.svc.cluster.local."
        ],
        "one SRV per hostname, weights over distinct targets"
    );
}

#[test]
fn a_service_dns_cannot_carry_is_skipped_and_others_still_update() {
    let long = "a".repeat(63);
    let domain = format!("{long}.{long}.{long}.example");
    let config = ZoneConfig {
        domain,
        ..ZoneConfig::default()
    };
    let mut objects = fixture();
    // 63 + "default.svc." + a 190-byte domain: over DNS's 255 bytes.
    objects.push(object(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": long},
        "spec": {"clusterIP": "10.96.0.99", "ports": [{"port": 80}]}}),
    ));
    let snap = snapshot(&objects);
    let z = Zone::new(config)
        .unwrap()
        .apply(&diff(&NodeSnapshot::default(), &snap));
    let bad = ServiceKey::new("default", &long);
    assert!(z
        .skipped(&bad)
        .is_some_and(|why| why.contains("not a valid DNS name")));
    assert_eq!(z.skipped_count(), 1);
    let web = format!("web.prod.svc.{}.", z.origin().trim_end_matches('.'));
    assert_eq!(rdata(z.lookup(&web, RecordType::A)), ["10.96.0.10"]);
    // A later change to another service still lands, and removing the bad one clears it.
    let mut next = objects.clone();
    next.pop();
    next[0] = object(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "prod"},
        "spec": {"clusterIP": "10.96.0.11", "ports": [{"name": "http", "port": 80}]}}),
    );
    let z = z.apply(&diff(&snap, &snapshot(&next)));
    assert_eq!(rdata(z.lookup(&web, RecordType::A)), ["10.96.0.11"]);
    assert_eq!(z.skipped_count(), 0);
}

#[test]
fn external_name_pod_and_version_records() {
    let z = zone();
    assert_eq!(
        rdata(z.lookup("ext.default.svc.cluster.local.", RecordType::A)),
        ["example.com."]
    );
    assert_eq!(
        rdata(z.lookup("10-88-0-9.default.pod.cluster.local.", RecordType::A)),
        ["10.88.0.9"]
    );
    assert_eq!(
        z.lookup("10-88-0-9.default.pod.cluster.local.", RecordType::AAAA),
        Answer::NoData
    );
    assert_eq!(
        rdata(z.lookup("fd00--1.default.pod.cluster.local.", RecordType::AAAA)),
        ["fd00::1"]
    );
    assert_eq!(
        z.lookup("not-an-ip.default.pod.cluster.local.", RecordType::A),
        Answer::NxDomain
    );
    assert_eq!(
        rdata(z.lookup("dns-version.cluster.local.", RecordType::TXT)),
        ["1.1.0"]
    );
    match z.lookup("cluster.local.", RecordType::SOA) {
        Answer::Records(r) => match &r[0].data {
            RData::SOA(soa) => assert_eq!(soa.serial, 7),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn diffs_add_and_remove_exactly() {
    let objs = fixture();
    let empty = Zone::new(ZoneConfig::default()).unwrap();
    let full_snap = snapshot(&objs);
    let full = empty.apply(&diff(&NodeSnapshot::default(), &full_snap));
    // Removing everything again yields the empty zone's answers.
    let none = full.apply(&diff(&full_snap, &NodeSnapshot::default()));
    assert!(none.services.is_empty() && none.namespaces.is_empty() && none.reverse.is_empty());
    assert_eq!(
        none.lookup("prod.svc.cluster.local.", RecordType::A),
        Answer::NxDomain
    );
    assert_eq!(
        none.lookup("10.0.96.10.in-addr.arpa.", RecordType::PTR),
        Answer::NotAuthoritative
    );
    // Scaling the headless service down to one endpoint updates its records and nothing else.
    let mut fewer = objs.clone();
    fewer[2] = object(
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "db-1", "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4", "endpoints": [{"addresses": ["10.88.0.6"]}], "ports": [{"name": "pg", "port": 5433}]}),
    );
    let fewer_snap = snapshot(&fewer);
    let d = diff(&full_snap, &fewer_snap);
    assert_eq!(d.changes.len(), 1);
    let z = full.apply(&d);
    assert_eq!(
        rdata(z.lookup("db.default.svc.cluster.local.", RecordType::A)),
        ["10.88.0.6"]
    );
    assert_eq!(
        z.lookup("db-0.db.default.svc.cluster.local.", RecordType::A),
        Answer::NxDomain
    );
    assert_eq!(
        rdata(z.lookup("web.prod.svc.cluster.local.", RecordType::A)),
        ["10.96.0.10"]
    );
}

#[test]
fn custom_domain() {
    let z = Zone::new(ZoneConfig {
        domain: "Corp.Internal.".into(),
        ..ZoneConfig::default()
    })
    .unwrap()
    .apply(&diff(&NodeSnapshot::default(), &snapshot(&fixture())));
    assert_eq!(z.origin(), "corp.internal.");
    assert_eq!(
        rdata(z.lookup("web.prod.svc.corp.internal.", RecordType::A)),
        ["10.96.0.10"]
    );
    assert_eq!(
        z.lookup("web.prod.svc.cluster.local.", RecordType::A),
        Answer::NotAuthoritative
    );
}

#[test]
fn names_between_and_beside_a_services_records() {
    let z = zone();
    for (qname, qtype, want) in [
        ("svc.cluster.local.", RecordType::A, Answer::NoData),
        ("pod.cluster.local.", RecordType::A, Answer::NoData),
        ("cluster.local.", RecordType::A, Answer::NoData),
        ("default.svc.cluster.local.", RecordType::A, Answer::NoData),
        (
            "nowhere.svc.cluster.local.",
            RecordType::A,
            Answer::NxDomain,
        ),
        (
            "_udp.web.prod.svc.cluster.local.",
            RecordType::SRV,
            Answer::NoData,
        ),
        (
            "_sctp.web.prod.svc.cluster.local.",
            RecordType::SRV,
            Answer::NxDomain,
        ),
        (
            "_http._udp.web.prod.svc.cluster.local.",
            RecordType::SRV,
            Answer::NxDomain,
        ),
        (
            "x._http._tcp.web.prod.svc.cluster.local.",
            RecordType::SRV,
            Answer::NxDomain,
        ),
        (
            "db-0.web.prod.svc.cluster.local.",
            RecordType::A,
            Answer::NxDomain,
        ),
        (
            "10-88-0-7.db.default.svc.cluster.local.",
            RecordType::A,
            Answer::NxDomain,
        ),
        (
            "db-0.db.default.svc.cluster.local.",
            RecordType::AAAA,
            Answer::NoData,
        ),
        (
            "_tcp.db.default.svc.cluster.local.",
            RecordType::A,
            Answer::NoData,
        ),
        (
            "x.ext.default.svc.cluster.local.",
            RecordType::A,
            Answer::NxDomain,
        ),
        ("dns.cluster.local.", RecordType::A, Answer::NxDomain),
        (
            "7.0.88.10.in-addr.arpa.",
            RecordType::PTR,
            Answer::NotAuthoritative,
        ),
        (
            "010.0.96.10.in-addr.arpa.",
            RecordType::PTR,
            Answer::NotAuthoritative,
        ),
    ] {
        assert_eq!(z.lookup(qname, qtype), want, "{qname} {qtype}");
    }
    assert_eq!(
        rdata(z.lookup("web.prod.svc.cluster.local.", RecordType::ANY)),
        ["10.96.0.10"]
    );
    assert_eq!(
        rdata(z.lookup("ext.default.svc.cluster.local.", RecordType::SRV)),
        ["example.com."],
        "a CNAME answers any type"
    );
    assert_eq!(
        rdata(z.lookup("cluster.local.", RecordType::NS)),
        ["ns.dns.cluster.local."]
    );
}

#[test]
fn a_nameserver_address_is_a_name_and_its_parent_an_empty_non_terminal() {
    let z = Zone::new(ZoneConfig {
        nameserver_addresses: vec!["10.96.0.53".parse().unwrap()],
        ..ZoneConfig::default()
    })
    .unwrap();
    assert_eq!(
        rdata(z.lookup("ns.dns.cluster.local.", RecordType::A)),
        ["10.96.0.53"]
    );
    assert_eq!(
        z.lookup("dns.cluster.local.", RecordType::A),
        Answer::NoData
    );
}

#[test]
fn two_services_on_one_address_both_answer_its_ptr_until_one_leaves() {
    let web = |name: &str| {
        object(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"clusterIP": "10.96.0.20", "ports": [{"port": 80}]}}),
        )
    };
    let both = snapshot(&[web("a"), web("b")]);
    let one = snapshot(&[web("b")]);
    let empty = Zone::new(ZoneConfig::default()).unwrap();
    let z = empty.apply(&diff(&NodeSnapshot::default(), &both));
    assert_eq!(
        rdata(z.lookup("20.0.96.10.in-addr.arpa.", RecordType::PTR)),
        [
            "a.default.svc.cluster.local.",
            "b.default.svc.cluster.local."
        ]
    );
    let z = z.apply(&diff(&both, &one));
    assert_eq!(
        rdata(z.lookup("20.0.96.10.in-addr.arpa.", RecordType::PTR)),
        ["b.default.svc.cluster.local."]
    );
    assert_eq!(
        z.lookup("a.default.svc.cluster.local.", RecordType::A),
        Answer::NxDomain
    );
}

proptest::proptest! {
    #[test]
    fn reverse_names_parse_back_to_their_address(v4: [u8; 4], v6: [u8; 16], junk in "[0-9a-f.]{0,40}") {
        for ip in [IpAddr::from(v4), IpAddr::from(v6)] {
            proptest::prop_assert_eq!(records::reverse_address(&reverse_name(ip)), Some(ip));
        }
        for suffix in ["in-addr.arpa.", "ip6.arpa."] {
            let qname = format!("{junk}.{suffix}");
            if let Some(ip) = records::reverse_address(&qname) {
                proptest::prop_assert_eq!(reverse_name(ip), qname);
            }
        }
    }
}

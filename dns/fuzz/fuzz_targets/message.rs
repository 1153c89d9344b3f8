//! Fuzzes the request path: any bytes, over UDP and TCP, against a zone with real records.
#![no_main]

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use pier_model::Object;
use pier_model::snapshot::SnapshotBuilder;
use pier_snapshot::{diff, NodeSnapshot};
use pier_dns::cache::{Cache, CacheConfig};
use pier_dns::forward::Forwarder;
use pier_dns::metrics::DnsMetrics;
use pier_dns::resolver::{Proto, Step};
use pier_dns::zone::{Zone, ZoneConfig};
use pier_dns::Resolver;

static RESOLVER: LazyLock<Resolver> = LazyLock::new(|| {
    let mut b = SnapshotBuilder::new();
    for v in [
        serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80}]}}),
        serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"},
            "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}}),
        serde_json::json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "db-1", "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4", "endpoints": [{"addresses": ["10.88.0.5"], "hostname": "db-0"}],
            "ports": [{"name": "pg", "port": 5432}]}),
    ] {
        if let Ok(parsed) = Object::from_value(v) {
            b.upsert(&Arc::new(parsed.object));
        }
    }
    let snapshot = b.build();
    let zone = Zone::new(ZoneConfig::default())
        .map(|z| z.apply(&diff(&NodeSnapshot::default(), &snapshot)))
        .unwrap_or_else(|e| panic!("fuzz zone: {e}"));
    let registry = prometheus::Registry::new();
    let metrics = DnsMetrics::register(&registry).unwrap_or_else(|e| panic!("metrics: {e}"));
    Resolver::new(
        zone,
        Cache::new(CacheConfig::default()),
        Forwarder::new(Vec::new(), &[], Duration::from_millis(1)),
        vec!["127.0.0.0/8".parse().unwrap_or_else(|e| panic!("{e}"))],
        metrics,
    )
});

fuzz_target!(|data: &[u8]| {
    for proto in [Proto::Udp, Proto::Tcp] {
        match RESOLVER.prepare(data, "127.0.0.1".parse().unwrap_or_else(|e| panic!("{e}")), proto) {
            Step::Reply(bytes) => {
                // Whatever we send must itself be a well-formed message.
                assert!(hickory_ok(&bytes), "unparseable reply to {data:?}");
                if proto == Proto::Udp {
                    assert!(bytes.len() <= 4096);
                }
            }
            Step::Forward(_) | Step::Drop => {}
        }
        let _ = RESOLVER.slip(data);
    }
});

fn hickory_ok(bytes: &[u8]) -> bool {
    hickory_proto::op::Message::from_vec(bytes).is_ok()
}

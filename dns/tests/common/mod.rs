//! The DNS tests' server: pier's resolver on real sockets, fed by snapshots built from
//! manifests, and clients that speak to it over UDP and TCP.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use pier_dns::cache::{Cache, CacheConfig};
use pier_dns::forward::Forwarder;
use pier_dns::metrics::DnsMetrics;
use pier_dns::ratelimit::RateLimiter;
use pier_dns::zone::{Zone, ZoneConfig};
use pier_dns::{server, DnsConsumer, Resolver};
use pier_model::snapshot::SnapshotBuilder;
use pier_model::Object;
use pier_snapshot::{follow, ConsumerObserver, NodeSnapshot, SnapshotHandle};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::watch;

pub(crate) fn object(v: serde_json::Value) -> Arc<Object> {
    Arc::new(Object::from_value(v).unwrap().object)
}

pub(crate) fn cluster() -> Vec<Arc<Object>> {
    let many: Vec<serde_json::Value> = (0..100)
        .map(|i| json!({"addresses": [format!("10.88.1.{i}")]}))
        .collect();
    vec![
        object(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80}]}}),
        ),
        object(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "big"},
            "spec": {"clusterIP": "None", "ports": [{"name": "x", "port": 1}]}}),
        ),
        object(
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "big-1", "labels": {"kubernetes.io/service-name": "big"}},
            "addressType": "IPv4", "endpoints": many, "ports": [{"name": "x", "port": 1}]}),
        ),
        // ExternalName services: to a cluster name pier serves, to an outside name, and to a
        // cluster name that does not exist.
        object(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "alias"},
            "spec": {"type": "ExternalName", "externalName": "web.default.svc.cluster.local"}}),
        ),
        object(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "outside"},
            "spec": {"type": "ExternalName", "externalName": "www.example.test"}}),
        ),
        object(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dangling"},
            "spec": {"type": "ExternalName", "externalName": "gone.default.svc.cluster.local"}}),
        ),
    ]
}

/// The CNAME targets and addresses of an answer, in order.
pub(crate) fn chain(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .map(|r| match &r.data {
            RData::CNAME(c) => c.0.to_ascii(),
            RData::A(a) => a.0.to_string(),
            other => format!("{other:?}"),
        })
        .collect()
}

pub(crate) fn snapshot(objects: &[Arc<Object>], revision: u64) -> NodeSnapshot {
    SnapshotBuilder::from_objects(objects.iter().map(Arc::as_ref), revision)
}

pub(crate) struct NoopObserver;
impl ConsumerObserver for NoopObserver {
    fn applied(&self, _: &'static str, _: u64, _: f64) {}
    fn rejected(&self, _: &'static str, _: u64, _: u64) {}
}

/// A running server fed by a snapshot handle.
pub(crate) struct Dns {
    pub(crate) addr: SocketAddr,
    pub(crate) handle: Arc<SnapshotHandle>,
    pub(crate) registry: prometheus::Registry,
    pub(crate) _shutdown: watch::Sender<bool>,
}

pub(crate) async fn start(upstreams: Vec<SocketAddr>, allow: &[&str], cache: CacheConfig) -> Dns {
    start_limited(upstreams, allow, cache, None).await
}

pub(crate) async fn start_limited(
    upstreams: Vec<SocketAddr>,
    allow: &[&str],
    cache: CacheConfig,
    limiter: Option<Arc<RateLimiter>>,
) -> Dns {
    let registry = prometheus::Registry::new();
    let metrics = DnsMetrics::register(&registry).unwrap();
    let sockets = server::bind(&["127.0.0.1:0".parse().unwrap()])
        .await
        .unwrap();
    let addr = sockets[0].0.local_addr().unwrap();
    let resolver = Arc::new(Resolver::new(
        Zone::new(ZoneConfig::default()).unwrap(),
        Cache::new(cache),
        Forwarder::new(upstreams, &[addr], Duration::from_millis(500)),
        allow.iter().map(|n| n.parse().unwrap()).collect(),
        metrics,
    ));
    let handle = Arc::new(SnapshotHandle::default());
    handle.publish(snapshot(&cluster(), 1));
    tokio::spawn(follow(
        Arc::clone(&handle),
        DnsConsumer(Arc::clone(&resolver)),
        Arc::new(NoopObserver),
    ));
    let (tx, rx) = watch::channel(false);
    tokio::spawn(server::serve(resolver, sockets, limiter, rx));
    let dns = Dns {
        addr,
        handle,
        registry,
        _shutdown: tx,
    };
    // Wait until the first snapshot is in the zone.
    for _ in 0..200 {
        if !query(dns.addr, "web.default.svc.cluster.local.", RecordType::A)
            .await
            .answers
            .is_empty()
        {
            return dns;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("zone never loaded");
}

pub(crate) fn request(name: &str, qtype: RecordType, edns: bool) -> Message {
    let mut m = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.set_edns(e);
    }
    m
}

pub(crate) async fn udp_raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(bytes, addr).await.unwrap();
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(wait, socket.recv(&mut buf)).await {
        Ok(Ok(n)) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

pub(crate) async fn udp(addr: SocketAddr, m: &Message) -> Message {
    let bytes = udp_raw(addr, &m.to_vec().unwrap(), Duration::from_secs(3))
        .await
        .expect("no answer");
    let resp = Message::from_vec(&bytes).unwrap();
    assert_eq!(resp.metadata.id, m.metadata.id);
    resp
}

pub(crate) async fn tcp(addr: SocketAddr, m: &Message) -> Message {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let bytes = m.to_vec().unwrap();
    s.write_all(&u16::try_from(bytes.len()).unwrap().to_be_bytes())
        .await
        .unwrap();
    s.write_all(&bytes).await.unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await.unwrap();
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

pub(crate) async fn query(addr: SocketAddr, name: &str, qtype: RecordType) -> Message {
    udp(addr, &request(name, qtype, true)).await
}

pub(crate) fn addresses(m: &Message) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

pub(crate) fn require_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        pier_testkit::skip(&format!(
            "{tool} is not installed (scripts/deps test installs bind9-dnsutils and unbound)"
        ));
    }
    found
}

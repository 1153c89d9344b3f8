//! The DNS server over real sockets: a hickory-proto client, `dig`, and unbound as the upstream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use pier_controlplane::model::Object;
use pier_controlplane::snapshot::SnapshotBuilder;
use pier_dns::cache::{Cache, CacheConfig};
use pier_dns::forward::Forwarder;
use pier_dns::metrics::DnsMetrics;
use pier_dns::ratelimit::RateLimiter;
use pier_dns::zone::{Zone, ZoneConfig};
use pier_dns::{server, DnsConsumer, Resolver};
use pier_snapshot::{follow, ConsumerObserver, NodeSnapshot, SnapshotHandle};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::watch;

fn object(v: serde_json::Value) -> Arc<Object> {
    Arc::new(Object::from_value(v).unwrap().object)
}

fn cluster() -> Vec<Arc<Object>> {
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
fn chain(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .map(|r| match &r.data {
            RData::CNAME(c) => c.0.to_ascii(),
            RData::A(a) => a.0.to_string(),
            other => format!("{other:?}"),
        })
        .collect()
}

fn snapshot(objects: &[Arc<Object>], revision: u64) -> NodeSnapshot {
    let mut b = SnapshotBuilder::new();
    for o in objects {
        b.upsert(o);
    }
    b.set_revision(revision);
    b.build()
}

struct NoopObserver;
impl ConsumerObserver for NoopObserver {
    fn applied(&self, _: &'static str, _: u64, _: f64) {}
    fn rejected(&self, _: &'static str, _: u64, _: u64) {}
}

/// A running server fed by a snapshot handle.
struct Dns {
    addr: SocketAddr,
    handle: Arc<SnapshotHandle>,
    registry: prometheus::Registry,
    _shutdown: watch::Sender<bool>,
}

async fn start(upstreams: Vec<SocketAddr>, allow: &[&str], cache: CacheConfig) -> Dns {
    start_limited(upstreams, allow, cache, None).await
}

async fn start_limited(
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

fn request(name: &str, qtype: RecordType, edns: bool) -> Message {
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

async fn udp_raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(bytes, addr).await.unwrap();
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(wait, socket.recv(&mut buf)).await {
        Ok(Ok(n)) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

async fn udp(addr: SocketAddr, m: &Message) -> Message {
    let bytes = udp_raw(addr, &m.to_vec().unwrap(), Duration::from_secs(3))
        .await
        .expect("no answer");
    let resp = Message::from_vec(&bytes).unwrap();
    assert_eq!(resp.metadata.id, m.metadata.id);
    resp
}

async fn tcp(addr: SocketAddr, m: &Message) -> Message {
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

async fn query(addr: SocketAddr, name: &str, qtype: RecordType) -> Message {
    udp(addr, &request(name, qtype, true)).await
}

fn addresses(m: &Message) -> Vec<IpAddr> {
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

fn require_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("PIER_REQUIRE_PRIVILEGED").is_none(),
            "{tool} is required (PIER_REQUIRE_PRIVILEGED is set); .ci/run installs it"
        );
        eprintln!("skipping: {tool} is not installed (apt-get install bind9-dnsutils unbound)");
    }
    found
}

#[tokio::test]
async fn cluster_records_over_udp_and_tcp() {
    let dns = start(Vec::new(), &["127.0.0.0/8"], CacheConfig::default()).await;
    let r = query(dns.addr, "WEB.Default.Svc.Cluster.Local.", RecordType::A).await;
    assert!(r.metadata.authoritative);
    assert_eq!(
        r.queries[0].name().to_ascii(),
        "WEB.Default.Svc.Cluster.Local.",
        "question echoed as asked"
    );
    assert_eq!(addresses(&r), ["10.96.0.10".parse::<IpAddr>().unwrap()]);
    let r = tcp(
        dns.addr,
        &request("web.default.svc.cluster.local.", RecordType::A, false),
    )
    .await;
    assert_eq!(addresses(&r), ["10.96.0.10".parse::<IpAddr>().unwrap()]);
    let nx = query(dns.addr, "nope.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert!(matches!(nx.authorities[0].data, RData::SOA(_)));
    assert_eq!(nx.authorities[0].ttl, 5, "negative TTL");
    let nodata = query(dns.addr, "web.default.svc.cluster.local.", RecordType::AAAA).await;
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.answers.is_empty() && matches!(nodata.authorities[0].data, RData::SOA(_)));
    // No upstream configured: outside names fail cleanly.
    let out = query(dns.addr, "example.org.", RecordType::A).await;
    assert_eq!(out.metadata.response_code, ResponseCode::ServFail);
    // An ExternalName to a cluster name is answered with the whole chain, from the zone.
    let alias = query(dns.addr, "alias.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(alias.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        chain(&alias),
        ["web.default.svc.cluster.local.", "10.96.0.10"]
    );
    let cname = query(
        dns.addr,
        "alias.default.svc.cluster.local.",
        RecordType::CNAME,
    )
    .await;
    assert_eq!(chain(&cname), ["web.default.svc.cluster.local."]);
    let dangling = query(
        dns.addr,
        "dangling.default.svc.cluster.local.",
        RecordType::A,
    )
    .await;
    assert_eq!(dangling.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(chain(&dangling), ["gone.default.svc.cluster.local."]);
    assert!(matches!(dangling.authorities[0].data, RData::SOA(_)));
    // The apex names its nameserver; `<ns>.pod.<zone>` is an empty non-terminal.
    let ns = query(dns.addr, "cluster.local.", RecordType::NS).await;
    assert_eq!(ns.answers.len(), 1);
    assert!(
        matches!(&ns.answers[0].data, RData::NS(n) if n.0.to_ascii() == "ns.dns.cluster.local.")
    );
    let ent = query(dns.addr, "default.pod.cluster.local.", RecordType::A).await;
    assert_eq!(ent.metadata.response_code, ResponseCode::NoError);
    assert!(ent.answers.is_empty());
    // EDNS versions above 0 get BADVERS (RFC 6891).
    let mut v1 = request("web.default.svc.cluster.local.", RecordType::A, true);
    if let Some(e) = v1.edns.as_mut() {
        e.set_version(1);
    }
    let badvers = udp(dns.addr, &v1).await;
    // Code 16 (hickory decodes it as BADSIG, its TSIG twin).
    assert_eq!(u16::from(badvers.metadata.response_code), 16);
    assert!(badvers.answers.is_empty());
}

#[tokio::test]
async fn large_answers_truncate_over_udp_and_complete_over_tcp() {
    let dns = start(Vec::new(), &["127.0.0.0/8"], CacheConfig::default()).await;
    let small = udp(
        dns.addr,
        &request("big.default.svc.cluster.local.", RecordType::A, false),
    )
    .await;
    assert!(
        small.metadata.truncation,
        "100 A records do not fit 512 bytes"
    );
    assert!(small.answers.is_empty());
    let full = tcp(
        dns.addr,
        &request("big.default.svc.cluster.local.", RecordType::A, false),
    )
    .await;
    assert!(!full.metadata.truncation);
    assert_eq!(full.answers.len(), 100);
}

#[tokio::test]
async fn snapshot_changes_show_up_within_10ms() {
    let dns = start(Vec::new(), &["127.0.0.0/8"], CacheConfig::default()).await;
    let mut objects = cluster();
    let mut delays = Vec::new();
    for i in 0..20u8 {
        objects[0] = object(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"clusterIP": format!("10.96.1.{i}"), "ports": [{"name": "http", "port": 80}]}}),
        );
        let want: IpAddr = format!("10.96.1.{i}").parse().unwrap();
        let published = Instant::now();
        dns.handle.publish(snapshot(&objects, 2 + u64::from(i)));
        loop {
            let r = query(dns.addr, "web.default.svc.cluster.local.", RecordType::A).await;
            if addresses(&r) == [want] {
                delays.push(published.elapsed());
                break;
            }
            assert!(
                published.elapsed() < Duration::from_secs(2),
                "change never visible"
            );
        }
    }
    delays.sort();
    eprintln!(
        "publish -> visible in answers: median {:?}, max {:?}",
        delays[10], delays[19]
    );
    assert!(
        delays[10] < Duration::from_millis(10),
        "median {:?}",
        delays[10]
    );
}

#[tokio::test]
async fn bad_requests_get_the_right_errors_and_never_stop_the_server() {
    let dns = start(Vec::new(), &["127.0.0.0/8"], CacheConfig::default()).await;
    let mut two = request("web.default.svc.cluster.local.", RecordType::A, false);
    two.add_query(Query::query(Name::from_ascii("x.").unwrap(), RecordType::A));
    assert_eq!(
        udp(dns.addr, &two).await.metadata.response_code,
        ResponseCode::FormErr
    );
    let mut notify = request("web.default.svc.cluster.local.", RecordType::SOA, false);
    notify.metadata.op_code = OpCode::Notify;
    assert_eq!(
        udp(dns.addr, &notify).await.metadata.response_code,
        ResponseCode::NotImp
    );
    let mut chaos = request("version.bind.", RecordType::TXT, false);
    let q = chaos.queries[0].clone();
    chaos.queries = vec![Query::query(q.name().clone(), RecordType::TXT)
        .set_query_class(DNSClass::CH)
        .clone()];
    assert_eq!(
        udp(dns.addr, &chaos).await.metadata.response_code,
        ResponseCode::NotImp
    );
    let axfr = request("cluster.local.", RecordType::AXFR, false);
    assert_eq!(
        tcp(dns.addr, &axfr).await.metadata.response_code,
        ResponseCode::Refused
    );
    // Garbage with a readable header gets FORMERR; a response or a runt gets nothing.
    let formerr = udp_raw(
        dns.addr,
        &[0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xff],
        Duration::from_secs(2),
    )
    .await
    .expect("FORMERR expected");
    let formerr = Message::from_vec(&formerr).unwrap();
    assert_eq!(
        (formerr.metadata.id, formerr.metadata.response_code),
        (0x1234, ResponseCode::FormErr)
    );
    assert!(udp_raw(dns.addr, &[1, 2, 3], Duration::from_millis(200))
        .await
        .is_none());
    let mut answer = request("web.default.svc.cluster.local.", RecordType::A, false);
    answer.metadata.message_type = MessageType::Response;
    assert!(udp_raw(
        dns.addr,
        &answer.to_vec().unwrap(),
        Duration::from_millis(200)
    )
    .await
    .is_none());
    // Random and mutated packets, bounded in count: none may take the server down.
    let valid = request(
        "_http._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
        true,
    )
    .to_vec()
    .unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..3000u32 {
        let mut p = if i % 2 == 0 {
            (0..(rand::random::<u8>() as usize))
                .map(|_| rand::random())
                .collect::<Vec<u8>>()
        } else {
            valid.clone()
        };
        if !p.is_empty() {
            for _ in 0..(1 + i % 4) {
                let at = rand::random::<u32>() as usize % p.len();
                p[at] = rand::random();
            }
        }
        socket.send_to(&p, dns.addr).await.unwrap();
    }
    let ok = query(dns.addr, "web.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(addresses(&ok), ["10.96.0.10".parse::<IpAddr>().unwrap()]);
    // Oversized TCP length prefix with too little data: the connection is dropped, the server lives.
    let mut s = TcpStream::connect(dns.addr).await.unwrap();
    s.write_all(&[0xff, 0xff, 1, 2, 3]).await.unwrap();
    drop(s);
    let ok = tcp(
        dns.addr,
        &request("web.default.svc.cluster.local.", RecordType::A, false),
    )
    .await;
    assert_eq!(ok.answers.len(), 1);
}

#[tokio::test]
async fn forwarding_is_refused_outside_allowed_networks() {
    let dns = start(
        vec!["127.0.0.1:9".parse().unwrap()],
        &["10.0.0.0/8"],
        CacheConfig::default(),
    )
    .await;
    let r = query(dns.addr, "example.org.", RecordType::A).await;
    assert_eq!(
        r.metadata.response_code,
        ResponseCode::Refused,
        "no open resolver"
    );
    let r = query(dns.addr, "web.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(r.answers.len(), 1, "cluster names are still answered");
}

#[tokio::test]
async fn dig_reads_every_record_kind() {
    if !require_tool("dig") {
        return;
    }
    let dns = start(Vec::new(), &["127.0.0.0/8"], CacheConfig::default()).await;
    let port = dns.addr.port().to_string();
    let dig = move |args: &[&str]| {
        let out = Command::new("dig")
            .args(["@127.0.0.1", "-p", &port, "+time=2", "+tries=1", "+short"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let out = tokio::task::spawn_blocking(move || {
        [
            dig(&["web.default.svc.cluster.local"]),
            dig(&["_http._tcp.web.default.svc.cluster.local", "SRV"]),
            dig(&["-x", "10.96.0.10"]),
            dig(&["+tcp", "10-88-1-5.big.default.svc.cluster.local"]),
            dig(&["dns-version.cluster.local", "TXT"]),
        ]
    })
    .await
    .unwrap();
    assert_eq!(out[0], "10.96.0.10\n");
    assert_eq!(out[1], "0 100 80 web.default.svc.cluster.local.\n");
    assert_eq!(out[2], "web.default.svc.cluster.local.\n");
    assert_eq!(out[3], "10.88.1.5\n");
    assert_eq!(out[4], "\"1.1.0\"\n");
}

/// unbound on a loopback port, authoritative for example.test; killed on drop.
struct Unbound {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Unbound {
    fn start() -> Unbound {
        let dir = tempfile::tempdir().unwrap();
        // Below the kernel's ephemeral range (32768+), so the many short-lived connections of
        // tests running alongside cannot take the TCP twin of the port before unbound binds it.
        let start = 20_000 + (std::process::id() % 10_000) as u16;
        let port = (start..32_000)
            .chain(20_000..start)
            .find(|p| {
                std::net::UdpSocket::bind(("127.0.0.1", *p)).is_ok()
                    && std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok()
            })
            .unwrap();
        let conf = dir.path().join("unbound.conf");
        std::fs::write(
            &conf,
            format!(
                r#"server:
  interface: 127.0.0.1
  port: {port}
  do-ip6: no
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{dir}"
  pidfile: "{dir}/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 0
  num-threads: 1
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
  local-zone: "example.test." static
  local-data: "example.test. 60 IN SOA ns.example.test. h.example.test. 1 60 60 60 30"
  local-data: "www.example.test. 60 IN A 192.0.2.10"
  local-data: "short.example.test. 1 IN A 192.0.2.11"
  local-data: "long.example.test. 86400 IN A 192.0.2.12"
remote-control:
  control-enable: no
"#,
                dir = dir.path().display()
            ),
        )
        .unwrap();
        let child = Command::new("unbound")
            .args(["-d", "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Unbound {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _dir: dir,
        }
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn metric(registry: &prometheus::Registry, name: &str) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric())
        .map(|m| m.get_counter().get_value() + m.get_gauge().get_value())
        .sum()
}

#[tokio::test]
async fn forwards_to_unbound_caches_and_serves_stale() {
    if !require_tool("unbound") {
        return;
    }
    let mut unbound = Unbound::start();
    let cache = CacheConfig {
        max_ttl: 600,
        ..CacheConfig::default()
    };
    let dns = start(vec![unbound.addr], &["127.0.0.0/8"], cache).await;
    // Wait for unbound to listen.
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        let r = query(dns.addr, "www.example.test.", RecordType::A).await;
        if r.metadata.response_code == ResponseCode::NoError {
            break r;
        }
        assert!(Instant::now() < deadline, "unbound did not answer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(addresses(&first), ["192.0.2.10".parse::<IpAddr>().unwrap()]);
    assert!(!first.metadata.authoritative);
    assert!(first.metadata.recursion_available);
    let nx = query(dns.addr, "missing.example.test.", RecordType::A).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    let hits = metric(&dns.registry, "pier_dns_cache_hits_total");
    let again = query(dns.addr, "www.example.test.", RecordType::A).await;
    assert_eq!(addresses(&again), addresses(&first));
    assert!(again.answers[0].ttl <= 60);
    let nx_again = query(dns.addr, "missing.example.test.", RecordType::A).await;
    assert_eq!(nx_again.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        metric(&dns.registry, "pier_dns_cache_hits_total"),
        hits + 2.0,
        "positive and negative hits"
    );
    let short = query(dns.addr, "short.example.test.", RecordType::A).await;
    assert_eq!(addresses(&short), ["192.0.2.11".parse::<IpAddr>().unwrap()]);
    // Clients are told the capped TTL (as the cache keeps it), not the upstream's day.
    let long = query(dns.addr, "long.example.test.", RecordType::A).await;
    assert_eq!(addresses(&long), ["192.0.2.12".parse::<IpAddr>().unwrap()]);
    assert_eq!(long.answers[0].ttl, 600, "first answer capped");
    let long = query(dns.addr, "long.example.test.", RecordType::A).await;
    assert!(long.answers[0].ttl <= 600, "cached answer capped");
    // An ExternalName to an outside name: the CNAME from the zone, the address from the
    // upstream, in one answer (what glibc's getent needs).
    let outside = query(
        dns.addr,
        "outside.default.svc.cluster.local.",
        RecordType::A,
    )
    .await;
    assert_eq!(outside.metadata.response_code, ResponseCode::NoError);
    assert_eq!(chain(&outside), ["www.example.test.", "192.0.2.10"]);

    // Upstream gone: fresh entries still answer; the expired one is served stale with TTL 30.
    let _ = unbound.child.kill();
    let _ = unbound.child.wait();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let cached = query(dns.addr, "www.example.test.", RecordType::A).await;
    assert_eq!(
        addresses(&cached),
        ["192.0.2.10".parse::<IpAddr>().unwrap()]
    );
    let stale = query(dns.addr, "short.example.test.", RecordType::A).await;
    assert_eq!(stale.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&stale), ["192.0.2.11".parse::<IpAddr>().unwrap()]);
    assert_eq!(stale.answers[0].ttl, 30);
    assert_eq!(metric(&dns.registry, "pier_dns_cache_stale_total"), 1.0);
    let unknown = query(dns.addr, "never.example.test.", RecordType::A).await;
    assert_eq!(unknown.metadata.response_code, ResponseCode::ServFail);
    assert!(metric(&dns.registry, "pier_dns_upstream_failures_total") >= 2.0);
    // Cluster names never depended on the upstream.
    let web = query(dns.addr, "web.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(web.answers.len(), 1);
}

#[tokio::test]
async fn rate_limit_slips_truncated_answers_and_spares_tcp() {
    let limiter = Arc::new(RateLimiter::new(5, 40));
    let dns = start_limited(
        Vec::new(),
        &["127.0.0.0/8"],
        CacheConfig::default(),
        Some(limiter),
    )
    .await;
    // The start-up probe used some of the burst; spend the rest and then some.
    let mut truncated = 0;
    let mut answered = 0;
    let mut silent = 0;
    for _ in 0..60 {
        let m = request("web.default.svc.cluster.local.", RecordType::A, false);
        match udp_raw(dns.addr, &m.to_vec().unwrap(), Duration::from_millis(100)).await {
            Some(bytes) => {
                let r = Message::from_vec(&bytes).unwrap();
                if r.metadata.truncation {
                    truncated += 1;
                } else {
                    answered += 1;
                }
            }
            None => silent += 1,
        }
    }
    assert!(answered < 45, "limited: {answered} answered");
    assert!(
        truncated > 0 && silent > 0,
        "slip half, drop half: {truncated} truncated, {silent} dropped"
    );
    let r = tcp(
        dns.addr,
        &request("web.default.svc.cluster.local.", RecordType::A, false),
    )
    .await;
    assert_eq!(r.answers.len(), 1, "TCP is not rate limited");
    assert!(metric(&dns.registry, "pier_dns_rate_limited_total") >= f64::from(truncated + silent));
}

/// A query as glibc's stub resolver sends it: no EDNS, so repeated ones take the encoded-answer path.
fn plain_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = request(name, RecordType::A, false);
    q.metadata.id = id;
    q.to_vec().unwrap()
}

#[tokio::test]
async fn repeated_plain_queries_keep_id_case_and_follow_zone_changes() {
    let dns = start(Vec::new(), &["127.0.0.0/8"], CacheConfig::default()).await;
    let mut objects = cluster();
    for (i, name) in [
        "web.default.svc.cluster.local.",
        "WeB.DeFaUlT.svc.CLUSTER.local.",
    ]
    .iter()
    .enumerate()
    {
        let id = 0x4000 + i as u16;
        let packet = plain_query(id, name);
        let bytes = udp_raw(dns.addr, &packet, Duration::from_secs(2))
            .await
            .unwrap();
        let resp = Message::from_vec(&bytes).unwrap();
        assert_eq!(resp.metadata.id, id);
        assert!(resp.metadata.recursion_desired, "RD copied from the query");
        assert_eq!(
            resp.queries[0].name().to_ascii(),
            *name,
            "0x20 case is echoed"
        );
        assert_eq!(addresses(&resp), ["10.96.0.10".parse::<IpAddr>().unwrap()]);
        // The question section is byte for byte the query's.
        assert_eq!(&bytes[12..packet.len()], &packet[12..]);
    }
    // A zone change is seen by the next plain query, not an old encoded answer.
    objects[0] = object(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"clusterIP": "10.96.7.7", "ports": [{"name": "http", "port": 80}]}}),
    );
    dns.handle.publish(snapshot(&objects, 50));
    let want: IpAddr = "10.96.7.7".parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let bytes = udp_raw(
            dns.addr,
            &plain_query(7, "web.default.svc.cluster.local."),
            Duration::from_secs(2),
        )
        .await
        .unwrap();
        if addresses(&Message::from_vec(&bytes).unwrap()) == [want] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "change never visible to plain queries"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // NXDOMAIN answers are kept too, with the SOA.
    for id in [1u16, 2] {
        let bytes = udp_raw(
            dns.addr,
            &plain_query(id, "nope.default.svc.cluster.local."),
            Duration::from_secs(2),
        )
        .await
        .unwrap();
        let resp = Message::from_vec(&bytes).unwrap();
        assert_eq!(resp.metadata.id, id);
        assert_eq!(resp.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(resp.authorities.len(), 1);
    }
}

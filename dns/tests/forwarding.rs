//! Names outside the cluster domain: the forwarding ACL, unbound as the upstream (cache,
//! serve-stale), and the rate limit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use pier_dns::cache::CacheConfig;
use pier_dns::ratelimit::RateLimiter;

use common::*;

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
        .map(|m| m.get_counter().value() + m.get_gauge().value())
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

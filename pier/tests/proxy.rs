//! End to end through the userspace proxy: a daemon serving VIPs on loopback stand-ins,
//! `pier echo` processes as endpoints, real HTTP/TCP/UDP clients.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Daemon, PIER};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A `pier echo` process; killed on drop.
struct Echo {
    http: SocketAddr,
    tcp: SocketAddr,
    udp: SocketAddr,
    child: Child,
}

impl Echo {
    fn spawn(name: &str) -> Echo {
        let mut command = Command::new(PIER);
        command
            .args(["echo", "--name", name, "--tcp-banner"])
            .args([
                "--http",
                "127.0.0.1:0",
                "--tcp",
                "127.0.0.1:0",
                "--udp",
                "127.0.0.1:0",
            ]);
        let (child, addrs) = common::spawn_echo(command);
        Echo {
            http: addrs["http"],
            tcp: addrs["tcp"],
            udp: addrs["udp"],
            child,
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A service CIDR of this test's own, so VIPs (127.b.c.d) of tests running in parallel, as
/// processes (nextest) or as threads of one process (cargo test), do not collide.
fn service_cidr() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let second = 100 + (std::process::id() as usize * 11 + n) % 150;
    format!("10.{second}.0.0/16")
}

fn proxy_daemon(dir: &std::path::Path, extra: &[&str]) -> Daemon {
    let cidr = service_cidr();
    let offset = PORT_OFFSET.to_string();
    let mut args = vec![
        "--proxy-vips",
        "loopback",
        "--proxy-port-offset",
        offset.as_str(),
        "--service-cidr",
        cidr.as_str(),
    ];
    args.extend_from_slice(extra);
    Daemon::start_with(dir, &args)
}

fn apply(d: &Daemon, yaml: &str) {
    common::apply_yaml(&d.socket(), yaml);
}

/// The loopback stand-in of a service's VIP port (port + 20000, so no test needs root).
fn vip(d: &Daemon, svc: &str, port: u16) -> SocketAddr {
    let v = d.get_json(&["svc", svc]);
    let ip: std::net::Ipv4Addr = v["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
    let [_, b, c, e] = ip.octets();
    SocketAddr::from(([127, b, c, e], port + PORT_OFFSET))
}

/// Added to service ports by the test daemons (`--proxy-port-offset`).
const PORT_OFFSET: u16 = 20000;

fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A selector-less Service and one EndpointSlice per endpoint.
fn service_yaml(
    name: &str,
    port: u16,
    proto: &str,
    extra_spec: &str,
    endpoints: &[(u16, bool)],
) -> String {
    let mut y = format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  {extra_spec}\n  ports: [{{name: p, port: {port}, protocol: {proto}}}]\n"
    );
    for (i, (ep_port, ready)) in endpoints.iter().enumerate() {
        y.push_str(&slice_yaml(name, i, *ep_port, proto, *ready));
    }
    y
}

fn slice_yaml(svc: &str, i: usize, port: u16, proto: &str, ready: bool) -> String {
    format!(
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {svc}-{i}, labels: {{kubernetes.io/service-name: {svc}}}}}\naddressType: IPv4\nendpoints: [{{addresses: [127.0.0.1], conditions: {{ready: {ready}}}}}]\nports: [{{name: p, port: {port}, protocol: {proto}}}]\n---\n"
    )
}

fn http_route(name: &str, parent: &str, rules: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}}}\nspec:\n  parentRefs: [{{group: \"\", kind: Service, name: {parent}, port: 80}}]\n  rules:\n{rules}\n"
    )
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .build_http()
}

/// One request; `Ok((status, echo name))` or the client error.
async fn get(
    c: &HttpClient,
    url: &str,
    header: Option<(&str, &str)>,
) -> Result<(u16, String), String> {
    let mut req = hyper::Request::get(url);
    if let Some((k, v)) = header {
        req = req.header(k, v);
    }
    let resp = c
        .request(req.body(Empty::new()).unwrap())
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let name = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["name"].as_str().map(String::from))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
    Ok((status, name))
}

/// Outcome of a load run.
#[derive(Default, Debug)]
struct Tally {
    by_name: HashMap<String, usize>,
    failures: Vec<String>,
}

impl Tally {
    fn total(&self) -> usize {
        self.by_name.values().sum::<usize>() + self.failures.len()
    }
    fn share(&self, name: &str) -> f64 {
        *self.by_name.get(name).unwrap_or(&0) as f64 / self.total() as f64
    }
}

/// Sends GETs from `workers` tasks until `count` are done or `stop` is set (bounded by 60 s).
async fn load(
    url: String,
    workers: usize,
    count: usize,
    stop: Arc<AtomicBool>,
    header: Option<(&'static str, &'static str)>,
) -> Tally {
    let c = client();
    let done = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (c, done, stop, url) = (c.clone(), Arc::clone(&done), Arc::clone(&stop), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut t = Tally::default();
            while done.fetch_add(1, Ordering::Relaxed) < count
                && !stop.load(Ordering::Relaxed)
                && Instant::now() < deadline
            {
                match get(&c, &url, header).await {
                    Ok((200, name)) => *t.by_name.entry(name).or_default() += 1,
                    Ok((code, body)) => t.failures.push(format!("{code} {body}")),
                    Err(e) => t.failures.push(e),
                }
            }
            t
        }));
    }
    let mut all = Tally::default();
    for task in tasks {
        let t = task.await.unwrap();
        for (k, v) in t.by_name {
            *all.by_name.entry(k).or_default() += v;
        }
        all.failures.extend(t.failures);
    }
    all
}

fn metric(d: &Daemon, prefix: &str) -> f64 {
    let (_, body) = d.admin("/metrics");
    body.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn canary(v1: &Echo, v2: &Echo, w1: u32, w2: u32) -> String {
    let mut y = service_yaml("web", 80, "TCP", "type: ClusterIP", &[]);
    y.push_str(&service_yaml(
        "web-v1",
        80,
        "TCP",
        "type: ClusterIP",
        &[(v1.http.port(), true)],
    ));
    y.push_str(&service_yaml(
        "web-v2",
        80,
        "TCP",
        "type: ClusterIP",
        &[(v2.http.port(), true)],
    ));
    y.push_str(&http_route(
        "web-canary",
        "web",
        &format!(
            "  - matches: [{{headers: [{{name: x-canary, value: \"true\"}}]}}]\n    backendRefs: [{{name: web-v2, port: 80}}]\n  - backendRefs: [{{name: web-v1, port: 80, weight: {w1}}}, {{name: web-v2, port: 80, weight: {w2}}}]\n"
        ),
    ));
    y
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l7_canary_split_header_match_and_weight_change_under_load() {
    let tmp = tempfile::tempdir().unwrap();
    let d = proxy_daemon(tmp.path(), &[]);
    let (v1, v2) = (Echo::spawn("v1"), Echo::spawn("v2"));
    apply(&d, &canary(&v1, &v2, 90, 10));
    let addr = vip(&d, "web", 80);
    wait_listening(addr);
    let url = format!("http://{addr}/");

    let t = load(url.clone(), 8, 10_000, Arc::default(), None).await;
    assert!(
        t.failures.is_empty(),
        "{:?}",
        &t.failures[..t.failures.len().min(5)]
    );
    let share = t.share("v2");
    println!(
        "90/10 over {} requests: v2 share {:.2}%",
        t.total(),
        share * 100.0
    );
    assert!((0.07..=0.13).contains(&share), "v2 share {share}");

    let t = load(
        url.clone(),
        4,
        500,
        Arc::default(),
        Some(("x-canary", "true")),
    )
    .await;
    assert_eq!(t.by_name.get("v2"), Some(&500), "{t:?}");

    // Move everything to v2 while 8 clients keep sending.
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(load(url.clone(), 8, usize::MAX, Arc::clone(&stop), None));
    tokio::time::sleep(Duration::from_millis(700)).await;
    apply(&d, &canary(&v1, &v2, 0, 100));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = load(url.clone(), 4, 1000, Arc::default(), None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let during = running.await.unwrap();
    println!(
        "during the weight change: {} requests, {} failed",
        during.total(),
        during.failures.len()
    );
    assert!(
        during.failures.is_empty(),
        "{:?}",
        &during.failures[..during.failures.len().min(5)]
    );
    assert!(during.total() > 100, "load kept running: {during:?}");
    assert_eq!(after.by_name.get("v2"), Some(&1000), "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_and_killing_endpoints_under_load_loses_no_request() {
    let tmp = tempfile::tempdir().unwrap();
    let d = proxy_daemon(tmp.path(), &[]);
    let mut eps: Vec<Echo> = (0..3).map(|i| Echo::spawn(&format!("e{i}"))).collect();
    let ports: Vec<(u16, bool)> = eps.iter().map(|e| (e.http.port(), true)).collect();
    let spec = "type: ClusterIP";
    let svc = |p: &[(u16, bool)]| {
        service_yaml("web", 80, "TCP", spec, p).replace(
            "port: 80, protocol: TCP}]",
            "port: 80, protocol: TCP, appProtocol: http}]",
        )
    };
    apply(&d, &svc(&ports));
    let addr = vip(&d, "web", 80);
    wait_listening(addr);
    let url = format!("http://{addr}/");

    // Scale down (one slice goes) and back up while 8 clients keep sending.
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(load(url.clone(), 8, usize::MAX, Arc::clone(&stop), None));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = d.pier(&["delete", "endpointslice", "web-2"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mid = load(url.clone(), 2, 300, Arc::default(), None).await;
    apply(&d, &svc(&ports));
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let scaled = running.await.unwrap();
    println!(
        "scale down/up: {} requests, {} failed",
        scaled.total(),
        scaled.failures.len()
    );
    assert!(
        scaled.failures.is_empty(),
        "{:?}",
        &scaled.failures[..scaled.failures.len().min(5)]
    );
    assert!(
        !mid.by_name.contains_key("e2"),
        "removed endpoint got new requests: {mid:?}"
    );
    assert_eq!(scaled.by_name.len(), 3, "{scaled:?}");

    // Kill one endpoint process (SIGKILL) under load: retries and ejection hide it.
    let retries_before = metric(&d, "pier_proxy_retries_total");
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(load(url.clone(), 8, usize::MAX, Arc::clone(&stop), None));
    tokio::time::sleep(Duration::from_millis(500)).await;
    eps[1].kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let killed = running.await.unwrap();
    let retries = metric(&d, "pier_proxy_retries_total") - retries_before;
    let ejections = metric(&d, "pier_proxy_ejections_total");
    println!(
        "kill -9 of one of 3 endpoints: {} requests, {} client-visible errors, {retries} retries, {ejections} ejections",
        killed.total(),
        killed.failures.len()
    );
    assert!(
        killed.failures.is_empty(),
        "{:?}",
        &killed.failures[..killed.failures.len().min(5)]
    );
    assert!(ejections >= 1.0, "the dead endpoint was ejected");
    drop(eps);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l4_tcp_split_and_udp_replies_from_the_vip() {
    let tmp = tempfile::tempdir().unwrap();
    let d = proxy_daemon(tmp.path(), &[]);
    let (a, b) = (Echo::spawn("a"), Echo::spawn("b"));
    let mut y = service_yaml("tcp", 9000, "TCP", "type: ClusterIP", &[]);
    y.push_str(&service_yaml(
        "tcp-a",
        9000,
        "TCP",
        "type: ClusterIP",
        &[(a.tcp.port(), true)],
    ));
    y.push_str(&service_yaml(
        "tcp-b",
        9000,
        "TCP",
        "type: ClusterIP",
        &[(b.tcp.port(), true)],
    ));
    y.push_str("---\napiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata: {name: tcp-split}\nspec:\n  parentRefs: [{group: \"\", kind: Service, name: tcp, port: 9000}]\n  rules: [{backendRefs: [{name: tcp-a, port: 9000, weight: 90}, {name: tcp-b, port: 9000, weight: 10}]}]\n");
    y.push_str(&service_yaml(
        "dns",
        9053,
        "UDP",
        "type: ClusterIP",
        &[(a.udp.port(), true)],
    ));
    apply(&d, &y);
    let addr = vip(&d, "tcp", 9000);
    wait_listening(addr);

    let mut counts: HashMap<String, usize> = HashMap::new();
    for i in 0..2000 {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let msg = format!("hello {i}\n");
        s.write_all(msg.as_bytes()).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let (name, rest) = out.split_once('\n').unwrap();
        assert_eq!(
            rest, msg,
            "half-closed connection still gets the whole echo"
        );
        *counts.entry(name.to_string()).or_default() += 1;
    }
    let share = counts["b"] as f64 / 2000.0;
    println!("TCP 90/10 over 2000 connections: {counts:?}");
    assert!((0.07..=0.13).contains(&share), "{counts:?}");

    let vip_udp = vip(&d, "dns", 9053);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut got = None;
    for _ in 0..20 {
        sock.send_to(b"ping", vip_udp).unwrap();
        let mut buf = [0u8; 64];
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            got = Some((buf[..n].to_vec(), from));
            break;
        }
    }
    let (data, from) = got.expect("UDP echo through the VIP");
    assert_eq!(data, b"ping");
    assert_eq!(
        from, vip_udp,
        "the reply comes from the VIP, not the endpoint"
    );
}

fn raw_response(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).to_string()
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// The (type, payload) of each whole HTTP/2 frame in `bytes`.
fn h2_frames(bytes: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        let len = usize::from(*rest.first()?) << 16
            | usize::from(*rest.get(1)?) << 8
            | usize::from(*rest.get(2)?);
        let kind = *rest.get(3)?;
        let payload = rest.get(9..9 + len)?;
        rest = &rest[9 + len..];
        Some((kind, payload))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_do_not_hurt_others() {
    let tmp = tempfile::tempdir().unwrap();
    let d = proxy_daemon(tmp.path(), &["--proxy-header-timeout", "1s"]);
    let e = Echo::spawn("e");
    let mut y = service_yaml(
        "web",
        80,
        "TCP",
        "type: ClusterIP",
        &[(e.http.port(), true)],
    )
    .replace(
        "port: 80, protocol: TCP}]",
        "port: 80, protocol: TCP, appProtocol: http}]",
    );
    y.push_str(
        &service_yaml(
            "raw",
            9000,
            "TCP",
            "type: ClusterIP",
            &[(e.tcp.port(), true)],
        )
        .replace(
            "metadata: {name: raw}",
            "metadata: {name: raw, annotations: {pier.dev/idle-timeout: 1s}}",
        ),
    );
    apply(&d, &y);
    let web = vip(&d, "web", 80);
    let raw = vip(&d, "raw", 9000);
    wait_listening(web);
    wait_listening(raw);
    let pid = d.child.as_ref().unwrap().id();
    let rss_before = rss_kb(pid);

    let malformed = raw_response(web, b"GARBAGE\x00\x01 / NOT-HTTP\r\n\r\n");
    assert!(malformed.starts_with("HTTP/1.1 400"), "{malformed:?}");
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(200_000)
    );
    let oversized = raw_response(web, big.as_bytes());
    assert!(
        oversized.starts_with("HTTP/1.1 431") || oversized.is_empty(),
        "{oversized:?}"
    );

    // 300 slowloris clients trickling headers, and 300 silent half-open TCP connections.
    let mut slow = Vec::new();
    for _ in 0..300 {
        let mut s = TcpStream::connect(web).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
        slow.push(s);
    }
    // And 100 that stop halfway through the h2 preface, which the header timeout covers too.
    for _ in 0..100 {
        let mut s = TcpStream::connect(web).unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
        slow.push(s);
    }
    let silent: Vec<TcpStream> = (0..300).map(|_| TcpStream::connect(raw).unwrap()).collect();
    let started = Instant::now();
    let t = load(format!("http://{web}/"), 4, 500, Arc::default(), None).await;
    assert!(
        t.failures.is_empty(),
        "{:?}",
        &t.failures[..t.failures.len().min(5)]
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "others are served meanwhile"
    );
    let rss_loaded = rss_kb(pid);

    // The trickling clients are cut off after the header timeout, however slowly they send.
    for s in slow.iter_mut().take(20) {
        let _ = s.write_all(b"X-A: b\r\n");
    }
    for s in slow.iter_mut() {
        let mut buf = [0u8; 256];
        let began = Instant::now();
        let r = s.read(&mut buf);
        assert!(
            began.elapsed() < Duration::from_secs(8),
            "slowloris connection was closed: {r:?}"
        );
    }
    // Silent TCP connections end after the idle timeout.
    for mut s in silent {
        s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
        let mut line = String::new();
        let mut r = BufReader::new(&mut s);
        r.read_line(&mut line).unwrap(); // the banner
        let mut rest = Vec::new();
        let n = r.read_to_end(&mut rest);
        assert!(matches!(n, Ok(0)) || n.is_err(), "idle connection closed");
    }
    // An h2c client that breaks the protocol (DATA on stream 0) gets GOAWAY(PROTOCOL_ERROR).
    let mut bad = TcpStream::connect(web).unwrap();
    bad.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    bad.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0\0\0\x03\0\0\0\0\0\0abc")
        .unwrap();
    let mut frames = Vec::new();
    let _ = bad.read_to_end(&mut frames);
    let goaway_code = h2_frames(&frames)
        .find(|(kind, _)| *kind == 7)
        .map(|(_, payload)| u32::from_be_bytes(payload[4..8].try_into().unwrap()));
    assert_eq!(goaway_code, Some(1), "GOAWAY with PROTOCOL_ERROR");

    let grew_mb = rss_loaded.saturating_sub(rss_before) / 1024;
    println!("RSS with 700 hostile connections: +{grew_mb} MB");
    assert!(grew_mb < 64, "memory stays bounded: +{grew_mb} MB");
    let t = load(format!("http://{web}/"), 2, 100, Arc::default(), None).await;
    assert!(t.failures.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_that_cannot_be_applied_is_rejected_whole_then_retried() {
    let tmp = tempfile::tempdir().unwrap();
    // Hold a node port so the proxy cannot bind it.
    let (held, port) = (30000u16..32000)
        .find_map(|p| {
            std::net::TcpListener::bind(("127.0.0.1", p))
                .ok()
                .map(|l| (l, p))
        })
        .unwrap();
    let range = format!("{port}-{}", port + 50);
    let d = proxy_daemon(tmp.path(), &["--node-port-range", &range]);
    let e = Echo::spawn("e");
    apply(
        &d,
        &service_yaml("ok", 80, "TCP", "type: ClusterIP", &[(e.tcp.port(), true)]),
    );
    let ok = vip(&d, "ok", 80);
    wait_listening(ok);

    let blocked = service_yaml(
        "blocked",
        81,
        "TCP",
        "type: NodePort",
        &[(e.tcp.port(), true)],
    )
    .replace(
        "port: 81, protocol: TCP}]",
        &format!("port: 81, protocol: TCP, nodePort: {port}}}]"),
    );
    apply(
        &d,
        &(blocked.clone()
            + &service_yaml(
                "later",
                82,
                "TCP",
                "type: ClusterIP",
                &[(e.tcp.port(), true)],
            )),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(&d, "pier_dataplane_snapshot_rejected_total{part=\"proxy\"}") < 1.0 {
        assert!(Instant::now() < deadline, "rejection counted");
        std::thread::sleep(Duration::from_millis(20));
    }
    let later = vip(&d, "later", 82);
    assert!(
        TcpStream::connect(later).is_err(),
        "nothing of the rejected snapshot is applied"
    );
    let mut s = TcpStream::connect(ok).unwrap();
    let mut line = String::new();
    BufReader::new(&mut s).read_line(&mut line).unwrap();
    assert_eq!(line, "e\n", "the previous snapshot keeps serving");

    // A port in use is transient: once it is free, the retried snapshot applies everything,
    // with no further write.
    drop(held);
    wait_listening(later);
    wait_listening(SocketAddr::from(([127, 0, 0, 1], port)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_sticky_canary_and_active_health_checks() {
    let tmp = tempfile::tempdir().unwrap();
    let d = proxy_daemon(tmp.path(), &[]);
    let (v1, v2) = (Echo::spawn("v1"), Echo::spawn("v2"));
    // web: sticky by x-user; web-v2 speaks h2c to pier.
    let mut y = canary(&v1, &v2, 50, 50).replace(
        "metadata: {name: web}",
        "metadata: {name: web, annotations: {pier.dev/sticky: \"header:x-user\"}}",
    );
    y = y.replace(
        "metadata: {name: web-v2}\nspec:\n  type: ClusterIP\n  ports: [{name: p, port: 80, protocol: TCP}]",
        "metadata: {name: web-v2}\nspec:\n  type: ClusterIP\n  ports: [{name: p, port: 80, protocol: TCP, appProtocol: kubernetes.io/h2c}]",
    );
    assert!(y.contains("kubernetes.io/h2c"), "{y}");
    // checked: one live endpoint and one closed port, no retries; TCP checks every 100 ms.
    // Bound but not listening: connects are refused, and no other test can take the port.
    let reserved = tokio::net::TcpSocket::new_v4().unwrap();
    reserved.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let closed = reserved.local_addr().unwrap().port();
    y.push_str(
        &service_yaml("checked", 80, "TCP", "type: ClusterIP", &[(v1.http.port(), true), (closed, true)])
            .replace(
                "metadata: {name: checked}",
                "metadata: {name: checked, annotations: {pier.dev/health-check: tcp, pier.dev/health-check-interval: 100ms, pier.dev/health-check-unhealthy-threshold: \"1\", pier.dev/retries: \"0\", pier.dev/outlier-consecutive-failures: \"0\"}}",
            )
            .replace("port: 80, protocol: TCP}]", "port: 80, protocol: TCP, appProtocol: http}]"),
    );
    // http-checked: the same, but the bad endpoint is v1's TCP echo: it accepts connections
    // (so a TCP check would pass it) but does not speak HTTP, which only an HTTP check sees.
    y.push_str(
        &service_yaml("http-checked", 80, "TCP", "type: ClusterIP", &[(v1.http.port(), true), (v1.tcp.port(), true)])
            .replace(
                "metadata: {name: http-checked}",
                "metadata: {name: http-checked, annotations: {pier.dev/health-check: \"http:/healthz\", pier.dev/health-check-interval: 100ms, pier.dev/health-check-unhealthy-threshold: \"1\", pier.dev/retries: \"0\", pier.dev/outlier-consecutive-failures: \"0\"}}",
            )
            .replace("port: 80, protocol: TCP}]", "port: 80, protocol: TCP, appProtocol: http}]"),
    );
    apply(&d, &y);
    let web = vip(&d, "web", 80);
    let checked = vip(&d, "checked", 80);
    let http_checked = vip(&d, "http-checked", 80);
    wait_listening(web);
    wait_listening(checked);
    wait_listening(http_checked);

    // Clients speaking h2c (prior knowledge) to the VIP.
    let h2: HttpClient = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let (status, _) = get(&h2, &format!("http://{web}/"), None).await.unwrap();
    assert_eq!(status, 200);
    // The same user always lands in the same group; users spread over both.
    let mut groups: HashMap<String, String> = HashMap::new();
    for round in 0..3 {
        for u in 0..40 {
            let user: &'static str = Box::leak(format!("user-{u}").into_boxed_str());
            let (status, name) = get(&h2, &format!("http://{web}/"), Some(("x-user", user)))
                .await
                .unwrap();
            assert_eq!(status, 200);
            if round == 0 {
                groups.insert(user.to_string(), name);
            } else {
                assert_eq!(groups[user], name, "{user} stays on its group");
            }
        }
    }
    let on_v2 = groups.values().filter(|n| *n == "v2").count();
    assert!(
        (5..=35).contains(&on_v2),
        "users spread over both groups: {on_v2}/40 on v2"
    );

    // The closed endpoint is taken out by the checker, so every request succeeds without retries.
    tokio::time::sleep(Duration::from_millis(600)).await;
    for target in [checked, http_checked] {
        let t = load(format!("http://{target}/"), 2, 200, Arc::default(), None).await;
        assert!(
            t.failures.is_empty(),
            "{target}: {:?}",
            &t.failures[..t.failures.len().min(5)]
        );
    }
    assert!(metric(&d, "pier_proxy_endpoint_healthy{") >= 1.0);
    let (_, body) = d.admin("/metrics");
    assert!(
        body.lines()
            .any(|l| l.starts_with("pier_proxy_endpoint_healthy{")
                && l.contains(&format!("127.0.0.1:{closed}"))
                && l.ends_with(" 0")),
        "the closed endpoint is reported unhealthy"
    );
    assert!(
        body.lines()
            .any(|l| l.starts_with("pier_proxy_endpoint_healthy{")
                && l.contains(&format!("127.0.0.1:{}", v1.tcp.port()))
                && l.ends_with(" 0")),
        "the endpoint that does not speak HTTP is reported unhealthy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_unmatched_routes_and_empty_groups_get_short_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let d = proxy_daemon(tmp.path(), &[]);
    let e = Echo::spawn("e");
    let mut y = service_yaml("api", 80, "TCP", "type: ClusterIP", &[]);
    y.push_str(&service_yaml(
        "api-v1",
        80,
        "TCP",
        "type: ClusterIP",
        &[(e.http.port(), true)],
    ));
    y.push_str(&service_yaml(
        "api-empty",
        80,
        "TCP",
        "type: ClusterIP",
        &[],
    ));
    y.push_str(&http_route(
        "api",
        "api",
        "  - matches: [{path: {type: PathPrefix, value: /slow}}]\n    timeouts: {request: 300ms}\n    backendRefs: [{name: api-v1, port: 80}]\n  - matches: [{path: {type: PathPrefix, value: /delay}}]\n    backendRefs: [{name: api-v1, port: 80}]\n  - matches: [{path: {type: Exact, value: /empty}}]\n    backendRefs: [{name: api-empty, port: 80}]\n  - matches: [{path: {type: Exact, value: /none}}]\n    backendRefs: [{name: api-v1, port: 80, weight: 0}]\n",
    ));
    apply(&d, &y);
    let addr = vip(&d, "api", 80);
    wait_listening(addr);
    let c = client();
    let started = Instant::now();
    let (status, body) = get(&c, &format!("http://{addr}/slow/delay/2000"), None)
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (504, "upstream timed out"));
    assert!(started.elapsed() < Duration::from_millis(1500));
    let (status, _) = get(&c, &format!("http://{addr}/delay/50"), None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let (status, body) = get(&c, &format!("http://{addr}/empty"), None)
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (503, "no healthy upstream"));
    let (status, body) = get(&c, &format!("http://{addr}/none"), None).await.unwrap();
    assert_eq!((status, body.as_str()), (500, "route has no backend"));
    let (status, body) = get(&c, &format!("http://{addr}/elsewhere"), None)
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (404, "no route matches"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_response_bodies_small_and_streamed_pass_both_protocols() {
    let tmp = tempfile::tempdir().unwrap();
    let d = proxy_daemon(tmp.path(), &[]);
    let e = Echo::spawn("e");
    apply(
        &d,
        &service_yaml("up", 80, "TCP", "type: ClusterIP", &[(e.http.port(), true)]).replace(
            "port: 80, protocol: TCP}]",
            "port: 80, protocol: TCP, appProtocol: http}]",
        ),
    );
    let addr = vip(&d, "up", 80);
    wait_listening(addr);
    let h1: Client<_, http_body_util::Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let h2: Client<_, http_body_util::Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    // 1 KB is buffered (and could be retried); 300 KB streams through, chunked upstream; 3 MB
    // over h2c is larger than pier's flow-control windows, which must reopen as it is sent on.
    for (c, size) in [
        (&h1, 1_000usize),
        (&h1, 300_000),
        (&h2, 1_000),
        (&h2, 3_000_000),
    ] {
        let req = hyper::Request::post(format!("http://{addr}/upload"))
            .body(http_body_util::Full::new(Bytes::from(vec![b'x'; size])))
            .unwrap();
        let resp = c.request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["bodyBytes"], size, "{v}");
        assert_eq!(v["method"], "POST");
    }
    // And 5 MB back from the HTTP/1.1 endpoint to an h2c client, past its windows too.
    let resp = h2
        .get(format!("http://{addr}/bytes/5000000").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], "5000000");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 5_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unresolved_backends_get_500_and_parentless_routes_are_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let d = proxy_daemon(tmp.path(), &[]);
    let v1 = Echo::spawn("v1");
    let mut y = service_yaml("web", 80, "TCP", "type: ClusterIP", &[]);
    y.push_str(&service_yaml(
        "web-v1",
        80,
        "TCP",
        "type: ClusterIP",
        &[(v1.http.port(), true)],
    ));
    // Half to a Service, half to a custom backend kind pier cannot resolve (as Gateway API
    // implementations do with a backend they do not support: keep the route, refuse its share).
    y.push_str(&http_route(
        "web-split",
        "web",
        "  - backendRefs: [{name: web-v1, port: 80, weight: 1}, {group: example.com, kind: Bucket, name: assets, weight: 1}]\n",
    ));
    // A route without parents is valid Gateway API: stored, attached to nothing.
    y.push_str("---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: orphan}\nspec:\n  rules: [{backendRefs: [{name: web-v1, port: 80}]}]\n");
    let out = d.pier_stdin(&["apply", "-f", "-"], &y);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let warnings = common::stderr(&out);
    assert!(
        warnings.contains("ResolvedRefs=False") && warnings.contains("example.com/Bucket"),
        "{warnings}"
    );
    assert!(warnings.contains("attaches to no parent"), "{warnings}");
    assert!(d.pier(&["get", "httproute", "orphan"]).status.success());

    let addr = vip(&d, "web", 80);
    wait_listening(addr);
    let t = load(format!("http://{addr}/"), 4, 400, Arc::default(), None).await;
    let refused = t.failures.iter().filter(|f| f.starts_with("500")).count();
    println!(
        "1:1 Service / unresolved: v1 {}, 500 {refused}, other failures {}",
        t.by_name.get("v1").copied().unwrap_or(0),
        t.failures.len() - refused
    );
    assert_eq!(
        refused,
        t.failures.len(),
        "{:?}",
        &t.failures[..5.min(t.failures.len())]
    );
    assert_eq!(t.total(), 400);
    let share = t.share("v1");
    assert!((0.4..=0.6).contains(&share), "v1 share {share}");
}

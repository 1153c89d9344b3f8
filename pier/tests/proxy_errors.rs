//! The proxy when things go wrong: hostile clients, snapshots that cannot be applied,
//! timeouts and short errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::proxy::*;

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

//! End to end through the userspace proxy: a daemon serving VIPs on loopback stand-ins,
//! `pier echo` processes as endpoints, real HTTP/TCP/UDP clients. Canary splits, weight
//! changes and scaling under load, L4 TCP and UDP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::proxy::*;

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

//! The proxy's upstream side: h2c groups, sticky canaries, active health checks in each
//! protocol, bodies both ways, and responses whose framing is ambiguous.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use common::proxy::*;

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

/// An endpoint that speaks only h2c (HTTP/2 with prior knowledge): `/healthz` answers 200,
/// anything else `h2only`. HTTP/1.1 requests fail at its preface check.
async fn h2c_only_endpoint() -> std::net::SocketAddr {
    use hyper::server::conn::http2;
    use hyper_util::rt::TokioIo;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(
                |req: hyper::Request<hyper::body::Incoming>| async move {
                    let body = if req.uri().path() == "/healthz" {
                        "ok"
                    } else {
                        "h2only"
                    };
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(Bytes::from_static(body.as_bytes())),
                    ))
                },
            );
            tokio::spawn(
                http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_groups_are_health_checked_over_http2() {
    let tmp = tempfile::tempdir().unwrap();
    let d = proxy_daemon(tmp.path(), &[]);
    let v1 = Echo::spawn("v1");
    let h2only = h2c_only_endpoint().await;
    // The good endpoint speaks only h2c; the bad one is a TCP echo that accepts connections
    // but speaks no HTTP. Checked every 100 ms, out after one failure, no retries.
    let y = service_yaml(
        "h2-checked",
        80,
        "TCP",
        "type: ClusterIP",
        &[(h2only.port(), true), (v1.tcp.port(), true)],
    )
    .replace(
        "metadata: {name: h2-checked}",
        "metadata: {name: h2-checked, annotations: {pier.dev/health-check: \"http:/healthz\", pier.dev/health-check-interval: 100ms, pier.dev/health-check-unhealthy-threshold: \"1\", pier.dev/retries: \"0\", pier.dev/outlier-consecutive-failures: \"0\"}}",
    )
    .replace(
        "port: 80, protocol: TCP}]",
        "port: 80, protocol: TCP, appProtocol: kubernetes.io/h2c}]",
    );
    apply(&d, &y);
    let target = vip(&d, "h2-checked", 80);
    wait_listening(target);
    tokio::time::sleep(Duration::from_millis(600)).await;

    let healthy = |port: u16| {
        let (_, body) = d.admin("/metrics");
        body.lines()
            .find(|l| {
                l.starts_with("pier_proxy_endpoint_healthy{")
                    && l.contains(&format!("127.0.0.1:{port}\""))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    let t = load(format!("http://{target}/"), 2, 100, Arc::default(), None).await;
    assert!(
        t.failures.is_empty(),
        "{:?}",
        &t.failures[..t.failures.len().min(5)]
    );
    assert_eq!(t.by_name.get("h2only"), Some(&100));
    assert_eq!(
        healthy(h2only.port()),
        Some(1.0),
        "the h2c-only endpoint passes its checks"
    );
    assert_eq!(
        healthy(v1.tcp.port()),
        Some(0.0),
        "the endpoint that speaks no HTTP/2 fails them"
    );
}

/// A raw HTTP/1.1 endpoint that answers every request with `response` and counts the
/// connections it accepted and the ones pier closed after the answer.
fn raw_endpoint(response: &'static [u8]) -> (u16, Arc<(AtomicUsize, AtomicUsize)>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let counts = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
    let seen = Arc::clone(&counts);
    std::thread::spawn(move || {
        for stream in listener.incoming().take(8) {
            let Ok(mut s) = stream else { return };
            seen.0.fetch_add(1, Ordering::SeqCst);
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut buf = [0u8; 4096];
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {
                    if s.write_all(response).is_err() {
                        return;
                    }
                }
                seen.1.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (port, counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_upstream_framing_gets_502_and_its_connection_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let d = proxy_daemon(tmp.path(), &[]);
    let cases: [(&str, &'static [u8]); 2] = [
        (
            "cl-te",
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
        ),
        (
            "cl-cl",
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 30\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
        ),
    ];
    let mut endpoints = Vec::new();
    let mut y = String::new();
    for (name, response) in cases {
        let (port, counts) = raw_endpoint(response);
        y.push_str(
            &service_yaml(name, 80, "TCP", "type: ClusterIP", &[(port, true)])
                .replace(
                    &format!("metadata: {{name: {name}}}"),
                    &format!(
                        "metadata: {{name: {name}, annotations: {{pier.dev/retries: \"0\"}}}}"
                    ),
                )
                .replace(
                    "port: 80, protocol: TCP}]",
                    "port: 80, protocol: TCP, appProtocol: http}]",
                ),
        );
        endpoints.push((name, counts));
    }
    apply(&d, &y);
    let c = client();
    for (name, counts) in &endpoints {
        let target = vip(&d, name, 80);
        wait_listening(target);
        for round in 1..=2 {
            let (status, _) = get(&c, &format!("http://{target}/"), None).await.unwrap();
            assert_eq!(status, 502, "{name}: an ambiguous response is not relayed");
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while counts.1.load(Ordering::SeqCst) < round {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{name}: pier closes the connection"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(
                counts.0.load(Ordering::SeqCst),
                round,
                "{name}: every request on a fresh connection, none reused after the desync"
            );
        }
    }
}

//! Ingress end to end: ingress-nginx's canary example applied unchanged (with an `nginx`
//! IngressClass pointing at pier), its weight, header and cookie rules; two HTTPS hosts with
//! their own certificates checked by curl against the test CA, HTTP/2 over TLS, redirects,
//! a certificate rotation that open connections survive, and hostile TLS clients (stalled,
//! garbage, an oversized ClientHello, an unknown name).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;

use common::proxy::*;
use common::tls::{curl, Ca};
use common::{have, skip, Daemon};

const HOST: &str = "echo.prod.mydomain.com";

/// A proxy daemon whose Ingress listeners take free loopback ports: (daemon, HTTP, HTTPS).
fn edge_daemon(dir: &std::path::Path, extra: &[&str]) -> (Daemon, SocketAddr, SocketAddr) {
    let port = || pier_testkit::free_port("127.0.0.1").unwrap();
    let http = SocketAddr::from(([127, 0, 0, 1], port()));
    let https = SocketAddr::from(([127, 0, 0, 1], port()));
    let (http_arg, https_arg) = (http.to_string(), https.to_string());
    let mut args = vec![
        "--ingress-listen",
        &http_arg,
        "--ingress-tls-listen",
        &https_arg,
    ];
    args.extend_from_slice(extra);
    (proxy_daemon(dir, &args), http, https)
}

/// One HTTP/1.1 request over a fresh connection: (status, head, body as JSON or Null).
fn request(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, Value) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        common::dechunk(body)
    } else {
        body.to_string()
    };
    (
        status,
        head.to_string(),
        serde_json::from_str(&body).unwrap_or(Value::Null),
    )
}

fn name_of(addr: SocketAddr, headers: &[(&str, &str)]) -> String {
    let (status, head, body) = request(addr, HOST, "/", headers);
    assert_eq!(status, 200, "{head}\n{body}");
    match body["name"].as_str() {
        Some(name) => name.to_string(),
        None => panic!("no echo name: {head}\n{body}"),
    }
}

/// Requests until `check` holds for the answer (10 s at most).
fn until(addr: SocketAddr, host: &str, what: &str, check: impl Fn(u16, &Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() && {
            let (status, _, body) = request(addr, host, "/", &[]);
            check(status, &body)
        };
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "{what} within 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn metric(d: &Daemon, prefix: &str) -> f64 {
    let (_, text) = d.admin("/metrics");
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn wait_for_metrics(d: &Daemon, check: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, metrics) = d.admin("/metrics");
        if check(&metrics) {
            return;
        }
        assert!(Instant::now() < deadline, "metrics within 10 s:\n{metrics}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn backends(d: &Daemon, echoes: &[(&str, &Echo)]) {
    let mut y = String::new();
    for (name, echo) in echoes {
        y.push_str(&service_yaml(
            name,
            80,
            "TCP",
            "",
            &[(echo.http.port(), true)],
        ));
    }
    apply(d, &y);
}

#[test]
fn ingress_nginx_canary_example_splits_by_weight_header_and_cookie() {
    if !have("curl") {
        return skip("curl is not installed (scripts/deps test installs it)");
    }
    let tmp = tempfile::tempdir().unwrap();
    let (d, http, _) = edge_daemon(tmp.path(), &[]);
    let (production, canary) = (Echo::spawn("production"), Echo::spawn("canary"));
    backends(&d, &[("production", &production), ("canary", &canary)]);
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ingress-nginx");
    for f in ["ingress-class.yaml", "canary.yaml"] {
        let out = d.pier(&["apply", "-f", &format!("{fixtures}/{f}")]);
        assert!(out.status.success(), "{f}: {}", common::stderr(&out));
    }
    until(http, HOST, "the example answers", |s, _| s == 200);

    // The example as written: canary-weight 50.
    let mut canary_hits = 0;
    for _ in 0..200 {
        canary_hits += usize::from(name_of(http, &[]) == "canary");
    }
    println!("canary-weight 50: {canary_hits}/200 to the canary");
    assert!((85..=115).contains(&canary_hits), "{canary_hits}/200");

    // Weight 20 with a header and a cookie, as the annotations' documentation describes them.
    let text = std::fs::read_to_string(format!("{fixtures}/canary.yaml")).unwrap();
    let text = text.replace(
        "nginx.ingress.kubernetes.io/canary-weight: \"50\"",
        "nginx.ingress.kubernetes.io/canary-weight: \"20\"\n    nginx.ingress.kubernetes.io/canary-by-header: X-Canary\n    nginx.ingress.kubernetes.io/canary-by-cookie: canary_user",
    );
    apply(&d, &text);
    until(http, HOST, "the header rule applies", |_, _| {
        name_of(http, &[("X-Canary", "always")]) == "canary"
    });
    let mut canary_hits = 0;
    for _ in 0..2000 {
        canary_hits += usize::from(name_of(http, &[]) == "canary");
    }
    let share = canary_hits as f64 / 2000.0;
    println!(
        "canary-weight 20: {canary_hits}/2000 ({:.1}%) to the canary",
        share * 100.0
    );
    assert!((0.17..=0.23).contains(&share), "{share}");
    for _ in 0..20 {
        assert_eq!(name_of(http, &[("X-Canary", "always")]), "canary");
        assert_eq!(name_of(http, &[("X-Canary", "never")]), "production");
        assert_eq!(
            name_of(http, &[("Cookie", "a=b; canary_user=always")]),
            "canary"
        );
        assert_eq!(
            name_of(http, &[("Cookie", "canary_user=never")]),
            "production"
        );
        // The header comes before the cookie.
        assert_eq!(
            name_of(
                http,
                &[("X-Canary", "never"), ("Cookie", "canary_user=always")]
            ),
            "production"
        );
    }
    // Another value is ignored: the weight decides.
    let mut other = 0;
    for _ in 0..100 {
        other += usize::from(name_of(http, &[("X-Canary", "maybe")]) == "canary");
    }
    assert!((10..=30).contains(&other), "{other}/100");

    // An unknown host gets the default backend's 404; metrics name the Ingress and backend.
    let (status, _, _) = request(http, "other.example.com", "/", &[]);
    assert_eq!(status, 404);
    let served = metric(
        &d,
        "pier_ingress_requests_total{backend=\"default/canary:80\",code=\"200\",host=\"echo.prod.mydomain.com\",ingress=\"default/canary\"}",
    );
    assert!(served >= 400.0, "canary requests counted: {served}");

    // `pier get ingress` shows kubectl's columns.
    let out = d.pier(&["get", "ingress"]);
    let table = common::stdout(&out);
    assert!(
        table.contains("CLASS") && table.contains("nginx"),
        "{table}"
    );
    assert!(table.contains(HOST), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_hosts_get_their_certificates_rotation_keeps_open_connections() {
    if !have("curl") {
        return skip("curl is not installed (scripts/deps test installs it)");
    }
    let tmp = tempfile::tempdir().unwrap();
    let (d, http, https) = edge_daemon(tmp.path(), &["--proxy-header-timeout", "2s"]);
    let (site_a, site_b) = (Echo::spawn("site-a"), Echo::spawn("site-b"));
    backends(&d, &[("site-a", &site_a), ("site-b", &site_b)]);
    let ca = Ca::new();
    let ca_file = tmp.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let ca_file = ca_file.to_str().unwrap().to_string();
    apply(&d, &ca.secret("a-tls", "a.example.com"));
    apply(&d, &ca.secret("b-tls", "b.example.com"));
    apply(
        &d,
        r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: sites}
spec:
  ingressClassName: pier
  tls:
  - {hosts: [a.example.com], secretName: a-tls}
  - {hosts: [b.example.com], secretName: b-tls}
  rules:
  - host: a.example.com
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: site-a, port: {number: 80}}}}]
  - host: b.example.com
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: site-b, port: {number: 80}}}}]
"#,
    );
    let port = https.port();
    let resolve = |host: &str| format!("{host}:{port}:127.0.0.1");
    let url = |host: &str, path: &str| format!("https://{host}:{port}{path}");
    // curl trusting the test CA, `host` resolved to the HTTPS listener.
    let https_get = |host: &str, path: &str, extra: &[&str]| {
        let (resolve, url) = (resolve(host), url(host, path));
        let mut args = vec!["--cacert", &ca_file, "--resolve", &resolve];
        args.extend_from_slice(extra);
        args.push(&url);
        curl(&args)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (ok, out) = https_get("a.example.com", "/", &[]);
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "HTTPS within 10 s: {out}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Each host its certificate (curl checks it against the CA and the name) and backend.
    for (host, name) in [("a.example.com", "site-a"), ("b.example.com", "site-b")] {
        let (ok, out) = https_get(host, "/x", &[]);
        assert!(ok, "{host}: {out}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["name"], name, "{out}");
        assert_eq!(v["xForwardedProto"], "https", "{out}");
        assert_eq!(
            v["host"].as_str(),
            Some(format!("{host}:{port}").as_str()),
            "{out}"
        );
        let (ok, version) = https_get(
            host,
            "/",
            &["--http2", "-o", "/dev/null", "-w", "%{http_version}"],
        );
        assert!(ok && version == "2", "{host} over HTTP/2: {version}");
    }

    // Plain HTTP to a host with a certificate is redirected, path and query kept.
    let (status, head, _) = request(http, "a.example.com", "/p?q=1", &[]);
    assert_eq!(status, 308, "{head}");
    let location = format!("location: https://a.example.com:{port}/p?q=1");
    assert!(head.to_ascii_lowercase().contains(&location), "{head}");

    // Hostile clients: a stalled handshake, garbage, an oversized ClientHello, an unknown
    // name; others carry on.
    let mut stalled = TcpStream::connect(https).unwrap();
    let mut garbage = TcpStream::connect(https).unwrap();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    // A ClientHello claiming 16 MiB: refused from its header, not buffered.
    let mut huge = TcpStream::connect(https).unwrap();
    let mut record = vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0xff, 0xff, 0xff];
    record.resize(5 + 0x4000, 0);
    huge.write_all(&record).unwrap();
    let (ok, out) = https_get("nobody.example.com", "/", &[]);
    assert!(!ok, "an unknown name has no certificate: {out}");
    let (ok, out) = https_get("b.example.com", "/", &[]);
    assert!(ok, "another client is served meanwhile: {out}");
    for (what, s) in [
        ("garbage", &mut garbage),
        ("an oversized ClientHello", &mut huge),
        ("a stalled handshake", &mut stalled),
    ] {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 512];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{what} was cut off"
        );
    }
    assert!(
        metric(
            &d,
            "pier_tls_handshake_failures_total{reason=\"unknown_sni\"}"
        ) >= 1.0
    );
    assert!(metric(&d, "pier_tls_handshake_failures_total{reason=\"timeout\"}") >= 1.0);
    assert!(metric(&d, "pier_tls_handshake_failures_total{reason=\"protocol\"}") >= 1.0);
    assert!(metric(&d, "pier_tls_handshakes_total{") >= 4.0);

    // Rotation: a keep-alive connection opened before goes on with its certificate; new
    // connections get the new one.
    let mut open = TlsClient::connect(https, "a.example.com", &ca.pem).await;
    let before = open.certificate.clone();
    assert_eq!(open.get("a.example.com").await, "site-a");
    apply(&d, &ca.secret("a-tls", "a.example.com"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let fresh = TlsClient::connect(https, "a.example.com", &ca.pem).await;
        if fresh.certificate != before {
            break;
        }
        assert!(Instant::now() < deadline, "the new certificate within 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        open.get("a.example.com").await,
        "site-a",
        "the open connection continues"
    );
}

/// A TLS client holding one HTTP/1.1 keep-alive connection.
struct TlsClient {
    certificate: Vec<u8>,
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
}

impl TlsClient {
    async fn connect(addr: SocketAddr, host: &str, ca_pem: &str) -> TlsClient {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from(host.to_string()).unwrap();
        let tls = connector.connect(name, tcp).await.unwrap();
        let certificate = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        TlsClient {
            certificate,
            sender,
        }
    }

    async fn get(&mut self, host: &str) -> String {
        let req = hyper::Request::get("/")
            .header("host", host)
            .body(Empty::new())
            .unwrap();
        let resp = self.sender.send_request(req).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&body).unwrap();
        v["name"].as_str().unwrap().to_string()
    }
}

#[test]
fn paths_wildcards_rewrites_body_limits_and_h2c_backends() {
    let tmp = tempfile::tempdir().unwrap();
    let (d, http, _) = edge_daemon(tmp.path(), &[]);
    let echoes = [
        Echo::spawn("api"),
        Echo::spawn("exact"),
        Echo::spawn("web"),
        Echo::spawn("wild"),
        Echo::spawn("fallback"),
        Echo::spawn("grpc"),
    ];
    let named: Vec<(&str, &Echo)> = ["api", "exact", "web", "wild", "fallback", "grpc"]
        .into_iter()
        .zip(&echoes)
        .collect();
    backends(&d, &named);
    apply(
        &d,
        r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop}
spec:
  ingressClassName: pier
  defaultBackend: {service: {name: fallback, port: {number: 80}}}
  rules:
  - host: shop.example.com
    http:
      paths:
      - {path: /api, pathType: Prefix, backend: {service: {name: api, port: {name: p}}}}
      - {path: /api/v1/status, pathType: Exact, backend: {service: {name: exact, port: {number: 80}}}}
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
  - host: "*.example.com"
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: wild, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: rewrite
  annotations:
    nginx.ingress.kubernetes.io/rewrite-target: /$2
    nginx.ingress.kubernetes.io/proxy-body-size: 1k
    nginx.ingress.kubernetes.io/backend-protocol: GRPC
spec:
  ingressClassName: pier
  rules:
  - host: rw.example.com
    http:
      paths:
      - {path: /something(/|$)(.*), pathType: ImplementationSpecific, backend: {service: {name: grpc, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: versions
  annotations: {nginx.ingress.kubernetes.io/use-regex: "true"}
spec:
  ingressClassName: pier
  rules:
  - host: re.example.com
    http:
      paths:
      - {path: "/v[0-9]+/", pathType: ImplementationSpecific, backend: {service: {name: api, port: {number: 80}}}}
"#,
    );
    until(http, "shop.example.com", "the shop answers", |s, _| {
        s == 200
    });
    let answer = |host: &str, path: &str| {
        let (status, head, body) = request(http, host, path, &[]);
        assert_eq!(status, 200, "{host}{path}: {head}");
        (body["name"].as_str().unwrap().to_string(), body)
    };
    for (host, path, want) in [
        ("shop.example.com", "/api", "api"),
        ("shop.example.com", "/api/v1/status", "exact"),
        ("shop.example.com", "/api/v1/status/x", "api"),
        ("shop.example.com", "/apix", "web"),
        ("SHOP.example.com", "/", "web"),
        ("a.example.com", "/x", "wild"),
        ("a.b.example.com", "/x", "fallback"),
        ("unknown.test", "/", "fallback"),
    ] {
        assert_eq!(answer(host, path).0, want, "{host}{path}");
    }
    let (name, body) = answer("rw.example.com", "/something/new/path?q=1");
    assert_eq!(name, "grpc");
    assert_eq!(body["path"], "/new/path", "{body}");
    assert_eq!(
        body["httpVersion"], "HTTP/2.0",
        "backend-protocol GRPC: {body}"
    );
    let (_, body) = answer("rw.example.com", "/something");
    assert_eq!(body["path"], "/", "{body}");
    // use-regex: case-insensitive, from the start, the path passed on as it came.
    let (name, body) = answer("re.example.com", "/V2/items");
    assert_eq!(
        (name.as_str(), body["path"].as_str()),
        ("api", Some("/V2/items"))
    );
    assert_eq!(request(http, "re.example.com", "/vx/items", &[]).0, 404);

    // proxy-body-size 1k: a bigger declared body is refused before it reaches the backend.
    let mut s = TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let big = "x".repeat(2048);
    write!(
        s,
        "POST /something/up HTTP/1.1\r\nHost: rw.example.com\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{big}",
        big.len()
    )
    .unwrap();
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");

    // pier's counters name the Ingress, host rule and backend.
    let (_, metrics) = d.admin("/metrics");
    assert!(
        metrics.contains("pier_ingress_requests_total{backend=\"default/grpc:80\",code=\"200\",host=\"rw.example.com\",ingress=\"default/rewrite\"} 2"),
        "{}",
        metrics.lines().filter(|l| l.starts_with("pier_ingress_requests")).collect::<Vec<_>>().join("\n")
    );

    // A new endpoint of a backend Service takes requests, with the Ingress unchanged.
    let more = Echo::spawn("web-2");
    apply(&d, &slice_yaml("web", 1, more.http.port(), "TCP", true));
    until(
        http,
        "shop.example.com",
        "the new endpoint answers",
        |_, body| body["name"] == "web-2",
    );

    // A deleted Ingress takes its series with it; the others keep counting.
    let (_, before) = d.admin("/metrics");
    assert!(
        before.contains("ingress=\"default/versions\""),
        "counted first"
    );
    let out = d.pier(&["delete", "ingress", "versions"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    wait_for_metrics(&d, |m| !m.contains("ingress=\"default/versions\""));
    let (_, metrics) = d.admin("/metrics");
    assert!(
        metrics.contains("ingress=\"default/shop\""),
        "the shop's series stay"
    );
}

//! Gateway API end to end: the `simple-http-https` example applied unchanged (a Gateway with an
//! HTTP and two HTTPS listeners, two HTTPRoutes on HTTPS, a redirect route on HTTP) behind a
//! GatewayClass of pier's, checked with curl against the test CA; route filters (header
//! changes, a prefix rewrite); and the statuses Gateway API asks for: the class Accepted, the
//! Gateway Programmed with its listeners' attached routes, each route Accepted and its
//! references resolved, or why not. The `tls-routing` example: a TLSRoute passing TLS through
//! by SNI name to a backend that holds the certificate, and a daemon restart that serves on.
//! The `backendtlspolicy` example: pier speaks TLS to a Service's endpoints, verified against
//! the CA in a ConfigMap, and refuses to when the name or the CA does not match.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::proxy::*;
use common::tls::{curl, Ca};
use common::{have, is_root, skip, Daemon};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gateway-api");

/// A loopback address of this test's own, so its :80 and :443 are free.
fn own_loopback() -> Ipv4Addr {
    let pid = std::process::id();
    Ipv4Addr::new(127, 93, (pid >> 8) as u8, (pid as u8).max(2))
}

/// A proxy daemon serving Gateway listeners on `ip` (Ingress sockets on free loopback ports).
fn gateway_daemon(dir: &std::path::Path, ip: Ipv4Addr) -> Daemon {
    let ip = ip.to_string();
    proxy_daemon(
        dir,
        &[
            "--gateway-address",
            &ip,
            "--ingress-listen",
            "127.0.0.1:0",
            "--ingress-tls-listen",
            "127.0.0.1:0",
        ],
    )
}

/// Waits until `addr` takes connections (10 s at most).
fn listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "{addr} listening within 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads `args` as JSON until `check` holds (10 s at most).
fn until_json(d: &Daemon, args: &[&str], check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = d.get_json(args);
        if check(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{args:?} within 10 s: {v:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The status of condition `kind` in the conditions at `pointer`.
fn condition<'a>(v: &'a Value, pointer: &str, kind: &str) -> Option<&'a Value> {
    v.pointer(pointer)?
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

fn is_true(v: &Value, pointer: &str, kind: &str) -> bool {
    condition(v, pointer, kind).is_some_and(|c| c["status"] == "True")
}

#[test]
fn gateway_api_https_example_serves_redirects_and_reports_status() {
    if !is_root() {
        return skip("Gateway listeners take ports 80 and 443: needs root");
    }
    if !have("curl") {
        return skip("curl is not installed (scripts/deps test installs it)");
    }
    let tmp = tempfile::tempdir().unwrap();
    let ip = own_loopback();
    let d = gateway_daemon(tmp.path(), ip);
    let apps = ["foo-app", "foo-orders-app", "bar-app"].map(|name| (name, Echo::spawn(name)));
    let mut services = String::new();
    for (name, echo) in &apps {
        services.push_str(&service_yaml(
            name,
            80,
            "TCP",
            "",
            &[(echo.http.port(), true)],
        ));
    }
    apply(&d, &services);
    let ca = Ca::new();
    let ca_file = tmp.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let ca_file = ca_file.to_str().unwrap().to_string();
    apply(&d, &ca.secret("example-com", "*.example.com"));
    apply(&d, &ca.secret("foo-com", "*.foo.com"));
    for f in [
        "gatewayclass.yaml",
        "gateway.yaml",
        "foo-route.yaml",
        "bar-route.yaml",
        "tls-redirect-route.yaml",
    ] {
        let out = d.pier(&["apply", "-f", &format!("{FIXTURES}/simple-http-https/{f}")]);
        assert!(out.status.success(), "{f}: {}", common::stderr(&out));
    }
    let https = SocketAddr::new(IpAddr::V4(ip), 443);
    listening(https);
    listening(SocketAddr::new(IpAddr::V4(ip), 80));
    listening(SocketAddr::new(IpAddr::V4(ip), 8443));

    // Each host and path reaches its app over HTTPS, the certificate checked against the CA.
    let get = |host: &str, port: u16, path: &str, extra: &[&str]| {
        let resolve = format!("{host}:{port}:{ip}");
        let url = format!("https://{host}:{port}{path}");
        let mut args = vec!["--cacert", ca_file.as_str(), "--resolve", &resolve];
        args.extend_from_slice(extra);
        args.push(&url);
        curl(&args)
    };
    let name_at = |host: &str, path: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (ok, out) = get(host, 443, path, &[]);
            if ok {
                if let Ok(v) = serde_json::from_str::<Value>(&out) {
                    return v["name"].as_str().unwrap_or_default().to_string();
                }
            }
            assert!(
                Instant::now() < deadline,
                "{host}{path} answers within 10 s: {out}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    assert_eq!(name_at("foo.example.com", "/"), "foo-app");
    assert_eq!(name_at("foo.example.com", "/orders/42"), "foo-orders-app");
    assert_eq!(name_at("foo.example.com", "/ordersx"), "foo-app");
    assert_eq!(name_at("bar.example.com", "/orders"), "bar-app");
    // HTTP/2 over TLS; the scheme reaches the backend.
    let (ok, out) = get(
        "bar.example.com",
        443,
        "/",
        &["--http2", "-o", "/dev/null", "-w", "%{http_version}"],
    );
    assert!(ok && out == "2", "{out}");
    let (ok, out) = get("bar.example.com", 443, "/", &[]);
    assert!(ok, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["xForwardedProto"], "https", "{v}");
    // A host the routes do not name has no route on the listener.
    let (_, out) = get(
        "baz.example.com",
        443,
        "/",
        &["-o", "/dev/null", "-w", "%{http_code}"],
    );
    assert_eq!(out, "404");
    // The third listener serves its own certificate (no route attaches to it).
    let (ok, out) = get(
        "x.foo.com",
        8443,
        "/",
        &["-o", "/dev/null", "-w", "%{http_code}"],
    );
    assert!(ok && out == "404", "{out}");

    // Plain HTTP is redirected to HTTPS, path and query kept; curl follows it.
    let resolve80 = format!("foo.example.com:80:{ip}");
    let (ok, head) = curl(&[
        "-i",
        "--resolve",
        &resolve80,
        "http://foo.example.com/orders/7?x=1",
    ]);
    assert!(ok, "{head}");
    assert!(head.starts_with("HTTP/1.1 302"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("location: https://foo.example.com/orders/7?x=1"),
        "{head}"
    );
    let resolve443 = format!("foo.example.com:443:{ip}");
    let (ok, out) = curl(&[
        "-L",
        "--cacert",
        &ca_file,
        "--resolve",
        &resolve80,
        "--resolve",
        &resolve443,
        "http://foo.example.com/orders/7",
    ]);
    assert!(ok && out.contains("foo-orders-app"), "{out}");

    // Statuses: the class accepted, the Gateway programmed, routes attached and accepted.
    let class = until_json(&d, &["gatewayclass", "prod"], |v| {
        is_true(v, "/status/conditions", "Accepted")
    });
    assert_eq!(
        class["spec"]["controllerName"],
        "pier.dev/gateway-controller"
    );
    let gw = until_json(&d, &["gateway", "example-gateway"], |v| {
        is_true(v, "/status/conditions", "Programmed")
            && v.pointer("/status/listeners/1/attachedRoutes") == Some(&Value::from(2))
    });
    let listeners = gw["status"]["listeners"].as_array().unwrap();
    let attached: Vec<(&str, i64)> = listeners
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap(),
                l["attachedRoutes"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        attached,
        [("http", 1), ("https", 2), ("https-default-tls-mode", 0)],
        "{gw:#}"
    );
    for i in 0..3 {
        let p = format!("/status/listeners/{i}/conditions");
        assert!(
            is_true(&gw, &p, "ResolvedRefs") && is_true(&gw, &p, "Programmed"),
            "{gw:#}"
        );
    }
    assert_eq!(
        gw["status"]["listeners"][0]["supportedKinds"][0]["kind"],
        "HTTPRoute"
    );
    for route in ["foo", "bar", "tls-redirect"] {
        let r = until_json(&d, &["httproute", route], |v| {
            is_true(v, "/status/parents/0/conditions", "Accepted")
        });
        assert!(
            is_true(&r, "/status/parents/0/conditions", "ResolvedRefs"),
            "{r:#}"
        );
        assert_eq!(
            r["status"]["parents"][0]["controllerName"],
            "pier.dev/gateway-controller"
        );
        assert_eq!(
            r["status"]["parents"][0]["parentRef"]["name"],
            "example-gateway"
        );
    }
    let table = common::stdout(&d.pier(&["get", "gateway"]));
    assert!(
        table.contains("PROGRAMMED") && table.contains("prod"),
        "{table}"
    );

    // A route whose host no listener takes is not accepted, and says why; one naming a
    // Service that does not exist is accepted with its references unresolved.
    apply(
        &d,
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: elsewhere}
spec:
  parentRefs: [{name: example-gateway}]
  hostnames: [shop.example.org]
  rules: [{backendRefs: [{name: foo-app, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: missing}
spec:
  parentRefs: [{name: example-gateway, sectionName: https}]
  hostnames: [missing.example.com]
  rules: [{backendRefs: [{name: not-there, port: 80}]}]
"#,
    );
    let r = until_json(&d, &["httproute", "elsewhere"], |v| {
        condition(v, "/status/parents/0/conditions", "Accepted").is_some()
    });
    let accepted = condition(&r, "/status/parents/0/conditions", "Accepted").unwrap();
    assert_eq!(accepted["status"], "False", "{r:#}");
    assert_eq!(accepted["reason"], "NoMatchingListenerHostname");
    let r = until_json(&d, &["httproute", "missing"], |v| {
        condition(v, "/status/parents/0/conditions", "ResolvedRefs").is_some()
    });
    let refs = condition(&r, "/status/parents/0/conditions", "ResolvedRefs").unwrap();
    assert_eq!(
        (&refs["status"], &refs["reason"]),
        (&Value::from("False"), &Value::from("BackendNotFound"))
    );
    assert!(
        is_true(&r, "/status/parents/0/conditions", "Accepted"),
        "{r:#}"
    );
    let (_, out) = get(
        "missing.example.com",
        443,
        "/",
        &["-o", "/dev/null", "-w", "%{http_code}"],
    );
    assert_eq!(out, "503", "no endpoints behind a missing Service");

    // Filters: request headers set and removed, a prefix rewritten, a response header added.
    apply(
        &d,
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: filtered}
spec:
  parentRefs: [{name: example-gateway, sectionName: https}]
  hostnames: [api.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v1}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: Host, value: internal.example.com}]
        remove: [x-debug]
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /api/v2}}
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        add: [{name: x-served-by, value: pier-gateway}]
    backendRefs: [{name: bar-app, port: 80}]
"#,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let out = loop {
        let (ok, out) = get(
            "api.example.com",
            443,
            "/v1/items?q=1",
            &["-i", "-H", "x-debug: 1"],
        );
        if ok && out.contains("bar-app") {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "the filtered route within 10 s: {out}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        out.to_ascii_lowercase()
            .contains("x-served-by: pier-gateway"),
        "{out}"
    );
    let body: Value = serde_json::from_str(out.split("\r\n\r\n").last().unwrap()).unwrap();
    assert_eq!(body["path"], "/api/v2/items", "{body}");
    assert_eq!(body["host"], "internal.example.com", "{body}");

    // Deleting the Gateway closes its listeners.
    let out = d.pier(&["delete", "gateway", "example-gateway"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&https, Duration::from_millis(200)).is_ok() {
        assert!(Instant::now() < deadline, "the listener closes within 10 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A TLS server on loopback holding `cert` for its name, answering any HTTP request with
/// `served-by:<name>`.
async fn tls_backend(name: &'static str, cert: &str, key: &str) -> SocketAddr {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let body = format!("served-by:{name}\n");
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_route_example_passes_tls_through_by_name_across_a_restart() {
    if !is_root() {
        return skip("Gateway listeners take port 443: needs root");
    }
    if !have("curl") {
        return skip("curl is not installed (scripts/deps test installs it)");
    }
    let tmp = tempfile::tempdir().unwrap();
    let ip = Ipv4Addr::new(
        127,
        95,
        (std::process::id() >> 8) as u8,
        (std::process::id() as u8).max(2),
    );
    let ca = Ca::new();
    let ca_file = tmp.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let ca_file = ca_file.to_str().unwrap().to_string();
    let (cert, key) = ca.issue("foo.example.com");
    let backend = tls_backend("foo-svc", &cert, &key).await;
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let d = gateway_daemon(&state, ip);
    apply(
        &d,
        &service_yaml("foo-svc", 443, "TCP", "", &[(backend.port(), true)]),
    );
    for f in ["gatewayclass.yaml", "gateway.yaml", "tls-route.yaml"] {
        let out = d.pier(&["apply", "-f", &format!("{FIXTURES}/tls-routing/{f}")]);
        assert!(out.status.success(), "{f}: {}", common::stderr(&out));
    }
    let tls = SocketAddr::new(IpAddr::V4(ip), 443);
    listening(tls);
    // curl checks the backend's own certificate: pier only read the name and passed it on.
    let fetch = |host: &str| {
        let resolve = format!("{host}:443:{ip}");
        curl(&[
            "--cacert",
            &ca_file,
            "--resolve",
            &resolve,
            &format!("https://{host}/"),
        ])
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (ok, out) = fetch("foo.example.com");
        if ok && out == "served-by:foo-svc\n" {
            break;
        }
        assert!(Instant::now() < deadline, "passthrough within 10 s: {out}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // HTTP/2 is the backend's to negotiate; a name no route takes is closed.
    let (ok, out) = fetch("bar.example.com");
    assert!(!ok, "{out}");

    // Status: the route accepted on the passthrough listener; TLS termination is reported
    // as not served, and the Gateway is programmed through its other listener.
    let r = until_json(&d, &["tlsroute", "foo-route"], |v| {
        is_true(v, "/status/parents/0/conditions", "Accepted")
            && is_true(v, "/status/parents/0/conditions", "ResolvedRefs")
    });
    assert_eq!(r["status"]["parents"][0]["parentRef"]["sectionName"], "tls");
    let gw = until_json(&d, &["gateway", "example-gateway"], |v| {
        is_true(v, "/status/conditions", "Programmed")
            && v.pointer("/status/listeners/0/attachedRoutes") == Some(&Value::from(1))
    });
    let terminate = condition(&gw, "/status/listeners/1/conditions", "Accepted").unwrap();
    assert_eq!(terminate["status"], "False", "{gw:#}");
    assert_eq!(terminate["reason"], "UnsupportedProtocol");
    assert_eq!(
        gw["status"]["listeners"][0]["supportedKinds"][0]["kind"],
        "TLSRoute"
    );

    // A restarted daemon serves the Gateway from its store at once.
    d.stop();
    assert!(TcpStream::connect_timeout(&tls, Duration::from_millis(500)).is_err());
    let d = gateway_daemon(&state, ip);
    listening(tls);
    let (ok, out) = fetch("foo.example.com");
    assert!(ok && out == "served-by:foo-svc\n", "{out}");
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_tls_policy_example_verifies_upstreams_against_the_configmap_ca() {
    if !have("curl") {
        return skip("curl is not installed (scripts/deps test installs it)");
    }
    let tmp = tempfile::tempdir().unwrap();
    let pid = std::process::id();
    let ip = Ipv4Addr::new(127, 96, (pid >> 8) as u8, (pid as u8).max(2));
    let ca = Ca::new();
    let (cert, key) = ca.issue("auth.example.com");
    let backend = tls_backend("auth", &cert, &key).await;
    let d = gateway_daemon(tmp.path(), ip);
    apply(
        &d,
        &service_yaml("auth", 443, "TCP", "", &[(backend.port(), true)]),
    );
    apply(
        &d,
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: pier}
spec: {controllerName: pier.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  gatewayClassName: pier
  listeners: [{name: web, port: 8080, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: auth}
spec:
  parentRefs: [{name: edge}]
  rules: [{backendRefs: [{name: auth, port: 443}]}]
"#,
    );
    let web = SocketAddr::new(IpAddr::V4(ip), 8080);
    listening(web);
    let url = format!("http://{web}/login");
    let get = || curl(&["-s", "-o", "-", "-w", " %{http_code}", &url]).1;
    let until = |what: &str, check: &dyn Fn(&str) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = get();
            if check(&out) {
                return out;
            }
            assert!(Instant::now() < deadline, "{what} within 10 s: {out}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // Without a policy pier speaks plain HTTP, which the TLS-only endpoint cannot answer.
    let out = until("a failure in plain HTTP", &|o: &str| o.ends_with(" 502"));
    assert!(!out.contains("served-by"), "{out}");

    // The example as written, with its ConfigMap holding the test CA.
    let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "auth-cert"}, "data": {"ca.crt": ca.pem}});
    apply(&d, &cm.to_string());
    let out = d.pier(&[
        "apply",
        "-f",
        &format!("{FIXTURES}/backendtlspolicy/backendtlspolicy-ca-certs.yaml"),
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    until("requests over verified TLS", &|o: &str| {
        o == "served-by:auth\n 200"
    });

    // Another name than the certificate's: verification fails, nothing goes in the clear.
    let policy = std::fs::read_to_string(format!(
        "{FIXTURES}/backendtlspolicy/backendtlspolicy-ca-certs.yaml"
    ))
    .unwrap();
    apply(
        &d,
        &policy.replace("hostname: auth.example.com", "hostname: other.example.com"),
    );
    let out = until("a refused certificate", &|o: &str| o.ends_with(" 502"));
    assert!(!out.contains("served-by"), "{out}");
    // The right name but another CA: refused as well.
    apply(&d, &policy);
    until("verified again", &|o: &str| o == "served-by:auth\n 200");
    let other = Ca::new();
    let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "auth-cert"}, "data": {"ca.crt": other.pem}});
    apply(&d, &cm.to_string());
    until("a certificate of an untrusted CA refused", &|o: &str| {
        o.ends_with(" 502")
    });
}

//! Gateway API end to end: the `simple-http-https` example applied unchanged (a Gateway with an
//! HTTP and two HTTPS listeners, two HTTPRoutes on HTTPS, a redirect route on HTTP) behind a
//! GatewayClass of pier's, checked with curl against the test CA; route filters (header
//! changes, a prefix rewrite); and the statuses Gateway API asks for: the class Accepted, the
//! Gateway Programmed with its listeners' attached routes, each route Accepted and its
//! references resolved, or why not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::gateway::*;
use common::proxy::*;
use common::tls::{curl, Ca};
use common::{have, is_root, skip};

#[test]
fn gateway_api_https_example_serves_redirects_and_reports_status() {
    if !is_root() {
        return skip("Gateway listeners take ports 80 and 443: needs root");
    }
    if !have("curl") {
        return skip("curl is not installed (scripts/deps test installs it)");
    }
    let tmp = tempfile::tempdir().unwrap();
    let ip = own_loopback(93);
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

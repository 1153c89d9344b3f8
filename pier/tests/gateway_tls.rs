//! Gateway API and TLS end to end: the `tls-routing` example, a TLSRoute passing TLS through
//! by SNI name to a backend that holds the certificate, across a daemon restart; and the
//! `backendtlspolicy` example, pier speaking TLS to a Service's endpoints, verified against
//! the CA in a ConfigMap, and refusing to when the name or the CA does not match.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::gateway::*;
use common::proxy::*;
use common::tls::{curl, tls_backend, Ca};
use common::{have, is_root, skip};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_route_example_passes_tls_through_by_name_across_a_restart() {
    if !is_root() {
        return skip("Gateway listeners take port 443: needs root");
    }
    if !have("curl") {
        return skip("curl is not installed (scripts/deps test installs it)");
    }
    let tmp = tempfile::tempdir().unwrap();
    let ip = own_loopback(95);
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
    let ip = own_loopback(96);
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

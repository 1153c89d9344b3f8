//! Gateway API through kubectl: the `simple-http-https` example applied with `kubectl apply`,
//! the columns of the Gateway API CRDs' printers, `kubectl wait` on the conditions pier
//! writes, `describe`, and errors naming the field of a bad Gateway.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::gateway::{own_loopback, FIXTURES};
use common::kubectl::*;

#[test]
fn kubectl_applies_waits_on_and_lists_gateways() {
    let dir = tempfile::tempdir().unwrap();
    let gateway_ip = own_loopback(94).to_string();
    let Some((_daemon, kubectl)) = start_with(
        dir.path(),
        &[
            "--no-runtime",
            "--gateway-address",
            &gateway_ip,
            "--ingress-listen",
            "127.0.0.1:0",
            "--ingress-tls-listen",
            "127.0.0.1:0",
        ],
    ) else {
        return;
    };
    for f in [
        "gatewayclass.yaml",
        "gateway.yaml",
        "foo-route.yaml",
        "bar-route.yaml",
        "tls-redirect-route.yaml",
    ] {
        kubectl.ok(&["apply", "-f", &format!("{FIXTURES}/simple-http-https/{f}")]);
    }
    kubectl.ok(&[
        "wait",
        "--for=condition=Accepted",
        "gatewayclass/prod",
        "--timeout=10s",
    ]);
    let classes = kubectl.ok(&["get", "gatewayclass"]);
    let header: Vec<&str> = classes.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "CONTROLLER", "ACCEPTED", "AGE"],
        "{classes}"
    );
    let row: Vec<&str> = classes.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], ["prod", "pier.dev/gateway-controller", "True"]);

    // The certificates are missing: the HTTPS listeners do not resolve their references, the
    // HTTP one is programmed, and so is the Gateway.
    kubectl.ok(&[
        "wait",
        "--for=condition=Programmed",
        "gateway/example-gateway",
        "--timeout=10s",
    ]);
    let reason = kubectl.ok(&[
        "get",
        "gateway",
        "example-gateway",
        "-o",
        "jsonpath={.status.listeners[1].conditions[?(@.type==\"ResolvedRefs\")].reason}",
    ]);
    assert_eq!(reason, "InvalidCertificateRef");
    let gateways = kubectl.ok(&["get", "gateways"]);
    let header: Vec<&str> = gateways
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "CLASS", "ADDRESS", "PROGRAMMED", "AGE"],
        "{gateways}"
    );
    assert!(
        gateways.contains("example-gateway") && gateways.contains("True"),
        "{gateways}"
    );
    let described = kubectl.ok(&["describe", "gateway", "example-gateway"]);
    assert!(described.contains("https-default-tls-mode"), "{described}");

    // Routes: accepted by the Gateway, as `kubectl get` and jsonpath show.
    kubectl.ok(&[
        "wait",
        "--for=jsonpath={.status.parents[0].conditions[0].status}=True",
        "httproute/foo",
        "--timeout=10s",
    ]);
    let routes = kubectl.ok(&["get", "httproutes"]);
    assert!(
        routes.contains("foo") && routes.contains("tls-redirect"),
        "{routes}"
    );

    // A bad Gateway is refused with the field named.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: bad}\nspec:\n  gatewayClassName: prod\n  listeners:\n  - {name: web, port: 443, protocol: HTTPS}\n  - {name: web, port: 70000, protocol: QUIC}\n",
    )
    .unwrap();
    let err = kubectl.fails(&["apply", "-f", bad.to_str().unwrap()]);
    for field in [
        "spec.listeners[0].tls",
        "spec.listeners[1].port",
        "spec.listeners[1].protocol",
        "spec.listeners[1].name",
    ] {
        assert!(err.contains(field), "{field}: {err}");
    }
}

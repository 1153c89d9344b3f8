//! Ingresses through kubectl: `kubectl create ingress` (a protobuf body), kubectl's columns,
//! `describe`, IngressClasses, a warning for an ingress-nginx annotation pier does not
//! implement, and an error naming the field of a bad one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::kubectl::*;

#[test]
fn kubectl_creates_lists_and_describes_ingresses() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_daemon, kubectl)) = start_with(
        dir.path(),
        &[
            "--no-runtime",
            // Never the machine's :80 and :443, which another test's Gateway may want.
            "--ingress-listen",
            "127.0.0.1:0",
            "--ingress-tls-listen",
            "127.0.0.1:0",
        ],
    ) else {
        return;
    };
    kubectl.ok(&[
        "create",
        "ingress",
        "shop",
        "--class=pier",
        "--rule=shop.example.com/api*=api:8080,tls=shop-tls",
        "--rule=shop.example.com/=web:http",
        "--annotation=nginx.ingress.kubernetes.io/proxy-body-size=8m",
    ]);
    let table = kubectl.ok(&["get", "ingress"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
    );
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], ["shop", "pier", "shop.example.com"], "{table}");
    assert!(table.contains("80, 443"), "{table}");
    let get = |path: &str| kubectl.ok(&["get", "ing", "shop", "-o", &format!("jsonpath={path}")]);
    assert_eq!(get("{.spec.rules[0].http.paths[0].pathType}"), "Prefix");
    assert_eq!(
        get("{.spec.rules[0].http.paths[0].backend.service.port.number}"),
        "8080"
    );
    assert_eq!(
        get("{.spec.rules[0].http.paths[1].backend.service.port.name}"),
        "http"
    );
    // kubectl sends `number: 0` beside a name; like the API server, pier does not keep it.
    assert_eq!(
        get("{.spec.rules[0].http.paths[1].backend.service.port.number}"),
        ""
    );
    assert_eq!(get("{.spec.tls[0].secretName}"), "shop-tls");
    // Served by pier: the node's address in the status, as kubectl shows it.
    let shop = until(&kubectl, &["ingress", "shop"], |v| {
        v.pointer("/status/loadBalancer/ingress/0/ip").is_some()
    });
    let ip = shop["status"]["loadBalancer"]["ingress"][0]["ip"]
        .as_str()
        .unwrap();
    assert!(kubectl.ok(&["get", "ingress", "shop"]).contains(ip));
    let described = kubectl.ok(&["describe", "ingress", "shop"]);
    assert!(described.contains("shop.example.com"), "{described}");

    let class = "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: pier\n  annotations: {ingressclass.kubernetes.io/is-default-class: \"true\"}\nspec:\n  controller: pier.dev/ingress-controller\n";
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    kubectl.ok(&["apply", "-f", &file("class.yaml", class)]);
    let classes = kubectl.ok(&["get", "ingressclass"]);
    assert!(classes.contains("pier.dev/ingress-controller"), "{classes}");

    let warned = kubectl.run(&["apply", "-f", &file("cors.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: cors\n  annotations: {nginx.ingress.kubernetes.io/enable-cors: \"true\"}\nspec:\n  defaultBackend: {service: {name: web, port: {number: 80}}}\n",
    )]);
    assert!(warned.status.success());
    let warned = String::from_utf8_lossy(&warned.stderr);
    assert!(warned.contains("enable-cors"), "{warned}");
    let bad = kubectl.fails(&["apply", "-f", &file("bad.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: bad\n  annotations: {nginx.ingress.kubernetes.io/canary-weight: lots}\nspec:\n  rules:\n  - host: a.example.com\n    http:\n      paths: [{path: /, pathType: Sometimes, backend: {service: {name: web, port: {number: 80}}}}]\n",
    )]);
    assert!(bad.contains("pathType"), "{bad}");
    assert!(bad.contains("canary-weight"), "{bad}");
}

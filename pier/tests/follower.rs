//! Follower mode: daemon B follows daemon A's Kubernetes API through a kubeconfig from `pier
//! kubeconfig`, as pier follows a real cluster in place of kube-proxy + CoreDNS. B's DNS
//! answers A's Services (a new one within a second), B's proxy balances to A's endpoints,
//! B serves A's Ingresses with their TLS Secrets (and follows no other Secret), and B writes
//! nothing to A but its own Lease and Events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::proxy::{service_cidr, service_yaml, vip, wait_listening, Echo, PORT_OFFSET};
use common::*;
use pier_testkit::wait_for;

/// `resourceVersion` of every object A holds, but Leases and Events.
fn versions(a: &Daemon) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for kind in [
        "svc",
        "endpointslices",
        "deploy",
        "pods",
        "namespaces",
        "nodes",
        "httproutes",
    ] {
        let list = a.get_json(&[kind, "-A"]);
        for item in list["items"].as_array().unwrap() {
            let meta = &item["metadata"];
            let key = format!("{kind}/{}/{}", meta["namespace"], meta["name"]);
            out.insert(key, meta["resourceVersion"].as_str().unwrap().to_string());
        }
    }
    out
}

/// A self-signed certificate and key for `site.example.com` (PEM), made once.
static SITE_CERT: std::sync::LazyLock<(String, String)> = std::sync::LazyLock::new(|| {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["site.example.com".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
});

/// B's DNS port, from its status.
fn dns_port(d: &Daemon) -> u16 {
    let status = d.try_status().unwrap();
    let addr: std::net::SocketAddr = status["dnsAddresses"][0].as_str().unwrap().parse().unwrap();
    addr.port()
}

#[test]
fn a_follower_serves_the_followed_apis_services_and_writes_only_its_own() {
    if !have("dig") {
        skip("dig is not installed (scripts/deps test installs bind9-dnsutils)");
        return;
    }
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Both sides number Services alike, as the nodes of one cluster do.
    let cidr = service_cidr();
    let a = Daemon::start_with(
        dir_a.path(),
        &[
            "--no-proxy",
            "--no-runtime",
            "--api-listen",
            "127.0.0.1:0",
            "--service-cidr",
            &cidr,
        ],
    );
    let echo = Echo::spawn("on-a");
    apply_yaml(
        &a.socket(),
        &service_yaml("web", 80, "TCP", "", &[(echo.tcp.port(), true)]),
    );
    // An Ingress with its TLS Secret, and a Secret of another type, which B does not take.
    apply_yaml(
        &a.socket(),
        &format!(
            "{}---\n{}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: site-tls}}\ntype: kubernetes.io/tls\nstringData: {{tls.crt: {crt:?}, tls.key: {key:?}}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: password}}\nstringData: {{password: hunter2}}\n",
            service_yaml("site", 80, "TCP", "", &[(echo.http.port(), true)]),
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: site}\nspec:\n  ingressClassName: pier\n  tls: [{hosts: [site.example.com], secretName: site-tls}]\n  rules:\n  - host: site.example.com\n    http:\n      paths: [{path: /, pathType: Prefix, backend: {service: {name: site, port: {number: 80}}}}]\n",
            crt = SITE_CERT.0,
            key = SITE_CERT.1,
        ),
    );
    let kubeconfig = dir_b.path().join("kubeconfig");
    let out = a.pier(&["kubeconfig", "--name", "follower-b"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&kubeconfig, &out.stdout).unwrap();

    let offset = PORT_OFFSET.to_string();
    let port = || pier_testkit::free_port("127.0.0.1").unwrap();
    let ingress = std::net::SocketAddr::from(([127, 0, 0, 1], port()));
    let ingress_tls = std::net::SocketAddr::from(([127, 0, 0, 1], port()));
    let b = Daemon::start_with(
        dir_b.path(),
        &[
            "--ingress-listen",
            &ingress.to_string(),
            "--ingress-tls-listen",
            &ingress_tls.to_string(),
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--node-name",
            "follower-b",
            "--service-cidr",
            &cidr,
            "--proxy-vips",
            "loopback",
            "--proxy-port-offset",
            &offset,
        ],
    );
    let port = dns_port(&b);
    let name = "web.default.svc.cluster.local";
    let web_ip = a.get_json(&["svc", "web"])["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for(
        "B's DNS answers A's Service",
        Duration::from_secs(10),
        || dig_a("127.0.0.1", port, name) == [web_ip.clone()],
    );

    // B's proxy balances the VIP to A's endpoint.
    let web = vip(&b, "web", 80);
    wait_listening(web);
    let conn = TcpStream::connect(web).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut banner = String::new();
    BufReader::new(conn).read_line(&mut banner).unwrap();
    assert!(banner.contains("on-a"), "{banner}");

    // B serves A's Ingress: its TLS Secret followed, the other Secret not.
    let secrets = b.get_json(&["secrets", "-A"]);
    let names: Vec<&str> = secrets["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["metadata"]["name"].as_str())
        .collect();
    assert!(
        names.contains(&"site-tls") && !names.contains(&"password"),
        "{names:?}"
    );
    wait_for("B's Ingress answers", Duration::from_secs(10), || {
        let Ok(mut s) = TcpStream::connect(ingress) else {
            return false;
        };
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        std::io::Write::write_all(
            &mut s,
            b"GET / HTTP/1.1\r\nHost: site.example.com\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        let (code, _) = read_response(&mut s);
        // A host with a certificate is redirected to HTTPS, which B serves.
        code == 308
    });

    // A Service created on A is answered by B within a second.
    let before = versions(&a);
    apply_yaml(
        &a.socket(),
        "apiVersion: v1\nkind: Service\nmetadata: {name: fresh}\nspec:\n  ports: [{port: 8080}]\n",
    );
    let created = Instant::now();
    let fresh = "fresh.default.svc.cluster.local";
    while dig_a("127.0.0.1", port, fresh).is_empty() {
        assert!(
            created.elapsed() < Duration::from_secs(1),
            "B did not answer {fresh} within 1 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    println!(
        "B answered the new Service {} ms after A stored it",
        created.elapsed().as_millis()
    );

    // B wrote nothing to A but its Lease and its Events.
    let mut after = versions(&a);
    after.retain(|k, _| !k.contains("\"fresh\""));
    assert_eq!(before, after, "B changed A's objects");
    wait_for("B's Lease on A", Duration::from_secs(10), || {
        let lease = a.get_json(&["leases", "-n", "kube-node-lease", "follower-b"]);
        lease["spec"]["holderIdentity"] == "follower-b"
    });
    let events = a.get_json(&["events", "-A"]);
    let from_b: Vec<&Value> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["source"]["host"] == "follower-b")
        .collect();
    assert!(!from_b.is_empty(), "B reports that it follows");
    assert!(
        from_b.iter().all(|e| e["reason"] == "Following"),
        "{from_b:?}"
    );

    // A Service deleted on A goes from B too.
    let out = a.pier(&["delete", "svc", "fresh"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(
        "B forgets the deleted Service",
        Duration::from_secs(5),
        || dig_a("127.0.0.1", port, fresh).is_empty(),
    );
}

//! End to end: the `pier` binary as a process, driven over its socket like a user would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::*;

const SELECTORLESS: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: db
  labels: {tier: data}
spec:
  trafficDistribution: PreferClose
  ports:
  - {name: pg, port: 5432, targetPort: 5432}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-1
  labels: {kubernetes.io/service-name: db}
addressType: IPv4
endpoints:
- addresses: ["127.0.0.1"]
  conditions: {ready: true}
ports:
- {name: pg, port: 5432, protocol: TCP}
"#;

#[test]
fn apply_get_restart_keeps_cluster_ip_and_objects() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("db.yaml");
    std::fs::write(&file, SELECTORLESS).unwrap();
    let d = Daemon::start(tmp.path());

    let mode = std::fs::metadata(d.socket()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "control socket must be 0600");

    let out = d.pier(&["apply", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "service/db created\nendpointslice/db-1 created\n"
    );
    assert!(
        stderr(&out).contains("spec.trafficDistribution is accepted but ignored"),
        "{}",
        stderr(&out)
    );

    let list = d.get_json(&["services"]);
    let ip = list["items"][0]["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ip.starts_with("10.9"), "allocated from 10.96.0.0/12: {ip}");
    let table = stdout(&d.pier(&["get", "svc"]));
    assert!(
        table.starts_with("NAME   TYPE        CLUSTER-IP"),
        "{table}"
    );
    assert!(table.contains(&ip) && table.contains("5432/TCP"), "{table}");

    // Re-applying is a no-op.
    let out = d.pier(&["apply", "-f", file.to_str().unwrap()]);
    assert_eq!(
        stdout(&out),
        "service/db unchanged\nendpointslice/db-1 unchanged\n"
    );

    // The snapshot has the service with its endpoint.
    let (code, snap) = d.admin("/snapshot");
    assert_eq!(code, 200);
    let snap: Value = serde_json::from_str(&snap).unwrap();
    assert_eq!(snap["services"][0]["clusterIp"], Value::String(ip.clone()));
    assert_eq!(snap["services"][0]["endpoints"][0]["address"], "127.0.0.1");
    // Each running dataplane part (DNS here: no proxy, no socket-LB) says what it serves.
    pier_testkit::wait_for("DNS to serve the snapshot", Duration::from_secs(5), || {
        let (code, applied) = d.admin("/snapshot/applied");
        let applied: Value = serde_json::from_str(&applied).unwrap();
        code == 200
            && applied["revision"] == snap["revision"]
            && applied["parts"]["dns"] == snap["revision"]
            && applied["parts"].get("proxy").is_none()
    });

    let before = d.get_json(&["endpointslices", "db-1"]);
    d.stop();
    let d = Daemon::start(tmp.path());
    let svc = d.get_json(&["services", "db"]);
    assert_eq!(svc["spec"]["clusterIP"], Value::String(ip));
    assert_eq!(d.get_json(&["endpointslices", "db-1"]), before);
    let yaml = stdout(&d.pier(&["get", "svc", "db", "-o", "yaml"]));
    assert!(
        yaml.contains("kind: Service") && yaml.contains("resourceVersion"),
        "{yaml}"
    );
}

#[test]
fn bad_manifest_names_file_document_field_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(tmp.path());
    let bad = tmp.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: Service\nmetadata: {name: good}\nspec: {ports: [{port: 80}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: broken}\nspec:\n  ports:\n  - {port: 80, protocol: TCPX}\n",
    )
    .unwrap();
    let before = d.try_status().unwrap()["revision"].clone();
    let out = d.pier(&["apply", "-f", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("bad.yaml: document 2: Service default/broken: spec.ports[0].protocol"),
        "{err}"
    );
    assert_eq!(
        d.try_status().unwrap()["revision"],
        before,
        "store unchanged"
    );
    let out = d.pier(&["get", "svc", "good"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("services \"good\" not found"),
        "{}",
        stderr(&out)
    );

    // A conflict detected by the store (after local validation passed) also changes nothing.
    let out = d.pier_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {clusterIP: 10.96.0.7, ports: [{port: 80}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec: {clusterIP: 10.96.0.7, ports: [{port: 80}]}\n",
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("10.96.0.7 is already allocated to service default/a"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        d.try_status().unwrap()["revision"],
        before,
        "all-or-nothing per file"
    );
}

#[test]
fn selector_services_get_endpoints_and_delete_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(tmp.path());
    let out = d.pier(&[
        "apply",
        "-f",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/standin-pods.yaml"
        ),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let deadline = Instant::now() + Duration::from_secs(10);
    let slices = loop {
        let s = d.get_json(&["endpointslices", "-l", "kubernetes.io/service-name=web-v1"]);
        let items = s["items"].as_array().unwrap();
        if items.len() == 1 && items[0]["endpoints"].as_array().map(Vec::len) == Some(2) {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "web-v1 never got one slice with both pods: {s}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let eps = &slices["items"][0]["endpoints"];
    assert_eq!(eps[0]["targetRef"]["name"], "web-v1-a");
    assert_eq!(
        slices["items"][0]["ports"][0]["port"], 8080,
        "named targetPort resolved"
    );
    let describe = stdout(&d.pier(&["describe", "svc", "web"]));
    assert!(
        describe.contains("Endpoints:         10.88.0.2:8080,10.88.0.3:8080,10.88.0.4:8080"),
        "{describe}"
    );
    assert!(describe.contains("HTTPRoute/web-canary"), "{describe}");

    let out = d.pier(&["delete", "svc", "web-v1"]);
    assert_eq!(stdout(&out), "service/web-v1 deleted\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.get_json(&["endpointslices", "-l", "kubernetes.io/service-name=web-v1"])["items"]
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "managed slices not removed with their service"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = d.pier(&["delete", "svc", "web-v1"]);
    assert!(!out.status.success());
    let out = d.pier(&[
        "delete",
        "-f",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/standin-pods.yaml"
        ),
    ]);
    assert!(!out.status.success(), "web-v1 was already gone: reported");
    assert!(d.get_json(&["pods"])["items"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn admin_endpoints_and_watch() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(tmp.path());
    assert_eq!(d.admin("/healthz").0, 200);
    assert_eq!(d.admin("/readyz").0, 200);
    d.pier_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80}]}\n",
    );
    d.pier(&["get", "svc"]);
    let (code, metrics) = d.admin("/metrics");
    assert_eq!(code, 200);
    // Revisions 1-8 are the built-in namespaces and their `default` ServiceAccounts, 9 this
    // node's registration.
    for needle in [
        "pier_store_revision 10",
        "pier_store_objects{kind=\"ServiceAccount\"} 4",
        "pier_store_objects{kind=\"Node\"} 1",
        "pier_store_objects{kind=\"Service\"} 1",
        "pier_store_objects{kind=\"Namespace\"} 4",
        "pier_api_requests_total{code=\"200\",verb=\"apply\"} 1",
        "pier_api_requests_total{code=\"200\",verb=\"list\"} 1",
        "pier_snapshot_build_seconds_count",
        "pier_config_apply_seconds_count 1",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }
    // Watch from revision 10 replays the create; the stream stays open for live events.
    let mut s = UnixStream::connect(d.socket()).unwrap();
    write!(s, "GET /v1/watch?from=10 HTTP/1.1\r\nHost: pier\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reader = BufReader::new(s);
    d.pier(&["delete", "svc", "a"]);
    let mut events = Vec::new();
    let mut line = String::new();
    while events.len() < 2 {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "watch stream ended"
        );
        if line.starts_with('{') {
            events.push(serde_json::from_str::<Value>(&line).unwrap());
        }
    }
    assert_eq!(events[0]["type"], "ADDED");
    assert_eq!(events[0]["revision"], 10);
    assert_eq!(events[1]["type"], "DELETED");
    assert_eq!(events[1]["object"]["metadata"]["name"], "a");
    let (code, body) = d.api("GET", "/v1/watch?from=abc");
    assert_eq!(code, 400, "{body}");
}

#[test]
fn other_users_are_refused() {
    if !is_root() {
        skip("needs root to act as another uid");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = Daemon::start(tmp.path());
    // Open the file mode so only the peer-credential check stands in the way.
    std::fs::set_permissions(d.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    // nobody runs a copy: the build's own may sit under a directory only root can enter
    // (a checkout in /root).
    let pier = tmp.path().join("pier-cli");
    std::fs::copy(PIER, &pier).unwrap();
    std::fs::set_permissions(&pier, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(&pier)
        .args(["get", "svc"])
        .env("PIER_SOCKET", d.socket())
        .uid(65534)
        .gid(65534)
        .output();
    let out = out.unwrap();
    assert!(
        !out.status.success(),
        "nobody must be refused: {}",
        stdout(&out)
    );
    // Refused by the peer-uid check after connecting, not by file permissions.
    let err = stderr(&out);
    assert!(!err.contains("Permission denied"), "{err}");
    assert!(err.contains("control request failed"), "{err}");
    assert!(
        d.pier(&["get", "svc"]).status.success(),
        "the owner still gets in"
    );
}

#[test]
fn up_runs_the_quickstart() {
    if is_root() {
        // As root its pods run, and the proxy dials their addresses: from a network namespace
        // of the test's own (with the pods' bridge), never the host's.
        private_netns();
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(PIER)
        .args([
            "up",
            "-f",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/quickstart.yaml"),
        ])
        .args([
            "--admin",
            "127.0.0.1:0",
            "--dns-listen",
            "127.0.0.1:0",
            "--proxy-vips",
            "loopback",
            "--proxy-port-offset",
            "20000",
            "--no-ebpf",
            "--ebpf-pin-dir",
            tmp.path().join("ebpf-pins").to_str().unwrap(),
            "--bridge",
            "pier-qs0",
            "--pod-cidr",
            "10.251.0.0/16",
            "--state-dir",
        ])
        .arg(tmp.path().join("state"))
        .arg("--socket")
        .arg(tmp.path().join("pier.sock"))
        .env("PIER_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let guard = Daemon {
        dir: tmp.path().to_path_buf(),
        child: None,
    };
    let mut out = String::new();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !out.contains("Press Ctrl-C") {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        out.push_str(&line);
    }
    let web = out
        .lines()
        .find(|l| l.starts_with("default/web "))
        .unwrap_or_default()
        .to_string();
    // As root the engine runs the Deployments: the VIP answers from v1 and v2 containers.
    let mut versions = Vec::new();
    if common::is_root() {
        for _ in 0..20 {
            let o = Command::new("curl")
                .args(["-s", "-m", "3", "http://127.96.0.1:20080/"])
                .output()
                .unwrap();
            let body: serde_json::Value =
                serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null);
            versions.push(body["version"].as_str().unwrap_or("failed").to_string());
        }
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    drop(guard);
    if common::is_root() {
        let _ = Command::new("ip")
            .args(["link", "del", "pier-qs0"])
            .status();
    }
    assert!(killed.success());
    assert!(
        out.contains("SERVICE") && out.contains("CLUSTER-IP"),
        "{out}"
    );
    assert!(web.contains("10.96.0.1") && web.contains("L7"), "{web}");
    assert!(web.contains("web-v1 90% / web-v2 10%"), "{web}");
    if common::is_root() {
        assert_eq!(
            web.matches("10.251.0.").count(),
            3,
            "three ready pods from two Deployments: {web}"
        );
        let v1 = versions.iter().filter(|v| *v == "v1").count();
        let v2 = versions.iter().filter(|v| *v == "v2").count();
        assert_eq!((v1, v2), (18, 2), "90/10 through the VIP: {versions:?}");
    } else {
        common::skip("the quickstart's containers need root");
    }
    assert!(
        out.contains("default/db") && out.contains("127.0.0.1:5432"),
        "{out}"
    );
    assert!(
        status.success(),
        "pier up exits cleanly on SIGTERM: {status}"
    );
}

#[test]
fn a_whole_demo_app_applies_into_its_namespace_and_goes_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(tmp.path(), &["--no-proxy", "--no-runtime"]);
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/demo-app.yaml");
    // Without its namespace, the app is refused as Kubernetes refuses it.
    let text = std::fs::read_to_string(fixture).unwrap();
    let without_ns = text.split_once("---\n").unwrap().1;
    let out = d.pier_stdin(&["apply", "-f", "-"], without_ns);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("namespace \"shop\" not found"),
        "{}",
        stderr(&out)
    );
    // Whole, it applies: the namespace first, then what goes in it.
    let out = d.pier(&["apply", "-f", fixture]);
    assert!(out.status.success(), "{}", stderr(&out));
    let created = stdout(&out);
    for line in [
        "namespace/shop created",
        "serviceaccount/cartservice created",
        "deployment/cartservice created",
        "httproute/frontend-split created",
    ] {
        assert!(created.contains(line), "{line} in {created}");
    }
    let ns = stdout(&d.pier(&["get", "namespaces"]));
    for name in ["default", "kube-system", "shop"] {
        assert!(
            ns.lines()
                .any(|l| l.starts_with(name) && l.contains("Active")),
            "{ns}"
        );
    }
    let sa = stdout(&d.pier(&["get", "sa", "-n", "shop"]));
    assert!(sa.contains("cartservice"), "{sa}");
    let deploy = d.get_json(&["deploy", "cartservice", "-n", "shop"]);
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["port"],
        7070
    );
    // Deleting the namespace deletes everything in it.
    let out = d.pier(&["delete", "namespace", "shop"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for kind in ["svc", "deploy", "sa", "httproutes"] {
        let left = d.get_json(&[kind, "-n", "shop"]);
        assert_eq!(
            left["items"].as_array().map(Vec::len),
            Some(0),
            "{kind}: {left}"
        );
    }
    let out = d.pier(&["delete", "namespace", "default"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("may not be deleted"),
        "{}",
        stderr(&out)
    );
}

/// A Deployment whose image is missing keeps its pods, Pending and retried with backoff, as
/// the kubelet keeps a pod it cannot pull for; they are not replaced in a loop.
#[test]
fn a_deployment_with_a_missing_image_keeps_its_pods_pending() {
    if !is_root() {
        skip("the container engine needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    apply_yaml(
        &d.socket(),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: typo}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: typo}}\n  template:\n    metadata: {labels: {app: typo}}\n    spec: {containers: [{name: app, image: example.invalid/no-such-image:1}]}\n",
    );
    std::thread::sleep(Duration::from_secs(3));
    let before = d.try_status().unwrap()["revision"].as_u64().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let after = d.try_status().unwrap()["revision"].as_u64().unwrap();
    assert!(
        after - before < 20,
        "{} writes in 2 s: pods churn",
        after - before
    );
    let pods = d.get_json(&["pods"]);
    let items = pods["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{pods}");
    for pod in items {
        assert_eq!(pod["status"]["phase"], "Pending", "{pod}");
        let error = pod["metadata"]["annotations"]["pier.dev/error"]
            .as_str()
            .unwrap_or("");
        assert!(error.contains("no-such-image"), "{pod}");
    }
}

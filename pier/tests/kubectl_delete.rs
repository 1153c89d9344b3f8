//! Deletes that wait, through kubectl: an object with a finalizer of its own is only marked
//! (`deletionTimestamp`) until the finalizer is removed; `kubectl delete --cascade=foreground`
//! of a Service returns once its EndpointSlices are gone, and of a Deployment whose pods the
//! engine runs, the Deployment stays (with the `foregroundDeletion` finalizer) until its pods
//! have stopped and gone, then goes. A pod with a finalizer is stopped by its node when
//! deleted and stays, stopped, until the finalizer is removed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::kubectl::*;
use common::runtime::{privileged, Node};
use common::{have, skip};

const HELD: &str = "apiVersion: v1
kind: Service
metadata: {name: held, finalizers: [example.com/hold]}
spec: {selector: {app: held}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-extra
  labels: {kubernetes.io/service-name: web}
  ownerReferences: [{apiVersion: v1, kind: Service, name: web, uid: UID, blockOwnerDeletion: true}]
addressType: IPv4
endpoints: [{addresses: [10.1.2.3]}]
ports: [{port: 80}]
";

#[test]
fn finalizers_hold_a_delete_and_foreground_waits_for_dependents() {
    let dir = tempfile::tempdir().unwrap();
    let Some((daemon, kubectl)) = start_with(dir.path(), &["--no-runtime"]) else {
        return;
    };
    let file = dir.path().join("held.yaml");
    let (held, rest) = HELD.split_once("---\n").unwrap();
    std::fs::write(&file, held).unwrap();
    kubectl.ok(&["apply", "-f", file.to_str().unwrap()]);
    kubectl.ok(&["delete", "svc", "held", "--wait=false"]);
    let marked = kubectl.ok(&[
        "get",
        "svc",
        "held",
        "-o",
        "jsonpath={.metadata.deletionTimestamp} {.metadata.finalizers}",
    ]);
    assert!(marked.ends_with(r#" ["example.com/hold"]"#), "{marked}");
    assert!(marked.starts_with("20"), "marked for deletion: {marked}");
    // Removing the last finalizer lets it go.
    kubectl.ok(&[
        "patch",
        "svc",
        "held",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    let gone = kubectl.fails(&["get", "svc", "held"]);
    assert!(gone.contains("NotFound"), "{gone}");
    // pier's own delete is held the same way.
    kubectl.ok(&["apply", "-f", file.to_str().unwrap()]);
    assert!(daemon.pier(&["delete", "svc", "held"]).status.success());
    let marked = kubectl.ok(&[
        "get",
        "svc",
        "held",
        "-o",
        "jsonpath={.metadata.deletionTimestamp}",
    ]);
    assert!(marked.starts_with("20"), "{marked}");

    // A Service's EndpointSlice that names it as owner goes before it does.
    let (svc, slice) = rest.split_once("---\n").unwrap();
    std::fs::write(&file, svc).unwrap();
    kubectl.ok(&["apply", "-f", file.to_str().unwrap()]);
    let uid = kubectl.ok(&["get", "svc", "web", "-o", "jsonpath={.metadata.uid}"]);
    std::fs::write(&file, slice.replace("UID", &uid)).unwrap();
    kubectl.ok(&["apply", "-f", file.to_str().unwrap()]);
    let out = kubectl.ok(&[
        "delete",
        "svc",
        "web",
        "--cascade=foreground",
        "--timeout=20s",
    ]);
    assert!(out.contains("deleted"), "{out}");
    let slices = kubectl.ok(&["get", "endpointslices", "-o", "name"]);
    assert!(!slices.contains("web-extra"), "{slices}");
    kubectl.fails(&["get", "svc", "web"]);
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 3
      containers:
      - name: web
        image: pier/echo:v1
        args: [echo, --http, '0.0.0.0:8080', --name, v1]
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
";

/// A pod named `name` held by a finalizer of the test's.
fn held_pod(name: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}, finalizers: [example.com/hold]}}
spec:
  terminationGracePeriodSeconds: 3
  containers:
  - {{name: web, image: 'pier/echo:v1', args: [echo, --http, '0.0.0.0:8080', --name, {name}]}}
"
    )
}

#[test]
fn deletes_wait_for_the_pods_the_engine_runs() {
    if !privileged("deletes_wait_for_the_pods_the_engine_runs") {
        return;
    }
    if !have("kubectl") {
        skip("kubectl is not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start_with(tmp.path(), 12, &["--api-listen", "127.0.0.1:0"]);
    node.build_echo("v1");
    let kubeconfig = tmp.path().join("kubeconfig");
    let out = node.pier(&["kubeconfig"]);
    assert!(out.status.success());
    std::fs::write(&kubeconfig, &out.stdout).unwrap();
    let kubectl = |args: &[&str]| -> String {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    common::apply_yaml(&node.d().socket(), DEPLOYMENT);
    let status = kubectl(&["rollout", "status", "deploy/web", "--timeout=90s"]);
    assert!(status.contains("successfully rolled out"), "{status}");

    let started = Instant::now();
    let out = kubectl(&[
        "delete",
        "deploy",
        "web",
        "--cascade=foreground",
        "--wait=false",
    ]);
    assert!(out.contains("deleted"), "{out}");
    let finalizers = kubectl(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.metadata.finalizers}",
    ]);
    assert_eq!(finalizers, r#"["foregroundDeletion"]"#);
    // While the Deployment is there its pods are going; once it has gone, none is left.
    let mut pods_seen_while_deleting = 0;
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the Deployment never went"
        );
        let pods = kubectl(&["get", "pods", "-l", "app=web", "-o", "name"]);
        let deployment = kubectl(&["get", "deploy", "web", "-o", "name"]);
        if deployment.contains("NotFound") {
            let after = kubectl(&["get", "pods", "-l", "app=web", "-o", "name"]);
            assert!(
                !after.contains("pod/"),
                "pods outlived their Deployment: {after}"
            );
            break;
        }
        pods_seen_while_deleting = pods_seen_while_deleting.max(pods.lines().count());
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "foreground delete of a 2-pod Deployment: gone after {:.1}s, {pods_seen_while_deleting} pods seen while it waited",
        started.elapsed().as_secs_f64()
    );
    assert!(
        pods_seen_while_deleting >= 1,
        "the Deployment waited for its pods"
    );
    let rs = kubectl(&["get", "rs", "-o", "name"]);
    assert!(!rs.contains("replicaset"), "{rs}");

    pods_wait_on_their_finalizers(&node, &kubectl);
}

/// A deleted pod with a finalizer: its node stops it, and it stays (stopped, its final phase,
/// `deletionGracePeriodSeconds: 0`) until the finalizer is removed, when it goes. One whose
/// finalizer is removed while its node is still stopping it goes once the node is done.
fn pods_wait_on_their_finalizers(node: &Node, kubectl: &dyn Fn(&[&str]) -> String) {
    let pods = format!("{}---\n{}", held_pod("held"), held_pod("quick"));
    common::apply_yaml(&node.d().socket(), &pods);
    let ready = kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod/held",
        "pod/quick",
        "--timeout=60s",
    ]);
    assert!(ready.matches("condition met").count() == 2, "{ready}");
    let container = |pod: &str| {
        kubectl(&[
            "get",
            "pod",
            pod,
            "-o",
            r"jsonpath={.metadata.annotations.pier\.dev/container-id}",
        ])
    };
    let (held_container, quick_container) = (container("held"), container("quick"));
    assert!(!held_container.is_empty() && !quick_container.is_empty());
    let out = kubectl(&["delete", "pod", "held", "quick", "--wait=false"]);
    assert!(out.matches("deleted").count() == 2, "{out}");
    let unhold = r#"[{"op":"remove","path":"/metadata/finalizers"}]"#;
    let out = kubectl(&["patch", "pod", "quick", "--type=json", "-p", unhold]);
    assert!(out.contains("patched"), "{out}");
    // quick: no finalizer left, but it goes only once its container has stopped.
    let gone = kubectl(&["wait", "--for=delete", "pod/quick", "--timeout=30s"]);
    assert!(
        gone.contains("condition met") || gone.contains("NotFound"),
        "{gone}"
    );
    let containers = node.ok(&["ps", "-a", "-q"]);
    assert!(
        !containers.contains(&quick_container[..12]),
        "quick's container outlived it: {containers}"
    );
    // held: stopped, and kept.
    let deadline = Instant::now() + Duration::from_secs(30);
    let stopped = loop {
        let state = kubectl(&[
            "get",
            "pod",
            "held",
            "-o",
            "jsonpath={.metadata.deletionGracePeriodSeconds} {.status.phase} {.metadata.finalizers}",
        ]);
        if state.starts_with("0 ") {
            break state;
        }
        assert!(Instant::now() < deadline, "held was never stopped: {state}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        stopped == r#"0 Failed ["example.com/hold"]"#
            || stopped == r#"0 Succeeded ["example.com/hold"]"#,
        "{stopped}"
    );
    let containers = node.ok(&["ps", "-a", "-q"]);
    assert!(
        !containers.contains(&held_container[..12]),
        "held's container is still there: {containers}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let still = kubectl(&["get", "pod", "held", "-o", "name"]);
    assert_eq!(still.trim(), "pod/held", "the finalizer holds it");
    // The last finalizer removed lets it go.
    let out = kubectl(&["patch", "pod", "held", "--type=json", "-p", unhold]);
    assert!(out.contains("patched"), "{out}");
    let gone = kubectl(&["get", "pod", "held"]);
    assert!(gone.contains("NotFound"), "{gone}");
}

//! kubectl against pods the engine runs: `kubectl logs` (whole, `--tail`, `-f`, a wrong
//! container) through the pod `log` subresource, and the engine's Events as `kubectl
//! describe pod` and `kubectl get events` show them. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::runtime::*;
use common::{have, skip};

const POD: &str = "apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    image: pier/echo:v1
    args: [echo, --http, '0.0.0.0:8080', --name, web]
    readinessProbe:
      tcpSocket: {port: 9999}
      periodSeconds: 1
";

#[test]
fn kubectl_reads_a_pods_logs_and_events() {
    if !privileged("kubectl_reads_a_pods_logs_and_events") {
        return;
    }
    if !have("kubectl") {
        skip("kubectl is not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start_with(tmp.path(), 7, &["--api-listen", "127.0.0.1:0"]);
    node.build_echo("v1");
    let kubeconfig = tmp.path().join("kubeconfig");
    let out = node.pier(&["kubeconfig"]);
    assert!(out.status.success(), "{}", out_text(&out));
    std::fs::write(&kubeconfig, &out.stdout).unwrap();
    let kubectl = |args: &[&str]| {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .output()
            .unwrap()
    };
    common::apply_yaml(&node.d().socket(), POD);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let phase = kubectl(&["get", "pod", "web", "-o", "jsonpath={.status.phase}"]);
        let logs = kubectl(&["logs", "web"]);
        if String::from_utf8_lossy(&phase.stdout) == "Running"
            && String::from_utf8_lossy(&logs.stdout).contains("http 0.0.0.0:8080")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pod: {} logs: {}",
            out_text(&phase),
            out_text(&logs)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let tail = kubectl(&["logs", "web", "--tail=1", "--timestamps"]);
    let tail = String::from_utf8_lossy(&tail.stdout).into_owned();
    assert_eq!(tail.lines().count(), 1, "{tail}");
    assert!(tail.starts_with("20"), "a timestamp first: {tail}");
    let wrong = kubectl(&["logs", "web", "-c", "nope"]);
    assert!(!wrong.status.success());
    assert!(
        out_text(&wrong).contains("not valid for pod web"),
        "{}",
        out_text(&wrong)
    );

    let mut follow = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["logs", "-f", "web"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(follow.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("http 0.0.0.0:8080"), "{first}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(follow.try_wait().unwrap().is_none(), "-f keeps following");
    follow.kill().unwrap();
    follow.wait().unwrap();

    // The engine's story of the pod, with the failing readiness probe's repeats counted.
    let deadline = Instant::now() + Duration::from_secs(40);
    let described = loop {
        let out = kubectl(&["describe", "pod", "web"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let events = text.split("Events:").nth(1).unwrap_or("").to_string();
        let counted = events
            .lines()
            .any(|l| l.contains("Unhealthy") && l.contains("(x"));
        if ["Pulled", "Created", "Started"]
            .iter()
            .all(|r| events.contains(r))
            && counted
        {
            break events;
        }
        assert!(Instant::now() < deadline, "{text}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(described.contains("kubelet"), "{described}");
    assert!(
        described.contains("Readiness probe failed: TCP connect to :9999 failed"),
        "{described}"
    );
    let warnings = kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=web,type=Warning",
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&warnings.stdout),
        "Unhealthy",
        "{}",
        out_text(&warnings)
    );
    let deleted = kubectl(&["delete", "pod", "web"]);
    assert!(deleted.status.success(), "{}", out_text(&deleted));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let table = kubectl(&["get", "events"]);
        let text = String::from_utf8_lossy(&table.stdout).into_owned();
        if text.contains("Killing") {
            assert!(text.starts_with("LAST SEEN"), "{text}");
            assert!(text.contains("pod/web"), "{text}");
            assert!(text.contains("Stopping container web"), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "{text}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

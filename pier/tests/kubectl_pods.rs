//! kubectl against pods the engine runs: `kubectl logs` (whole, `--tail`, `-f`, a wrong
//! container) through the pod `log` subresource. Needs root.
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
";

#[test]
fn kubectl_logs_reads_a_pods_container_log() {
    if !privileged("kubectl_logs_reads_a_pods_container_log") {
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
}

//! pier's own analysis sees traffic the socket-LB sends straight to endpoints (no proxy on the
//! path): a client in the daemon's cgroup connects to two ClusterIPs, one whose endpoint
//! resets every connection (`pier echo --reset-percent 100`) and one that answers; an
//! AnalysisRun on each Service's reset rate fails for the first and passes for the second, and
//! the per-endpoint `pier_ebpf_backend_*` counters show why. Needs root, cgroup2 and bpffs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::socket_lb::{daemon_with, privileged, wait_for, Cleanup};
use common::{apply_yaml, spawn_echo, PIER};
use serde_json::Value;

/// Service `name` at `vip`:9000, its one endpoint at 127.0.0.1:`port`.
fn service(name: &str, vip: &str, port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  clusterIP: {vip}\n  ports: [{{name: tcp, port: 9000}}]\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-1, labels: {{kubernetes.io/service-name: {name}}}}}\n\
         addressType: IPv4\nendpoints: [{{addresses: [127.0.0.1], conditions: {{ready: true}}}}]\nports: [{{name: tcp, port: {port}}}]\n---\n"
    )
}

/// An AnalysisRun of three 1 s measurements of `service`'s reset rate.
fn reset_rate_run(service: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1
kind: AnalysisRun
metadata: {{name: {service}-resets}}
spec:
  metrics:
  - name: reset-rate
    interval: 1s
    count: 3
    successCondition: result <= 0.05
    failureLimit: 0
    provider:
      plugin:
        pier.dev/metrics: {{service: {service}, measure: resetRate}}
"
    )
}

/// A bash loop in the cgroup opening TCP connections to each of `vips` (port 9000) in turn,
/// reading one line from each, for at most `seconds`.
fn client_loop(cgroup: &std::path::Path, vips: &[&str], seconds: u64) -> std::process::Child {
    let targets = vips.join(" ");
    Command::new("bash")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs; end=$((SECONDS + {seconds})); \
             while [ $SECONDS -lt $end ]; do for vip in {targets}; do \
             (exec 3<>/dev/tcp/$vip/9000 && read -t 1 -u 3 line) 2>/dev/null; done; done",
            cgroup.display()
        ))
        .spawn()
        .unwrap()
}

fn pier(socket: &std::path::Path, args: &[&str]) -> Value {
    let out = Command::new(PIER)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .args(["-o", "json"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

#[test]
fn pier_analysis_measures_resets_of_socket_lb_connections() {
    let Some(root) = privileged() else { return };
    if !common::have("bash") {
        common::skip("bash is not installed (the test's TCP client)");
        return;
    }
    let id = std::process::id();
    let tmp = tempfile::tempdir().unwrap();
    let mut cleanup = Cleanup::new(&root, tmp.path(), "pier-lb-analysis");
    let echo = |name: &str, reset: &str| {
        let mut command = Command::new(PIER);
        command.args([
            "echo",
            "--name",
            name,
            "--tcp",
            "127.0.0.1:0",
            "--tcp-banner",
        ]);
        command.args(["--reset-percent", reset]);
        spawn_echo(command)
    };
    let (good, good_addrs) = echo("good", "0");
    let (bad, bad_addrs) = echo("bad", "100");
    cleanup.children.extend([good, bad]);
    let d = daemon_with(tmp.path(), &cleanup, &["--no-proxy"]);
    cleanup.children.push(d);
    let socket = tmp.path().join("pier.sock");
    wait_for(&socket);
    let vip = |n: u32| format!("10.253.{}.{}", id % 250, 10 + n);
    let (good_vip, bad_vip) = (vip(1), vip(2));
    apply_yaml(
        &socket,
        &(service("good", &good_vip, good_addrs["tcp"].port())
            + &service("bad", &bad_vip, bad_addrs["tcp"].port())),
    );

    let client = client_loop(&cleanup.cgroup, &[&good_vip, &bad_vip], 12);
    cleanup.children.push(client);
    std::thread::sleep(Duration::from_millis(500));
    apply_yaml(
        &socket,
        &(reset_rate_run("good") + "---\n" + &reset_rate_run("bad")),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let phase = |name: &str| pier(&socket, &["get", "analysisrun", name])["status"].clone();
    let (mut good_run, mut bad_run) = (phase("good-resets"), phase("bad-resets"));
    while Instant::now() < deadline
        && ![&good_run, &bad_run]
            .iter()
            .all(|s| matches!(s["phase"].as_str(), Some("Successful" | "Failed")))
    {
        std::thread::sleep(Duration::from_millis(200));
        (good_run, bad_run) = (phase("good-resets"), phase("bad-resets"));
    }
    let values = |status: &Value| -> Vec<String> {
        status["metricResults"][0]["measurements"]
            .as_array()
            .map(|m| m.iter().map(|x| x["value"].to_string()).collect())
            .unwrap_or_default()
    };
    println!(
        "reset rate through the socket-LB: good {:?}, bad {:?}",
        values(&good_run),
        values(&bad_run)
    );
    assert_eq!(bad_run["phase"], "Failed", "{bad_run}");
    assert_eq!(good_run["phase"], "Successful", "{good_run}");

    // The kernel's per-endpoint counters, as metrics.
    let status = Command::new("curl")
        .args(["-s", "--unix-socket"])
        .arg(&socket)
        .arg("http://pier/v1/status")
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    let admin = status["adminAddress"].as_str().unwrap().to_string();
    let metrics = Command::new("curl")
        .args(["-s", &format!("http://{admin}/metrics")])
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics.stdout).to_string();
    let value = |name: &str, addr: std::net::SocketAddr| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l.contains(&format!("backend=\"{addr}\"")))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    };
    let resets = "pier_ebpf_backend_resets_total{";
    assert!(value(resets, bad_addrs["tcp"]) >= 3.0, "{metrics}");
    assert_eq!(value(resets, good_addrs["tcp"]), 0.0, "{metrics}");
    assert!(
        value("pier_ebpf_backend_connections_total{", good_addrs["tcp"]) >= 3.0,
        "{metrics}"
    );
}

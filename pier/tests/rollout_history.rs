//! A Rollout's revisions, as Argo keeps them: each template it ran is a ReplicaSet numbered by
//! `rollout.argoproj.io/revision`; `pier rollout history ro/NAME` lists them, `undo` puts an
//! earlier template back (which then rolls out as any new one), and `restart` sets
//! `spec.restartAt`, after which the controller replaces the older pods one at a time. No
//! engine runs: pods are made ready by hand, as a node agent would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::Value;

mod common;
use common::kubectl::*;

const ROLLOUT: &str = "apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: demo}
spec:
  replicas: 2
  selector: {matchLabels: {app: demo}}
  template:
    metadata: {labels: {app: demo}}
    spec:
      containers: [{name: demo, image: 'argoproj/rollouts-demo:COLOR'}]
  strategy:
    canary:
      scaleDownDelaySeconds: 0
      steps: [{setWeight: 50}]
";

/// Applies the Rollout with `color` and makes its pods ready until it is Healthy on it.
fn release(kubectl: &Kubectl, dir: &std::path::Path, color: &str) {
    let file = dir.join("rollout.yaml");
    std::fs::write(&file, ROLLOUT.replace("COLOR", color)).unwrap();
    kubectl.ok(&["apply", "-f", file.to_str().unwrap()]);
    healthy_on(kubectl, color);
}

/// Makes pods ready until the Rollout is Healthy with `color` as its stable template.
fn healthy_on(kubectl: &Kubectl, color: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        make_ready(kubectl);
        let ro: Value =
            serde_json::from_str(&kubectl.ok(&["get", "ro", "demo", "-o", "json"])).unwrap();
        let image = ro["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or("");
        let st = &ro["status"];
        if image.ends_with(color)
            && st["phase"] == "Healthy"
            && st["stableRS"] == st["currentPodHash"]
        {
            return ro;
        }
        assert!(std::time::Instant::now() < deadline, "{ro:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `pier ARGS` against the daemon, which must succeed; its output.
fn pier_ok(daemon: &common::Daemon, args: &[&str]) -> String {
    let out = daemon.pier(args);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "pier {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn pod_names(kubectl: &Kubectl) -> Vec<String> {
    let pods: Value = serde_json::from_str(&kubectl.ok(&["get", "pods", "-o", "json"])).unwrap();
    pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn rollout_history_undo_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let Some((daemon, kubectl)) = start_with(dir.path(), &["--no-runtime"]) else {
        return;
    };
    release(&kubectl, dir.path(), "red");
    release(&kubectl, dir.path(), "blue");

    // Two revisions, as ReplicaSets the Rollout controls.
    let history = pier_ok(&daemon, &["rollout", "history", "ro/demo"]);
    println!("{history}");
    assert!(history.starts_with("rollout/demo\n"), "{history}");
    let rows: Vec<&str> = history.lines().skip(2).collect();
    assert_eq!(rows.len(), 2, "{history}");
    let sets: Value = serde_json::from_str(&kubectl.ok(&["get", "rs", "-o", "json"])).unwrap();
    let owned: Vec<&Value> = sets["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|rs| rs["metadata"]["ownerReferences"][0]["kind"] == "Rollout")
        .collect();
    assert_eq!(owned.len(), 2, "{sets:#}");
    assert!(owned
        .iter()
        .all(|rs| rs["metadata"]["annotations"]["rollout.argoproj.io/revision"].is_string()));
    let first = pier_ok(
        &daemon,
        &["rollout", "history", "ro/demo", "--revision", "1"],
    );
    assert!(first.contains("rollouts-demo:red"), "{first}");

    // Undo: back to red, which rolls out and becomes revision 3.
    let undone = pier_ok(&daemon, &["rollout", "undo", "ro/demo"]);
    assert!(
        undone.contains("rollout/demo rolled back to revision 1"),
        "{undone}"
    );
    healthy_on(&kubectl, "red");
    let history = pier_ok(&daemon, &["rollout", "history", "ro/demo"]);
    let revisions: Vec<&str> = history
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revisions, ["2", "3"], "{history}");
    let third = pier_ok(
        &daemon,
        &["rollout", "history", "ro/demo", "--revision", "3"],
    );
    assert!(third.contains("rollouts-demo:red"), "{third}");

    // Restart: every pod older than restartAt is replaced, one at a time.
    let before = pod_names(&kubectl);
    std::thread::sleep(Duration::from_millis(1100));
    let restarted = pier_ok(&daemon, &["rollout", "restart", "ro/demo"]);
    assert!(restarted.contains("rollout/demo restarted"), "{restarted}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        make_ready(&kubectl);
        let ro: Value =
            serde_json::from_str(&kubectl.ok(&["get", "ro", "demo", "-o", "json"])).unwrap();
        if ro["status"]["restartedAt"].is_string()
            && ro["status"]["restartedAt"] == ro["spec"]["restartAt"]
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{ro:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = pod_names(&kubectl);
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "{before:?} -> {after:?}"
    );
    let events = pier_ok(&daemon, &["get", "events"]);
    assert_eq!(events.matches("RolloutRestarted").count(), 2, "{events}");

    // `pause` of a Rollout still goes to the Rollout's own pause, not a Deployment's.
    pier_ok(&daemon, &["rollout", "pause", "ro/demo"]);
    let paused = kubectl.ok(&["get", "ro", "demo", "-o", "jsonpath={.spec.paused}"]);
    assert_eq!(paused, "true");
}

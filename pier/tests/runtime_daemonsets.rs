//! DaemonSets on the engine, driven by kubectl: a pod bound to the node (`kubectl rollout
//! status ds`), made again when deleted, replaced by a new template, and gone with the
//! DaemonSet. One node here; the planner's unit tests cover several, tainted and cordoned.
//! Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::kubectl::Kubectl;
use common::runtime::*;

const AGENT: &str = "apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: agent
        image: pier/shell:v1
        args: [echo, --http, '0.0.0.0:8080', --name, agent]
";

/// The names and nodes of the DaemonSet's live pods, `name@node` each.
fn pods(k: &Kubectl) -> Vec<String> {
    let list: serde_json::Value =
        serde_json::from_str(&k.ok(&["get", "pods", "-l", "app=agent", "-o", "json"])).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            let name = p["metadata"]["name"].as_str().unwrap_or("");
            format!("{name}@{}", p["spec"]["nodeName"].as_str().unwrap_or(""))
        })
        .collect()
}

#[test]
fn a_daemon_set_runs_a_pod_on_its_node_and_rolls_it() {
    if !privileged("a_daemon_set_runs_a_pod_on_its_node_and_rolls_it") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some((_node, k)) = shell_node(tmp.path(), 15) else {
        return;
    };
    let file = tmp.path().join("agent.yaml");
    std::fs::write(&file, AGENT).unwrap();
    k.ok(&["apply", "-f", file.to_str().unwrap()]);
    k.ok(&["rollout", "status", "ds/agent", "--timeout=60s"]);

    let node_name = k.ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"]);
    let first = pods(&k);
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(
        first[0].ends_with(&format!("@{node_name}")),
        "bound to the node: {first:?}"
    );
    let row = k.ok(&["get", "ds", "agent", "--no-headers"]);
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[..6], ["agent", "1", "1", "1", "1", "1"], "{row}");

    // A deleted pod is made again on its node.
    let name = first[0].split('@').next().unwrap().to_string();
    k.ok(&["delete", "pod", &name]);
    wait_for("a new pod on the node", 60, || {
        let now = pods(&k);
        now.len() == 1 && !now[0].starts_with(&name)
    });

    // A new template replaces the pod.
    let before = pods(&k);
    k.ok(&["set", "env", "ds/agent", "ROUND=2"]);
    k.ok(&["rollout", "status", "ds/agent", "--timeout=60s"]);
    let after = pods(&k);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(before, after, "the pod was replaced");
    let env = k.ok(&[
        "get",
        "pods",
        "-l",
        "app=agent",
        "-o",
        "jsonpath={.items[*].spec.containers[0].env}",
    ]);
    assert!(env.contains("ROUND"), "{env}");

    // Deleting the DaemonSet takes its pod.
    k.ok(&["delete", "ds", "agent"]);
    wait_for("the DaemonSet's pod to go", 60, || {
        k.ok(&["get", "pods", "-l", "app=agent", "-o", "name"])
            .trim()
            .is_empty()
    });
}

//! Workloads placed per node by the leader: a DaemonSet runs one pod on each of the three
//! nodes, and its pods go with it.

use std::collections::BTreeSet;
use std::time::Duration;

use super::common::cluster::ClusterNode;
use pier_testkit::wait_for;

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
        image: pier/echo:v1
        args: [echo, --http, '0.0.0.0:8080', --name, agent]
";

/// The nodes of the DaemonSet's running pods.
fn running_on(node: &ClusterNode) -> Vec<String> {
    let pods = node.get_json(&["pods", "-l", "app=agent"]);
    pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| {
            p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null()
        })
        .filter_map(|p| p["spec"]["nodeName"].as_str().map(str::to_string))
        .collect()
}

/// One pod of the DaemonSet on every node, then none once it is deleted.
pub(crate) fn a_daemon_set_runs_once_on_every_node(nodes: &[ClusterNode]) {
    nodes[0].apply(AGENT);
    wait_for(
        "a DaemonSet pod running on each node",
        Duration::from_secs(60),
        || running_on(&nodes[1]).len() == 3,
    );
    let on: BTreeSet<String> = running_on(&nodes[1]).into_iter().collect();
    assert_eq!(on, BTreeSet::from(["n1".into(), "n2".into(), "n3".into()]));
    let status = nodes[2].get_json(&["ds", "agent"])["status"].clone();
    assert_eq!(status["desiredNumberScheduled"], 3, "{status}");
    nodes[0].ok(&["delete", "ds", "agent"]);
    wait_for(
        "the DaemonSet's pods to go",
        Duration::from_secs(60),
        || {
            nodes[0].get_json(&["pods", "-l", "app=agent"])["items"]
                .as_array()
                .is_none_or(Vec::is_empty)
        },
    );
}

//! What the three-node test asks of a running cluster: pods, endpoints, answers, the leader.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use pier_testkit::wait_for;
use serde_json::Value;

use super::common::cluster::ClusterNode;

/// Pod name -> node name, of the Running pods labelled `app=web`.
pub(crate) fn web_pods(node: &ClusterNode) -> BTreeMap<String, String> {
    node.get_json(&["pods", "-l", "app=web"])["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| {
            p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null()
        })
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap().to_string(),
                p["spec"]["nodeName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// The nodes of the ready endpoints of `service` in the snapshot `node`'s dataplane serves.
pub(crate) fn served_endpoint_nodes(node: &ClusterNode, service: &str) -> Vec<String> {
    let snapshot = node.snapshot();
    let mut nodes: Vec<String> = snapshot["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["key"]["name"] == service)
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["ready"] == true)
        .map(|e| e["nodeName"].as_str().unwrap_or_default().to_string())
        .collect();
    nodes.sort();
    nodes
}

/// Runs `curl args` in a pod on `on` (restartPolicy Never) and returns its output once done.
pub(crate) fn curl_from_pod(
    on: &ClusterNode,
    name: &str,
    args: &[&str],
    within: Duration,
) -> String {
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    on.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  nodeName: {}\n  restartPolicy: Never\n  containers: [{{name: c, image: 'pier/curl:1', args: [{}]}}]\n",
        on.name,
        args.join(", ")
    ));
    wait_for(&format!("pod {name} to finish"), within, || {
        let phase = &on.get_json(&["pod", name])["status"]["phase"];
        phase == "Succeeded" || phase == "Failed"
    });
    let logs = on.ok(&["logs", name]);
    on.ok(&["delete", "pod", name]);
    logs
}

/// The `hostname` of each echo answer in `output` (one JSON object per line).
pub(crate) fn answered_by(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["hostname"].as_str().map(str::to_string))
        .collect()
}

/// (id, restart count) of every running container on `nodes`.
pub(crate) fn containers(nodes: &[&ClusterNode]) -> BTreeSet<(String, i64)> {
    nodes
        .iter()
        .flat_map(|n| n.containers())
        .filter(|c| c["state"] == "running")
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["restartCount"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

pub(crate) fn leader(node: &ClusterNode) -> Option<String> {
    node.ok(&["get", "nodes"])
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cols| cols.get(2) == Some(&"leader"))
        .map(|cols| cols[0].to_string())
}

/// Who answered a request from the LAN to `node_port` on `node`, and curl's error if any.
pub(crate) fn curl_node_port(node: &ClusterNode, node_port: i64) -> (Vec<String>, String) {
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-m",
            "2",
            &format!("http://{}:{node_port}/", node.ip),
        ])
        .output()
        .unwrap();
    (
        answered_by(&String::from_utf8_lossy(&out.stdout)),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

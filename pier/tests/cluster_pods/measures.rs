//! The leader measures the whole cluster, not its own share: an AnalysisRun counting
//! connections to `only3` sees those another node's dataplane made, read through that node's
//! API; and kubectl against n1 reads any node's metrics and its pods' resource use at the
//! kubelet's paths (`/api/v1/nodes/NODE/proxy/metrics[/resource]`).

use std::path::Path;
use std::time::Duration;

use pier_testkit::wait_for;

use super::common::cluster::ClusterNode;
use super::common::kubectl::Kubectl;
use super::common::runtime::out_text;
use super::common::{have, skip};
use super::probe::{curl_node_port, leader};

/// Connections sent through a node that does not lead.
const SENT: usize = 30;

/// From the LAN, `SENT` connections through the NodePort of a node other than the leader,
/// while the leader's AnalysisRun counts connections to `only3`: it counts them all.
pub(crate) fn the_leader_counts_what_other_nodes_sent(nodes: &[ClusterNode], node_port: i64) {
    let leading = leader(&nodes[0]).expect("a leader");
    let sender = nodes.iter().find(|n| n.name != leading).unwrap();
    nodes[0].apply(
        "apiVersion: argoproj.io/v1alpha1
kind: AnalysisRun
metadata: {name: only3-connections}
spec:
  metrics:
  - name: connections
    count: 1
    successCondition: result >= 30
    provider:
      plugin:
        pier.dev/metrics: {service: only3, measure: connections, window: 10s}
",
    );
    let run = || nodes[0].get_json(&["analysisrun", "only3-connections"]);
    wait_for(
        "the analysis run to start measuring",
        Duration::from_secs(10),
        || run()["status"]["phase"] == "Running",
    );
    // The run is Running as its first reading is taken: past it, every connection counts.
    std::thread::sleep(Duration::from_secs(1));
    let mut answered = 0;
    for _ in 0..SENT {
        let (by, error) = curl_node_port(sender, node_port);
        assert_eq!(by, ["only3"], "through {}'s NodePort: {error}", sender.name);
        answered += 1;
    }
    wait_for("the analysis run to end", Duration::from_secs(20), || {
        matches!(
            run()["status"]["phase"].as_str(),
            Some("Successful" | "Failed" | "Error")
        )
    });
    let status = &run()["status"];
    let measured = &status["metricResults"][0]["measurements"][0];
    println!(
        "{leading} (leading) counted {} connections to only3 in its window; {answered} were sent through {}",
        measured["value"], sender.name
    );
    assert_eq!(
        status["phase"],
        "Successful",
        "the leader missed {}'s connections: {status}\n{leading}: {}",
        sender.name,
        nodes
            .iter()
            .find(|n| n.name == leading)
            .map(ClusterNode::log_tail)
            .unwrap_or_default()
    );
}

/// kubectl against n1 reads n3's resource metrics (its pod `only3`'s CPU and memory) and n2's
/// own metrics, relayed; a node that is not there is `NotFound`.
pub(crate) fn kubectl_reads_every_nodes_metrics(nodes: &[ClusterNode], dir: &Path) {
    if !have("kubectl") {
        skip("kubectl is not installed: node metrics through kubectl untested");
        return;
    }
    let kubeconfig = dir.join("kubeconfig-n1-metrics");
    std::fs::write(&kubeconfig, nodes[0].ok(&["kubeconfig"])).unwrap();
    let kubectl = Kubectl {
        kubeconfig,
        cache: dir.join("kubectl-cache-metrics"),
    };
    let raw = |path: &str| {
        let out = kubectl.run(&["get", "--raw", path]);
        (out.status.success(), out_text(&out))
    };
    let (ok, resource) = raw("/api/v1/nodes/n3/proxy/metrics/resource");
    assert!(ok, "{resource}");
    let cpu = resource
        .lines()
        .find(|l| l.starts_with("pod_cpu_usage_seconds_total{namespace=\"default\",pod=\"only3\"}"))
        .unwrap_or_else(|| panic!("no CPU of only3 in n3's resource metrics:\n{resource}"));
    let seconds: f64 = cpu.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(seconds > 0.0, "{cpu}");
    assert!(
        resource.contains("container_memory_working_set_bytes{container=\"c\",namespace=\"default\",pod=\"only3\"}"),
        "{resource}"
    );
    let (ok, n2) = raw("/api/v1/nodes/n2/proxy/metrics/resource");
    assert!(ok, "{n2}");
    assert!(
        n2.contains("pod=\"web-") && !n2.contains("pod=\"only3\""),
        "n2 runs two web pods and not only3:\n{n2}"
    );
    let (ok, metrics) = raw("/api/v1/nodes/n2/proxy/metrics");
    assert!(ok, "{metrics}");
    assert!(metrics.contains("# TYPE pier_"), "{metrics}");
    let (ok, missing) = raw("/api/v1/nodes/n9/proxy/metrics");
    assert!(!ok && missing.contains("NotFound"), "{missing}");
}

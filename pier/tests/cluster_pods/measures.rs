//! The leader measures the whole cluster, not its own share: an AnalysisRun counting
//! connections to `only3`, and an autoscaler of `web` reading connections per pod, see those
//! another node's dataplane made, read through that node's API; and kubectl against n1 reads
//! any node's metrics and its pods' resource use at the kubelet's paths
//! (`/api/v1/nodes/NODE/proxy/metrics[/resource]`).

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

/// An autoscaler of `web` (held at its six replicas) on the leader: while a pod on another node
/// opens connections to `web`'s ClusterIP (through that node's socket-LB), its
/// `connections-per-second` per pod turns above zero.
pub(crate) fn the_leaders_autoscaler_sees_other_nodes_connections(nodes: &[ClusterNode]) {
    let leading = leader(&nodes[0]).expect("a leader");
    let sender = nodes.iter().find(|n| n.name != leading).unwrap();
    nodes[0].apply(
        "apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 6
  maxReplicas: 6
  metrics:
  - type: Pods
    pods: {metric: {name: connections-per-second}, target: {type: AverageValue, averageValue: 1k}}
",
    );
    let hpa = || nodes[0].get_json(&["hpa", "web"])["status"].clone();
    wait_for(
        "the autoscaler's first pass",
        Duration::from_secs(10),
        || {
            hpa()["conditions"]
                .as_array()
                .is_some_and(|c| !c.is_empty())
        },
    );
    let mut args = vec!["-sS", "-m", "1", "-o", "/dev/null", "--rate", "20/s"];
    args.extend(std::iter::repeat_n("http://web/", 120));
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    nodes[0].apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: hpa-load}}\nspec:\n  nodeName: {}\n  restartPolicy: Never\n  containers: [{{name: c, image: 'pier/curl:1', args: [{}]}}]\n",
        sender.name,
        args.join(", ")
    ));
    let per_pod = || hpa()["currentMetrics"][0]["pods"]["current"]["averageValue"].clone();
    wait_for(
        &format!(
            "{leading}'s autoscaler to see {}'s connections",
            sender.name
        ),
        Duration::from_secs(20),
        || per_pod().as_str().is_some_and(|v| v != "0"),
    );
    println!(
        "{leading} (leading) measured {} connections per second per web pod while a pod on {} connected",
        per_pod(),
        sender.name
    );
    nodes[0].ok(&["delete", "hpa", "web"]);
    nodes[0].ok(&["delete", "pod", "hpa-load"]);
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

//! Phases of the three-node test where etcd is lost: quorum, then one node cut off.

use std::time::{Duration, Instant};

use pier_testkit::{wait_for, Etcd};

use super::common::cluster::{ClusterNode, LAN_IP};
use super::common::pier_cli;
use super::probe::*;

/// Two of three etcd members down: writes fail naming etcd; every node keeps answering
/// DNS, its socket-LB keeps translating and its NodePort keeps forwarding. Back, writes work
/// and every node catches up.
pub(crate) fn every_node_serves_without_etcd_quorum(
    etcd: &mut Etcd,
    nodes: &[ClusterNode],
    vip: &str,
    node_port: i64,
) {
    wait_for(
        "every node to serve web and only3",
        Duration::from_secs(30),
        || serving(nodes, vip, node_port).is_ok(),
    );
    etcd.stop_member(0);
    etcd.stop_member(1);
    let out = pier_cli(&nodes[0].socket(), &["apply", "-f", "-"], &service("late"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("etcd") && err.contains("quorum"),
        "{err}"
    );
    if let Err(e) = serving(nodes, vip, node_port) {
        panic!("without etcd quorum: {e}");
    }
    etcd.start_member(0);
    etcd.start_member(1);
    etcd.wait_healthy(0);
    etcd.wait_healthy(1);
    wait_for("writes to work again", Duration::from_secs(30), || {
        pier_cli(&nodes[0].socket(), &["apply", "-f", "-"], &service("late"))
            .status
            .success()
    });
    let late = nodes[0].get_json(&["svc", "late"])["spec"]["clusterIP"].clone();
    for node in nodes {
        wait_for(
            &format!("{} to catch up", node.name),
            Duration::from_secs(30),
            || node.resolve("late.default.svc.cluster.local") == [late.as_str().unwrap()],
        );
    }
}

/// n3 cut off from etcd by nftables in its namespace: it keeps serving and misses what is
/// written meanwhile; healed, it catches up without a restart.
pub(crate) fn a_node_cut_off_from_etcd_serves_and_catches_up(
    etcd: &Etcd,
    nodes: &[ClusterNode],
    vip: &str,
    node_port: i64,
) {
    let cut = &nodes[2];
    // What it serves when cut off is what it last knew. After the quorum outage the node
    // lifecycle controller can still find a lease that lapsed meanwhile and mark the only3
    // pod NodeNotReady a moment later (seen in CI: n3 then served only3 on no endpoint while
    // cut off). So the cut waits until n3 has served it for longer than the grace.
    let steady = super::GRACE + Duration::from_secs(1);
    let mut since = Instant::now();
    wait_for(
        "n3 to serve only3 steadily before the cut",
        Duration::from_secs(45),
        || {
            if served_endpoint_nodes(cut, "only3").is_empty() {
                since = Instant::now();
            }
            since.elapsed() >= steady
        },
    );
    // Both ways (a watch's data would still come in), and only etcd's ports: the test asks
    // the node's DNS from the LAN's address.
    let etcd_ports = etcd
        .store_url()
        .trim_start_matches("etcd://")
        .split(',')
        .filter_map(|hp| hp.rsplit(':').next())
        .collect::<Vec<_>>()
        .join(", ");
    for rule in [
        "add table inet pier-test-cut",
        "add chain inet pier-test-cut out { type filter hook output priority 0 ; }",
        &format!(
            "add rule inet pier-test-cut out ip daddr {LAN_IP} tcp dport {{ {etcd_ports} }} drop"
        ),
        "add chain inet pier-test-cut in { type filter hook input priority 0 ; }",
        &format!(
            "add rule inet pier-test-cut in ip saddr {LAN_IP} tcp sport {{ {etcd_ports} }} drop"
        ),
    ] {
        let out = cut.in_ns(&["nft", rule]);
        assert!(
            out.status.success(),
            "nft {rule}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    nodes[0].apply(&service("while-cut"));
    let while_cut = nodes[0].get_json(&["svc", "while-cut"])["spec"]["clusterIP"].clone();
    wait_for("n1 to serve while-cut", Duration::from_secs(10), || {
        nodes[0].resolve("while-cut.default.svc.cluster.local") == [while_cut.as_str().unwrap()]
    });
    assert!(
        cut.resolve("while-cut.default.svc.cluster.local")
            .is_empty(),
        "n3 is cut off"
    );
    // Under a loaded machine the NodePort of the pod on n3 itself has once answered a reset
    // here (not yet explained; see issue 16): it is given a few seconds, and said so.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match serving(std::slice::from_ref(cut), vip, node_port) {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => {
                let listening = cut.in_ns(&["ss", "-ltnH"]);
                eprintln!(
                    "cut off from etcd, retrying: {e}; n3 serves only3 on {:?}; n3 listens on:\n{}",
                    served_endpoint_nodes(cut, "only3"),
                    String::from_utf8_lossy(&listening.stdout)
                );
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(e) => panic!("cut off from etcd: {e}"),
        }
    }
    // Past the grace, n3 is not Ready for the others, and its pods not Ready either (the
    // only3 pod is bound there and owned by no controller: never evicted).
    wait_for(
        "n3's only3 pod marked not Ready",
        super::GRACE + Duration::from_secs(5),
        || pod_ready(&nodes[0], "only3") == ("False".into(), "NodeNotReady".into()),
    );
    let out = cut.in_ns(&["nft", "delete table inet pier-test-cut"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let healed = Instant::now();
    wait_for(
        "n3 to catch up after the cut",
        Duration::from_secs(30),
        || cut.resolve("while-cut.default.svc.cluster.local") == [while_cut.as_str().unwrap()],
    );
    println!(
        "n3 caught up {:?} after its cut was healed",
        healed.elapsed()
    );
    // n3 is back: it sets its pod's readiness back to what it sees (Ready: no probe, running).
    wait_for(
        "n3's only3 pod Ready again",
        Duration::from_secs(15),
        || pod_ready(&nodes[0], "only3").0 == "True",
    );
}

/// The status and reason of the pod's Ready condition, as the API shows it.
fn pod_ready(node: &ClusterNode, pod: &str) -> (String, String) {
    let conditions = node.get_json(&["pod", pod])["status"]["conditions"].clone();
    conditions
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .unwrap_or_default()
}

fn service(name: &str) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  ports: [{{port: 80}}]\n")
}

/// Whether every node in `nodes` answers DNS for `web`, translates its ClusterIP `vip` for a
/// client on the node, and forwards its NodePort of `only3` to the pod on n3; what fails if not.
fn serving(nodes: &[ClusterNode], vip: &str, node_port: i64) -> Result<(), String> {
    for node in nodes {
        let answers = node.resolve("web.default.svc.cluster.local");
        if answers != [vip] {
            return Err(format!("{}'s DNS answers {answers:?} for web", node.name));
        }
        let through_vip = node.curl_on_node(&format!("http://{vip}/"));
        if answered_by(&through_vip).is_empty() {
            return Err(format!("{}'s socket-LB: {through_vip:?}", node.name));
        }
        let (answered, error) = curl_node_port(node, node_port);
        if answered != ["only3"] {
            return Err(format!("{}'s NodePort: {error}", node.name));
        }
    }
    Ok(())
}

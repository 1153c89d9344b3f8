//! Three pier nodes running real containers, each node in a network namespace of its own on a
//! bridge (the LAN, the test's own namespace, where a three-member etcd listens), each with its
//! own state dir, cgroup and BPF filesystem. A Deployment of six spreads two per node; from a
//! pod on every node the Service's name resolves and its ClusterIP (through that node's
//! socket-LB) reaches pods on all three nodes; a NodePort on n1 reaches a pod only n3 runs.
//! kill -9 of the leader hands the controllers over with no pod restarted; removing a whole
//! node takes its endpoints out of every other node's dataplane within `--node-grace` and
//! runs its replicas elsewhere; the node coming back removes the containers that were replaced.
//! A DaemonSet runs one pod on each node.
//! kubectl against n1 reads the logs of, execs in and forwards a port to a pod only n3 runs,
//! and reads every node's metrics; the leader's analysis and autoscaler count traffic other
//! nodes sent.
//! Needs root, cgroup2, bpffs, etcd, curl and nsenter; skips with the reason otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

#[path = "cluster_pods/measures.rs"]
mod measures;
#[path = "cluster_pods/outages.rs"]
mod outages;
#[path = "cluster_pods/probe.rs"]
mod probe;
#[path = "cluster_pods/relay.rs"]
mod relay;
#[path = "cluster_pods/workloads.rs"]
mod workloads;

use common::cluster::{lan, start_node, ClusterNode, LAN_IP};
use pier_testkit::{wait_for, Etcd};
use probe::*;
use serde_json::Value;

/// Heartbeat, grace, eviction and lease short enough for a test.
const GRACE: Duration = Duration::from_secs(5);
const EVICTION: Duration = Duration::from_secs(5);
const TIMINGS: [&str; 10] = [
    "--node-heartbeat",
    "500ms",
    "--node-grace",
    "5s",
    "--pod-eviction-timeout",
    "5s",
    "--leader-lease",
    "2s",
    "--hpa-sync-period",
    "1s",
];

const WEB: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 6
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: web
        image: pier/echo:v1
        args: [echo, --http, '0.0.0.0:8080', --name, web]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /readyz, port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: only3, labels: {app: only3}}
spec:
  nodeName: n3
  containers:
  - name: c
    image: pier/echo:v1
    args: [echo, --http, '0.0.0.0:8080', --name, only3]
    ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: only3}
spec:
  type: NodePort
  selector: {app: only3}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-local}
spec:
  internalTrafficPolicy: Local
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: only3-local}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  selector: {app: only3}
  ports: [{port: 80, targetPort: 8080}]
";

fn privileged() -> bool {
    let why = if !common::is_root() {
        "needs root (namespaces, containers, BPF)"
    } else if pier_ebpf::cgroup2_root().is_none() {
        "no cgroup2 mount"
    } else if !Etcd::available() {
        "etcd is not installed (scripts/deps test installs etcd-server)"
    } else if !common::have("curl") || !common::have("nsenter") || !common::have("ip") {
        "needs curl, nsenter (util-linux) and ip (iproute2)"
    } else {
        common::private_netns();
        return true;
    };
    common::skip(why);
    false
}

#[test]
fn three_nodes_run_spread_pods_reach_each_other_and_survive_a_lost_leader_and_node() {
    if !privileged() {
        return;
    }
    lan();
    let mut etcd = Etcd::start_on(3, LAN_IP);
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes: Vec<ClusterNode> = dirs
        .iter()
        .zip(1u8..)
        .map(|(dir, i)| start_node(dir.path(), i, &etcd.store_url(), &TIMINGS))
        .collect();
    wait_for(
        "three Ready nodes and a leader",
        Duration::from_secs(20),
        || {
            nodes[0].ok(&["get", "nodes"]).matches(" Ready ").count() == 3
                && leader(&nodes[0]).is_some()
        },
    );
    for node in &nodes {
        node.build_images();
    }

    six_replicas_spread_two_per_node(&nodes);
    workloads::a_daemon_set_runs_once_on_every_node(&nodes);
    pods_reach_every_node_and_local_services_stay_local(&nodes);
    let node_port = a_node_port_reaches_a_pod_on_another_node(&nodes);
    relay::kubectl_on_one_node_reaches_a_pod_on_another(&nodes, dirs[0].path());
    measures::kubectl_reads_every_nodes_metrics(&nodes, dirs[0].path());
    measures::the_leader_counts_what_other_nodes_sent(&nodes, node_port);
    measures::the_leaders_autoscaler_sees_other_nodes_connections(&nodes);
    external_traffic_policy_local(&nodes);
    a_killed_leader_hands_over_without_restarts(&mut nodes);
    let (v, replaced) = a_removed_node_is_replaced_while_clients_lose_little(&mut nodes);
    the_node_back_removes_what_was_replaced(&mut nodes, v, &replaced);
    let vip = nodes[0].get_json(&["svc", "web"])["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    outages::every_node_serves_without_etcd_quorum(&mut etcd, &nodes, &vip, node_port);
    outages::a_node_cut_off_from_etcd_serves_and_catches_up(&etcd, &nodes, &vip, node_port);
    drop(nodes);
    drop(etcd);
}

/// Six replicas of `web`, two per node, every pod ready in every node's dataplane.
fn six_replicas_spread_two_per_node(nodes: &[ClusterNode]) {
    nodes[0].apply(WEB);
    wait_for(
        "six web pods served everywhere",
        Duration::from_secs(60),
        || {
            web_pods(&nodes[0]).len() == 6
                && nodes
                    .iter()
                    .all(|n| served_endpoint_nodes(n, "web").len() == 6)
        },
    );
    let per_node: BTreeMap<String, usize> =
        web_pods(&nodes[0])
            .values()
            .fold(BTreeMap::new(), |mut m, n| {
                *m.entry(n.clone()).or_default() += 1;
                m
            });
    assert_eq!(
        per_node,
        BTreeMap::from([("n1".into(), 2), ("n2".into(), 2), ("n3".into(), 2)]),
        "spread two per node"
    );
}

/// From a pod on each node: the name resolves through the search path, and new connections
/// to the ClusterIP reach pods on all three nodes; those to `web-local`
/// (internalTrafficPolicy: Local) only the node's own two.
fn pods_reach_every_node_and_local_services_stay_local(nodes: &[ClusterNode]) {
    let pod_node = web_pods(&nodes[0]);
    for node in nodes {
        let mut args = vec!["-sS", "-m", "2", "-w", "\\n", "-H", "Connection: close"];
        args.extend(std::iter::repeat_n("http://web/", 30));
        args.extend(std::iter::repeat_n("http://web-local/", 20));
        let out = curl_from_pod(
            node,
            &format!("client-{}", node.name),
            &args,
            Duration::from_secs(60),
        );
        let answered = answered_by(&out);
        assert_eq!(answered.len(), 50, "from {}: {out}", node.name);
        let reached = |answers: &[String]| -> BTreeSet<String> {
            answers
                .iter()
                .filter_map(|pod| pod_node.get(pod).cloned())
                .collect()
        };
        assert_eq!(
            reached(&answered[..30]),
            BTreeSet::from(["n1".into(), "n2".into(), "n3".into()]),
            "from {} through the ClusterIP: {answered:?}",
            node.name
        );
        let local: BTreeSet<&String> = answered[30..].iter().collect();
        assert_eq!(
            reached(&answered[30..]),
            BTreeSet::from([node.name.clone()]),
            "from {} through web-local's ClusterIP: {local:?}",
            node.name
        );
        assert_eq!(local.len(), 2, "both local pods take turns: {local:?}");
    }
}

/// A NodePort on n1 reaches the pod only n3 runs (from the LAN); returns the NodePort.
fn a_node_port_reaches_a_pod_on_another_node(nodes: &[ClusterNode]) -> i64 {
    let node_port = nodes[0].get_json(&["svc", "only3"])["spec"]["ports"][0]["nodePort"]
        .as_i64()
        .unwrap();
    let url = format!("http://{}:{node_port}/", nodes[0].ip);
    wait_for(
        "the NodePort on n1 to answer",
        Duration::from_secs(20),
        || {
            let out = std::process::Command::new("curl")
                .args(["-s", "-m", "2", &url])
                .output()
                .unwrap();
            answered_by(&String::from_utf8_lossy(&out.stdout)) == ["only3"]
        },
    );
    node_port
}

/// kill -9 of the leader: another node leads within 10 s, takes writes, no pod restarts.
fn a_killed_leader_hands_over_without_restarts(nodes: &mut [ClusterNode]) {
    let before = containers(&nodes.iter().collect::<Vec<_>>());
    let old = leader(&nodes[0]).unwrap();
    let i = nodes.iter().position(|n| n.name == old).unwrap();
    let survivor = (i + 1) % 3;
    nodes[i].kill_daemon();
    let killed = Instant::now();
    wait_for("another leader", Duration::from_secs(10), || {
        leader(&nodes[survivor]).is_some_and(|l| l != old)
    });
    println!(
        "leader {old} killed; {} leads after {:?}",
        leader(&nodes[survivor]).unwrap(),
        killed.elapsed()
    );
    nodes[survivor].apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: after}\nspec:\n  ports: [{port: 80}]\n",
    );
    let ip = nodes[survivor].get_json(&["svc", "after"])["spec"]["clusterIP"].clone();
    assert!(
        ip.as_str().is_some_and(|ip| ip.starts_with("10.96.")),
        "{ip}"
    );
    nodes[i].start_daemon();
    let after = containers(&nodes.iter().collect::<Vec<_>>());
    if after != before {
        // Say why: every container in every state, and what the pods went through.
        for n in nodes.iter() {
            let ps = n.pier(&["ps", "-a"]);
            let events = n.pier(&["get", "events"]);
            eprintln!(
                "{}: pier ps -a:\n{}\nevents:\n{}{}",
                n.name,
                String::from_utf8_lossy(&ps.stdout),
                String::from_utf8_lossy(&events.stdout),
                String::from_utf8_lossy(&events.stderr)
            );
        }
    }
    assert_eq!(after, before, "the same containers, none restarted");
}

/// Removes a whole node (not n1, where a client loop sends requests through the ClusterIP,
/// and not the leader, whose loss would add the lease to the time taken): its endpoints leave
/// every other dataplane within the grace, its replicas run elsewhere, and the client loop
/// loses only requests sent before its endpoints left. Returns the node and its replaced pods.
fn a_removed_node_is_replaced_while_clients_lose_little(
    nodes: &mut [ClusterNode],
) -> (usize, BTreeSet<String>) {
    // The holder of the controllers' Lease (the leader label follows it a moment later).
    let leading = nodes[0].get_json(&["lease", "pier-controllers", "-n", "kube-system"])["spec"]
        ["holderIdentity"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let v = if leading == "n2" { 2 } else { 1 };
    let victim = nodes[v].name.clone();
    let victim_pods: BTreeSet<String> = web_pods(&nodes[0])
        .into_iter()
        .filter(|(_, n)| *n == victim)
        .map(|(pod, _)| pod)
        .collect();
    // A pod bound to the victim and owned by no controller: it stays bound there, and must
    // run and be reachable again when the node comes back (as after a reboot).
    nodes[0].apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: pinned}}\nspec:\n  nodeName: {victim}\n  containers:\n  - {{name: c, image: 'pier/echo:v1', args: [echo, --http, '0.0.0.0:8080', --name, pinned]}}\n"
    ));
    wait_for("the pinned pod to run", Duration::from_secs(20), || {
        nodes[0].get_json(&["pod", "pinned"])["status"]["phase"] == "Running"
    });
    let mut args = vec![
        "-sS",
        "-m",
        "1",
        "-w",
        "\\n",
        "-H",
        "Connection: close",
        "--rate",
        "5/s",
    ];
    args.extend(std::iter::repeat_n("http://web/", 150));
    let loop_pod = {
        let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: loop}}\nspec:\n  nodeName: n1\n  restartPolicy: Never\n  containers: [{{name: c, image: 'pier/curl:1', args: [{}]}}]\n",
            args.join(", ")
        )
    };
    nodes[0].apply(&loop_pod);
    wait_for("the client loop to run", Duration::from_secs(20), || {
        nodes[0].get_json(&["pod", "loop"])["status"]["phase"] == "Running"
    });
    std::thread::sleep(Duration::from_secs(3));
    nodes[v].remove();
    let removed = Instant::now();
    for node in nodes.iter().filter(|n| n.name != victim) {
        wait_for(
            &format!("{victim}'s endpoints to leave {}'s dataplane", node.name),
            GRACE + Duration::from_secs(2),
            || !served_endpoint_nodes(node, "web").contains(&victim),
        );
    }
    let gone_after = removed.elapsed();
    // The target is grace + eviction + 10 s (about 10 s is typical here). About one run in
    // ten on this 2-core machine has taken longer, cause not found yet (issue 16): the test
    // allows 15 s more, and says so when the target was missed, with what the pods were doing.
    let target = GRACE + EVICTION + Duration::from_secs(10);
    let back = |nodes: &[ClusterNode]| {
        let pods = web_pods(&nodes[0]);
        pods.len() == 6
            && !pods.values().any(|n| *n == victim)
            && served_endpoint_nodes(&nodes[0], "web").len() == 6
    };
    let deadline = removed + target + Duration::from_secs(15);
    let mut reported = false;
    while !back(nodes) {
        if !reported && removed.elapsed() > target {
            println!(
                "SLOWER THAN TARGET: replicas not back {target:?} after {victim} was removed:\n{}",
                nodes[0].ok(&["get", "pods", "-o", "wide"])
            );
            reported = true;
        }
        assert!(
            Instant::now() < deadline,
            "six replicas not back, none on {victim}:\n{}",
            nodes[0].ok(&["get", "pods", "-o", "wide"])
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "{victim} removed: its endpoints out of every dataplane after {gone_after:?}, six replicas again after {:?} (target {target:?})",
        removed.elapsed()
    );
    the_client_loop_failed_only_before_the_endpoints_left(&nodes[0], &victim);
    (v, victim_pods)
}

/// Requests of the client loop on n1 failed only while `victim`'s endpoints were served.
fn the_client_loop_failed_only_before_the_endpoints_left(n1: &ClusterNode, victim: &str) {
    wait_for("the client loop to finish", Duration::from_secs(60), || {
        n1.get_json(&["pod", "loop"])["status"]["phase"] == "Succeeded"
    });
    let out = n1.ok(&["logs", "loop"]);
    // One line per request: an echo answer, or curl's error.
    let results: Vec<bool> = out
        .lines()
        .filter_map(|l| {
            if l.starts_with("curl: (") {
                Some(false)
            } else {
                serde_json::from_str::<Value>(l)
                    .ok()
                    .map(|v| v["hostname"].is_string())
            }
        })
        .collect();
    let failed = results.iter().filter(|ok| !**ok).count();
    println!(
        "client loop on n1 while {victim} went: {} ok, {failed} failed (requests to {victim}'s pods until its endpoints left)",
        results.len() - failed
    );
    assert_eq!(results.len(), 150, "{out}");
    // Failures are requests sent to the lost node's two pods before their endpoints left (5
    // per second for at most the grace period and a little more), never after.
    assert!(failed <= 30, "{failed} failed:\n{out}");
    assert!(
        results[100..].iter().all(|ok| *ok),
        "failures after {victim}'s endpoints left:\n{out}"
    );
}

/// The removed node comes back: the containers of its replaced pods are removed, and the pod
/// bound to it runs and answers again.
fn the_node_back_removes_what_was_replaced(
    nodes: &mut [ClusterNode],
    v: usize,
    victim_pods: &BTreeSet<String>,
) {
    let victim = nodes[v].name.clone();
    nodes[v].rejoin();
    wait_for(
        &format!("{victim} back, without its replaced containers"),
        Duration::from_secs(30),
        || {
            !nodes[v]
                .containers()
                .iter()
                .any(|c| c["name"].as_str().is_some_and(|n| victim_pods.contains(n)))
        },
    );
    wait_for(
        &format!("{victim} Ready again"),
        Duration::from_secs(10),
        || {
            nodes[0]
                .ok(&["get", "nodes"])
                .lines()
                .any(|l| l.starts_with(&format!("{victim} ")) && l.contains(" Ready "))
        },
    );
    wait_for(
        "the pinned pod to answer again from n1",
        Duration::from_secs(20),
        || {
            let ip = nodes[0].get_json(&["pod", "pinned"])["status"]["podIP"].clone();
            let out = nodes[0].in_ns(&[
                "curl",
                "-s",
                "-m",
                "1",
                &format!("http://{}:8080/", ip.as_str().unwrap_or("0.0.0.0")),
            ]);
            answered_by(&String::from_utf8_lossy(&out.stdout)) == ["pinned"]
        },
    );
}

/// `only3-local` (externalTrafficPolicy: Local) answers on n3's NodePort, where its pod runs,
/// and refuses on n1's and n2's, which have no endpoint of their own: from the LAN, so the
/// nodes' proxies serve it.
fn external_traffic_policy_local(nodes: &[ClusterNode]) {
    let node_port = nodes[0].get_json(&["svc", "only3-local"])["spec"]["ports"][0]["nodePort"]
        .as_i64()
        .unwrap();
    let curl = |node: &ClusterNode| curl_node_port(node, node_port);
    wait_for(
        "only3-local's NodePort on n3 to answer",
        Duration::from_secs(20),
        || curl(&nodes[2]).0 == ["only3"],
    );
    for node in &nodes[..2] {
        for _ in 0..3 {
            let (answered, error) = curl(node);
            assert!(
                answered.is_empty() && !error.is_empty(),
                "{}'s NodePort of an externalTrafficPolicy: Local service with no local \
                 endpoint answered {answered:?}",
                node.name
            );
        }
        println!(
            "{}'s NodePort of only3-local refuses: {}",
            node.name,
            curl(node).1
        );
    }
}

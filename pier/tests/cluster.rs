//! Two pier nodes on one three-member etcd cluster (Debian's `etcd-server`), each daemon with
//! its own state dir, socket, DNS port and pin dir: what one node writes, the other serves;
//! losing one etcd member changes nothing; losing two makes writes fail with an error naming
//! etcd while both nodes keep answering DNS from their last snapshot; healed, both catch up.
//! Traffic stays on 127.0.0.1 (the control sockets and `dig` against each node's DNS).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{dig_a, stderr, Daemon};
use pier_testkit::{free_port, wait_for, Etcd};

/// A node: a daemon on the shared etcd, and the port its DNS answers on.
struct Node {
    daemon: Daemon,
    dns: u16,
}

fn start_node(dir: &Path, etcd: &Etcd) -> Node {
    start_named(
        dir,
        etcd,
        &format!("node-{}", free_port("127.0.0.1").unwrap()),
    )
}

/// A node named `name`, with short heartbeat, grace and leader lease so the test is quick.
fn start_named(dir: &Path, etcd: &Etcd, name: &str) -> Node {
    let dns = free_port("127.0.0.1").unwrap();
    let daemon = Daemon::start_with(
        dir,
        &[
            "--store",
            &etcd.store_url(),
            "--no-proxy",
            "--no-runtime",
            "--dns-listen",
            &format!("127.0.0.1:{dns}"),
            "--node-name",
            name,
            "--node-ip",
            "192.0.2.10",
            "--node-heartbeat",
            "500ms",
            "--node-grace",
            "3s",
            "--leader-lease",
            "2s",
            "--pod-eviction-timeout",
            "2s",
        ],
    );
    Node { daemon, dns }
}

/// `pier get nodes` as (name, status, roles) rows.
fn nodes(node: &Node) -> Vec<(String, String, String)> {
    let out = node.daemon.pier(&["get", "nodes"]);
    common::stdout(&out)
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            Some((
                cols.first()?.to_string(),
                cols.get(1)?.to_string(),
                cols.get(2)?.to_string(),
            ))
        })
        .collect()
}

fn leader(node: &Node) -> Option<String> {
    nodes(node)
        .into_iter()
        .find(|(_, _, roles)| roles.split(',').any(|r| r == "leader"))
        .map(|(name, _, _)| name)
}

/// The A records `name` has on `node`'s DNS (empty when none, or no answer).
fn resolve(node: &Node, name: &str) -> Vec<String> {
    dig_a("127.0.0.1", node.dns, name)
}

fn service(name: &str) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  ports: [{{port: 80}}]\n")
}

fn cluster_ip(node: &Node, name: &str) -> String {
    node.daemon.get_json(&["svc", name])["spec"]["clusterIP"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn two_nodes_share_one_etcd_and_ride_out_member_loss() {
    if !Etcd::available() {
        common::skip("etcd is not installed (scripts/deps test installs etcd-server)");
        return;
    }
    if !common::have("dig") {
        common::skip("dig is not installed (scripts/deps test installs bind9-dnsutils)");
        return;
    }
    let mut etcd = Etcd::start(3);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start_node(dir_a.path(), &etcd);
    let b = start_node(dir_b.path(), &etcd);

    // Written through node A, served by node B.
    let out = a.daemon.pier_stdin(&["apply", "-f", "-"], &service("web"));
    assert!(out.status.success(), "{}", stderr(&out));
    let ip = cluster_ip(&a, "web");
    assert!(ip.starts_with("10.96."), "{ip}");
    assert_eq!(
        cluster_ip(&b, "web"),
        ip,
        "one store: the same ClusterIP on every node"
    );
    wait_for("node B to resolve web", Duration::from_secs(10), || {
        resolve(&b, "web.default.svc.cluster.local") == [ip.as_str()]
    });

    // One member down: nothing a client notices.
    etcd.stop_member(0);
    let out = b.daemon.pier_stdin(&["apply", "-f", "-"], &service("api"));
    assert!(out.status.success(), "{}", stderr(&out));
    let api = cluster_ip(&b, "api");
    assert_ne!(api, ip, "two Services never share an address");
    wait_for("node A to resolve api", Duration::from_secs(10), || {
        resolve(&a, "api.default.svc.cluster.local") == [api.as_str()]
    });

    // Two down: no quorum. Writes fail naming etcd; both nodes keep serving what they had.
    etcd.stop_member(1);
    let out = a.daemon.pier_stdin(&["apply", "-f", "-"], &service("late"));
    assert!(!out.status.success(), "a write without quorum must fail");
    let err = stderr(&out);
    assert!(err.contains("etcd") && err.contains("quorum"), "{err}");
    for node in [&a, &b] {
        assert_eq!(
            resolve(node, "web.default.svc.cluster.local"),
            [ip.as_str()]
        );
        assert_eq!(
            resolve(node, "api.default.svc.cluster.local"),
            [api.as_str()]
        );
    }

    // Healed: writes work again and both nodes catch up, without a restart.
    etcd.start_member(0);
    etcd.start_member(1);
    etcd.wait_healthy(0);
    etcd.wait_healthy(1);
    wait_for("writes to work again", Duration::from_secs(30), || {
        a.daemon
            .pier_stdin(&["apply", "-f", "-"], &service("late"))
            .status
            .success()
    });
    let late = cluster_ip(&a, "late");
    for node in [&a, &b] {
        wait_for("both nodes to catch up", Duration::from_secs(30), || {
            resolve(node, "late.default.svc.cluster.local") == [late.as_str()]
        });
    }
    a.daemon.stop();

    // etcd gone altogether: a node still stops promptly and cleanly.
    for member in 0..3 {
        etcd.stop_member(member);
    }
    let asked = std::time::Instant::now();
    b.daemon.stop();
    assert!(
        asked.elapsed() < Duration::from_secs(8),
        "stopping with etcd down took {:?}",
        asked.elapsed()
    );
}

/// A pod bound to `node`, Ready, with `ip` (no engine runs it: the test sets its status).
fn standin_pod(name: &str, node: &str, ip: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: spread}}}}\nspec:\n  nodeName: {node}\n  containers: [{{name: c, image: x}}]\nstatus:\n  phase: Running\n  podIP: {ip}\n  conditions: [{{type: Ready, status: \"True\"}}]\n"
    )
}

/// The Ready condition of each endpoint of `svc`'s slices, by address.
fn endpoint_readiness(node: &Node, svc: &str) -> Vec<(String, bool)> {
    let slices = node.daemon.get_json(&[
        "endpointslices",
        "-l",
        &format!("kubernetes.io/service-name={svc}"),
    ]);
    let mut out: Vec<(String, bool)> = slices["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            (
                e["addresses"][0].as_str().unwrap_or_default().to_string(),
                e["conditions"]["ready"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn three_nodes_one_leader_failover_and_a_lost_node() {
    if !Etcd::available() {
        common::skip("etcd is not installed (scripts/deps test installs etcd-server)");
        return;
    }
    let etcd = Etcd::start(3);
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes_up: Vec<Option<Node>> = ["n1", "n2", "n3"]
        .iter()
        .zip(&dirs)
        .map(|(name, dir)| Some(start_named(dir.path(), &etcd, name)))
        .collect();
    let first = nodes_up[0].as_ref().unwrap();
    wait_for(
        "three Ready nodes and one leader",
        Duration::from_secs(20),
        || {
            let rows = nodes(first);
            rows.len() == 3
                && rows.iter().all(|(_, status, _)| status == "Ready")
                && rows.iter().filter(|(_, _, r)| r == "leader").count() == 1
        },
    );
    let json = first.daemon.get_json(&["nodes"]);
    let mut cidrs: Vec<String> = json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            n["spec"]["podCIDR"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    cidrs.sort();
    cidrs.dedup();
    assert_eq!(cidrs.len(), 3, "a pod range per node: {cidrs:?}");
    assert!(cidrs
        .iter()
        .all(|c| c.starts_with("10.88.") && c.ends_with("/24")));

    // Pods on every node behind one Service: all ready endpoints.
    let mut manifest = String::from(
        "apiVersion: v1\nkind: Service\nmetadata: {name: spread}\nspec:\n  selector: {app: spread}\n  ports: [{port: 80}]\n",
    );
    for (i, node) in ["n1", "n2", "n3"].iter().enumerate() {
        manifest.push_str("---\n");
        manifest.push_str(&standin_pod(
            &format!("p{i}"),
            node,
            &format!("10.88.{i}.5"),
        ));
    }
    let out = first.daemon.pier_stdin(&["apply", "-f", "-"], &manifest);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for("three ready endpoints", Duration::from_secs(10), || {
        endpoint_readiness(first, "spread")
            .iter()
            .filter(|(_, r)| *r)
            .count()
            == 3
    });

    // kill -9 the leader: another node leads within 10 s and Services still get addresses.
    let old = leader(first).unwrap();
    let index = ["n1", "n2", "n3"].iter().position(|n| *n == old).unwrap();
    let mut killed = nodes_up[index].take().unwrap();
    let mut child = killed.daemon.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let survivor = nodes_up.iter().flatten().next().unwrap();
    let killed_at = std::time::Instant::now();
    wait_for("a new leader", Duration::from_secs(10), || {
        leader(survivor).is_some_and(|l| l != old)
    });
    let took = killed_at.elapsed();
    assert!(took < Duration::from_secs(10), "failover took {took:?}");
    let out = survivor
        .daemon
        .pier_stdin(&["apply", "-f", "-"], &service("after-failover"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(cluster_ip(survivor, "after-failover").starts_with("10.96."));

    // The dead node goes Unknown within its grace, and its pod's endpoint is not ready.
    wait_for(
        "the dead node NotReady",
        Duration::from_secs(3 + 10),
        || {
            nodes(survivor)
                .iter()
                .any(|(name, status, _)| *name == old && status == "Unknown")
        },
    );
    let dead_ip = format!("10.88.{index}.5");
    wait_for("its endpoint not ready", Duration::from_secs(10), || {
        endpoint_readiness(survivor, "spread")
            .iter()
            .all(|(ip, ready)| *ready == (*ip != dead_ip))
    });
    println!("leader failover after kill -9: {took:?}");
    for node in nodes_up.into_iter().flatten() {
        node.daemon.stop();
    }
}

/// The pods of Deployment `name` as (pod, node) pairs.
fn placements(node: &Node, deployment: &str) -> Vec<(String, String)> {
    let pods = node
        .daemon
        .get_json(&["pods", "-l", &format!("pier.dev/deployment={deployment}")]);
    let mut out: Vec<(String, String)> = pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            (
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                p["spec"]["nodeName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn per_node(placed: &[(String, String)]) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for (_, node) in placed {
        *counts.entry(node.clone()).or_insert(0) += 1;
    }
    counts
}

#[test]
fn the_scheduler_spreads_replicas_honours_cordons_and_replaces_a_lost_nodes_pods() {
    if !Etcd::available() {
        common::skip("etcd is not installed (scripts/deps test installs etcd-server)");
        return;
    }
    let etcd = Etcd::start(1);
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut up: Vec<Option<Node>> = ["s1", "s2", "s3"]
        .iter()
        .zip(&dirs)
        .map(|(name, dir)| Some(start_named(dir.path(), &etcd, name)))
        .collect();
    let first = up[0].as_ref().unwrap();
    wait_for("three Ready nodes", Duration::from_secs(20), || {
        nodes(first).iter().filter(|(_, s, _)| s == "Ready").count() == 3
    });
    let deployment = |replicas: u32| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: spread}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: spread}}}}\n  template:\n    metadata: {{labels: {{app: spread}}}}\n    spec:\n      containers: [{{name: c, image: registry.invalid/echo, resources: {{requests: {{cpu: 10m, memory: 16Mi}}}}}}]\n"
        )
    };
    let out = first
        .daemon
        .pier_stdin(&["apply", "-f", "-"], &deployment(6));
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for("six pods, two per node", Duration::from_secs(20), || {
        let placed = placements(first, "spread");
        placed.len() == 6
            && per_node(&placed).values().all(|n| *n == 2)
            && per_node(&placed).len() == 3
    });
    // As kubectl shows it: `-o wide` adds each pod's node.
    let wide = common::stdout(&first.daemon.pier(&["get", "pods", "-o", "wide"]));
    let header: Vec<&str> = wide
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header.last(), Some(&"NODE"), "{wide}");
    assert_eq!(
        wide.lines().skip(1).filter(|l| l.ends_with(" s1")).count(),
        2,
        "{wide}"
    );

    // A cordoned node takes nothing new.
    let out = first.daemon.pier(&["cordon", "s3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(nodes(first)
        .iter()
        .any(|(n, s, _)| n == "s3" && s == "Ready,SchedulingDisabled"));
    let out = first
        .daemon
        .pier_stdin(&["apply", "-f", "-"], &deployment(10));
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for(
        "four more pods, none on s3",
        Duration::from_secs(20),
        || {
            let placed = placements(first, "spread");
            let counts = per_node(&placed);
            placed.len() == 10 && counts.get("s3") == Some(&2) && !counts.contains_key("")
        },
    );
    let out = first.daemon.pier(&["uncordon", "s3"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // A pod that fits nowhere stays Pending and says why.
    let huge = "apiVersion: v1\nkind: Pod\nmetadata: {name: huge}\nspec:\n  containers: [{name: c, image: x, resources: {requests: {cpu: \"512\"}}}]\n";
    let out = first.daemon.pier_stdin(&["apply", "-f", "-"], huge);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for("huge unschedulable", Duration::from_secs(10), || {
        let pod = first.daemon.get_json(&["pod", "huge"]);
        pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| {
                c["type"] == "PodScheduled"
                    && c["reason"] == "Unschedulable"
                    && c["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("Insufficient cpu"))
            })
    });

    // Lose s2 for good: after its grace and the eviction timeout its pods are made again on
    // the others.
    let mut lost = up[1].take().unwrap();
    let mut child = lost.daemon.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let survivor = up[0].as_ref().unwrap();
    wait_for(
        "s2's pods replaced on s1 and s3",
        Duration::from_secs(3 + 2 + 20),
        || {
            let placed = placements(survivor, "spread");
            let counts = per_node(&placed);
            placed.len() == 10 && !counts.contains_key("s2") && !counts.contains_key("")
        },
    );
    for node in up.into_iter().flatten() {
        node.daemon.stop();
    }
}

/// `examples/cluster-local.sh` runs as written (with this build's binary).
#[test]
fn the_cluster_local_example_runs() {
    if !common::is_root() {
        common::skip("needs root (network namespaces)");
        return;
    }
    if !Etcd::available() || !common::have("dig") {
        common::skip("etcd and dig are needed (scripts/deps test installs them)");
        return;
    }
    let out = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/cluster-local.sh"
    ))
    .env("PIER", common::PIER)
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", stderr(&out));
    for line in ["resolves on n3", "after the kill", "Unknown"] {
        assert!(stdout.contains(line), "missing {line:?} in\n{stdout}");
    }
}

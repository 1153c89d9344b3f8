//! Cluster: three pier nodes in network namespaces on a three-member etcd cluster. One
//! endpoint change timed until every node's socket-LB, proxy and DNS serve it; then a cluster
//! loaded with N Services × M endpoints through etcd, a fourth node joining it, and every
//! node's memory. kube-proxy's published figures are printed beside pier's.

mod join;
mod probe;
mod propagation;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pier_testkit::cluster::{lan, ClusterNode, LAN_IP};
use pier_testkit::Etcd;

use crate::harness::{self, Row};

/// Scenario parameters.
pub(crate) struct Params {
    /// Endpoint changes timed to every node.
    pub changes: usize,
    /// Services loaded before a node joins.
    pub services: usize,
    /// Endpoints per loaded Service.
    pub endpoints: usize,
    /// Upper bound for the whole run.
    pub timeout: Duration,
}

/// Node timings: a lapsed node is noticed quickly, as in the cluster tests.
const NODE_FLAGS: [&str; 2] = ["--node-heartbeat", "1s"];

/// Installs etcd, then runs the scenario in this process's own network namespace (the LAN).
pub(crate) fn install() -> Result<()> {
    harness::ensure_command("etcd", "etcd-server")?;
    harness::ensure_command("nsenter", "util-linux")?;
    Ok(())
}

/// Runs the scenario and prints its table. Call from a private network namespace.
pub(crate) async fn run(p: Params) -> Result<()> {
    let deadline = Instant::now() + p.timeout;
    let pier = harness::pier_binary()?;
    lan();
    let etcd = Etcd::start_on(3, LAN_IP);
    let store = etcd.store_url();
    let dirs = (0..4)
        .map(|_| tempfile::tempdir())
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut nodes: Vec<ClusterNode> = (1u8..=3)
        .map(|i| start(&pier, dirs[usize::from(i) - 1].path(), i, &store))
        .collect();
    wait_ready(&nodes, 3, deadline)?;
    let mut rows = propagation::run(&nodes, p.changes, deadline).await?;
    rows.extend(join::run(&mut nodes, &pier, dirs[3].path(), &store, &p, deadline).await?);
    harness::print_table(
        &format!(
            "cluster: 3 nodes in network namespaces on 3 etcd members; {} endpoint changes; \
             a 4th node joins {} services x {} endpoints",
            p.changes, p.services, p.endpoints
        ),
        "target",
        &rows,
    );
    print_reference();
    drop(nodes);
    drop(etcd);
    Ok(())
}

fn start(pier: &Path, dir: &Path, index: u8, store: &str) -> ClusterNode {
    ClusterNode::start(pier, dir, index, store, &NODE_FLAGS)
}

/// Waits until `count` nodes are Ready as the first node sees them.
fn wait_ready(nodes: &[ClusterNode], count: usize, deadline: Instant) -> Result<()> {
    loop {
        let out = nodes[0].pier(&["get", "nodes"]);
        let listed = String::from_utf8_lossy(&out.stdout);
        if listed.matches(" Ready ").count() >= count {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{count} nodes were not Ready in time:\n{listed}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// kube-proxy's published figures, the reference the table's numbers stand beside.
fn print_reference() {
    println!();
    println!("reference: kube-proxy, KEP-3453 (nftables mode), on clusters at scale:");
    println!(
        "  iptables mode programs one Service/endpoint change in p50 5-27 s on large clusters"
    );
    println!("  (sync period bound: every change rewrites the whole ruleset); nftables mode");
    println!("  targets a change proportional to its size. pier's figures above are one change");
    println!("  from the write until every node's socket-LB, proxy and DNS serve it.");
}

/// The admin address of every node, for probes.
fn admin_addresses(nodes: &[ClusterNode]) -> Result<Vec<String>> {
    nodes
        .iter()
        .map(|n| {
            let a = n.admin_address();
            if a.is_empty() {
                bail!("{} has no admin address", n.name);
            }
            Ok(a)
        })
        .collect::<Result<_>>()
        .context("reading the nodes' admin addresses")
}

/// The RSS of each node's daemon, in MB.
fn rss_mb(node: &ClusterNode) -> Result<f64> {
    let pid = node
        .daemon_pid()
        .with_context(|| format!("{} runs no daemon", node.name))?;
    Ok(harness::rss_bytes(pid)? as f64 / 1e6)
}

/// A row with no reference figure.
fn row(metric: String, unit: &'static str, pier: f64, better: harness::Better) -> Row {
    Row {
        metric,
        unit,
        pier,
        reference: None,
        better,
    }
}

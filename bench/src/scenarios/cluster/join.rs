//! The cluster loaded with N Services × M endpoints through etcd (apply throughput), a
//! fourth node joining it (until it serves every Service) and each node's memory.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pier_controlplane::api::Client;
use pier_testkit::cluster::ClusterNode;
use serde_json::{json, Value};

use super::probe::{self, Dns};
use super::{admin_addresses, row, rss_mb, start, wait_ready, Params};
use crate::harness::{Better, Row};

/// How long the nodes stay quiet before their steady-state RSS is read: past the two
/// purges that follow a burst of snapshots (2 s and 12 s after it).
const SETTLE: Duration = Duration::from_secs(15);

/// Objects per apply request: etcd's 128 operations per transaction hold this many.
const START_CHUNK: usize = 64;

fn objects(p: &Params) -> Vec<Value> {
    let mut out =
        vec![json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}})];
    for i in 0..p.services {
        out.push(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": format!("svc-{i}"), "namespace": "bench"},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
        }));
        let endpoints: Vec<Value> = (0..p.endpoints)
            .map(|j| {
                let n = i * p.endpoints + j;
                json!({"addresses": [format!("10.{}.{}.{}", 128 + n / 65536, (n / 256) % 256, n % 256)],
                       "conditions": {"ready": true}})
            })
            .collect();
        out.push(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("svc-{i}-1"), "namespace": "bench",
                         "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
            "addressType": "IPv4", "endpoints": endpoints,
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
        }));
    }
    out
}

/// Applies `objects` in requests as large as etcd's transaction limit lets them be; returns
/// the last revision and the request size used.
async fn load(client: &Client, objects: Vec<Value>, deadline: Instant) -> Result<(u64, usize)> {
    let mut chunk = START_CHUNK;
    let mut rest = objects.as_slice();
    let mut revision = 0;
    while !rest.is_empty() {
        let take = chunk.min(rest.len());
        match client.apply(rest[..take].to_vec()).await {
            Ok(answer) => {
                revision = answer["revision"].as_u64().unwrap_or(revision);
                rest = &rest[take..];
            }
            Err(e) if e.to_string().contains("max-txn-ops") && chunk > 1 => chunk /= 2,
            Err(e) => return Err(e).context("loading the cluster"),
        }
        if Instant::now() > deadline {
            bail!("the load did not finish in time");
        }
    }
    Ok((revision, chunk))
}

/// Waits until the node at `admin` serves `revision` in every part and its DNS answers `name`.
fn wait_serving(
    admin: &str,
    dns: &mut Dns,
    revision: u64,
    name: &str,
    deadline: Instant,
) -> Result<()> {
    loop {
        if probe::all_applied(admin, revision)? && !dns.a(name)?.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{admin} did not serve revision {revision} and {name} in time");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The node labelled leader, if any.
fn leader(node: &ClusterNode) -> Option<String> {
    let listed: Value = serde_json::from_str(&node.ok(&["get", "nodes", "-o", "json"])).ok()?;
    listed["items"].as_array()?.iter().find_map(|n| {
        n["metadata"]["labels"]
            .get("node-role.kubernetes.io/leader")
            .and(n["metadata"]["name"].as_str().map(str::to_string))
    })
}

/// Loads the cluster, joins node 4 and returns the table's rows.
pub(crate) async fn run(
    nodes: &mut Vec<ClusterNode>,
    pier: &Path,
    dir: &Path,
    store: &str,
    p: &Params,
    deadline: Instant,
) -> Result<Vec<Row>> {
    let client = Client::new(nodes[0].socket());
    let all = objects(p);
    let count = all.len();
    let started = Instant::now();
    let (revision, chunk) = load(&client, all, deadline).await?;
    let load_secs = started.elapsed().as_secs_f64();
    let last = format!("svc-{}.bench.svc.cluster.local", p.services - 1);
    for (node, admin) in nodes.iter().zip(admin_addresses(nodes)?) {
        let mut dns = Dns::new(SocketAddr::new(node.ip.parse()?, 53))?;
        wait_serving(&admin, &mut dns, revision, &last, deadline)?;
    }
    let served_secs = started.elapsed().as_secs_f64();

    let joining = Instant::now();
    nodes.push(start(pier, dir, 4, store));
    let n4 = &nodes[3];
    let admin = n4.admin_address();
    let mut dns = Dns::new(SocketAddr::new(n4.ip.parse()?, 53))?;
    wait_serving(&admin, &mut dns, revision, &last, deadline)?;
    let join_secs = joining.elapsed().as_secs_f64();
    wait_ready(nodes, 4, deadline)?;

    let leader = leader(&nodes[0]).unwrap_or_default();
    let mut rows = vec![
        row(
            format!("load: objects applied through etcd per second ({chunk} per request)"),
            "obj/s",
            count as f64 / load_secs,
            Better::Higher,
        ),
        row(
            "load: written until all 3 nodes serve it".into(),
            "s",
            served_secs,
            Better::Lower,
        ),
        Row {
            metric: format!(
                "node 4 joins: daemon start until it serves all {} services",
                p.services
            ),
            unit: "s",
            pier: join_secs,
            reference: Some(3.0),
            better: Better::Lower,
        },
    ];
    let role = |name: &str| if name == leader { "leader" } else { "follower" };
    // Right after the join, node 4 still holds what building its first snapshot freed; a
    // node hands that back once snapshots settle (pier/src/parts/memory.rs), which is the
    // steady state the target is about.
    for node in nodes.iter() {
        rows.push(row(
            format!(
                "RSS of {} ({}) just after the join",
                node.name,
                role(&node.name)
            ),
            "MB",
            rss_mb(node)?,
            Better::Lower,
        ));
    }
    tokio::time::sleep(SETTLE).await;
    for node in nodes.iter() {
        rows.push(Row {
            metric: format!(
                "RSS of {} ({}) at {} services x {}, {}s later",
                node.name,
                role(&node.name),
                p.services,
                p.endpoints,
                SETTLE.as_secs()
            ),
            unit: "MB",
            pier: rss_mb(node)?,
            reference: Some(150.0),
            better: Better::Lower,
        });
    }
    Ok(rows)
}

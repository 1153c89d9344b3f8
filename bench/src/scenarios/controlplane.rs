//! Control-plane scale: N services × M endpoints applied through the API, then single-endpoint
//! changes; reports snapshot rebuild time, change-to-snapshot latency, daemon CPU and RSS.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pier_controlplane::api::Client;
use serde_json::{json, Value};

use crate::harness::{self, Better, Row};

/// Scenario parameters.
pub(crate) struct Params {
    /// Services to create.
    pub services: usize,
    /// Endpoints per service.
    pub endpoints: usize,
    /// Single-endpoint changes to time.
    pub changes: usize,
    /// Upper bound for the whole run.
    pub timeout: Duration,
}

fn service(i: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("svc-{i}"), "namespace": "bench", "labels": {"app": "bench"}},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    })
}

fn slice(i: usize, endpoints: usize, not_ready: Option<usize>) -> Value {
    let eps: Vec<Value> = (0..endpoints)
        .map(|j| {
            let n = i * endpoints + j;
            json!({
                "addresses": [format!("10.{}.{}.{}", 128 + n / 65536, (n / 256) % 256, n % 256)],
                "conditions": {"ready": Some(j) != not_ready}
            })
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("svc-{i}-1"), "namespace": "bench",
                     "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
        "addressType": "IPv4",
        "endpoints": eps,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
    })
}

/// `GET path` on the admin listener at `addr`: the body of a 200 answer.
fn http_get(addr: &str, path: &str) -> Result<String> {
    let s = TcpStream::connect(addr).with_context(|| format!("connecting to admin {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    match pier_testkit::pier::http_get(s, path) {
        (200, body) => Ok(body),
        (code, body) => bail!("GET {path} on {addr}: {code} {body}"),
    }
}

async fn snapshot_revision(client: &Client) -> Result<(u64, u64)> {
    let s = client.status().await?;
    Ok((
        s["revision"].as_u64().unwrap_or(0),
        s["snapshotRevision"].as_u64().unwrap_or(0),
    ))
}

async fn wait_caught_up(client: &Client, target: u64, deadline: Instant) -> Result<()> {
    loop {
        let (_, snap) = snapshot_revision(client).await?;
        if snap >= target {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("snapshot did not reach revision {target} in time");
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// Runs the scenario and prints its table.
pub(crate) async fn run(p: Params) -> Result<()> {
    let deadline = Instant::now() + p.timeout;
    let dir = tempfile::tempdir()?;
    // The proxy listens for every service too: its memory counts.
    let (daemon, client) = harness::start_pier(
        dir.path(),
        &[
            "--dns-listen",
            "127.0.0.1:0",
            "--proxy-vips",
            "loopback",
            "--proxy-port-offset",
            "20000",
        ],
        deadline,
    )
    .await?;
    measure(&p, &client, daemon.0.id(), deadline).await
}

async fn measure(p: &Params, client: &Client, pid: u32, deadline: Instant) -> Result<()> {
    let admin = client.status().await?["adminAddress"]
        .as_str()
        .context("admin address")?
        .to_string();
    let rss_idle = harness::rss_bytes(pid)?;

    // Load: services and slices in batches of 1000 objects, one transaction each.
    let load_start = Instant::now();
    let objects: Vec<Value> = (0..p.services)
        .flat_map(|i| [service(i), slice(i, p.endpoints, None)])
        .collect();
    for chunk in objects.chunks(1000) {
        client.apply(chunk.to_vec()).await?;
        if Instant::now() > deadline {
            bail!("load phase exceeded the time bound");
        }
    }
    let load_secs = load_start.elapsed().as_secs_f64();
    let (rev, _) = snapshot_revision(client).await?;
    wait_caught_up(client, rev, deadline).await?;
    let load_to_snapshot = load_start.elapsed().as_secs_f64();
    let rss_loaded = harness::rss_bytes(pid)?;
    let before: Value = serde_json::from_str(&http_get(&admin, "/snapshot/builds")?)?;
    let builds_before = before["seconds"].as_array().map(Vec::len).unwrap_or(0);

    // Changes: flip one endpoint's readiness in one service, wait until the snapshot has it.
    let cpu_before = harness::cpu_time(pid)?;
    let mut latencies = Vec::with_capacity(p.changes);
    for k in 0..p.changes {
        let i = (k * 7919) % p.services;
        let started = Instant::now();
        let result = client
            .apply(vec![slice(i, p.endpoints, Some(k % p.endpoints))])
            .await?;
        let rev = result["revision"].as_u64().unwrap_or(0);
        wait_caught_up(client, rev, deadline).await?;
        latencies.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let cpu_changes = harness::cpu_time(pid)?.saturating_sub(cpu_before);

    let after: Value = serde_json::from_str(&http_get(&admin, "/snapshot/builds")?)?;
    let all: Vec<f64> = after["seconds"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    let mut builds: Vec<f64> = all
        .iter()
        .skip(builds_before.min(all.len()))
        .map(|s| s * 1e3)
        .collect();
    if builds.len() < p.changes / 2 {
        bail!(
            "only {} snapshot builds recorded for {} changes",
            builds.len(),
            p.changes
        );
    }
    let rss_final = harness::rss_bytes(pid)?;
    let objects = (p.services * 2) as f64;
    let rows = vec![
        Row {
            metric: "load: objects applied per second".into(),
            unit: "obj/s",
            pier: objects / load_secs,
            reference: None,
            better: Better::Higher,
        },
        Row {
            metric: "load: apply + snapshot, total".into(),
            unit: "s",
            pier: load_to_snapshot,
            reference: None,
            better: Better::Lower,
        },
        Row {
            metric: "snapshot rebuild after 1 endpoint change p50".into(),
            unit: "ms",
            pier: harness::quantile(&mut builds, 0.5),
            reference: None,
            better: Better::Lower,
        },
        Row {
            metric: "snapshot rebuild after 1 endpoint change p99".into(),
            unit: "ms",
            pier: harness::quantile(&mut builds, 0.99),
            reference: Some(5.0),
            better: Better::Lower,
        },
        Row {
            metric: "snapshot rebuild max".into(),
            unit: "ms",
            pier: harness::quantile(&mut builds, 1.0),
            reference: None,
            better: Better::Lower,
        },
        Row {
            metric: "apply -> snapshot published p50".into(),
            unit: "ms",
            pier: harness::quantile(&mut latencies, 0.5),
            reference: None,
            better: Better::Lower,
        },
        Row {
            metric: "apply -> snapshot published p99".into(),
            unit: "ms",
            pier: harness::quantile(&mut latencies, 0.99),
            reference: None,
            better: Better::Lower,
        },
        Row {
            metric: "daemon CPU per change (incl. fsync'd write)".into(),
            unit: "us",
            pier: cpu_changes.as_secs_f64() * 1e6 / p.changes as f64,
            reference: None,
            better: Better::Lower,
        },
        Row {
            metric: "daemon RSS idle".into(),
            unit: "MB",
            pier: rss_idle as f64 / 1e6,
            reference: None,
            better: Better::Lower,
        },
        Row {
            metric: "daemon RSS loaded".into(),
            unit: "MB",
            pier: rss_loaded.max(rss_final) as f64 / 1e6,
            reference: Some(300.0),
            better: Better::Lower,
        },
    ];
    harness::print_table(
        &format!(
            "controlplane-scale: {} services x {} endpoints, {} single-endpoint changes ({} builds timed)",
            p.services,
            p.endpoints,
            p.changes,
            builds.len()
        ),
        "target",
        &rows,
    );
    Ok(())
}

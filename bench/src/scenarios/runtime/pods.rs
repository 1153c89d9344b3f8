//! Pod start to first ready endpoint: a one-replica Deployment of pier's echo server applied to
//! a daemon, timed until the Service's EndpointSlice lists the pod as ready. Measured with an
//! HTTP readiness probe (periodSeconds 1, as the quickstart uses) and without one (ready once
//! running). The daemon, and so its shims and containers, run on the system-under-test CPU.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pier_controlplane::api::Client;
use pier_model::Kind;
use serde_json::{json, Value};

use crate::harness::{self, quantile, Better, Row};

const BRIDGE: &str = "pier-bench0";
const IMAGE: &str = "pier/echo:bench";

/// Removes every Deployment and container, whatever state the run ended in (the daemon is
/// killed after, so containers would outlive it).
struct Cleanup<'a> {
    socket: &'a Path,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        // Deployments first, or their controller would replace the containers removed below.
        let listed = pier_cli(self.socket, &["get", "deployments", "-o", "json"])
            .ok()
            .and_then(|out| serde_json::from_str::<Value>(&out).ok());
        for d in listed
            .iter()
            .flat_map(|v| v["items"].as_array().cloned().unwrap_or_default())
        {
            let name = d["metadata"]["name"].as_str().unwrap_or_default();
            let _ = pier_cli(self.socket, &["delete", "deployment", name]);
        }
        if let Ok(out) = pier_cli(self.socket, &["ps", "-a", "-q"]) {
            for id in out.split_whitespace() {
                let _ = pier_cli(self.socket, &["rm", "-f", id]);
            }
        }
    }
}

fn pier_cli(socket: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(harness::pier_binary()?)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .context("running pier")?;
    if !out.status.success() {
        bail!(
            "pier {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn deployment(name: &str, probe: bool) -> Value {
    let mut container = json!({
        "name": "echo",
        "image": IMAGE,
        "args": ["echo", "--http", "0.0.0.0:8080"],
        "ports": [{"name": "http", "containerPort": 8080}],
    });
    if probe {
        container["readinessProbe"] =
            json!({"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 1});
    }
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": 1,
            "selector": {"matchLabels": {"app": "bench", "round": name}},
            "template": {"metadata": {"labels": {"app": "bench", "round": name}},
                "spec": {"containers": [container]}}}})
}

async fn ready_endpoints(client: &Client) -> Result<usize> {
    let slices = client
        .list(
            Kind::EndpointSlice,
            Some("default"),
            Some("kubernetes.io/service-name=bench"),
        )
        .await?;
    Ok(slices
        .iter()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["conditions"]["ready"] == true)
        .count())
}

async fn wait_until(
    what: &str,
    deadline: Instant,
    mut done: impl AsyncFnMut() -> Result<bool>,
) -> Result<()> {
    while !done().await? {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// Applies one Deployment and returns the time to its first ready endpoint; removes it after.
async fn one_pod(client: &Client, name: &str, probe: bool) -> Result<Duration> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let t0 = Instant::now();
    client.apply(vec![deployment(name, probe)]).await?;
    wait_until("a ready endpoint", deadline, async || {
        Ok(ready_endpoints(client).await? > 0)
    })
    .await?;
    let took = t0.elapsed();
    client.delete(Kind::Deployment, "default", name).await?;
    wait_until("the pod to be gone", deadline, async || {
        Ok(client
            .list(Kind::Pod, Some("default"), Some("app=bench"))
            .await?
            .is_empty())
    })
    .await?;
    Ok(took)
}

/// Runs `pods` rounds per variant and prints the table.
pub(super) async fn run(pods: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("pier.sock");
    let deadline = Instant::now() + Duration::from_secs(60);
    let (daemon, client) = harness::start_pier(
        dir.path(),
        &[
            "--no-dns",
            "--no-proxy",
            "--bridge",
            BRIDGE,
            "--pod-cidr",
            "10.253.0.0/16",
        ],
        deadline,
    )
    .await?;
    let result = async {
        let _cleanup = Cleanup { socket: &socket };
        let pier = harness::pier_binary()?;
        pier_cli(
            &socket,
            &[
                "image",
                "build",
                "-t",
                IMAGE,
                "--binary",
                pier.to_str().context("path")?,
                "--path-in-image",
                "/usr/local/bin/pier",
                "--expose",
                "8080",
            ],
        )?;
        client
            .apply(vec![json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "bench", "namespace": "default"},
                "spec": {"selector": {"app": "bench"},
                    "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})])
            .await?;
        let mut rows = Vec::new();
        for probe in [false, true] {
            let mut times = Vec::new();
            // One warm-up pod per variant, not counted.
            for i in 0..=pods {
                let took = one_pod(&client, &format!("bench-{probe}-{i}"), probe).await?;
                if i > 0 {
                    times.push(took.as_secs_f64() * 1e3);
                }
            }
            rows.push(Row {
                metric: if probe {
                    "apply -> ready endpoint, httpGet probe".into()
                } else {
                    "apply -> ready endpoint, no probe".into()
                },
                unit: "ms",
                pier: quantile(&mut times, 0.5),
                reference: None,
                better: Better::Lower,
            });
        }
        harness::print_table(
            &format!("pod start to first ready endpoint, median of {pods} (one-replica Deployment, daemon on one CPU)"),
            "-",
            &rows,
        );
        Ok::<_, anyhow::Error>(())
    }
    .await;
    drop(daemon);
    let _ = Command::new("ip").args(["link", "del", BRIDGE]).status();
    result
}

//! Rollback time: how long after a canary's analysis fails every new HTTP request (through
//! an HTTPRoute) and every new TCP connection (through a TCPRoute) goes to stable again,
//! measured in the same run. Two Rollouts sit at 50% with a background analysis on a web
//! metric the benchmark serves; the benchmark fails the metric and times, from its first
//! failing answer, the start of the last request and connection the canary still answered.
//! Each round retries both rollouts and does it again. Everything is on loopback: pods are
//! `pier echo` processes a stand-in node agent (`agent.rs`) starts, so no root is needed.

mod agent;
mod probe;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pier_controlplane::api::Client;
use pier_model::Kind;
use serde_json::Value;

use crate::harness::{self, median, print_table, Better, Row, BENCH_NAMESPACE};
use agent::Agent;
use probe::{Loop, Mode, Sample, Verdict};

/// Parameters.
pub(crate) struct Params {
    /// Rounds (fail, measure, retry).
    pub rounds: usize,
}

/// Target from the issue: all new traffic on stable within a second of the failure.
const TARGET: Duration = Duration::from_secs(1);
/// Upper bound for each wait.
const WAIT: Duration = Duration::from_secs(60);

const MANIFESTS: &str = include_str!("manifests.yaml");

pub(crate) async fn run(p: Params) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let flags = [
        "--no-runtime",
        "--no-dns",
        "--service-cidr",
        "10.152.0.0/16",
        "--proxy-vips",
        "loopback",
        "--proxy-port-offset",
        "21000",
    ];
    let deadline = Instant::now() + WAIT;
    let (_daemon, client) = harness::start_pier(dir.path(), &flags, deadline).await?;
    let verdict = Verdict::start()?;
    let mut agent = Agent::default();
    apply(&client, "v1", verdict.addr).await?;
    settle(&client, &mut agent, |ro| ro["status"]["phase"] == "Healthy").await?;
    apply(&client, "v2", verdict.addr).await?;
    let (l7, l4) = (
        front(&client, "web", 80).await?,
        front(&client, "tweb", 9000).await?,
    );
    let mut rows: (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    for round in 0..p.rounds {
        verdict.pass();
        settle(&client, &mut agent, |ro| {
            ro["status"]["phase"] == "Paused"
                && ro["status"]["canary"]["weights"]["canary"]["weight"] == 50
        })
        .await
        .with_context(|| format!("round {round}: both canaries at 50%"))?;
        let loops = [
            Loop::start(l7, Mode::Http, WAIT),
            Loop::start(l4, Mode::Tcp, WAIT),
        ];
        tokio::time::sleep(Duration::from_millis(500)).await;
        verdict.fail();
        settle(&client, &mut agent, |ro| {
            ro["status"]["phase"] == "Degraded"
        })
        .await
        .with_context(|| format!("round {round}: both rollouts aborted"))?;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let [http, tcp] = loops.map(Loop::stop);
        let failed = verdict
            .failed_at()
            .context("the analysis never read the failing metric")?;
        let (t7, t4) = (last_canary(&http, failed)?, last_canary(&tcp, failed)?);
        println!(
            "round {round}: L7 {:.0} ms ({} requests), L4 {:.0} ms ({} connections)",
            t7 * 1e3,
            http.len(),
            t4 * 1e3,
            tcp.len()
        );
        rows.0.push(t7);
        rows.1.push(t4);
        for ro in ["web", "tweb"] {
            retry(&client, ro).await?;
        }
    }
    let row = |metric: &str, v: &[f64]| Row {
        metric: metric.into(),
        unit: "ms",
        pier: median(v.iter().map(|s| s * 1e3)),
        reference: Some(TARGET.as_secs_f64() * 1e3),
        better: Better::Lower,
    };
    print_table(
        "rollback: analysis failed -> every new request / connection on stable (median of rounds)",
        "target",
        &[
            row("L7 HTTPRoute, per request", &rows.0),
            row("L4 TCPRoute, per connection", &rows.1),
        ],
    );
    let worst = |v: &[f64]| v.iter().copied().fold(0.0, f64::max) * 1e3;
    println!(
        "worst round: L7 {:.0} ms, L4 {:.0} ms",
        worst(&rows.0),
        worst(&rows.1)
    );
    Ok(())
}

/// Applies the manifests with the pods running `version`.
async fn apply(client: &Client, version: &str, verdict: SocketAddr) -> Result<()> {
    let yaml = MANIFESTS
        .replace("VERSION", version)
        .replace("VERDICT", &verdict.to_string());
    let objects = pier_model::manifest::objects("rollout bench", &yaml).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("the benchmark's manifests: {}", lines.join("; "))
    })?;
    let values = objects.iter().map(pier_model::Object::to_value).collect();
    client
        .apply(values)
        .await
        .context("applying the rollouts")?;
    Ok(())
}

/// Runs the stand-in agent until both rollouts hold `done`.
async fn settle(client: &Client, agent: &mut Agent, done: impl Fn(&Value) -> bool) -> Result<()> {
    let end = Instant::now() + WAIT;
    loop {
        agent.sync(client, BENCH_NAMESPACE).await?;
        let mut all = true;
        for name in ["web", "tweb"] {
            let ro = client.get(Kind::Rollout, BENCH_NAMESPACE, name).await?;
            all &= ro.as_ref().is_some_and(&done);
        }
        if all {
            return Ok(());
        }
        if Instant::now() > end {
            bail!("timed out");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The loopback address the proxy serves Service `name`'s `port` on.
async fn front(client: &Client, name: &str, port: u16) -> Result<SocketAddr> {
    let svc = client
        .get(Kind::Service, BENCH_NAMESPACE, name)
        .await?
        .with_context(|| format!("Service {name}"))?;
    let ip = svc["spec"]["clusterIP"].as_str().context("clusterIP")?;
    let o: Vec<&str> = ip.split('.').collect();
    let addr = format!("127.{}.{}.{}:{}", o[1], o[2], o[3], 21000 + u32::from(port));
    Ok(addr.parse()?)
}

/// Seconds from `failed` to the start of the last request the canary (v2) answered.
fn last_canary(samples: &[Sample], failed: Instant) -> Result<f64> {
    let errors = samples.iter().filter(|(_, v)| v.is_none()).count();
    if errors > 0 {
        eprintln!("{errors} of {} attempts failed", samples.len());
    }
    let canary_before = samples
        .iter()
        .any(|(t, v)| *t < failed && v.as_deref() == Some("v2"));
    if !canary_before {
        bail!("the canary answered nothing before the failure: nothing was measured");
    }
    let last = samples
        .iter()
        .filter(|(_, v)| v.as_deref() == Some("v2"))
        .map(|(t, _)| *t)
        .max()
        .unwrap_or(failed);
    Ok(last.saturating_duration_since(failed).as_secs_f64())
}

/// `pier rollout retry`, as the CLI does it: the abort cleared through the status.
async fn retry(client: &Client, name: &str) -> Result<()> {
    let path = format!("/apis/argoproj.io/v1alpha1/namespaces/{BENCH_NAMESPACE}/rollouts/{name}");
    let mut ro = client
        .call(hyper::Method::GET, &path, None)
        .await
        .with_context(|| format!("reading rollout {name}"))?;
    if let Some(status) = ro["status"].as_object_mut() {
        status.remove("abort");
        status.remove("message");
    }
    client
        .call(hyper::Method::PUT, &format!("{path}/status"), Some(&ro))
        .await
        .with_context(|| format!("retrying rollout {name}"))?;
    Ok(())
}

//! TLS at the edge: pier's Ingress listener vs HAProxy (Debian's, OpenSSL 3) terminating TLS
//! 1.3 with the same ECDSA P-256 certificate in front of the same nginx, each on one core:
//! full handshakes per second (a new connection per request), resumed handshakes per second
//! (session tickets), and keep-alive HTTPS requests per second, each with server CPU per
//! request. Rounds measure both back to back, alternating which goes first.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::proxy::{free_port, start_nginx, wait_tcp};
use super::tls_load::{self, Counts, Load};
use crate::harness::{self, Better, Row};

/// The host the certificate and the Ingress are for.
const HOST: &str = "bench.example.com";

/// Scenario parameters.
pub(crate) struct Params {
    /// Seconds of each measured run.
    pub seconds: u64,
    /// Concurrent clients.
    pub clients: usize,
    /// Loads to run: full, resumed, keepalive.
    pub modes: Vec<String>,
    /// Rounds per mode.
    pub rounds: usize,
}

/// A self-signed ECDSA P-256 certificate for [`HOST`]: (chain PEM, key PEM).
fn certificate() -> Result<(String, String)> {
    let key = rcgen::KeyPair::generate().context("a key")?;
    let mut params = rcgen::CertificateParams::new(vec![HOST.to_string()])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, HOST);
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn start_haproxy(dir: &Path, pem: &str, backends: &[u16], port: u16) -> Result<harness::Proc> {
    let bundle = dir.join("haproxy.pem");
    std::fs::write(&bundle, pem)?;
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(i, p)| format!("  server web{i} 127.0.0.1:{p}\n"))
        .collect();
    let conf = dir.join("haproxy-tls.cfg");
    std::fs::write(
        &conf,
        format!(
            "global\n  nbthread 1\n  maxconn 8000\n  ssl-default-bind-options ssl-min-ver TLSv1.2\n\
             defaults\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
             frontend tls\n  mode http\n  bind 127.0.0.1:{port} ssl crt {bundle} alpn h2,http/1.1\n  option http-keep-alive\n  default_backend web\n\
             backend web\n  mode http\n  balance roundrobin\n  http-reuse always\n{servers}",
            bundle = bundle.display(),
        ),
    )?;
    harness::start_haproxy(&conf)
}

async fn start_pier(
    dir: &Path,
    (crt, key): (&str, &str),
    backends: &[u16],
    port: u16,
    deadline: Instant,
) -> Result<harness::Proc> {
    let https = format!("127.0.0.1:{port}");
    let http = format!("127.0.0.1:{}", free_port()?);
    let (proc, client) = harness::start_pier(
        dir,
        &[
            harness::loopback_proxy("10.212.0.0/24"),
            vec!["--ingress-listen", &http, "--ingress-tls-listen", &https],
        ]
        .concat(),
        deadline,
    )
    .await?;
    let ns = harness::BENCH_NAMESPACE;
    let mut objects = vec![
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": "bench-tls", "namespace": ns},
            "stringData": {"tls.crt": crt, "tls.key": key}}),
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {"ports": [{"name": "http", "port": 80}]}}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "bench", "namespace": ns},
            "spec": {"ingressClassName": "pier",
                "tls": [{"hosts": [HOST], "secretName": "bench-tls"}],
                "rules": [{"host": HOST, "http": {"paths": [{"path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}),
    ];
    for p in backends {
        objects.push(
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("web-{p}"), "namespace": ns,
                "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
            "ports": [{"name": "http", "port": p, "protocol": "TCP"}]}),
        );
    }
    client.apply(objects).await?;
    Ok(proc)
}

/// What one run measured.
struct Sample {
    /// Requests (and, but for keep-alive, handshakes) per second.
    rate: f64,
    /// Share of handshakes that resumed.
    resumed: f64,
    /// Server CPU per request, microseconds.
    cpu_us: f64,
}

async fn measure(pid: u32, addr: &str, load: Load, p: &Params) -> Result<Sample> {
    // Warm-up: session tickets, pools and caches on both sides.
    tls_load::run(addr, HOST, load, p.clients, Duration::from_secs(1)).await?;
    let before = harness::cpu_time(pid)?;
    let started = Instant::now();
    let counts: Counts =
        tls_load::run(addr, HOST, load, p.clients, Duration::from_secs(p.seconds)).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = harness::cpu_time(pid)? - before;
    if counts.requests == 0 {
        bail!(
            "no request was answered by {addr} ({} errors)",
            counts.errors
        );
    }
    Ok(Sample {
        rate: counts.requests as f64 / elapsed,
        resumed: counts.resumed as f64 / counts.handshakes.max(1) as f64,
        cpu_us: cpu.as_secs_f64() * 1e6 / counts.requests as f64,
    })
}

fn load_of(mode: &str) -> Result<Load> {
    Ok(match mode {
        "full" => Load::Full,
        "resumed" => Load::Resumed,
        "keepalive" => Load::KeepAlive,
        other => bail!("unknown mode {other:?}: full, resumed or keepalive"),
    })
}

/// Runs the scenario.
pub(crate) async fn run(p: Params) -> Result<()> {
    for (cmd, pkg) in [("nginx", "nginx-light"), ("haproxy", "haproxy")] {
        harness::ensure_command(cmd, pkg)?;
    }
    let dir = tempfile::tempdir()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let backends = [free_port()?, free_port()?];
    let _nginx = start_nginx(dir.path(), &backends)?;
    for b in &backends {
        wait_tcp(&format!("127.0.0.1:{b}"), deadline)?;
    }
    let (crt, key) = certificate()?;
    let ha_port = free_port()?;
    let haproxy = start_haproxy(dir.path(), &format!("{crt}{key}"), &backends, ha_port)?;
    let pier_port = free_port()?;
    let pier = start_pier(dir.path(), (&crt, &key), &backends, pier_port, deadline).await?;
    let (ha, ours) = (
        format!("127.0.0.1:{ha_port}"),
        format!("127.0.0.1:{pier_port}"),
    );
    wait_tcp(&ha, deadline)?;
    wait_tcp(&ours, deadline)?;
    // The Ingress listener opens once the snapshot has the Ingress; wait for an answer.
    while tls_load::run(&ours, HOST, Load::Full, 1, Duration::from_millis(200))
        .await
        .map_or(true, |c| c.requests == 0)
    {
        if Instant::now() > deadline {
            bail!("pier's Ingress did not answer");
        }
    }
    let version = Command::new("haproxy").arg("-vv").output()?;
    let version = String::from_utf8_lossy(&version.stdout);
    let openssl = version
        .lines()
        .find(|l| l.contains("Running on OpenSSL"))
        .unwrap_or("")
        .trim();
    println!(
        "pier vs {} ({openssl}); TLS 1.3, ECDSA P-256, X25519; servers on CPU {}, clients and nginx on CPU {}; {} clients, {} s per run, {} rounds",
        version.lines().next().unwrap_or("haproxy").trim(),
        harness::SUT_CPU,
        harness::LOAD_CPU,
        p.clients,
        p.seconds,
        p.rounds.max(1),
    );
    for mode in &p.modes {
        let load = load_of(mode)?;
        let mut rounds: Vec<(Sample, Sample)> = Vec::new();
        for round in 0..p.rounds.max(1) {
            let (a, b) = if round % 2 == 0 {
                let a = measure(pier.0.id(), &ours, load, &p).await?;
                (a, measure(haproxy.0.id(), &ha, load, &p).await?)
            } else {
                let b = measure(haproxy.0.id(), &ha, load, &p).await?;
                (measure(pier.0.id(), &ours, load, &p).await?, b)
            };
            println!(
                "{mode} round {round}: pier {:>7.0}/s {:>6.1} us/req (resumed {:.0}%) | haproxy {:>7.0}/s {:>6.1} us/req (resumed {:.0}%) | {:.3}x rate {:.3}x CPU",
                a.rate,
                a.cpu_us,
                a.resumed * 100.0,
                b.rate,
                b.cpu_us,
                b.resumed * 100.0,
                a.rate / b.rate,
                a.cpu_us / b.cpu_us,
            );
            rounds.push((a, b));
        }
        report(mode, &rounds);
    }
    Ok(())
}

fn report(mode: &str, rounds: &[(Sample, Sample)]) {
    type Figure = fn(&Sample) -> f64;
    let median = |get: Figure, ours: bool| {
        harness::median(rounds.iter().map(|(a, b)| get(if ours { a } else { b })))
    };
    let unit = if mode == "keepalive" {
        "req/s"
    } else {
        "handshakes/s"
    };
    let row = |metric: &str, unit, get: Figure, better| Row {
        metric: metric.into(),
        unit,
        pier: median(get, true),
        reference: Some(median(get, false)),
        better,
    };
    let rows = [
        row("achieved rate", unit, |s| s.rate, Better::Higher),
        row("server CPU per request", "us", |s| s.cpu_us, Better::Lower),
        row(
            "rate per server core (1e6 / CPU per request)",
            unit,
            |s| 1e6 / s.cpu_us,
            Better::Higher,
        ),
    ];
    harness::print_table(
        &format!("tls, {mode} (medians of {} rounds)", rounds.len()),
        "haproxy",
        &rows,
    );
    let target = if mode == "full" { 1.3 } else { 1.0 };
    for (name, get) in [
        ("achieved rate", (|s: &Sample| s.rate) as Figure),
        ("rate per core", |s: &Sample| 1e6 / s.cpu_us),
    ] {
        let harness::Spread { median, min, max } =
            harness::spread(rounds.iter().map(|(a, b)| get(a) / get(b)));
        println!(
            "per-round ratio pier/haproxy, {name:<14} {median:>6.3}x [{min:.3}, {max:.3}]  target >= {target}: {}",
            if median >= target { "met" } else { "short" }
        );
    }
}

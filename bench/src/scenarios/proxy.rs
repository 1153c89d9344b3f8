//! Proxy: pier vs HAProxy on the same core, in front of the same nginx backends, under the same
//! load (wrk for HTTP/1.1 keep-alive and TCP mode, h2load for h2c): requests/s, p50/p99
//! latency and proxy CPU per request.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::harness::{self, Better, Proc, Row};

/// Scenario parameters.
pub(crate) struct Params {
    /// Seconds of each measured run.
    pub seconds: u64,
    /// Client connections.
    pub connections: u32,
    /// Modes to run (http1, h2c, tcp).
    pub modes: Vec<String>,
    /// Rounds per mode; figures are medians, ratios are medians of per-round ratios.
    pub rounds: usize,
}

/// `program args` run inside `cgroup` when given (the shell joins it, then execs).
pub(crate) fn in_cgroup(cgroup: Option<&Path>, program: &str, args: &[String]) -> Command {
    match cgroup {
        None => {
            let mut c = Command::new(program);
            c.args(args);
            c
        }
        Some(cg) => {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!(
                    "echo $$ > '{}/cgroup.procs' && exec \"$0\" \"$@\"",
                    cg.display()
                ))
                .arg(program)
                .args(args);
            c
        }
    }
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(pier_testkit::free_port("127.0.0.1")?)
}

pub(crate) fn wait_tcp(addr: &str, deadline: Instant) -> Result<()> {
    while std::net::TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on {addr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

pub(crate) fn start_nginx(dir: &Path, ports: &[u16]) -> Result<Proc> {
    let servers: String = ports
        .iter()
        .map(|p| {
            format!("  server {{ listen 127.0.0.1:{p} reuseport; location / {{ return 200 \"hello from {p}\\n\"; }} }}\n")
        })
        .collect();
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\nuser root;\npid {pid};\nerror_log {dir}/nginx-error.log;\n\
             events {{ worker_connections 8192; }}\n\
             http {{\n  access_log off;\n  keepalive_requests 10000000;\n  keepalive_timeout 300s;\n{servers}}}\n",
            pid = dir.join("nginx.pid").display(),
            dir = dir.display(),
        ),
    )?;
    let child = Command::new("taskset")
        .args(["-c", &harness::LOAD_CPU.to_string(), "nginx", "-c"])
        .arg(&conf)
        .arg("-p")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting nginx")?;
    Ok(Proc(child))
}

fn start_haproxy(dir: &Path, backends: &[u16], h1: u16, h2: u16, tcp: u16) -> Result<Proc> {
    let servers = |mode: &str| -> String {
        backends
            .iter()
            .enumerate()
            .map(|(i, p)| format!("  server {mode}{i} 127.0.0.1:{p}\n"))
            .collect()
    };
    let conf = dir.join("haproxy.cfg");
    std::fs::write(
        &conf,
        format!(
            "global\n  nbthread 1\n  maxconn 8000\n\
             defaults\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
             frontend web\n  mode http\n  bind 127.0.0.1:{h1}\n  bind 127.0.0.1:{h2} proto h2\n  option http-keep-alive\n  default_backend web\n\
             backend web\n  mode http\n  balance roundrobin\n  http-reuse always\n{web}\
             listen tcp\n  mode tcp\n  bind 127.0.0.1:{tcp}\n  balance roundrobin\n{tcpservers}",
            web = servers("web"),
            tcpservers = servers("tcp"),
        ),
    )?;
    harness::start_haproxy(&conf)
}

/// pier's addresses for the HTTP service (h1 and h2c share it) and the TCP service.
struct PierAddrs {
    http: String,
    tcp: String,
}

async fn start_pier(dir: &Path, backends: &[u16], deadline: Instant) -> Result<(Proc, PierAddrs)> {
    let (proc, client) =
        harness::start_pier(dir, &harness::loopback_proxy("10.211.0.0/24"), deadline).await?;
    let ports: Vec<serde_json::Value> = backends
        .iter()
        .map(|p| json!({"name": "http", "port": p, "protocol": "TCP"}))
        .collect();
    let slice = |svc: &str, port: &serde_json::Value| {
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{svc}-{}", port["port"]), "namespace": "bench",
                "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
            "ports": [port]})
    };
    let mut objects = vec![
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "bench"},
            "spec": {"ports": [{"name": "http", "port": 80, "appProtocol": "http"}]}}),
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "tcp", "namespace": "bench"},
            "spec": {"ports": [{"name": "http", "port": 81}]}}),
    ];
    for p in &ports {
        objects.push(slice("web", p));
        objects.push(slice("tcp", p));
    }
    client.apply(objects).await?;
    let web = client
        .get(pier_model::Kind::Service, "bench", "web")
        .await?
        .context("web service")?;
    let tcp = client
        .get(pier_model::Kind::Service, "bench", "tcp")
        .await?
        .context("tcp service")?;
    let loopback = |svc: &serde_json::Value, port: u16| -> Result<String> {
        let ip: std::net::Ipv4Addr = svc["spec"]["clusterIP"]
            .as_str()
            .context("clusterIP")?
            .parse()?;
        let [_, b, c, d] = ip.octets();
        Ok(format!("127.{b}.{c}.{d}:{}", port + 20000))
    };
    let addrs = PierAddrs {
        http: loopback(&web, 80)?,
        tcp: loopback(&tcp, 81)?,
    };
    wait_tcp(&addrs.http, deadline)?;
    wait_tcp(&addrs.tcp, deadline)?;
    Ok((proc, addrs))
}

/// One figure of a [`Sample`].
type Figure = fn(&Sample) -> f64;

/// What one load run measured.
struct Sample {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_us_per_req: f64,
}

fn parse_duration_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let v: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => v / 1000.0,
        "ms" => v,
        "s" => v * 1000.0,
        "m" => v * 60_000.0,
        _ => return None,
    })
}

/// Runs wrk against `url`; returns (requests/s, p50 ms, p99 ms).
fn wrk(url: &str, seconds: u64, connections: u32) -> Result<(f64, f64, f64)> {
    wrk_with(url, seconds, connections, &[], None)
}

/// wrk with extra arguments, optionally from inside a cgroup (for the socket-LB hooks).
pub(crate) fn wrk_with(
    url: &str,
    seconds: u64,
    connections: u32,
    extra: &[&str],
    cgroup: Option<&Path>,
) -> Result<(f64, f64, f64)> {
    let mut args: Vec<String> = vec![
        "-c".into(),
        harness::LOAD_CPU.to_string(),
        "wrk".into(),
        "--latency".into(),
        "-t".into(),
        "1".into(),
        "-c".into(),
        connections.to_string(),
        "-d".into(),
        format!("{seconds}s"),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    args.push(url.to_string());
    let out = in_cgroup(cgroup, "taskset", &args)
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut rps = None;
    let (mut p50, mut p99) = (None, None);
    for line in text.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            rps = v.trim().parse().ok();
        } else if let Some(v) = t.strip_prefix("50%") {
            p50 = parse_duration_ms(v);
        } else if let Some(v) = t.strip_prefix("99%") {
            p99 = parse_duration_ms(v);
        }
        if t.starts_with("Non-2xx") || t.starts_with("Socket errors") {
            eprintln!("wrk {url}: {t}");
        }
    }
    match (rps, p50, p99) {
        (Some(r), Some(a), Some(b)) => Ok((r, a, b)),
        _ => bail!("could not read wrk output:\n{text}"),
    }
}

/// Runs h2load (h2c, prior knowledge) against `url`; returns (requests/s, p50 ms, p99 ms).
fn h2load(url: &str, seconds: u64, connections: u32, dir: &Path) -> Result<(f64, f64, f64)> {
    let log = dir.join("h2load.log");
    let _ = std::fs::remove_file(&log);
    let clients = connections.clamp(1, 16);
    let out = Command::new("taskset")
        .args(["-c", &harness::LOAD_CPU.to_string(), "h2load", "-t", "1"])
        .args(["-c", &clients.to_string(), "-m", "16"])
        .args(["-D", &seconds.to_string(), "--warm-up-time", "1"])
        .arg("--log-file")
        .arg(&log)
        .arg(url)
        .output()
        .context("running h2load")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix("finished in ")?;
            let (_, after) = rest.split_once(", ")?;
            after.split_once(" req/s")?.0.trim().parse::<f64>().ok()
        })
        .with_context(|| format!("could not read h2load output:\n{text}"))?;
    if let Some(l) = text.lines().find(|l| l.trim().starts_with("status codes:")) {
        if !l.contains(" 0 5xx") {
            eprintln!("h2load {url}: {}", l.trim());
        }
    }
    let mut lat: Vec<f64> = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split('\t').nth(2)?.trim().parse::<f64>().ok())
        .map(|us| us / 1000.0)
        .collect();
    let p50 = harness::quantile(&mut lat, 0.5);
    let p99 = harness::quantile(&mut lat, 0.99);
    Ok((rps, p50, p99))
}

fn measure(pid: u32, mode: &str, target: &str, p: &Params, dir: &Path) -> Result<Sample> {
    // Warm-up: fills connection pools on both sides.
    let warm = 2;
    match mode {
        "h2c" => {
            h2load(&format!("http://{target}/"), warm, p.connections, dir)?;
        }
        _ => {
            wrk(&format!("http://{target}/"), warm, p.connections)?;
        }
    }
    let before = harness::cpu_time(pid)?;
    let started = Instant::now();
    let (rps, p50, p99) = match mode {
        "h2c" => h2load(&format!("http://{target}/"), p.seconds, p.connections, dir)?,
        _ => wrk(&format!("http://{target}/"), p.seconds, p.connections)?,
    };
    let cpu = harness::cpu_time(pid)? - before;
    let elapsed = started.elapsed().as_secs_f64();
    // h2load's own warm-up second is inside the CPU window; count requests over the window.
    let requests = rps * elapsed.max(p.seconds as f64);
    Ok(Sample {
        rps,
        p50_ms: p50,
        p99_ms: p99,
        cpu_us_per_req: cpu.as_secs_f64() * 1e6 / requests.max(1.0),
    })
}

/// Runs the scenario: per mode, `rounds` rounds that each measure pier and HAProxy back to
/// back (alternating which goes first), then one table of medians and the per-round ratios.
pub(crate) async fn run(p: Params) -> Result<()> {
    for (cmd, pkg) in [
        ("wrk", "wrk"),
        ("nginx", "nginx-light"),
        ("haproxy", "haproxy"),
        ("h2load", "nghttp2-client"),
    ] {
        harness::ensure_command(cmd, pkg)?;
    }
    let dir = tempfile::tempdir()?;
    let dir_path: PathBuf = dir.path().to_path_buf();
    let deadline = Instant::now() + Duration::from_secs(60);
    let backends = [free_port()?, free_port()?];
    let _nginx = start_nginx(&dir_path, &backends)?;
    for b in &backends {
        wait_tcp(&format!("127.0.0.1:{b}"), deadline)?;
    }
    let (h1, h2, tcp) = (free_port()?, free_port()?, free_port()?);
    let haproxy = start_haproxy(&dir_path, &backends, h1, h2, tcp)?;
    for port in [h1, h2, tcp] {
        wait_tcp(&format!("127.0.0.1:{port}"), deadline)?;
    }
    let (pier, addrs) = start_pier(&dir_path, &backends, deadline).await?;
    let version = Command::new("haproxy").arg("-v").output()?;
    let version = String::from_utf8_lossy(&version.stdout);
    println!(
        "pier vs {} ; proxy on CPU {}, wrk/h2load and nginx on CPU {}; {} connections, {} s per run, {} rounds",
        version.lines().next().unwrap_or("haproxy").trim(),
        harness::SUT_CPU,
        harness::LOAD_CPU,
        p.connections,
        p.seconds,
        p.rounds.max(1),
    );
    for mode in &p.modes {
        let (pier_target, ha_target) = match mode.as_str() {
            "http1" => (addrs.http.clone(), format!("127.0.0.1:{h1}")),
            "h2c" => (addrs.http.clone(), format!("127.0.0.1:{h2}")),
            "tcp" => (addrs.tcp.clone(), format!("127.0.0.1:{tcp}")),
            other => bail!("unknown mode {other:?}: http1, h2c or tcp"),
        };
        let pier_run = || measure(pier.0.id(), mode, &pier_target, &p, &dir_path);
        let haproxy_run = || measure(haproxy.0.id(), mode, &ha_target, &p, &dir_path);
        let mut rounds: Vec<(Sample, Sample)> = Vec::new();
        for round in 0..p.rounds.max(1) {
            // Alternating the order cancels a drift within a round (warming, throttling).
            let (ours, theirs) = if round % 2 == 0 {
                let ours = pier_run()?;
                (ours, haproxy_run()?)
            } else {
                let theirs = haproxy_run()?;
                (pier_run()?, theirs)
            };
            println!(
                "{mode} round {round}: pier {:>7.0} req/s {:>5.2} us/req | haproxy {:>7.0} req/s {:>5.2} us/req | {:.3}x req/s {:.3}x CPU",
                ours.rps,
                ours.cpu_us_per_req,
                theirs.rps,
                theirs.cpu_us_per_req,
                ours.rps / theirs.rps,
                ours.cpu_us_per_req / theirs.cpu_us_per_req,
            );
            rounds.push((ours, theirs));
        }
        let median = |get: Figure, of_pier: bool| {
            harness::median(
                rounds
                    .iter()
                    .map(|(ours, theirs)| get(if of_pier { ours } else { theirs })),
            )
        };
        let row = |metric: &str, unit, get: Figure, better| Row {
            metric: metric.into(),
            unit,
            pier: median(get, true),
            reference: Some(median(get, false)),
            better,
        };
        let rows = [
            row("requests per second", "req/s", |s| s.rps, Better::Higher),
            row("latency p50", "ms", |s| s.p50_ms, Better::Lower),
            row("latency p99", "ms", |s| s.p99_ms, Better::Lower),
            row(
                "proxy CPU per request",
                "us",
                |s| s.cpu_us_per_req,
                Better::Lower,
            ),
        ];
        harness::print_table(
            &format!("proxy, {mode} (medians of {} rounds)", rounds.len()),
            "haproxy",
            &rows,
        );
        print_paired(&rounds);
    }
    Ok(())
}

/// Prints the median and range of the per-round pier/HAProxy ratios against the targets
/// (req/s >= 1, CPU per request <= 1): a ratio within one round cancels the host's slow and
/// fast spells, which a ratio of medians across rounds does not.
fn print_paired(rounds: &[(Sample, Sample)]) {
    let figures: [(&str, Figure, Better); 2] = [
        ("req/s", |s| s.rps, Better::Higher),
        ("CPU per request", |s| s.cpu_us_per_req, Better::Lower),
    ];
    for (name, get, better) in figures {
        let harness::Spread { median, min, max } = harness::spread(
            rounds
                .iter()
                .filter(|(_, theirs)| get(theirs) > 0.0)
                .map(|(ours, theirs)| get(ours) / get(theirs)),
        );
        let target = match better {
            Better::Higher => ">= 1",
            Better::Lower => "<= 1",
        };
        let met = better.meets(median, 1.0);
        println!(
            "per-round ratio pier/haproxy, {name:<16} {median:>6.3}x [{min:.3}, {max:.3}]  target {target}: {}",
            if met { "met" } else { "short" }
        );
    }
}

//! DNS: pier vs knot (authoritative zone) vs unbound (local-data) with the same names, the
//! same pinning and the same dnsperf load; saturation QPS and CPU per query, then latency
//! percentiles at a fixed rate.

use std::io::Write;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::harness::{self, Better, Proc, Row};

/// Scenario parameters.
pub(crate) struct Params {
    /// Service counts to test.
    pub services: Vec<usize>,
    /// Fractions of queries for names that do not exist.
    pub nxdomain: Vec<f64>,
    /// Seconds of each saturation run.
    pub seconds: u64,
    /// Rate of the latency run.
    pub latency_qps: u32,
}

fn ip(i: usize) -> String {
    format!("10.96.{}.{}", 1 + i / 250, 1 + i % 250)
}

fn names(n: usize, nx: f64, dir: &Path) -> Result<PathBuf> {
    let path = dir.join(format!("queries-{n}-{nx}.txt"));
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
    let every = if nx > 0.0 {
        (1.0 / nx).round() as usize
    } else {
        usize::MAX
    };
    for i in 0..n.max(1000) {
        let k = (i * 7919) % n;
        if every != usize::MAX && i % every == 0 {
            writeln!(f, "nx-{k}.bench.svc.cluster.local A")?;
        } else {
            writeln!(f, "svc-{k}.bench.svc.cluster.local A")?;
        }
    }
    f.flush()?;
    Ok(path)
}

/// The last service's name: answered only once every service is loaded.
fn last_name(n: usize) -> String {
    format!("svc-{}.bench.svc.cluster.local", n.saturating_sub(1))
}

/// An empty directory `dir/sub`.
fn fresh_dir(dir: &Path, sub: &str) -> Result<PathBuf> {
    let path = dir.join(sub);
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path)?;
    Ok(path)
}

fn free_port() -> Result<u16> {
    Ok(pier_testkit::free_port("127.0.0.1")?)
}

/// A wire-format A query for `name` (for readiness probes).
fn probe_query(name: &str) -> Vec<u8> {
    let mut q = vec![0x42, 0x42, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

fn wait_answering(port: u16, name: &str, deadline: Instant) -> Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let q = probe_query(name);
    let mut buf = [0u8; 512];
    loop {
        socket.send_to(&q, ("127.0.0.1", port))?;
        // An answer with ANCOUNT >= 1 means the zone is loaded.
        if let Ok(n) = socket.recv(&mut buf) {
            if n > 12 && u16::from_be_bytes([buf[6], buf[7]]) >= 1 {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("server on port {port} never answered {name}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Server {
    name: &'static str,
    child: Proc,
    port: u16,
}

async fn start_pier(n: usize, dir: &Path, deadline: Instant) -> Result<Server> {
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let (child, client) =
        harness::start_pier(dir, &["--dns-listen", &listen, "--no-proxy"], deadline).await?;
    let server = Server {
        name: "pier",
        child,
        port,
    };
    let services: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": format!("svc-{i}"), "namespace": "bench"},
                "spec": {"clusterIP": ip(i), "ports": [{"name": "http", "port": 80}]}})
        })
        .collect();
    for chunk in services.chunks(1000) {
        client.apply(chunk.to_vec()).await?;
    }
    wait_answering(port, &last_name(n), deadline)?;
    Ok(server)
}

fn start_knot(n: usize, dir: &Path, deadline: Instant) -> Result<Server> {
    let port = free_port()?;
    let kdir = fresh_dir(dir, "knot")?;
    let mut zone = String::from(
        "$ORIGIN cluster.local.\n$TTL 5\n@ SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5\n@ NS ns.dns\nns.dns A 127.0.0.1\n",
    );
    for i in 0..n {
        zone.push_str(&format!("svc-{i}.bench.svc A {}\n", ip(i)));
    }
    std::fs::write(kdir.join("cluster.local.zone"), zone)?;
    let conf = kdir.join("knot.conf");
    std::fs::write(
        &conf,
        format!(
            "server:\n  listen: 127.0.0.1@{port}\n  rundir: {d}\n  udp-workers: 1\n  tcp-workers: 1\n  background-workers: 1\ndatabase:\n  storage: {d}\nlog:\n  - target: stderr\n    any: error\nzone:\n  - domain: cluster.local\n    file: {d}/cluster.local.zone\n    storage: {d}\n    zonefile-load: whole\n    journal-content: none\n",
            d = kdir.display()
        ),
    )?;
    let child = harness::spawn_pinned(
        harness::SUT_CPU,
        Path::new("/usr/sbin/knotd"),
        &["-c", conf.to_str().context("path")?],
    )?;
    let server = Server {
        name: "knot",
        child: Proc(child),
        port,
    };
    wait_answering(port, &last_name(n), deadline)?;
    Ok(server)
}

fn start_unbound(n: usize, dir: &Path, deadline: Instant) -> Result<Server> {
    let port = free_port()?;
    let udir = fresh_dir(dir, "unbound")?;
    let mut conf = format!(
        "server:\n  interface: 127.0.0.1\n  port: {port}\n  do-ip6: no\n  do-daemonize: no\n  username: \"\"\n  chroot: \"\"\n  directory: \"{d}\"\n  pidfile: \"{d}/unbound.pid\"\n  use-syslog: no\n  logfile: \"\"\n  verbosity: 0\n  num-threads: 1\n  access-control: 127.0.0.0/8 allow\n  module-config: \"iterator\"\n  local-zone: \"cluster.local.\" static\n  local-data: \"cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5\"\n",
        d = udir.display()
    );
    for i in 0..n {
        conf.push_str(&format!(
            "  local-data: \"svc-{i}.bench.svc.cluster.local. 5 IN A {}\"\n",
            ip(i)
        ));
    }
    conf.push_str("remote-control:\n  control-enable: no\n");
    let path = udir.join("unbound.conf");
    std::fs::write(&path, conf)?;
    let child = harness::spawn_pinned(
        harness::SUT_CPU,
        Path::new("/usr/sbin/unbound"),
        &["-d", "-c", path.to_str().context("path")?],
    )?;
    let server = Server {
        name: "unbound",
        child: Proc(child),
        port,
    };
    wait_answering(port, &last_name(n), deadline)?;
    Ok(server)
}

struct Measured {
    qps: f64,
    lost_pct: f64,
    cpu_us_per_query: f64,
    p50_us: f64,
    p99_us: f64,
    rss_mb: f64,
}

fn field(out: &str, label: &str) -> Option<f64> {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.trim_end_matches('%').parse().ok())
}

/// Runs dnsperf on the load CPU against `port` with the queries in `file`, plus `args`.
fn dnsperf(port: u16, file: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("taskset")
        .args([
            "-c",
            &harness::LOAD_CPU.to_string(),
            "dnsperf",
            "-s",
            "127.0.0.1",
        ])
        .args(["-p", &port.to_string()])
        .arg("-d")
        .arg(file)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .context("running dnsperf")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The percentage in `Queries lost: 3 (0.01%)`.
fn lost_percent(out: &str) -> f64 {
    out.lines()
        .find(|l| l.contains("Queries lost:"))
        .and_then(|l| l.split_once('('))
        .and_then(|(_, rest)| rest.split('%').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn measure(server: &Server, queries: &Path, p: &Params) -> Result<Measured> {
    let pid = server.child.0.id();
    let cpu_before = harness::cpu_time(pid)?;
    let seconds = p.seconds.to_string();
    let out = dnsperf(
        server.port,
        queries,
        &["-l", &seconds, "-c", "20", "-q", "500"],
    )?;
    let cpu = harness::cpu_time(pid)?.saturating_sub(cpu_before);
    let completed = field(&out, "Queries completed:").context("dnsperf printed no result")?;
    let qps = field(&out, "Queries per second:").unwrap_or(0.0);
    let lost_pct = lost_percent(&out);
    // Latency at a fixed rate, from per-query timings.
    let rate = p.latency_qps.to_string();
    let verbose = dnsperf(
        server.port,
        queries,
        &["-l", "3", "-c", "4", "-Q", &rate, "-v"],
    )?;
    let mut lat: Vec<f64> = verbose
        .lines()
        .filter(|l| l.starts_with('>'))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .map(|s| s * 1e6)
        .collect();
    if lat.is_empty() {
        bail!("{}: no per-query latencies from dnsperf -v", server.name);
    }
    Ok(Measured {
        qps,
        lost_pct,
        cpu_us_per_query: cpu.as_secs_f64() * 1e6 / completed.max(1.0),
        p50_us: harness::quantile(&mut lat, 0.5),
        p99_us: harness::quantile(&mut lat, 0.99),
        rss_mb: harness::rss_bytes(pid)? as f64 / 1e6,
    })
}

fn rows(pier: &Measured, peer: &Measured) -> Vec<Row> {
    let row = |metric: &str, unit: &'static str, a: f64, b: f64, better| Row {
        metric: metric.into(),
        unit,
        pier: a,
        reference: Some(b),
        better,
    };
    vec![
        row(
            "queries per second (saturation)",
            "qps",
            pier.qps,
            peer.qps,
            Better::Higher,
        ),
        row(
            "server CPU per query",
            "us",
            pier.cpu_us_per_query,
            peer.cpu_us_per_query,
            Better::Lower,
        ),
        row(
            "latency p50 at fixed rate",
            "us",
            pier.p50_us,
            peer.p50_us,
            Better::Lower,
        ),
        row(
            "latency p99 at fixed rate",
            "us",
            pier.p99_us,
            peer.p99_us,
            Better::Lower,
        ),
        row(
            "queries lost",
            "%",
            pier.lost_pct,
            peer.lost_pct.max(f64::MIN_POSITIVE),
            Better::Lower,
        ),
        row("server RSS", "MB", pier.rss_mb, peer.rss_mb, Better::Lower),
    ]
}

/// Runs every combination and prints pier beside knot and unbound.
pub(crate) async fn run(p: Params) -> Result<()> {
    for (tool, package) in [
        ("dnsperf", "dnsperf"),
        ("knotd", "knot"),
        ("unbound", "unbound"),
    ] {
        harness::ensure_command(tool, package)?;
    }
    let dir = tempfile::tempdir()?;
    for &n in &p.services {
        let deadline = Instant::now() + Duration::from_secs(300);
        for &nx in &p.nxdomain {
            let queries = names(n, nx, dir.path())?;
            let pier = {
                let s = start_pier(n, dir.path(), deadline).await?;
                measure(&s, &queries, &p)?
            };
            for peer in ["knot", "unbound"] {
                let server = match peer {
                    "knot" => start_knot(n, dir.path(), deadline)?,
                    _ => start_unbound(n, dir.path(), deadline)?,
                };
                let m = measure(&server, &queries, &p)?;
                drop(server);
                harness::print_table(
                    &format!(
                        "dns: {n} services, {:.0}% NXDOMAIN, pier vs {peer} (servers on CPU {}, dnsperf on CPU {})",
                        nx * 100.0,
                        harness::SUT_CPU,
                        harness::LOAD_CPU
                    ),
                    peer,
                    &rows(&pier, &m),
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_lost_percentage() {
        let out = "  Queries completed:    539747 (99.99%)\n  Queries lost:         54 (0.01%)\n";
        assert_eq!(super::lost_percent(out), 0.01);
        assert_eq!(super::field(out, "Queries completed:"), Some(539747.0));
    }
}

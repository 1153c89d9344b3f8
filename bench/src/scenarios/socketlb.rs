//! Socket-LB: the same clients and backends reached four ways, side by side: directly, through
//! pier's eBPF socket-LB (clients in a cgroup with the hooks), through pier's userspace L4
//! proxy, and through HAProxy in TCP mode. Connection rate and added connect latency come from
//! wrk with a new connection per request; throughput from iperf3.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::proxy::{free_port, in_cgroup, start_nginx, wait_tcp, wrk_with};
use crate::harness::{self, Better, Proc, Row};

/// Scenario parameters.
pub(crate) struct Params {
    /// Seconds of each measured run.
    pub seconds: u64,
    /// Concurrent wrk connections.
    pub connections: u32,
    /// Rounds over all paths; each figure is the median (this machine is noisy).
    pub rounds: usize,
}

/// One way to reach the backends.
struct Path4 {
    name: &'static str,
    http: String,
    iperf: (String, u16),
    cgroup: Option<PathBuf>,
}

struct Figures {
    conn_rate: f64,
    p50_ms: f64,
    gbits: f64,
}

fn iperf(host: &str, port: u16, seconds: u64, cgroup: Option<&Path>) -> Result<f64> {
    let args: Vec<String> = vec![
        "-c".into(),
        harness::LOAD_CPU.to_string(),
        "iperf3".into(),
        "-c".into(),
        host.into(),
        "-p".into(),
        port.to_string(),
        "-t".into(),
        seconds.to_string(),
        "-J".into(),
    ];
    let out = in_cgroup(cgroup, "taskset", &args)
        .output()
        .context("running iperf3")?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("iperf3 output: {}", String::from_utf8_lossy(&out.stdout)))?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 1e9)
        .context("iperf3 reported no throughput")
}

fn measure(p: &Params, path: &Path4) -> Result<Figures> {
    let cg = path.cgroup.as_deref();
    let close = ["-H", "Connection: close"];
    // Warm-up, then the measured run: one new connection per request.
    wrk_with(&path.http, 1, p.connections, &close, cg)?;
    let (conn_rate, p50_ms, _) = wrk_with(&path.http, p.seconds, p.connections, &close, cg)?;
    let gbits = iperf(&path.iperf.0, path.iperf.1, p.seconds.min(5), cg)?;
    Ok(Figures {
        conn_rate,
        p50_ms,
        gbits,
    })
}

fn start_haproxy(
    dir: &Path,
    http: u16,
    iperf: u16,
    front_http: u16,
    front_iperf: u16,
) -> Result<Proc> {
    let conf = dir.join("haproxy-tcp.cfg");
    std::fs::write(
        &conf,
        format!(
            "global\n  nbthread 1\n  maxconn 8000\n\
             defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
             listen http\n  bind 127.0.0.1:{front_http}\n  server s 127.0.0.1:{http}\n\
             listen iperf\n  bind 127.0.0.1:{front_iperf}\n  server s 127.0.0.1:{iperf}\n"
        ),
    )?;
    harness::start_haproxy(&conf)
}

// Positions of the paths in each round, in the order `run` measures them.
const DIRECT: usize = 0;
const LB: usize = 1;
const L4: usize = 2;
const HA: usize = 3;

/// One ratio the summary reports: path `a` over path `b` on one figure.
struct Comparison {
    name: &'static str,
    a: usize,
    b: usize,
    get: fn(&Figures) -> f64,
    target: Option<f64>,
}

/// Prints, per comparison, the median and range of the per-round ratios. Each round measures
/// every path back to back, so a ratio taken within a round cancels the host's slow and fast
/// spells, which a ratio of medians taken across rounds does not.
fn print_paired(rounds: &[Vec<Figures>]) {
    let c = |name, a, b, get, target| Comparison {
        name,
        a,
        b,
        get,
        target,
    };
    let conn: fn(&Figures) -> f64 = |f| f.conn_rate;
    let gbits: fn(&Figures) -> f64 = |f| f.gbits;
    let comparisons = [
        c("socket-LB / direct, conn/s", LB, DIRECT, conn, Some(0.95)),
        c(
            "socket-LB / direct, throughput",
            LB,
            DIRECT,
            gbits,
            Some(0.95),
        ),
        c("socket-LB / HAProxy, conn/s", LB, HA, conn, Some(1.4)),
        c("socket-LB / HAProxy, throughput", LB, HA, gbits, None),
        c("userspace L4 / HAProxy, conn/s", L4, HA, conn, None),
        c("userspace L4 / HAProxy, throughput", L4, HA, gbits, None),
    ];
    println!(
        "\nper-round ratios (median [min, max] over {} rounds)",
        rounds.len()
    );
    for cmp in comparisons {
        let harness::Spread { median, min, max } = harness::spread(
            rounds
                .iter()
                .filter(|r| (cmp.get)(&r[cmp.b]) > 0.0)
                .map(|r| (cmp.get)(&r[cmp.a]) / (cmp.get)(&r[cmp.b])),
        );
        let verdict = match cmp.target {
            Some(t) if harness::Better::Higher.meets(median, t) => format!("target >= {t}: ok"),
            Some(t) => format!("target >= {t}: short"),
            None => String::new(),
        };
        println!(
            "{:<36} {median:>6.3}x [{min:.3}, {max:.3}]  {verdict}",
            cmp.name
        );
    }
}

/// A cgroup and pin directory of the benchmark's own, removed afterwards.
struct Sandbox {
    cgroup: PathBuf,
    pin: PathBuf,
    /// The benchmark mounted bpffs, so it unmounts it.
    mounted_bpffs: bool,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = pier_ebpf::SocketLb::detach(&self.pin);
        let _ = std::fs::remove_dir(&self.cgroup);
        if self.mounted_bpffs {
            let _ = Command::new("umount").arg(pier_ebpf::BPFFS).status();
        }
    }
}

/// Installs the peers and load generators the scenario runs (before it leaves the host's
/// network namespace, where the package mirror is).
pub(crate) fn install() -> Result<()> {
    for (cmd, pkg) in [
        ("wrk", "wrk"),
        ("nginx", "nginx-light"),
        ("haproxy", "haproxy"),
        ("iperf3", "iperf3"),
    ] {
        harness::ensure_command(cmd, pkg)?;
    }
    Ok(())
}

/// Runs the scenario and prints the table; call [`install`] first, then enter a private
/// network namespace (it dials ClusterIPs).
pub(crate) async fn run(p: Params) -> Result<()> {
    let root = pier_ebpf::cgroup2_root().context("no cgroup2 mount")?;
    let mounted_bpffs = pier_ebpf::ensure_bpffs(Path::new(pier_ebpf::BPFFS))?;
    let id = std::process::id();
    let sandbox = Sandbox {
        cgroup: root.join(format!("pier-bench-{id}")),
        pin: PathBuf::from(format!("/sys/fs/bpf/pier-bench-{id}")),
        mounted_bpffs,
    };
    std::fs::create_dir_all(&sandbox.cgroup)?;
    let dir = tempfile::tempdir()?;
    let deadline = Instant::now() + Duration::from_secs(60);

    let nginx_port = free_port()?;
    let _nginx = start_nginx(dir.path(), &[nginx_port])?;
    let iperf_port = free_port()?;
    let _iperf = Proc(
        Command::new("taskset")
            .args(["-c", &harness::LOAD_CPU.to_string(), "iperf3", "-s", "-p"])
            .arg(iperf_port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting iperf3 -s")?,
    );
    wait_tcp(&format!("127.0.0.1:{nginx_port}"), deadline)?;
    wait_tcp(&format!("127.0.0.1:{iperf_port}"), deadline)?;
    let (ha_http, ha_iperf) = (free_port()?, free_port()?);
    let _haproxy = start_haproxy(dir.path(), nginx_port, iperf_port, ha_http, ha_iperf)?;
    wait_tcp(&format!("127.0.0.1:{ha_http}"), deadline)?;

    let cgroup_arg = sandbox.cgroup.display().to_string();
    let pin_arg = sandbox.pin.display().to_string();
    let (pier, client) = harness::start_pier(
        dir.path(),
        &[
            harness::loopback_proxy("10.213.0.0/24"),
            vec!["--ebpf-cgroup", &cgroup_arg, "--ebpf-pin-dir", &pin_arg],
        ]
        .concat(),
        deadline,
    )
    .await?;
    let mut objects = Vec::new();
    for (name, port, target) in [("web", 80u16, nginx_port), ("bulk", 5201, iperf_port)] {
        objects.push(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "bench"},
            "spec": {"ports": [{"name": "p", "port": port}]}}));
        objects.push(json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": "bench", "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
            "ports": [{"name": "p", "port": target}]}));
    }
    client.apply(objects).await?;
    let mut vips = Vec::new();
    for name in ["web", "bulk"] {
        let svc = client
            .get(pier_model::Kind::Service, "bench", name)
            .await?
            .context("service")?;
        let ip: std::net::Ipv4Addr = svc["spec"]["clusterIP"]
            .as_str()
            .context("clusterIP")?
            .parse()?;
        vips.push(ip);
    }
    let (web_vip, bulk_vip) = (vips[0], vips[1]);
    let lo = |ip: std::net::Ipv4Addr| {
        let [_, b, c, d] = ip.octets();
        format!("127.{b}.{c}.{d}")
    };
    wait_tcp(&format!("{}:20080", lo(web_vip)), deadline)?;
    wait_tcp(&format!("{}:25201", lo(bulk_vip)), deadline)?;
    // The hooks are in place once a client in the cgroup reaches the VIP.
    let probe = in_cgroup(
        Some(&sandbox.cgroup),
        "curl",
        &[
            "-s".into(),
            "-m".into(),
            "1".into(),
            format!("http://{web_vip}/"),
        ],
    );
    let mut probe = probe;
    while !probe.output().is_ok_and(|o| !o.stdout.is_empty()) {
        if Instant::now() > deadline {
            bail!("the socket-LB never translated {web_vip}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // In the order of DIRECT, LB, L4 and HA.
    let paths = [
        Path4 {
            name: "direct",
            http: format!("http://127.0.0.1:{nginx_port}/"),
            iperf: ("127.0.0.1".into(), iperf_port),
            cgroup: None,
        },
        Path4 {
            name: "pier socket-LB",
            http: format!("http://{web_vip}/"),
            iperf: (bulk_vip.to_string(), 5201),
            cgroup: Some(sandbox.cgroup.clone()),
        },
        Path4 {
            name: "pier userspace L4",
            http: format!("http://{}:20080/", lo(web_vip)),
            iperf: (lo(bulk_vip), 25201),
            cgroup: None,
        },
        Path4 {
            name: "haproxy tcp",
            http: format!("http://127.0.0.1:{ha_http}/"),
            iperf: ("127.0.0.1".into(), ha_iperf),
            cgroup: None,
        },
    ];
    println!(
        "socket-LB: nginx and iperf3 -s on CPU {}, proxies on CPU {}, clients on CPU {}; {} connections, {} s per run, a new connection per request; medians of {} rounds",
        harness::LOAD_CPU, harness::SUT_CPU, harness::LOAD_CPU, p.connections, p.seconds, p.rounds
    );
    // Rounds interleave the paths, so a slow spell of the machine hits all of them alike.
    let mut rounds: Vec<Vec<Figures>> = Vec::new();
    for round in 0..p.rounds.max(1) {
        let mut this = Vec::new();
        for path in &paths {
            let f = measure(&p, path)?;
            println!(
                "round {round}: {:<20} {:>10.0} conn/s  p50 {:.3} ms  {:.2} Gbit/s",
                path.name, f.conn_rate, f.p50_ms, f.gbits
            );
            this.push(f);
        }
        rounds.push(this);
    }
    let median =
        |i: usize, get: fn(&Figures) -> f64| harness::median(rounds.iter().map(|r| get(&r[i])));
    let figures: Vec<Figures> = (0..paths.len())
        .map(|i| Figures {
            conn_rate: median(i, |f| f.conn_rate),
            p50_ms: median(i, |f| f.p50_ms),
            gbits: median(i, |f| f.gbits),
        })
        .collect();
    let (direct, lb, l4, ha) = (&figures[DIRECT], &figures[LB], &figures[L4], &figures[HA]);
    harness::print_table(
        "socket-LB vs direct",
        "direct",
        &[
            Row {
                metric: "connections per second".into(),
                unit: "conn/s",
                pier: lb.conn_rate,
                reference: Some(direct.conn_rate),
                better: Better::Higher,
            },
            Row {
                metric: "throughput (iperf3)".into(),
                unit: "Gbit/s",
                pier: lb.gbits,
                reference: Some(direct.gbits),
                better: Better::Higher,
            },
            Row {
                metric: "request p50 incl. connect".into(),
                unit: "ms",
                pier: lb.p50_ms,
                reference: Some(direct.p50_ms),
                better: Better::Lower,
            },
        ],
    );
    harness::print_table(
        "socket-LB vs HAProxy (tcp mode)",
        "haproxy",
        &[
            Row {
                metric: "connections per second".into(),
                unit: "conn/s",
                pier: lb.conn_rate,
                reference: Some(ha.conn_rate),
                better: Better::Higher,
            },
            Row {
                metric: "throughput (iperf3)".into(),
                unit: "Gbit/s",
                pier: lb.gbits,
                reference: Some(ha.gbits),
                better: Better::Higher,
            },
        ],
    );
    harness::print_table(
        "userspace L4 proxy vs HAProxy (tcp mode)",
        "haproxy",
        &[
            Row {
                metric: "connections per second".into(),
                unit: "conn/s",
                pier: l4.conn_rate,
                reference: Some(ha.conn_rate),
                better: Better::Higher,
            },
            Row {
                metric: "throughput (iperf3)".into(),
                unit: "Gbit/s",
                pier: l4.gbits,
                reference: Some(ha.gbits),
                better: Better::Higher,
            },
        ],
    );
    print_paired(&rounds);
    // The daemon goes first so nothing re-pins while the sandbox is removed.
    drop(pier);
    drop(sandbox);
    Ok(())
}

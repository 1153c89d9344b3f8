//! Shared benchmark machinery: CPU pinning, process accounting, peers from Debian, result tables.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// CPU the system under test (pier or its peer) runs on.
pub(crate) const SUT_CPU: usize = 0;
/// CPU the load generator and backends run on.
pub(crate) const LOAD_CPU: usize = 1;

/// Pins the calling process (the load generator) to `cpu`.
pub(crate) fn pin_self(cpu: usize) -> Result<()> {
    let status = Command::new("taskset")
        .args([
            "-a",
            "-p",
            "-c",
            &cpu.to_string(),
            &std::process::id().to_string(),
        ])
        .stdout(Stdio::null())
        .status()
        .context("running taskset (util-linux)")?;
    if !status.success() {
        bail!("taskset could not pin the benchmark to CPU {cpu}");
    }
    Ok(())
}

/// Spawns `program args...` pinned to `cpu`.
pub(crate) fn spawn_pinned(cpu: usize, program: &Path, args: &[&str]) -> Result<Child> {
    Command::new("taskset")
        .arg("-c")
        .arg(cpu.to_string())
        .arg(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", program.display()))
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// A child process killed on drop.
pub(crate) struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// HAProxy running `conf`, pinned to the system-under-test CPU.
pub(crate) fn start_haproxy(conf: &Path) -> Result<Proc> {
    let child = Command::new("taskset")
        .args(["-c", &SUT_CPU.to_string(), "haproxy", "-db", "-f"])
        .arg(conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting haproxy")?;
    Ok(Proc(child))
}

/// `pier daemon` pinned to the system-under-test CPU, its state and socket in `dir` (state
/// from an earlier run removed), with `flags` added; returned once its control API answers.
/// The namespace benchmark objects are created in (by [`start_pier`]).
pub(crate) const BENCH_NAMESPACE: &str = "bench";

/// Every benchmark daemon runs with `--no-ebpf` unless `flags` attach the hooks somewhere.
pub(crate) async fn start_pier(
    dir: &Path,
    flags: &[&str],
    deadline: std::time::Instant,
) -> Result<(Proc, pier_controlplane::api::Client)> {
    let socket = dir.join("pier.sock");
    let state = dir.join("pier-state");
    let _ = std::fs::remove_dir_all(&state);
    let mut args = vec![
        "daemon",
        "--admin",
        "127.0.0.1:0",
        "--state-dir",
        state.to_str().context("path")?,
        "--socket",
        socket.to_str().context("path")?,
    ];
    let pins = dir.join("ebpf-pins");
    if !flags.iter().any(|f| f.starts_with("--ebpf")) {
        // A private pin directory: --no-ebpf detaches what is pinned there.
        args.extend([
            "--no-ebpf",
            "--ebpf-pin-dir",
            pins.to_str().context("path")?,
        ]);
    }
    args.extend(pier_testkit::pier::LOOPBACK_REGISTRIES);
    args.extend_from_slice(flags);
    let daemon = Proc(spawn_pinned(SUT_CPU, &pier_binary()?, &args)?);
    let client = pier_controlplane::api::Client::new(&socket);
    while client.status().await.is_err() {
        if std::time::Instant::now() > deadline {
            bail!("pier did not start");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The scenarios' objects live in namespace `bench`, which must exist first.
    client
        .apply(vec![
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": BENCH_NAMESPACE}}),
        ])
        .await
        .context("creating the bench namespace")?;
    Ok((daemon, client))
}

/// Flags of a benchmark daemon serving VIPs on loopback stand-ins (ClusterIP a.b.c.d on
/// 127.b.c.d, port + 20000) from `service_cidr`, without DNS.
pub(crate) fn loopback_proxy(service_cidr: &str) -> Vec<&str> {
    vec![
        "--no-dns",
        "--proxy-vips",
        "loopback",
        "--proxy-port-offset",
        "20000",
        "--service-cidr",
        service_cidr,
    ]
}

/// User + system CPU time a process has used.
pub(crate) fn cpu_time(pid: u32) -> Result<Duration> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).context("reading /proc/PID/stat")?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat; 12 and 13 after the ')'.
    Ok(Duration::from_secs_f64(
        (ticks(11) + ticks(12)) / clock_ticks(),
    ))
}

/// Resident set size of a process.
pub(crate) fn rss_bytes(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .context("reading /proc/PID/status")?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .context("no VmRSS")?;
    Ok(kb * 1024)
}

/// The release `pier` binary next to this benchmark binary.
pub(crate) fn pier_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("pier");
    if !bin.exists() {
        bail!(
            "{} not found: build it first with `cargo build --release -p pier`",
            bin.display()
        );
    }
    Ok(bin)
}

/// Moves this process into a network namespace of its own with only `lo` up, before any
/// thread or child is started: a benchmark that dials ClusterIPs then sends nothing off the
/// machine when a translation fails (the address has no route there). Needs root and `ip`.
pub(crate) fn private_netns() -> Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .context("unshare(CLONE_NEWNET): the benchmark runs in a network namespace of its own")?;
    let up = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .context("running ip (iproute2)")?;
    if !up.success() {
        bail!("ip link set lo up failed in the benchmark's network namespace");
    }
    Ok(())
}

/// Installs the Debian `package` providing `command` if `command` is missing (peers: knot, unbound, haproxy...).
pub(crate) fn ensure_command(command: &str, package: &str) -> Result<()> {
    let found = |c: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {c} || test -x /usr/sbin/{c}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if found(command) {
        return Ok(());
    }
    eprintln!("installing {package} (for {command}) ...");
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let install = ["install", "-y", "-q", "--no-install-recommends", package];
    // Try the package lists as they are first; refresh them only if that fails.
    let installed = apt(&install) || (apt(&["update", "-q"]) && apt(&install));
    if !installed {
        bail!("{command} is missing and `apt-get install {package}` failed (are you root?)");
    }
    if !found(command) {
        bail!("installed {package} but {command} is still not found");
    }
    Ok(())
}

/// Whether a bigger or a smaller value is better.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Better {
    /// Throughput-like.
    Higher,
    /// Latency-, CPU- or memory-like.
    Lower,
}

impl Better {
    /// Whether `value` is at least as good as `target`.
    pub(crate) fn meets(self, value: f64, target: f64) -> bool {
        match self {
            Better::Higher => value >= target,
            Better::Lower => value <= target,
        }
    }
}

/// One row of results: pier, optionally a peer, or a target.
pub(crate) struct Row {
    /// What is measured.
    pub metric: String,
    /// Unit.
    pub unit: &'static str,
    /// pier's figure.
    pub pier: f64,
    /// The peer's figure, or the target.
    pub reference: Option<f64>,
    /// Direction.
    pub better: Better,
}

/// Prints rows side by side; `reference` names the peer (or "target").
pub(crate) fn print_table(title: &str, reference: &str, rows: &[Row]) {
    println!("\n{title}");
    let labels: Vec<String> = rows
        .iter()
        .map(|r| format!("{} ({})", r.metric, r.unit))
        .collect();
    let width = labels.iter().map(String::len).max().unwrap_or(0).max(44);
    let header = format!(
        "{:<width$} {:>14} {:>14} {:>9}  {}",
        "metric", "pier", reference, "ratio", "verdict"
    );
    println!("{header}");
    println!("{}", "-".repeat(header.len()));
    for (r, label) in rows.iter().zip(labels) {
        let (refs, ratio, verdict) = match r.reference {
            Some(v) if v != 0.0 => {
                let ratio = r.pier / v;
                let good = r.better.meets(ratio, 1.0);
                (
                    fmt(v),
                    format!("{ratio:.2}x"),
                    if good { "ok" } else { "worse" },
                )
            }
            _ => ("-".into(), "-".into(), ""),
        };
        println!(
            "{label:<width$} {:>14} {:>14} {:>9}  {}",
            fmt(r.pier),
            refs,
            ratio,
            verdict
        );
    }
}

fn fmt(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

/// The `q` quantile (0..=1) of `values` (sorted in place).
pub(crate) fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let idx = ((values.len() - 1) as f64 * q).round() as usize;
    values[idx.min(values.len() - 1)]
}

/// The median of `values` (NaN when there are none).
pub(crate) fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.into_iter().collect();
    quantile(&mut v, 0.5)
}

/// Median, smallest and largest of per-round figures.
pub(crate) struct Spread {
    /// The median (nearest rank, as [`quantile`]).
    pub median: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
}

/// The spread of `values`.
pub(crate) fn spread(values: impl IntoIterator<Item = f64>) -> Spread {
    let mut v: Vec<f64> = values.into_iter().collect();
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Spread {
        median: quantile(&mut v, 0.5),
        min,
        max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_and_verdicts() {
        let s = spread([1.2, 0.9, 1.05, 1.0]);
        assert_eq!((s.median, s.min, s.max), (1.05, 0.9, 1.2));
        assert_eq!(median([3.0, 1.0, 2.0]), 2.0);
        assert!(median([]).is_nan());
        assert!(Better::Higher.meets(1.0, 1.0) && !Better::Higher.meets(0.99, 1.0));
        assert!(Better::Lower.meets(0.99, 1.0) && !Better::Lower.meets(1.01, 1.0));
    }

    #[test]
    fn quantiles() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&mut v, 0.5), 51.0);
        assert_eq!(quantile(&mut v, 0.99), 99.0);
        assert_eq!(quantile(&mut v, 1.0), 100.0);
        assert!(quantile(&mut [], 0.5).is_nan());
    }

    #[test]
    fn own_cpu_and_rss_are_readable() {
        let pid = std::process::id();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        assert!(rss_bytes(pid).unwrap() > 0);
        assert!(cpu_time(pid).unwrap() > Duration::ZERO);
    }
}

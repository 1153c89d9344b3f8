//! Container engine: create→running and stop→removed for pier, runc and crun on the same OCI
//! bundle (one config.json, as pier writes it: namespaces, cgroup limits, seccomp).
//!
//! Debian's crun refuses this machine's cgroup hybrid layout, so the whole benchmark re-runs
//! itself in a private mount namespace with `/sys/fs/cgroup/unified` unmounted: all three
//! runtimes then see the same pure cgroup v1 hierarchy.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pier_runtime::container::launcher::Launcher;
use pier_runtime::container::shim::ShimArgs;
use pier_runtime::container::{spec, ContainerConfig};
use pier_runtime::image::oci::RunConfig;

use crate::harness::{self, quantile, Better, Row};

mod pods;

/// Benchmark settings.
pub(crate) struct Params {
    /// Containers per runtime; figures are medians.
    pub rounds: usize,
    /// Pods started through a daemon for the pod-to-ready-endpoint figures.
    pub pods: usize,
}

const PRIVATE_ENV: &str = "PIER_BENCH_PRIVATE_MOUNTS";

/// Re-runs this process in a private mount namespace without the cgroup2 mount, once.
fn reexec_private() -> Result<bool> {
    let hybrid = std::fs::read_to_string("/proc/self/mountinfo")?
        .lines()
        .any(|l| l.split(' ').nth(4) == Some("/sys/fs/cgroup/unified"));
    if !hybrid || std::env::var_os(PRIVATE_ENV).is_some() {
        return Ok(false);
    }
    let exe = std::env::current_exe()?;
    let status = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg("umount /sys/fs/cgroup/unified && exec \"$0\" \"$@\"")
        .arg(exe)
        .args(std::env::args().skip(1))
        .env(PRIVATE_ENV, "1")
        .status()
        .context("running unshare (util-linux)")?;
    if !status.success() {
        bail!("benchmark in the private mount namespace failed: {status}");
    }
    Ok(true)
}

/// A read-only rootfs holding `/bin/sleep` and its libraries.
fn rootfs(dir: &Path) -> Result<PathBuf> {
    let root = dir.join("rootfs");
    let sleep = PathBuf::from("/bin/sleep");
    let mut files = vec![sleep.clone()];
    files.extend(pier_runtime::image::build::shared_libraries(&sleep)?);
    for f in files {
        let to = root.join(f.strip_prefix("/")?);
        std::fs::create_dir_all(to.parent().context("path")?)?;
        std::fs::copy(&f, &to).with_context(|| format!("{}", f.display()))?;
    }
    for d in ["proc", "sys", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    Ok(root)
}

/// Writes the bundle's config.json for container `id`.
fn write_config(bundle: &Path, rootfs: &Path, id: &str) -> Result<()> {
    let config = ContainerConfig {
        name: id.to_string(),
        read_only: true,
        memory: Some(64 << 20),
        ..Default::default()
    };
    let image = RunConfig {
        entrypoint: Some(vec!["/bin/sleep".into(), "3600".into()]),
        ..Default::default()
    };
    let spec = spec::build(id, &config, &image, rootfs, None, None)?;
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec_pretty(&spec)?,
    )?;
    Ok(())
}

/// Runs a command to completion; its errors go to a file, since a detached container would
/// hold a pipe open.
fn run(cmd: &mut Command) -> Result<()> {
    let err = tempfile::NamedTempFile::new()?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err.reopen()?)
        .status()?;
    if !status.success() {
        let text = std::fs::read_to_string(err.path()).unwrap_or_default();
        bail!("{cmd:?}: {}", text.trim());
    }
    Ok(())
}

/// (create→running, stop→removed) with runc or crun.
fn oci_cli(tool: &str, state: &Path, bundle: &Path, id: &str) -> Result<(Duration, Duration)> {
    let t0 = Instant::now();
    run(Command::new(tool)
        .arg("--root")
        .arg(state)
        .args(["run", "-d", "--bundle"])
        .arg(bundle)
        .arg(id))?;
    let started = t0.elapsed();
    let t1 = Instant::now();
    run(Command::new(tool)
        .arg("--root")
        .arg(state)
        .args(["delete", "-f", id]))?;
    Ok((started, t1.elapsed()))
}

/// (create→running, stop→removed) with pier's shim, as the engine starts it: forked by the
/// launcher the daemon keeps running, until the shim reports the container's PID.
fn pier(
    launcher: &Launcher,
    state: &Path,
    bundle: &Path,
    id: &str,
) -> Result<(Duration, Duration)> {
    let args = ShimArgs {
        id: id.to_string(),
        bundle: bundle.to_path_buf(),
        state_root: state.to_path_buf(),
        log: bundle.join(format!("{id}.log")),
        exit_file: bundle.join(format!("{id}.exit")),
    };
    let shim_log = std::fs::File::create(bundle.join(format!("{id}.shim.log")))?;
    let t0 = Instant::now();
    let (started, mut report) = launcher.launch_blocking(&args, &shim_log)?;
    let started_in = t0.elapsed();
    let t1 = Instant::now();
    run(Command::new("kill").args(["-KILL", &started.pid.to_string()]))?;
    // The report pipe closes when the shim has recorded the exit.
    report.read_to_end(&mut Vec::new())?;
    pier_runtime::container::delete_state(state, id);
    Ok((started_in, t1.elapsed()))
}

/// Runs the benchmark and prints the tables: container lifecycle against runc and crun (in a
/// private mount namespace when the host is cgroup hybrid), then pod start to ready endpoint
/// through a daemon, on the host as it is.
pub(crate) fn run_all(p: Params) -> Result<()> {
    if pier_controlplane::api::current_uid() != 0 {
        bail!("the runtime benchmark needs root");
    }
    if std::env::var_os(PRIVATE_ENV).is_some() {
        return lifecycle(&p);
    }
    if !reexec_private()? {
        lifecycle(&p)?;
    }
    if p.pods > 0 {
        // Its daemon probes pod addresses: only from a network namespace of its own (entered
        // before any thread starts; the lifecycle part above needs no network).
        crate::harness::private_netns()?;
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(pods::run(p.pods))?;
    }
    Ok(())
}

/// Container create→running and stop→removed, pier vs runc and crun.
fn lifecycle(p: &Params) -> Result<()> {
    harness::ensure_command("runc", "runc")?;
    harness::ensure_command("crun", "crun")?;
    // Started once, as the daemon does; not part of any container's time.
    let launcher = Launcher::new(&harness::pier_binary()?);
    let tmp = tempfile::tempdir()?;
    let root = rootfs(tmp.path())?;
    let mut results: Vec<(&str, Vec<f64>, Vec<f64>)> = Vec::new();
    for tool in ["pier", "runc", "crun"] {
        let state = tmp.path().join(format!("state-{tool}"));
        let bundle = tmp.path().join(format!("bundle-{tool}"));
        std::fs::create_dir_all(&state)?;
        std::fs::create_dir_all(&bundle)?;
        let (mut up, mut down) = (Vec::new(), Vec::new());
        // One warm-up container each, not counted.
        for i in 0..=p.rounds {
            let id = format!("bench-{tool}-{i}");
            write_config(&bundle, &root, &id)?;
            let (s, r) = match tool {
                "pier" => pier(&launcher, &state, &bundle, &id)?,
                t => oci_cli(t, &state, &bundle, &id)?,
            };
            if i > 0 {
                up.push(s.as_secs_f64() * 1e3);
                down.push(r.as_secs_f64() * 1e3);
            }
        }
        results.push((tool, up, down));
    }
    let median = |v: &[f64]| quantile(&mut v.to_vec(), 0.5);
    let pier_up = median(&results[0].1);
    let pier_down = median(&results[0].2);
    for (tool, up, down) in &results[1..] {
        harness::print_table(
            &format!(
                "container lifecycle, median of {} (same bundle, cgroup v1)",
                p.rounds
            ),
            tool,
            &[
                Row {
                    metric: "create -> running".into(),
                    unit: "ms",
                    pier: pier_up,
                    reference: Some(median(up)),
                    better: Better::Lower,
                },
                Row {
                    metric: "stop -> removed".into(),
                    unit: "ms",
                    pier: pier_down,
                    reference: Some(median(down)),
                    better: Better::Lower,
                },
            ],
        );
    }
    Ok(())
}

//! A daemon's socket-LB in a test's own cgroup, BPF filesystem and network namespace, cleaned
//! up whatever happens.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::PIER;

/// The cgroup2 root when the test may attach BPF programs (root, bpffs, curl, ip, cgroup2),
/// after moving into a private network namespace; `None` (with the reason printed) otherwise.
pub(crate) fn privileged() -> Option<PathBuf> {
    let root = pier_ebpf::cgroup2_root();
    let why = if !super::is_root() {
        "needs root (BPF programs, cgroups)"
    } else if !Path::new(pier_ebpf::BPFFS).exists() {
        "no /sys/fs/bpf"
    } else if !super::have("curl") {
        "curl is not installed"
    } else if !super::have("ip") {
        "ip (iproute2) is not installed"
    } else if root.is_none() {
        "no cgroup2 mount"
    } else {
        super::private_netns();
        return root;
    };
    super::skip(why);
    None
}

/// Kills what the test started and removes the hooks, pins and cgroup, whatever happened.
pub(crate) struct Cleanup {
    pub(crate) children: Vec<Child>,
    pub(crate) pin: PathBuf,
    pub(crate) cgroup: PathBuf,
    /// The test's own BPF filesystem, which holds `pin`: concurrent tests never share pins
    /// or the host's /sys/fs/bpf mount.
    bpffs: PathBuf,
}

impl Cleanup {
    /// A cgroup under `root` and a private bpffs under `dir`, named after `name`.
    pub(crate) fn new(root: &Path, dir: &Path, name: &str) -> Self {
        let id = std::process::id();
        let bpffs = dir.join("bpffs");
        let cleanup = Cleanup {
            children: Vec::new(),
            pin: bpffs.join("pier"),
            cgroup: root.join(format!("{name}-{id}")),
            bpffs,
        };
        std::fs::create_dir_all(&cleanup.bpffs).unwrap();
        assert!(pier_ebpf::ensure_bpffs(&cleanup.bpffs).unwrap());
        std::fs::create_dir_all(&cleanup.cgroup).unwrap();
        cleanup
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new(PIER)
            .args(["ebpf", "detach", "--ebpf-pin-dir"])
            .arg(&self.pin)
            .output();
        let _ = std::fs::remove_dir(&self.cgroup);
        let _ = Command::new("umount").arg(&self.bpffs).status();
    }
}

/// A daemon on the test's cgroup and pin directory, with its state under `dir`.
pub(crate) fn daemon_with(dir: &Path, cleanup: &Cleanup, flags: &[&str]) -> Child {
    Command::new(PIER)
        .args([
            "daemon",
            "--no-dns",
            "--no-runtime",
            "--admin",
            "127.0.0.1:0",
        ])
        .args(flags)
        .args(["--service-cidr", "10.253.0.0/16"])
        .arg("--ebpf-cgroup")
        .arg(&cleanup.cgroup)
        .arg("--ebpf-pin-dir")
        .arg(&cleanup.pin)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--socket")
        .arg(dir.join("pier.sock"))
        .env("PIER_LOG", "warn")
        .stderr(log_file(dir))
        .spawn()
        .unwrap()
}

/// The log of the daemons run with state under `dir` (appended to by each).
pub(crate) fn log_file(dir: &Path) -> std::fs::File {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("daemon.log"))
        .unwrap()
}

/// Waits (bounded) for `path` to exist.
pub(crate) fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

//! A cluster of pier nodes on one machine, for the cluster tests and `pier-bench cluster`. The test's own network
//! namespace is the LAN: a bridge at [`LAN_IP`], where etcd listens. Each node is a network
//! namespace with a leg on that bridge, a cgroup (its daemon and every container it starts
//! live there, and its socket-LB hooks attach there) and a BPF filesystem of its own, and a
//! daemon running the engine, the proxy, the socket-LB and DNS. Dropped, a node removes its
//! Deployments and containers, stops its daemon, detaches its hooks and removes what it made.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::pier::{dig_a, echo_image_args, http_get, pier_cli, remove_workloads};
use crate::Netns;

/// The LAN's address in the test's namespace (etcd listens there).
pub const LAN_IP: &str = "192.168.77.254";

/// Where cgroup v2 is mounted: `/sys/fs/cgroup/unified` on a hybrid host, else `/sys/fs/cgroup`.
fn cgroup2_root() -> PathBuf {
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("cgroup.procs").exists() && !p.join("cpu").exists())
        .expect("a cgroup2 mount")
}

/// Makes the test's (private) namespace the LAN: a bridge with [`LAN_IP`].
pub fn lan() {
    for args in [
        // A fixed address, or the bridge takes its lowest port's, which changes when a node
        // is removed and leaves every node's neighbour entry for etcd stale.
        "link add lan0 address 02:70:00:00:00:fe type bridge",
        &format!("addr add {LAN_IP}/24 dev lan0"),
        "link set lan0 up",
    ] {
        ip(args);
    }
}

fn ip(args: &str) {
    let ok = Command::new("ip")
        .args(args.split_whitespace())
        .status()
        .unwrap();
    assert!(ok.success(), "ip {args}");
}

/// One node: its namespace, cgroup, BPF filesystem, state and daemon.
pub struct ClusterNode {
    /// The pier binary its daemon runs.
    pub pier: PathBuf,
    /// `n1`, `n2`, ...
    pub name: String,
    /// Its address on the LAN.
    pub ip: String,
    index: u8,
    ns: Option<Netns>,
    cgroup: PathBuf,
    bpffs: PathBuf,
    dir: PathBuf,
    flags: Vec<String>,
    daemon: Option<Child>,
}

impl ClusterNode {
    /// Node `n<index>` at 192.168.77.`index`, running the `pier` binary, its state under
    /// `dir`, on the cluster `store`, with its API on TCP at its address as a kubelet's is;
    /// `flags` go to its daemon (timings, mostly). Returns once its control socket answers.
    pub fn start(pier: &Path, dir: &Path, index: u8, store: &str, flags: &[&str]) -> ClusterNode {
        let cgroup = cgroup2_root().join(format!("pier-test-{}-n{index}", std::process::id()));
        std::fs::create_dir_all(&cgroup).unwrap();
        let bpffs = dir.join("bpffs");
        std::fs::create_dir_all(&bpffs).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&bpffs)
            .status()
            .unwrap();
        assert!(mounted.success(), "mount -t bpf bpf {}", bpffs.display());
        let ip = format!("192.168.77.{index}");
        let mut flags: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
        flags.extend(
            [
                "--store",
                store,
                "--node-name",
                &format!("n{index}"),
                "--node-ip",
                &ip,
                "--admin",
                &format!("{ip}:0"),
                "--api-listen",
                &format!("{ip}:0"),
                "--dns-listen",
                &format!("{ip}:53"),
                "--proxy-vips",
                "loopback",
                "--node-address",
                &ip,
            ]
            .map(String::from),
        );
        let mut node = ClusterNode {
            pier: pier.to_path_buf(),
            name: format!("n{index}"),
            ip,
            index,
            ns: None,
            cgroup,
            bpffs,
            dir: dir.to_path_buf(),
            flags,
            daemon: None,
        };
        node.plug_in();
        node.start_daemon();
        node
    }

    /// A fresh namespace with a leg on the LAN.
    fn plug_in(&mut self) {
        let ns = Netns::create(&format!("pier-cn{}", self.index));
        let host_end = format!("pcn{}-{}", self.index, std::process::id() % 100_000);
        ip(&format!(
            "link add {host_end} type veth peer name eth0 netns {}",
            ns.name
        ));
        ip(&format!("link set {host_end} master lan0 up"));
        for args in [
            format!("ip addr add {}/24 dev eth0", self.ip),
            "ip link set eth0 up".to_string(),
        ] {
            let words: Vec<&str> = args.split_whitespace().collect();
            assert!(ns.run(&words).status.success(), "{args}");
        }
        self.ns = Some(ns);
    }

    /// Starts the daemon in the node's namespace and cgroup (through `nsenter`, which leaves
    /// the mounts alone: `ip netns exec` would hide the cgroup and BPF filesystems).
    pub fn start_daemon(&mut self) {
        let ns = self.ns.as_ref().expect("the node's namespace").name.clone();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("daemon.log"))
            .unwrap();
        let child = Command::new("sh")
            .args([
                "-c",
                "echo $$ > \"$1/cgroup.procs\" && ns=$2 && shift 2 && exec nsenter --net=\"/var/run/netns/$ns\" \"$@\"",
                "sh",
            ])
            .arg(&self.cgroup)
            .arg(&ns)
            .arg(&self.pier)
            .args(["daemon", "--ebpf-cgroup"])
            .arg(&self.cgroup)
            .args(crate::pier::LOOPBACK_REGISTRIES)
            .arg("--ebpf-pin-dir")
            .arg(self.bpffs.join("pier"))
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .arg("--socket")
            .arg(self.socket())
            .args(&self.flags)
            .env(
                "PIER_LOG",
                std::env::var("PIER_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.pier(&["get", "nodes"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "{}'s daemon did not come up: {}",
                self.name,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// kill -9 of the daemon (its containers keep running).
    pub fn kill_daemon(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// The whole node goes: daemon (kill -9), every container (cgroup.kill) and namespace.
    pub fn remove(&mut self) {
        self.kill_daemon();
        self.kill_cgroup();
        self.ns = None;
    }

    /// A removed node comes back on its old state, in a new namespace.
    pub fn rejoin(&mut self) {
        self.plug_in();
        self.start_daemon();
    }

    /// Kills every process in the node's cgroup and waits until it is empty.
    fn kill_cgroup(&self) {
        if let Err(e) = std::fs::write(self.cgroup.join("cgroup.kill"), "1") {
            eprintln!("cgroup.kill of {}: {e}", self.cgroup.display());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(self.cgroup.join("cgroup.procs"))
            .is_ok_and(|p| !p.trim().is_empty())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's control socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("pier.sock")
    }

    /// `pier args` against this node's daemon.
    pub fn pier(&self, args: &[&str]) -> Output {
        pier_cli(&self.pier, &self.socket(), args, "")
    }

    /// `pier apply -f -` of `yaml`, which must be accepted.
    pub fn apply(&self, yaml: &str) {
        let out = pier_cli(&self.pier, &self.socket(), &["apply", "-f", "-"], yaml);
        assert!(
            out.status.success(),
            "apply on {}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `pier args`, which must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.pier(args);
        assert!(
            out.status.success(),
            "pier {args:?} on {}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `pier get args -o json`.
    pub fn get_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    /// This node's containers (`pier ps -a -o json`).
    pub fn containers(&self) -> Vec<Value> {
        serde_json::from_str::<Value>(&self.ok(&["ps", "-a", "-o", "json"])).unwrap()["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The address of the node's admin listener (from `/v1/status` on its control socket).
    pub fn admin_address(&self) -> String {
        let s = std::os::unix::net::UnixStream::connect(self.socket()).unwrap();
        let (_, body) = http_get(s, "/v1/status");
        let status: Value = serde_json::from_str(&body).unwrap();
        status["adminAddress"].as_str().unwrap().to_string()
    }

    /// The snapshot this node's dataplane serves (its admin listener's `/snapshot`).
    pub fn snapshot(&self) -> Value {
        let s = std::net::TcpStream::connect(self.admin_address()).unwrap();
        let (code, body) = http_get(s, "/snapshot");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// The daemon's process id, while it runs.
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Child::id)
    }

    /// Builds `pier/echo:v1` (the pier binary) and `pier/curl:1` (Debian's curl) here.
    pub fn build_images(&self) {
        let echo = echo_image_args(&self.pier, "v1");
        self.ok(&echo.iter().map(String::as_str).collect::<Vec<_>>());
        self.ok(&[
            "image",
            "build",
            "-t",
            "pier/curl:1",
            "--binary",
            "/usr/bin/curl",
        ]);
    }

    /// Removes what containers a daemon no longer runs could leave (a node removed and not
    /// back): their namespaces and cgroup v1 directories.
    fn sweep_containers(&self) {
        let Ok(entries) = std::fs::read_dir(self.dir.join("state/runtime/containers")) else {
            return;
        };
        for id in entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
        {
            let _ = Command::new("ip")
                .args(["netns", "del", &format!("pier-{}", &id[..id.len().min(12)])])
                .output();
            if let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") {
                for c in controllers.flatten() {
                    let _ = std::fs::remove_dir(c.path().join("pier").join(&id));
                }
            }
        }
    }

    /// `args` run in the node's network namespace (and the test's cgroup).
    pub fn in_ns(&self, args: &[&str]) -> Output {
        let ns = self.ns.as_ref().expect("the node's namespace");
        Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", ns.name))
            .args(args)
            .output()
            .unwrap()
    }

    /// `curl -s url` from the node itself: its namespace and cgroup, so through its socket-LB.
    pub fn curl_on_node(&self, url: &str) -> String {
        let ns = self.ns.as_ref().expect("the node's namespace");
        let out = Command::new("sh")
            .args([
                "-c",
                "echo $$ > \"$1/cgroup.procs\" && exec nsenter --net=\"/var/run/netns/$2\" curl -s -m 2 \"$3\"",
                "sh",
            ])
            .arg(&self.cgroup)
            .args([&ns.name, url])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The A records of `name` from this node's DNS (asked from the LAN).
    pub fn resolve(&self, name: &str) -> Vec<String> {
        dig_a(&self.ip, 53, name)
    }

    /// The last lines of the daemon's log.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        // Nothing here may panic: the test may be unwinding already.
        if std::thread::panicking() {
            eprintln!(
                "--- {}'s daemon log (last lines):\n{}",
                self.name,
                self.log_tail()
            );
        }
        if self.daemon.is_some() {
            remove_workloads(&self.pier, &self.socket());
            if let Some(child) = &self.daemon {
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
            }
            if let Some(mut child) = self.daemon.take() {
                let deadline = Instant::now() + Duration::from_secs(15);
                while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        self.kill_cgroup();
        self.sweep_containers();
        let _ = Command::new(&self.pier)
            .args(["ebpf", "detach", "--ebpf-pin-dir"])
            .arg(self.bpffs.join("pier"))
            .output();
        let _ = Command::new("umount").arg(&self.bpffs).status();
        let _ = std::fs::remove_dir(&self.cgroup);
        self.ns = None;
    }
}

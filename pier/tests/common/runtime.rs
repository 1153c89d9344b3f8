//! The engine tests' node: a daemon running containers on a bridge and pod network of its
//! own, removed with everything it ran; and the checks and helpers those tests share.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use super::{echo_image_args, have, is_root, private_netns, skip, Daemon, PIER};

/// A daemon running containers on its own bridge and pod network; on drop every container
/// is removed, the daemon killed and the bridge deleted.
pub(crate) struct Node {
    pub(crate) daemon: Option<Daemon>,
    dir: PathBuf,
    bridge: String,
    flags: Vec<String>,
}

pub(crate) fn out_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

impl Node {
    /// `n` picks the bridge `pier-rtN`, pods in `10.(240+n).0.0/16`, ClusterIPs in
    /// `10.(140+n).0.0/16` served on loopback with port offset 21000.
    pub(crate) fn start(dir: &Path, n: u8) -> Node {
        Self::start_with(dir, n, &[])
    }

    /// As `start`, with `extra` daemon flags.
    pub(crate) fn start_with(dir: &Path, n: u8, extra: &[&str]) -> Node {
        let bridge = format!("pier-rt{n}");
        let mut flags: Vec<String> = [
            "--bridge",
            &bridge,
            "--pod-cidr",
            &format!("10.{}.0.0/16", 240 + u16::from(n)),
            "--service-cidr",
            &format!("10.{}.0.0/16", 140 + u16::from(n)),
            "--proxy-vips",
            "loopback",
            "--proxy-port-offset",
            "21000",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        flags.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = flags.iter().map(String::as_str).collect();
        let daemon = Daemon::start_with(dir, &refs);
        Node {
            daemon: Some(daemon),
            dir: dir.to_path_buf(),
            bridge,
            flags,
        }
    }

    pub(crate) fn d(&self) -> &Daemon {
        self.daemon.as_ref().unwrap()
    }

    pub(crate) fn pier(&self, args: &[&str]) -> Output {
        self.d().pier(args)
    }

    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let o = self.pier(args);
        assert!(o.status.success(), "pier {args:?}: {}", out_text(&o));
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    pub(crate) fn fails(&self, args: &[&str]) -> String {
        let o = self.pier(args);
        assert!(
            !o.status.success(),
            "pier {args:?} should fail: {}",
            out_text(&o)
        );
        out_text(&o)
    }

    /// The sum of the daemon's metric lines that start with `prefix`.
    pub(crate) fn metric(&self, prefix: &str) -> f64 {
        let (_, body) = self.d().admin("/metrics");
        body.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub(crate) fn containers(&self) -> Vec<Value> {
        let v: Value = serde_json::from_str(&self.ok(&["ps", "-a", "-o", "json"])).unwrap();
        v["items"].as_array().cloned().unwrap_or_default()
    }

    pub(crate) fn container(&self, name: &str) -> Value {
        self.containers()
            .into_iter()
            .find(|c| c["name"] == name || c["id"] == name)
            .unwrap_or(Value::Null)
    }

    /// Builds `pier/echo:<tag>` from the pier binary under test.
    pub(crate) fn build_echo(&self, tag: &str) {
        let args = echo_image_args(tag);
        self.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }

    /// kill -9 of the daemon and a fresh start on the same state (containers keep running).
    pub(crate) fn crash_and_restart(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            if let Some(mut c) = d.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        let refs: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        self.daemon = Some(Daemon::start_with(&self.dir, &refs));
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(d) = &self.daemon {
            // Nothing here may panic (the test may be unwinding already).
            pier_testkit::pier::remove_workloads(Path::new(PIER), &d.socket());
        }
        self.daemon.take();
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}

pub(crate) fn privileged(test: &str) -> bool {
    if !is_root() {
        skip(&format!("{test}: the container engine needs root"));
        return false;
    }
    if !have("ip") || !have("curl") {
        skip(&format!("{test}: needs ip (iproute2) and curl"));
        return false;
    }
    // The test dials pod addresses: from a network namespace of its own, where the daemon's
    // bridge lives too, so nothing can leave the machine if a route is missing.
    private_netns();
    true
}

pub(crate) fn curl(url: &str) -> Option<Value> {
    let o = Command::new("curl")
        .args(["-s", "-m", "3", url])
        .output()
        .ok()?;
    serde_json::from_slice(&o.stdout).ok()
}

pub(crate) fn wait_for(what: &str, secs: u64, f: impl FnMut() -> bool) {
    pier_testkit::wait_for(what, Duration::from_secs(secs), f);
}

pub(crate) fn leftovers(id: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if mounts.contains(id) {
        found.push("rootfs mount".into());
    }
    if Path::new("/var/run/netns")
        .join(format!("pier-{}", &id[..12]))
        .exists()
    {
        found.push("netns".into());
    }
    // In the test's network namespace (sysfs would show the host's).
    let veth = Command::new("ip")
        .args(["link", "show", &format!("pv{}", &id[..12])])
        .output()
        .is_ok_and(|o| o.status.success());
    if veth {
        found.push("veth".into());
    }
    for base in ["memory", "pids", "cpu,cpuacct"] {
        if Path::new("/sys/fs/cgroup")
            .join(base)
            .join("pier")
            .join(id)
            .exists()
        {
            found.push(format!("{base} cgroup"));
        }
    }
    found
}

pub(crate) fn run_ok(cmd: &mut Command) {
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{cmd:?}: {}", out_text(&o));
}

/// An OCI layout made by umoci holding the pier binary, the host binaries `extra` (host
/// path, path in the image) and the libraries they load; it runs `pier echo` on :8080.
pub(crate) fn umoci_layout(dir: &Path, extra: &[(&str, &str)]) -> PathBuf {
    let layout = dir.join("layout");
    let bundle = dir.join("bundle");
    run_ok(
        Command::new("umoci")
            .args(["init", "--layout"])
            .arg(&layout),
    );
    run_ok(
        Command::new("umoci")
            .args(["new", "--image"])
            .arg(format!("{}:v1", layout.display())),
    );
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:v1", layout.display()))
            .arg(&bundle),
    );
    let rootfs = bundle.join("rootfs");
    let mut files = vec![(PathBuf::from(PIER), rootfs.join("usr/local/bin/pier"))];
    let mut binaries = vec![PIER];
    for (host, in_image) in extra {
        files.push((
            PathBuf::from(host),
            rootfs.join(in_image.trim_start_matches('/')),
        ));
        binaries.push(host);
    }
    let ldd = Command::new("ldd").args(&binaries).output().unwrap();
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let path = line
            .split("=>")
            .last()
            .unwrap_or("")
            .split(" (")
            .next()
            .unwrap_or("")
            .trim();
        // With several binaries ldd heads each one's list with `path:`.
        if path.starts_with('/') && !line.trim_end().ends_with(':') {
            files.push((
                PathBuf::from(path),
                rootfs.join(path.trim_start_matches('/')),
            ));
        }
    }
    files.sort();
    files.dedup();
    for (from, to) in files {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, &to).unwrap();
    }
    run_ok(
        Command::new("umoci")
            .args(["repack", "--image"])
            .arg(format!("{}:v1", layout.display()))
            .arg(&bundle),
    );
    run_ok(
        Command::new("umoci")
            .args(["config", "--image"])
            .arg(format!("{}:v1", layout.display()))
            .args([
                "--config.entrypoint=/usr/local/bin/pier",
                "--config.cmd=echo",
                "--config.cmd=--http",
                "--config.cmd=0.0.0.0:8080",
            ]),
    );
    layout
}

/// A `docker-registry` (the CNCF distribution server) on loopback, stopped on drop.
pub(crate) struct Registry {
    child: std::process::Child,
    pub(crate) addr: String,
    pub(crate) storage: PathBuf,
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Err(e) = self.child.kill() {
            eprintln!("stopping the registry: {e}");
        }
        if let Err(e) = self.child.wait() {
            eprintln!("reaping the registry: {e}");
        }
    }
}

/// A registry storing under `dir` that asks for `user` and `password` (Basic auth), written
/// by `htpasswd -B` as operators write them.
pub(crate) fn start_registry_with_password(dir: &Path, user: &str, password: &str) -> Registry {
    let passwords = dir.join("htpasswd");
    run_ok(
        Command::new("htpasswd")
            .args(["-Bbc"])
            .arg(&passwords)
            .args([user, password]),
    );
    start_registry(dir, Some(&passwords))
}

/// A registry storing under `dir`; with `htpasswd`, it asks for the credentials that file
/// holds (bcrypt, as `htpasswd -B` writes them).
pub(crate) fn start_registry(dir: &Path, htpasswd: Option<&Path>) -> Registry {
    let auth = htpasswd.map_or(String::new(), |file| {
        format!(
            "auth:\n  htpasswd:\n    realm: pier-test\n    path: {}\n",
            file.display()
        )
    });
    start_registry_with_auth(dir, &auth)
}

/// A registry storing under `dir`, with `auth` as its configuration's `auth:` section (empty:
/// none).
pub(crate) fn start_registry_with_auth(dir: &Path, auth: &str) -> Registry {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let storage = dir.join("registry");
    let config = dir.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n{auth}",
            storage.display()
        ),
    )
    .unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let r = Registry {
        child,
        addr,
        storage,
    };
    wait_for("the registry", 10, || {
        std::net::TcpStream::connect(&r.addr).is_ok()
    });
    r
}

/// Imports `pier/shell:v1`: pier's image with this machine's dash as `/bin/sh`, and `cat` and
/// `true`, for pods that run shell commands.
pub(crate) fn shell_image(node: &Node, dir: &Path) {
    let host = |name: &str| {
        ["/usr/bin", "/bin"]
            .iter()
            .map(|d| format!("{d}/{name}"))
            .find(|p| Path::new(p).exists())
            .unwrap_or_else(|| panic!("{name} is not on this machine"))
    };
    let (dash, cat, yes) = (host("dash"), host("cat"), host("true"));
    let layout = umoci_layout(
        dir,
        &[
            (dash.as_str(), "/bin/sh"),
            (cat.as_str(), "/bin/cat"),
            (yes.as_str(), "/bin/true"),
        ],
    );
    node.ok(&[
        "image",
        "import",
        layout.to_str().unwrap(),
        "--tag",
        "pier/shell:v1",
    ]);
}

/// A node `n` with the API on TCP and `pier/shell:v1` imported, and kubectl for it; `None`
/// (the test skips, saying why) when kubectl or umoci is missing.
pub(crate) fn shell_node(dir: &Path, n: u8) -> Option<(Node, super::kubectl::Kubectl)> {
    if !have("kubectl") || !have("umoci") {
        skip("kubectl and umoci are needed (scripts/deps test installs umoci)");
        return None;
    }
    let node = Node::start_with(dir, n, &["--api-listen", "127.0.0.1:0"]);
    shell_image(&node, dir);
    let kubeconfig = dir.join("kubeconfig");
    let out = node.pier(&["kubeconfig"]);
    assert!(out.status.success(), "{}", out_text(&out));
    std::fs::write(&kubeconfig, &out.stdout).unwrap();
    let kubectl = super::kubectl::Kubectl {
        kubeconfig,
        cache: dir.join("kube-cache"),
    };
    Some((node, kubectl))
}

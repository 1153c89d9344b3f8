//! Helpers shared by the end-to-end tests: a daemon process and raw HTTP over its sockets.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub(crate) mod canary;
pub(crate) mod clients;
pub(crate) mod cluster;
pub(crate) mod gateway;
pub(crate) mod kubectl;
pub(crate) mod proxy;
pub(crate) mod runtime;
pub(crate) mod socket_lb;
pub(crate) mod tls;
pub(crate) mod token_service;

/// Runs `pier args` against the daemon at `socket`, with `stdin` as its input.
pub(crate) fn pier_cli(socket: &Path, args: &[&str], stdin: &str) -> Output {
    pier_testkit::pier::pier_cli(Path::new(PIER), socket, args, stdin)
}

/// Applies a manifest through `pier apply -f -`, asserting it was accepted.
pub(crate) fn apply_yaml(socket: &Path, yaml: &str) {
    let out = pier_cli(socket, &["apply", "-f", "-"], yaml);
    assert!(out.status.success(), "{}", stderr(&out));
}

// Each test binary uses some of these.
#[allow(unused_imports)]
pub(crate) use pier_testkit::{have, have_all, is_root, private_netns, skip, Netns};

/// pier's own use of a test network namespace.
pub(crate) trait NetnsExt {
    /// Starts `pier daemon` with `flags` in the namespace, its state under `dir` (and
    /// `--no-ebpf` with a private pin directory: cgroups are not isolated by a network
    /// namespace); returns its control socket once it is there.
    fn start_daemon(&mut self, dir: &Path, flags: &[&str]) -> PathBuf;
}

impl NetnsExt for Netns {
    fn start_daemon(&mut self, dir: &Path, flags: &[&str]) -> PathBuf {
        let socket = dir.join("pier.sock");
        let mut command = self.command(&[PIER, "daemon", "--admin", "127.0.0.1:0", "--no-ebpf"]);
        command
            .arg("--ebpf-pin-dir")
            .arg(dir.join("ebpf-pins"))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--socket")
            .arg(&socket)
            .args(pier_testkit::pier::LOOPBACK_REGISTRIES)
            .args(flags)
            .env("PIER_LOG", "warn");
        self.spawn(command);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "daemon did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        socket
    }
}

/// Spawns `pier echo` through `command` (its stdout piped) and returns it with the address of
/// each listener it announced (`http`, `tcp`, `udp`), read up to its `ready` line.
pub(crate) fn spawn_echo(
    mut command: Command,
) -> (
    Child,
    std::collections::HashMap<String, std::net::SocketAddr>,
) {
    use std::io::BufRead;
    let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
    let mut addrs = std::collections::HashMap::new();
    let stdout = child.stdout.take().unwrap();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if line == "ready" {
            break;
        }
        let (proto, addr) = line.split_once(' ').unwrap();
        addrs.insert(proto.to_string(), addr.parse().unwrap());
    }
    (child, addrs)
}

pub(crate) const PIER: &str = env!("CARGO_BIN_EXE_pier");

/// A daemon process with its own state directory and socket; killed on drop.
pub(crate) struct Daemon {
    pub dir: PathBuf,
    pub child: Option<Child>,
}

impl Daemon {
    /// A daemon without the proxy (tests of the control plane share VIPs).
    pub(crate) fn start(dir: &Path) -> Daemon {
        Self::start_with(dir, &["--no-proxy"])
    }

    /// A daemon with extra flags.
    pub(crate) fn start_with(dir: &Path, extra: &[&str]) -> Daemon {
        let child = Command::new(PIER)
            .args([
                "daemon",
                "--admin",
                "127.0.0.1:0",
                "--dns-listen",
                "127.0.0.1:0",
                // Hooks on the host's cgroup root would reach every process; tests opt in.
                // --no-ebpf detaches what is pinned in its pin directory: a private one, never
                // the machine's.
                "--no-ebpf",
                "--ebpf-pin-dir",
            ])
            .arg(dir.join("ebpf-pins"))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args(pier_testkit::pier::LOOPBACK_REGISTRIES)
            .args(extra)
            .arg("--socket")
            .arg(dir.join("pier.sock"))
            .env("PIER_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let d = Daemon {
            dir: dir.to_path_buf(),
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while d.try_status().is_none() {
            assert!(Instant::now() < deadline, "daemon did not come up");
            std::thread::sleep(Duration::from_millis(25));
        }
        d
    }

    pub(crate) fn socket(&self) -> PathBuf {
        self.dir.join("pier.sock")
    }

    pub(crate) fn pier(&self, args: &[&str]) -> Output {
        self.pier_stdin(args, "")
    }

    pub(crate) fn pier_stdin(&self, args: &[&str], stdin: &str) -> Output {
        pier_cli(&self.socket(), args, stdin)
    }

    pub(crate) fn get_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        let out = self.pier(&all);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub(crate) fn api(&self, method: &str, path: &str) -> (u16, String) {
        let mut s = UnixStream::connect(self.socket()).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: pier\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        read_response(&mut s)
    }

    pub(crate) fn try_status(&self) -> Option<Value> {
        let mut s = UnixStream::connect(self.socket()).ok()?;
        write!(
            s,
            "GET /v1/status HTTP/1.1\r\nHost: pier\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let (code, body) = read_response(&mut s);
        (code == 200)
            .then(|| serde_json::from_str(&body).ok())
            .flatten()
    }

    pub(crate) fn admin(&self, path: &str) -> (u16, String) {
        let addr = self.try_status().unwrap()["adminAddress"]
            .as_str()
            .unwrap()
            .to_string();
        let mut s = TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: pier\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        read_response(&mut s)
    }

    /// SIGTERM and wait: graceful shutdown must exit 0.
    pub(crate) fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        let ok = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "daemon exited with {status}");
                break;
            }
            assert!(Instant::now() < deadline, "daemon did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!self.socket().exists(), "socket removed on shutdown");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// Each test binary uses some of these.
#[allow(unused_imports)]
pub(crate) use pier_testkit::pier::{dechunk, dig_a, read_response};

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// The `pier image build` arguments for `pier/echo:<tag>` from the pier binary under test.
pub(crate) fn echo_image_args(tag: &str) -> Vec<String> {
    pier_testkit::pier::echo_image_args(Path::new(PIER), tag)
}

//! The proxy with real VIPs (`--proxy-vips interface`), inside a network namespace the test
//! creates, so the host's interfaces are never touched. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::PIER;

/// A network namespace, deleted (with every process the test started in it) on drop.
struct Netns {
    name: String,
    children: Vec<Child>,
}

impl Netns {
    fn create() -> Netns {
        let name = format!("pier-test-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(ok.success(), "ip netns add");
        let ns = Netns {
            name,
            children: Vec::new(),
        };
        assert!(ns.run(&["ip", "link", "set", "lo", "up"]).status.success());
        ns
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

fn privileged() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    let tools = Command::new("curl").arg("--version").output().is_ok();
    if root && tools {
        return true;
    }
    let why = if root {
        "curl is not installed"
    } else {
        "needs root (network namespaces, VIP interface)"
    };
    assert!(
        std::env::var_os("PIER_REQUIRE_PRIVILEGED").is_none(),
        "PIER_REQUIRE_PRIVILEGED is set but the test cannot run: {why}"
    );
    println!("skipped: {why}");
    false
}

#[test]
fn real_cluster_ips_on_the_vip_interface() {
    if !privileged() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut ns = Netns::create();

    let mut echo = ns
        .command(&[PIER, "echo", "--name", "v1", "--http", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let line = BufReader::new(echo.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    let echo_port: u16 = line.rsplit(':').next().unwrap().parse().unwrap();
    ns.children.push(echo);

    let socket = tmp.path().join("pier.sock");
    let daemon = ns
        .command(&[
            PIER,
            "daemon",
            "--proxy-vips",
            "interface",
            "--admin",
            "127.0.0.1:0",
            "--no-dns",
            // Network namespaces do not isolate cgroups: keep the socket-LB off the host.
            "--no-ebpf",
        ])
        .arg("--state-dir")
        .arg(tmp.path().join("state"))
        .arg("--socket")
        .arg(&socket)
        .env("PIER_LOG", "warn")
        .spawn()
        .unwrap();
    ns.children.push(daemon);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "daemon did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }

    let yaml = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  ports: [{{name: http, port: 80, appProtocol: http}}]\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: web-1, labels: {{kubernetes.io/service-name: web}}}}\n\
         addressType: IPv4\nendpoints: [{{addresses: [127.0.0.1], conditions: {{ready: true}}}}]\nports: [{{name: http, port: {echo_port}}}]\n"
    );
    let mut apply = Command::new(PIER)
        .args(["apply", "-f", "-"])
        .env("PIER_SOCKET", &socket)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    apply
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    assert!(apply.wait().unwrap().success());
    let out = Command::new(PIER)
        .args(["get", "svc", "web", "-o", "json"])
        .env("PIER_SOCKET", &socket)
        .output()
        .unwrap();
    let svc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let vip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();

    let mut body = String::new();
    while Instant::now() < deadline {
        let out = ns.run(&["curl", "-s", "-m", "2", &format!("http://{vip}/")]);
        body = String::from_utf8_lossy(&out.stdout).to_string();
        if body.contains("\"name\":\"v1\"") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        body.contains("\"name\":\"v1\""),
        "curl http://{vip}/ inside the namespace: {body:?}"
    );
    let addrs = ns.run(&["ip", "-br", "addr", "show", "pier0"]);
    let addrs = String::from_utf8_lossy(&addrs.stdout).to_string();
    assert!(addrs.contains(&format!("{vip}/32")), "{addrs}");

    // A graceful stop removes the interface.
    let mut daemon = ns.children.remove(1);
    Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .unwrap();
    let stopped = daemon.wait().unwrap();
    assert!(stopped.success(), "{stopped}");
    let gone = ns.run(&["ip", "link", "show", "pier0"]);
    assert!(!gone.status.success(), "pier0 removed on shutdown");
}

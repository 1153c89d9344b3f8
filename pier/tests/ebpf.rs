//! The daemon's socket-LB end to end, in a cgroup and pin directory of the test's own: a
//! client in that cgroup reaches a ClusterIP with no proxy running, keeps reaching it while
//! the daemon is killed (-9) and restarted, and `pier ebpf detach` removes everything.
//! Needs root, cgroup2 and bpffs; skips with a reason otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::PIER;

fn privileged() -> Option<PathBuf> {
    let root = pier_ebpf::cgroup2_root();
    let why = if !common::is_root() {
        "needs root (BPF programs, cgroups)"
    } else if !Path::new(pier_ebpf::BPFFS).exists() {
        "no /sys/fs/bpf"
    } else if !common::have("curl") {
        "curl is not installed"
    } else if root.is_none() {
        "no cgroup2 mount"
    } else {
        return root;
    };
    common::skip(why);
    None
}

/// Kills what the test started and removes the hooks, pins and cgroup, whatever happened.
struct Cleanup {
    children: Vec<Child>,
    pin: PathBuf,
    cgroup: PathBuf,
    /// bpffs was not mounted before: the daemon mounted it, the test unmounts it.
    unmount_bpffs: bool,
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
        if self.unmount_bpffs {
            let _ = Command::new("umount").arg("/sys/fs/bpf").status();
        }
    }
}

fn daemon(dir: &Path, cleanup: &Cleanup) -> Child {
    Command::new(PIER)
        .args(["daemon", "--no-proxy", "--no-dns", "--admin", "127.0.0.1:0"])
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
        .spawn()
        .unwrap()
}

fn wait_for(path: &Path) {
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

/// `curl` run inside the test cgroup; the echo server's name, or the failure.
fn curl_in(cgroup: &Path, url: &str) -> Result<String, String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs && exec curl -s -m 2 {url}",
            cgroup.display()
        ))
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout).to_string();
    let v: serde_json::Value = serde_json::from_str(&body).map_err(|_| {
        format!(
            "curl {url}: {body} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok(v["name"].as_str().unwrap_or_default().to_string())
}

#[test]
fn daemon_socket_lb_serves_cluster_ips_and_survives_kill_9() {
    let Some(root) = privileged() else { return };
    let id = std::process::id();
    let tmp = tempfile::tempdir().unwrap();
    let mut cleanup = Cleanup {
        children: Vec::new(),
        pin: PathBuf::from(format!("/sys/fs/bpf/pier-e2e-{id}")),
        cgroup: root.join(format!("pier-e2e-{id}")),
        unmount_bpffs: !pier_ebpf::bpffs_mounted(Path::new(pier_ebpf::BPFFS)),
    };
    std::fs::create_dir_all(&cleanup.cgroup).unwrap();

    let mut command = Command::new(PIER);
    command.args(["echo", "--name", "e1", "--http", "127.0.0.1:0"]);
    let (echo, addrs) = common::spawn_echo(command);
    let port = addrs["http"].port();
    cleanup.children.push(echo);

    let d = daemon(tmp.path(), &cleanup);
    cleanup.children.push(d);
    let socket = tmp.path().join("pier.sock");
    wait_for(&socket);
    // A ClusterIP from a range nothing else on this host uses.
    let vip = format!("10.253.{}.{}", id % 250, 1 + id % 200);
    let yaml = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  clusterIP: {vip}\n  ports: [{{name: http, port: 80}}]\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: web-1, labels: {{kubernetes.io/service-name: web}}}}\n\
         addressType: IPv4\nendpoints: [{{addresses: [127.0.0.1], conditions: {{ready: true}}}}]\nports: [{{name: http, port: {port}}}]\n"
    );
    common::apply_yaml(&socket, &yaml);

    let url = format!("http://{vip}/");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = curl_in(&cleanup.cgroup, &url);
    while last.as_deref() != Ok("e1") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        last = curl_in(&cleanup.cgroup, &url);
    }
    assert_eq!(
        last.as_deref(),
        Ok("e1"),
        "the ClusterIP reaches the endpoint with no proxy"
    );
    assert!(
        Command::new("curl")
            .args(["-s", "-m", "1", &url])
            .output()
            .unwrap()
            .stdout
            .is_empty(),
        "outside the cgroup the VIP is not translated"
    );

    // The kernel's counters show up as pier_ebpf_* metrics.
    let status = Command::new("curl")
        .args(["-s", "--unix-socket"])
        .arg(&socket)
        .arg("http://pier/v1/status")
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let admin = status["adminAddress"].as_str().unwrap().to_string();
    let metrics = Command::new("curl")
        .args(["-s", &format!("http://{admin}/metrics")])
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics.stdout).to_string();
    let connects: f64 = metrics
        .lines()
        .find(|l| l.starts_with("pier_ebpf_connections_total{") && l.contains("default/web"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no pier_ebpf_connections_total for default/web:\n{metrics}"));
    assert!(connects >= 1.0, "{connects}");
    assert!(
        metrics.contains(&format!(
            "pier_ebpf_backend_connections_total{{backend=\"127.0.0.1:{port}\"}}"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("pier_ebpf_map_entries{map=\"pier_services\"} 1"),
        "{metrics}"
    );

    // A client connects in a loop (inside the cgroup) while the daemon is killed with -9 and
    // started again: no connect may fail.
    let looping = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs; i=0; fail=0; \
             while [ $i -lt 400 ]; do curl -s -m 2 -o /dev/null {url} || fail=$((fail+1)); i=$((i+1)); done; \
             echo FAILS $fail",
            cleanup.cgroup.display()
        ))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(150));
    let mut d = cleanup.children.remove(1);
    d.kill().unwrap();
    d.wait().unwrap();
    std::thread::sleep(Duration::from_millis(150));
    let _ = std::fs::remove_file(&socket);
    let d = daemon(tmp.path(), &cleanup);
    cleanup.children.push(d);
    wait_for(&socket);
    let out = looping.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&out.stdout).to_string();
    println!("connect loop across kill -9 and restart: {}", out.trim());
    assert_eq!(
        out.trim(),
        "FAILS 0",
        "no connect failed across the restart"
    );
    // The restarted daemon serves (and sweeps) the pinned state.
    for _ in 0..20 {
        assert_eq!(
            curl_in(&cleanup.cgroup, &url).as_deref(),
            Ok("e1"),
            "after the restart"
        );
    }

    // Uninstall removes the hooks and every pin.
    let mut d = cleanup.children.remove(1);
    d.kill().unwrap();
    d.wait().unwrap();
    let out = Command::new(PIER)
        .args(["ebpf", "detach", "--ebpf-pin-dir"])
        .arg(&cleanup.pin)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!cleanup.pin.exists());
    assert!(
        curl_in(&cleanup.cgroup, &url).is_err(),
        "no translation after detach"
    );
}

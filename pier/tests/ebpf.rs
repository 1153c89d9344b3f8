//! The daemon's socket-LB end to end, in a cgroup, pin directory and network namespace of
//! the test's own: a client in that cgroup reaches a ClusterIP with no proxy running, keeps
//! reaching it while the daemon is killed (-9) and restarted, and `pier ebpf detach` removes
//! everything; a later daemon of another store never runs beside the earlier one's hooks.
//! Needs root, cgroup2 and bpffs; skips with a reason otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::socket_lb::{daemon_with, log_file, privileged, wait_for, Cleanup};

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::PIER;

fn daemon(dir: &Path, cleanup: &Cleanup) -> Child {
    daemon_with(dir, cleanup, &["--no-proxy"])
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

/// Service `web` at `vip`:80 with one endpoint, 127.0.0.1:`port`.
fn web_yaml(vip: &str, port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  clusterIP: {vip}\n  ports: [{{name: http, port: 80}}]\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: web-1, labels: {{kubernetes.io/service-name: web}}}}\n\
         addressType: IPv4\nendpoints: [{{addresses: [127.0.0.1], conditions: {{ready: true}}}}]\nports: [{{name: http, port: {port}}}]\n"
    )
}

/// Curls `url` from the cgroup until the echo named `want` answers (bounded), then asserts
/// that it answers `n` times in a row.
fn wait_for_answer(cgroup: &Path, url: &str, want: &str, n: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = curl_in(cgroup, url);
    while last.as_deref() != Ok(want) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        last = curl_in(cgroup, url);
    }
    for _ in 0..n {
        assert_eq!(last.as_deref(), Ok(want), "{what}");
        last = curl_in(cgroup, url);
    }
}

/// A daemon killed when dropped, so a failing test leaves none behind.
struct Running(Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Kills a daemon.
fn stop_daemon(mut d: Running) {
    let mut child = d.0.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
}

/// What the daemons with state under `dir` logged.
fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default()
}

#[test]
fn a_later_daemon_of_another_store_never_runs_beside_the_earlier_hooks() {
    let Some(root) = privileged() else { return };
    let id = std::process::id();
    let tmp = tempfile::tempdir().unwrap();
    let mut cleanup = Cleanup::new(&root, tmp.path(), "pier-owner");
    let mut echo_port = |name: &str| {
        let mut command = Command::new(PIER);
        command.args(["echo", "--name", name, "--http", "127.0.0.1:0"]);
        let (echo, addrs) = common::spawn_echo(command);
        cleanup.children.push(echo);
        addrs["http"].port()
    };
    let (old_port, new_port) = (echo_port("old"), echo_port("new"));
    let vip = format!("10.253.{}.{}", id % 250, 1 + id % 200);
    let url = format!("http://{vip}/");

    // Store A's daemon, with the socket-LB: web goes to "old". It exits (as after a crash,
    // or `pier daemon` stopped): its hooks stay attached.
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let d = Running(Some(daemon(&a, &cleanup)));
    wait_for(&a.join("pier.sock"));
    common::apply_yaml(&a.join("pier.sock"), &web_yaml(&vip, old_port));
    wait_for_answer(&cleanup.cgroup, &url, "old", 3, "store A's socket-LB");
    stop_daemon(d);
    assert_eq!(
        curl_in(&cleanup.cgroup, &url).as_deref(),
        Ok("old"),
        "the hooks outlive the daemon"
    );

    // Store B's daemon with --no-ebpf gives the same ClusterIP to a service of its own, served
    // by its proxy on a VIP interface in the test's network namespace: the earlier hooks are
    // detached at start, so every request reaches B's endpoint.
    let d = Running(Some(daemon_with(
        &b,
        &cleanup,
        &["--no-ebpf", "--proxy-vips", "interface"],
    )));
    wait_for(&b.join("pier.sock"));
    common::apply_yaml(&b.join("pier.sock"), &web_yaml(&vip, new_port));
    wait_for_answer(
        &cleanup.cgroup,
        &url,
        "new",
        20,
        "store B's proxy, not A's hooks",
    );
    assert_eq!(
        pier_ebpf::pinned_owner(&cleanup.pin),
        None,
        "nothing pinned"
    );
    stop_daemon(d);
    let log = log_of(&b);
    assert!(log.contains("detaching the socket-LB"), "{log}");

    // Store A again, with the socket-LB: its hooks are back, for "old".
    let d = Running(Some(daemon(&a, &cleanup)));
    wait_for_answer(&cleanup.cgroup, &url, "old", 3, "store A's socket-LB again");
    stop_daemon(d);
    // Store B with the socket-LB: it replaces A's pins rather than adopting their services.
    let d = Running(Some(daemon(&b, &cleanup)));
    wait_for_answer(&cleanup.cgroup, &url, "new", 20, "store B's socket-LB");
    stop_daemon(d);
    let log = log_of(&b);
    assert!(log.contains("written for another store"), "{log}");
}

#[test]
fn daemon_socket_lb_serves_cluster_ips_and_survives_kill_9() {
    let Some(root) = privileged() else { return };
    let id = std::process::id();
    let tmp = tempfile::tempdir().unwrap();
    let mut cleanup = Cleanup::new(&root, tmp.path(), "pier-e2e");

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
    common::apply_yaml(&socket, &web_yaml(&vip, port));

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
    println!("daemon log:\n{}", log_of(tmp.path()));
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

#[test]
fn pier_up_takes_its_socket_lb_down_on_exit() {
    let Some(root) = privileged() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut cleanup = Cleanup::new(&root, tmp.path(), "pier-up");
    let manifest = tmp.path().join("svc.yaml");
    std::fs::write(&manifest, web_yaml("10.253.7.7", 9)).unwrap();
    let mut up = Command::new(PIER)
        .arg("up")
        .arg("-f")
        .arg(&manifest)
        .args([
            "--no-dns",
            "--no-proxy",
            "--no-runtime",
            "--admin",
            "127.0.0.1:0",
        ])
        .args(["--service-cidr", "10.253.0.0/16"])
        .arg("--ebpf-cgroup")
        .arg(&cleanup.cgroup)
        .arg("--ebpf-pin-dir")
        .arg(&cleanup.pin)
        .arg("--state-dir")
        .arg(tmp.path().join("state"))
        .arg("--socket")
        .arg(tmp.path().join("pier.sock"))
        .env("PIER_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(log_file(tmp.path()))
        .spawn()
        .unwrap();
    let stdout = up.stdout.take().unwrap();
    cleanup.children.push(up);
    let mut reader = std::io::BufReader::new(stdout);
    let mut out = String::new();
    let mut line = String::new();
    while !out.contains("Press Ctrl-C") {
        line.clear();
        if std::io::BufRead::read_line(&mut reader, &mut line).unwrap() == 0 {
            break;
        }
        out.push_str(&line);
    }
    assert!(
        pier_ebpf::pinned_owner(&cleanup.pin).is_some(),
        "attached while up: {out}\n{}",
        log_of(tmp.path())
    );
    // Still in `cleanup.children`, so a failure below leaves no `pier up` running.
    let up = cleanup.children.last_mut().unwrap();
    assert!(Command::new("kill")
        .args(["-TERM", &up.id().to_string()])
        .status()
        .unwrap()
        .success());
    let status = up.wait().unwrap();
    std::io::Read::read_to_string(&mut reader, &mut out).unwrap();
    assert!(status.success(), "{out}");
    assert!(out.contains("Removed the eBPF socket-LB"), "{out}");
    assert_eq!(
        pier_ebpf::pinned_owner(&cleanup.pin),
        None,
        "nothing left to translate the ClusterIPs a later run may reuse"
    );
}

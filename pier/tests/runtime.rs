//! The container engine end to end: images built, imported and pulled from a real registry,
//! containers on the bridge, limits, Deployments behind a service, restarts of the daemon.
//! Needs root (namespaces, mounts, cgroups, netns); skips with the reason otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A daemon running containers on its own bridge and pod network; on drop every container
/// is removed, the daemon killed and the bridge deleted.
struct Node {
    daemon: Option<Daemon>,
    dir: PathBuf,
    bridge: String,
    flags: Vec<String>,
}

fn out_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

impl Node {
    /// `n` picks the bridge `pier-rtN`, pods in `10.(240+n).0.0/16`, ClusterIPs in
    /// `10.(140+n).0.0/16` served on loopback with port offset 21000.
    fn start(dir: &Path, n: u8) -> Node {
        let bridge = format!("pier-rt{n}");
        let flags: Vec<String> = [
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
        let refs: Vec<&str> = flags.iter().map(String::as_str).collect();
        let daemon = Daemon::start_with(dir, &refs);
        Node {
            daemon: Some(daemon),
            dir: dir.to_path_buf(),
            bridge,
            flags,
        }
    }

    fn d(&self) -> &Daemon {
        self.daemon.as_ref().unwrap()
    }

    fn pier(&self, args: &[&str]) -> Output {
        self.d().pier(args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.pier(args);
        assert!(o.status.success(), "pier {args:?}: {}", out_text(&o));
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    fn fails(&self, args: &[&str]) -> String {
        let o = self.pier(args);
        assert!(
            !o.status.success(),
            "pier {args:?} should fail: {}",
            out_text(&o)
        );
        out_text(&o)
    }

    /// The sum of the daemon's metric lines that start with `prefix`.
    fn metric(&self, prefix: &str) -> f64 {
        let (_, body) = self.d().admin("/metrics");
        body.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    fn containers(&self) -> Vec<Value> {
        let v: Value = serde_json::from_str(&self.ok(&["ps", "-a", "-o", "json"])).unwrap();
        v["items"].as_array().cloned().unwrap_or_default()
    }

    fn container(&self, name: &str) -> Value {
        self.containers()
            .into_iter()
            .find(|c| c["name"] == name || c["id"] == name)
            .unwrap_or(Value::Null)
    }

    /// Builds `pier/echo:<tag>` from the pier binary under test.
    fn build_echo(&self, tag: &str) {
        self.ok(&[
            "image",
            "build",
            "-t",
            &format!("pier/echo:{tag}"),
            "--binary",
            PIER,
            "--path-in-image",
            "/usr/local/bin/pier",
            "--expose",
            "8080",
            "--",
            "echo",
            "--http",
            "0.0.0.0:8080",
            "--version",
            tag,
        ]);
    }

    /// kill -9 of the daemon and a fresh start on the same state (containers keep running).
    fn crash_and_restart(&mut self) {
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
        if self.daemon.is_some() {
            // Nothing here may panic (the test may be unwinding already). Deployments go
            // first, or their controller would replace the containers removed after.
            let items = |args: &[&str]| -> Vec<Value> {
                serde_json::from_slice::<Value>(&self.pier(args).stdout)
                    .ok()
                    .and_then(|v| v["items"].as_array().cloned())
                    .unwrap_or_default()
            };
            for d in items(&["get", "deployments", "-A", "-o", "json"]) {
                let (name, ns) = (&d["metadata"]["name"], &d["metadata"]["namespace"]);
                let ns = ns.as_str().unwrap_or("default");
                let _ = self.pier(&[
                    "delete",
                    "deployment",
                    name.as_str().unwrap_or_default(),
                    "-n",
                    ns,
                ]);
            }
            for c in items(&["ps", "-a", "-o", "json"]) {
                let _ = self.pier(&["rm", "-f", c["id"].as_str().unwrap_or_default()]);
            }
        }
        self.daemon.take();
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}

fn privileged(test: &str) -> bool {
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

fn curl(url: &str) -> Option<Value> {
    let o = Command::new("curl")
        .args(["-s", "-m", "3", url])
        .output()
        .ok()?;
    serde_json::from_slice(&o.stdout).ok()
}

fn wait_for(what: &str, secs: u64, f: impl FnMut() -> bool) {
    pier_testkit::wait_for(what, Duration::from_secs(secs), f);
}

fn leftovers(id: &str) -> Vec<String> {
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

#[test]
fn run_reach_logs_exec_publish_and_remove() {
    if !privileged("run_reach_logs_exec_publish_and_remove") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(tmp.path(), 1);
    node.build_echo("v1");
    assert!(node.ok(&["images"]).contains("pier/echo"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let id = node
        .ok(&[
            "run",
            "-d",
            "--name",
            "web",
            "-l",
            "app=web",
            "-e",
            "GREETING=hi",
            "--memory",
            "64m",
            "--cpus",
            "0.5",
            "-p",
            &format!("127.0.0.1:{port}:8080"),
            "pier/echo:v1",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64, "{id}");
    let c = node.container("web");
    assert_eq!(c["state"], "running");
    let ip = c["ip"].as_str().unwrap().to_string();
    assert!(ip.starts_with("10.241."), "{ip}");
    // Host to container over the bridge, and through the published port.
    let mut body = Value::Null;
    wait_for("the container's server", 10, || {
        body = curl(&format!("http://{ip}:8080/")).unwrap_or(Value::Null);
        !body.is_null()
    });
    assert_eq!(body["version"], "v1");
    assert_eq!(
        body["hostname"],
        &id[..12],
        "as Docker: the ID prefix is the host name"
    );
    assert_eq!(
        curl(&format!("http://127.0.0.1:{port}/")).unwrap()["version"],
        "v1"
    );
    // The container is a pod in the store, ready, with its IP.
    let pod = node.d().get_json(&["pods", "web"]);
    assert_eq!(pod["status"]["podIP"], ip.as_str());
    assert_eq!(pod["metadata"]["labels"]["app"], "web");
    // Logs, exec with the container's environment and confinement.
    assert!(node.ok(&["logs", "web"]).contains("http 0.0.0.0:8080"));
    let o = node.pier(&["exec", "web", "/usr/local/bin/pier", "--version"]);
    assert!(o.status.success(), "{}", out_text(&o));
    // Secure defaults: no-new-privileges, a seccomp filter and Docker's capability set.
    let status = std::fs::read_to_string(format!("/proc/{}/status", c["pid"])).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
            .unwrap_or_default()
    };
    assert_eq!(field("NoNewPrivs:"), "1");
    assert_eq!(field("Seccomp:"), "2", "filter mode");
    let caps = u64::from_str_radix(&field("CapEff:"), 16).unwrap();
    assert_eq!(caps & (1 << 21), 0, "no CAP_SYS_ADMIN");
    assert_ne!(caps & (1 << 10), 0, "CAP_NET_BIND_SERVICE kept");
    // Limits land in the cgroup.
    let limit = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/memory/pier/{id}/memory.limit_in_bytes"
    ))
    .or_else(|_| std::fs::read_to_string(format!("/sys/fs/cgroup/pier/{id}/memory.max")))
    .unwrap();
    assert_eq!(limit.trim(), (64u64 << 20).to_string());
    // A running container is removed only with -f; then nothing of it is left.
    assert!(node.fails(&["rm", "web"]).contains("running"));
    node.ok(&["rm", "-f", "web"]);
    assert!(node.containers().is_empty());
    assert_eq!(leftovers(&id), Vec::<String>::new());
    assert!(node.d().get_json(&["pods"])["items"]
        .as_array()
        .unwrap()
        .is_empty());

    // Bad input: a clear error and nothing half-created.
    let e = node.fails(&["run", "-d", "--name", "x", "nosuch/image:v9"]);
    assert!(
        e.contains("not found") && e.contains("nosuch/image:v9"),
        "{e}"
    );
    let e = node.fails(&["run", "-d", "--name", "x", "UPPER/Case"]);
    assert!(e.contains("invalid image reference"), "{e}");
    let e = node.fails(&["run", "-d", "--name", "x", "--memory", "1k", "pier/echo:v1"]);
    assert!(e.contains("memory limit"), "{e}");
    let e = node.fails(&["run", "-d", "--name", "x", "--cpus=0", "pier/echo:v1"]);
    assert!(e.contains("cpus"), "{e}");
    let e = node.fails(&["run", "-d", "--name", "x", "-u", "nosuch", "pier/echo:v1"]);
    assert!(e.contains("no user \"nosuch\""), "{e}");
    // A user named in the image's /etc/passwd runs with its uid and primary group.
    node.ok(&["run", "-d", "--name", "nob", "-u", "nobody", "pier/echo:v1"]);
    let pid = node.container("nob")["pid"].clone();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    for field in ["Uid:", "Gid:"] {
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        assert_eq!(line.split_whitespace().nth(1), Some("65534"), "{line}");
    }
    node.ok(&["rm", "-f", "nob"]);
    assert!(node.containers().is_empty(), "{:?}", node.containers());
    assert!(node.d().get_json(&["pods"])["items"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn memory_limit_is_enforced_by_the_oom_killer() {
    if !privileged("memory_limit_is_enforced_by_the_oom_killer") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(tmp.path(), 2);
    // dd allocates its whole block size: 256 MiB against a 32 MiB limit.
    node.ok(&["image", "build", "-t", "test/dd:v1", "--binary", "/bin/dd"]);
    node.ok(&[
        "run",
        "-d",
        "--name",
        "hog",
        "--memory",
        "32m",
        "test/dd:v1",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=256M",
        "count=4",
    ]);
    wait_for("the hog to be killed", 20, || {
        node.container("hog")["state"] == "exited"
    });
    let c = node.container("hog");
    assert_eq!(c["exit"]["code"], 137, "{c}");
    assert_eq!(c["exit"]["oomKilled"], true, "{c}");
    assert!(node.ok(&["ps", "-a"]).contains("OOMKilled"));
    assert_eq!(node.metric("pier_runtime_container_oom_kills_total"), 1.0);
    assert_eq!(node.metric("pier_runtime_container_starts_total"), 1.0);
    assert_eq!(
        node.metric("pier_runtime_containers{state=\"exited\"}"),
        1.0
    );
    assert!(node.metric("pier_runtime_container_start_seconds_count") >= 1.0);
}

#[test]
fn a_state_file_that_cannot_be_written_is_logged_and_counted_and_stop_still_works() {
    if !privileged("a_state_file_that_cannot_be_written_is_logged_and_counted_and_stop_still_works")
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(tmp.path(), 5);
    node.ok(&[
        "image",
        "build",
        "-t",
        "test/sleep:v1",
        "--binary",
        "/bin/sleep",
    ]);
    node.ok(&["run", "-d", "--name", "napper", "test/sleep:v1", "60"]);
    wait_for("napper to run", 10, || {
        node.container("napper")["state"] == "running"
    });
    assert_eq!(
        node.metric("pier_runtime_containers{state=\"running\"}"),
        1.0
    );
    let id = node.container("napper")["id"].as_str().unwrap().to_string();
    // state.json becomes a directory with something in it: renaming over it fails.
    let state = tmp
        .path()
        .join("state/runtime/containers")
        .join(&id)
        .join("state.json");
    assert!(state.is_file(), "{}", state.display());
    std::fs::remove_file(&state).unwrap();
    std::fs::create_dir(&state).unwrap();
    std::fs::write(state.join("blocker"), b"").unwrap();

    node.ok(&["stop", "-t", "1", "napper"]);
    assert_eq!(node.container("napper")["state"], "exited");
    assert!(
        node.metric("pier_runtime_failures_total{operation=\"save-state\"}") >= 1.0,
        "the failed write is counted"
    );
    node.ok(&["rm", "napper"]);
}

#[test]
fn a_pod_applied_to_the_store_runs_and_deleting_it_stops_its_container() {
    if !privileged("a_pod_applied_to_the_store_runs_and_deleting_it_stops_its_container") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(tmp.path(), 6);
    node.build_echo("v1");
    let manifest = tmp.path().join("pod.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: solo}\nspec:\n  containers:\n  - name: web\n    image: pier/echo:v1\n    args: [echo, --http, '0.0.0.0:8080', --name, solo]\n",
    )
    .unwrap();
    node.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    wait_for("the pod to run", 20, || {
        let pod: Value = serde_json::from_str(&node.ok(&["get", "pod", "solo", "-o", "json"]))
            .unwrap_or_default();
        pod["status"]["phase"] == "Running" && pod["status"]["podIP"].is_string()
    });
    assert_eq!(node.containers().len(), 1, "one container for the pod");
    node.ok(&["delete", "pod", "solo"]);
    wait_for("its container to be removed", 20, || {
        node.containers().is_empty()
    });
    wait_for("the pod to be gone", 10, || {
        !node.pier(&["get", "pod", "solo"]).status.success()
    });
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: web
        image: pier/echo:VERSION
        args: [echo, --http, '0.0.0.0:8080', --name, web, --version, VERSION]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /readyz, port: http}, periodSeconds: 1, failureThreshold: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http, appProtocol: http}]
";

/// Ready endpoint addresses of service `web`.
fn ready_endpoints(node: &Node) -> Vec<String> {
    let s = node
        .d()
        .get_json(&["endpointslices", "-l", "kubernetes.io/service-name=web"]);
    let mut out: Vec<String> = s["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|sl| sl["endpoints"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["conditions"]["ready"] == true)
        .filter_map(|e| e["addresses"][0].as_str().map(str::to_string))
        .collect();
    out.sort();
    out
}

/// Sends requests through the service VIP from a thread until told to stop; returns (ok, failed).
fn load(
    url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(u32, u32)> {
    std::thread::spawn(move || {
        let (mut ok, mut failed) = (0, 0);
        let deadline = Instant::now() + Duration::from_secs(120);
        while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
            let o = Command::new("curl")
                .args([
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "-m",
                    "5",
                    &url,
                ])
                .stderr(Stdio::null())
                .output();
            match o {
                Ok(o) if o.stdout == b"200" => ok += 1,
                _ => failed += 1,
            }
        }
        (ok, failed)
    })
}

#[test]
fn deployment_heals_rolls_out_without_loss_and_survives_a_daemon_crash() {
    if !privileged("deployment_heals_rolls_out_without_loss_and_survives_a_daemon_crash") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Node::start(tmp.path(), 3);
    node.build_echo("v1");
    node.build_echo("v2");
    node.d()
        .pier_stdin(&["apply", "-f", "-"], &DEPLOYMENT.replace("VERSION", "v1"));
    wait_for("3 ready endpoints", 30, || {
        ready_endpoints(&node).len() == 3
    });
    let first = ready_endpoints(&node);

    // kill -9 of one container: restarted in place, out of the endpoints meanwhile, back after.
    let victim = node.containers()[0].clone();
    let pid = victim["pid"].as_i64().unwrap();
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    wait_for("the killed pod to leave the ready endpoints", 10, || {
        ready_endpoints(&node).len() == 2
    });
    wait_for("the pod to be back", 30, || ready_endpoints(&node) == first);
    assert_eq!(
        node.container(victim["id"].as_str().unwrap())["restartCount"],
        1
    );

    // A failing readiness probe takes the endpoint out; passing again brings it back.
    let ip = first[0].clone();
    Command::new("curl")
        .args([
            "-s",
            "-X",
            "POST",
            &format!("http://{ip}:8080/readyz/disable"),
        ])
        .output()
        .unwrap();
    wait_for("the unready pod to leave the endpoints", 10, || {
        !ready_endpoints(&node).contains(&ip)
    });
    Command::new("curl")
        .args([
            "-s",
            "-X",
            "POST",
            &format!("http://{ip}:8080/readyz/enable"),
        ])
        .output()
        .unwrap();
    wait_for("the pod to be ready again", 10, || {
        ready_endpoints(&node).contains(&ip)
    });

    // Rolling update v1 -> v2 under continuous load through the service: no request lost.
    let vip = node.d().get_json(&["svc", "web"])["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    let octets: Vec<&str> = vip.split('.').collect();
    let url = format!(
        "http://127.{}.{}.{}:21080/",
        octets[1], octets[2], octets[3]
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loader = load(url.clone(), stop.clone());
    std::thread::sleep(Duration::from_millis(500));
    node.d()
        .pier_stdin(&["apply", "-f", "-"], &DEPLOYMENT.replace("VERSION", "v2"));
    wait_for("v2 everywhere", 90, || {
        let pods = node.d().get_json(&["pods"]);
        let items = pods["items"].as_array().cloned().unwrap_or_default();
        items.len() == 3
            && items.iter().all(|p| {
                p["spec"]["containers"][0]["image"] == "pier/echo:v2"
                    && p["metadata"]["deletionTimestamp"].is_null()
            })
            && ready_endpoints(&node).len() == 3
    });
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = loader.join().unwrap();
    println!("rolling update under load: {ok} requests ok, {failed} failed");
    assert!(ok > 50, "the load ran: {ok}");
    assert_eq!(failed, 0, "no request lost during the rollout ({ok} ok)");
    assert_eq!(curl(&url).unwrap()["version"], "v2");
    assert_eq!(
        node.containers().len(),
        3,
        "old containers removed: {:?}",
        node.containers()
    );

    // Daemon crash: containers keep running and keep their endpoints; the new daemon adopts them.
    let before: Vec<Value> = node.containers().iter().map(|c| c["id"].clone()).collect();
    let eps = ready_endpoints(&node);
    node.crash_and_restart();
    let after: Vec<Value> = node.containers().iter().map(|c| c["id"].clone()).collect();
    assert_eq!(before, after, "same containers after the restart");
    assert!(node.containers().iter().all(|c| c["state"] == "running"));
    assert_eq!(ready_endpoints(&node), eps);
    assert_eq!(curl(&url).unwrap()["version"], "v2");
    // Adopted containers are still supervised: a kill is still healed.
    let pid = node.containers()[0]["pid"].as_i64().unwrap();
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    wait_for("the adopted pod to come back", 30, || {
        node.containers()
            .iter()
            .any(|c| c["restartCount"] == 1 && c["state"] == "running")
            && ready_endpoints(&node).len() == 3
    });

    // Deleting the Deployment drains and removes its pods and containers.
    node.ok(&["delete", "deployment", "web"]);
    wait_for("pods gone", 30, || node.containers().is_empty());
    wait_for("pods deleted", 10, || {
        node.d().get_json(&["pods"])["items"]
            .as_array()
            .unwrap()
            .is_empty()
    });
}

/// A `docker-registry` (the CNCF distribution server) on loopback, stopped on drop.
struct Registry {
    child: std::process::Child,
    addr: String,
    storage: PathBuf,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_registry(dir: &Path) -> Registry {
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
            "version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            storage.display()
        ),
    )
    .unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
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

fn run_ok(cmd: &mut Command) {
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{cmd:?}: {}", out_text(&o));
}

/// An OCI layout made by umoci holding the pier binary and its libraries.
fn umoci_layout(dir: &Path) -> PathBuf {
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
    let ldd = Command::new("ldd").arg(PIER).output().unwrap();
    let mut files = vec![(PathBuf::from(PIER), rootfs.join("usr/local/bin/pier"))];
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let path = line
            .split("=>")
            .last()
            .unwrap_or("")
            .split(" (")
            .next()
            .unwrap_or("")
            .trim();
        if path.starts_with('/') {
            files.push((
                PathBuf::from(path),
                rootfs.join(path.trim_start_matches('/')),
            ));
        }
    }
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

#[test]
fn pull_from_a_registry_verifies_digests_and_import_reads_layouts() {
    if !privileged("pull_from_a_registry_verifies_digests_and_import_reads_layouts") {
        return;
    }
    for tool in ["docker-registry", "skopeo", "umoci"] {
        if Command::new("which")
            .arg(tool)
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            skip(&format!("pull test: {tool} is not installed"));
            return;
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let registry = start_registry(tmp.path());
    let layout = umoci_layout(tmp.path());
    let image = format!("{}/test/echo:v1", registry.addr);
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:v1", layout.display()))
            .arg(format!("docker://{image}")),
    );
    let node = Node::start(&tmp.path().join("node"), 4);

    // A corrupted layer in the registry: the pull fails on its digest and registers nothing.
    let blobs = registry.storage.join("docker/registry/v2/blobs/sha256");
    let mut biggest: Option<(u64, PathBuf)> = None;
    for prefix in std::fs::read_dir(&blobs).unwrap().flatten() {
        for blob in std::fs::read_dir(prefix.path()).unwrap().flatten() {
            let data = blob.path().join("data");
            let len = std::fs::metadata(&data).map(|m| m.len()).unwrap_or(0);
            if biggest.as_ref().is_none_or(|(l, _)| len > *l) {
                biggest = Some((len, data));
            }
        }
    }
    let layer = biggest.unwrap().1;
    let good = std::fs::read(&layer).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&layer, &bad).unwrap();
    let e = node.fails(&["pull", &image]);
    let l = e.to_lowercase();
    assert!(l.contains("digest") && l.contains("expected"), "{e}");
    assert!(!node.ok(&["images"]).contains("test/echo"));
    std::fs::write(&layer, &good).unwrap();

    // The real thing: pulled, run, reached.
    let out = node.ok(&["pull", &image]);
    assert!(out.contains("test/echo:v1"), "{out}");
    node.ok(&["run", "-d", "--name", "pulled", &image]);
    let ip = node.container("pulled")["ip"].as_str().unwrap().to_string();
    let mut body = Value::Null;
    wait_for("the pulled image's server", 10, || {
        body = curl(&format!("http://{ip}:8080/")).unwrap_or(Value::Null);
        !body.is_null()
    });
    assert_eq!(body["name"], "echo");
    // A second pull finds every blob cached.
    let o = node.pier(&["pull", &image]);
    assert!(out_text(&o).contains("already present"), "{}", out_text(&o));

    // Registry down, and an OCI layout imported from disk.
    let e = node.fails(&["pull", "127.0.0.1:1/test/echo:v1"]);
    assert!(e.contains("registry"), "{e}");
    node.ok(&[
        "image",
        "import",
        layout.to_str().unwrap(),
        "--tag",
        "imported/echo:v1",
    ]);
    assert!(node.ok(&["images"]).contains("imported/echo"));
    let e = node.fails(&["image", "rm", &image]);
    assert!(e.contains("used by a container"), "{e}");
}

//! The container engine end to end: containers on the bridge, logs, exec, published ports,
//! limits, failures handled, pods from the store. Needs root (namespaces, mounts, cgroups,
//! netns); skips with the reason otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::runtime::*;
use serde_json::Value;

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
    // The daemon keeps its heap off transparent huge pages; its containers get them back.
    assert_eq!(field("THP_enabled:"), "1", "the container's huge pages");
    let daemon_pid = node.d().child.as_ref().unwrap().id();
    let daemon = std::fs::read_to_string(format!("/proc/{daemon_pid}/status")).unwrap();
    assert!(
        daemon.contains("THP_enabled:\t0"),
        "the daemon's huge pages: {daemon}"
    );
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

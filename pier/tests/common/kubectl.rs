//! kubectl against a daemon whose API listens on TCP: a kubeconfig from `pier kubeconfig`
//! and a discovery cache per test.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{have, skip, Daemon};

/// kubectl with the test's kubeconfig and a discovery cache of its own.
pub(crate) struct Kubectl {
    pub(crate) kubeconfig: PathBuf,
    pub(crate) cache: PathBuf,
}

impl Kubectl {
    pub(crate) fn run(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs kubectl, which must succeed; its stdout.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs kubectl, which must fail; its stderr.
    pub(crate) fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "kubectl {args:?} succeeded");
        String::from_utf8(out.stderr).unwrap()
    }
}

pub(crate) fn start(dir: &Path) -> Option<(Daemon, Kubectl)> {
    start_with(dir, &[])
}

/// A daemon with the API on TCP (and `extra` flags), and kubectl configured for it.
pub(crate) fn start_with(dir: &Path, extra: &[&str]) -> Option<(Daemon, Kubectl)> {
    if !have("kubectl") {
        skip("kubectl is not installed");
        return None;
    }
    let mut flags = vec!["--no-proxy", "--api-listen", "127.0.0.1:0"];
    flags.extend_from_slice(extra);
    let daemon = Daemon::start_with(dir, &flags);
    let out = daemon.pier(&["kubeconfig", "--name", "tester"]);
    assert!(
        out.status.success(),
        "pier kubeconfig: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, &out.stdout).unwrap();
    let kubectl = Kubectl {
        kubeconfig,
        cache: dir.join("kube-cache"),
    };
    Some((daemon, kubectl))
}

pub(crate) fn names(list_json: &str) -> Vec<String> {
    let list: Value = serde_json::from_str(list_json).unwrap();
    let mut names: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// Waits until `f` holds of `kubectl get <args> -o json`; the last answer.
pub(crate) fn until(kubectl: &Kubectl, args: &[&str], f: impl Fn(&Value) -> bool) -> Value {
    until_within(kubectl, args, 20, f)
}

/// As `until`, for up to `secs` seconds.
pub(crate) fn until_within(
    kubectl: &Kubectl,
    args: &[&str],
    secs: u64,
    f: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        let v: Value = serde_json::from_str(&kubectl.ok(&all)).unwrap();
        if f(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "kubectl get {args:?}: {v:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Marks every live pod running and ready with an address, as the node agent would.
pub(crate) fn make_ready(kubectl: &Kubectl) {
    let pods: Value = serde_json::from_str(&kubectl.ok(&["get", "pods", "-o", "json"])).unwrap();
    for (i, p) in pods["items"].as_array().unwrap().iter().enumerate() {
        let ready = p["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
        if ready || !p["metadata"]["deletionTimestamp"].is_null() {
            continue;
        }
        let name = p["metadata"]["name"].as_str().unwrap();
        let patch = format!(
            r#"{{"status":{{"phase":"Running","podIP":"10.99.{}.{}","conditions":[{{"type":"Ready","status":"True"}}]}}}}"#,
            i / 200,
            i % 200 + 1
        );
        kubectl.ok(&["patch", "pod", name, "--type=merge", "-p", &patch]);
    }
}

/// Starts `kubectl port-forward POD PORTS` with `kubeconfig` (`websockets`: the value of
/// `KUBECTL_PORT_FORWARD_WEBSOCKETS`, which picks its transport) and returns it with the local
/// ports it printed; its output is drained so it never blocks.
pub(crate) fn port_forward(
    kubeconfig: &Path,
    pod: &str,
    websockets: &str,
    ports: &[&str],
) -> (Child, Vec<u16>) {
    let mut kubectl = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["port-forward", pod])
        .args(ports)
        .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", websockets)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(kubectl.stdout.take().unwrap()).lines();
    let mut local = Vec::new();
    while local.len() < ports.len() {
        let Some(Ok(line)) = lines.next() else {
            let out = kubectl.wait_with_output().unwrap();
            panic!(
                "kubectl port-forward ended: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        // "Forwarding from 127.0.0.1:PORT -> 8080"
        if let Some(rest) = line.strip_prefix("Forwarding from 127.0.0.1:") {
            local.push(rest.split(' ').next().unwrap().parse().unwrap());
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    (kubectl, local)
}

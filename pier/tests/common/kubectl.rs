//! kubectl against a daemon whose API listens on TCP: a kubeconfig from `pier kubeconfig`
//! and a discovery cache per test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

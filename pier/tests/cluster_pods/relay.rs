//! kubectl against one node for a pod another node runs: `logs`, `exec` and `port-forward`
//! reach it through the relay to that node's API, as the API server reaches a kubelet.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use super::common::cluster::ClusterNode;
use super::common::kubectl::port_forward;
use super::common::{have, skip};

/// From n1's API, for `only3` (which only n3 runs): logs, exec with stdin, and a forwarded
/// port; n1 counts each relayed request by what n3 answered.
pub(crate) fn kubectl_on_one_node_reaches_a_pod_on_another(nodes: &[ClusterNode], dir: &Path) {
    if !have("kubectl") {
        skip("kubectl is not installed: pod requests across nodes untested");
        return;
    }
    let kubeconfig = dir.join("kubeconfig-n1");
    std::fs::write(&kubeconfig, nodes[0].ok(&["kubeconfig"])).unwrap();
    let kubectl = |args: &[&str], stdin: Option<&str>| -> Output {
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            std::io::Write::write_all(&mut &input, text.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    };
    let text = |o: &Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };

    let logs = kubectl(&["logs", "only3", "--tail=5"], None);
    assert!(
        logs.status.success(),
        "kubectl logs: {}\nn1: {}\nn3: {}",
        text(&logs),
        nodes[0].log_tail(),
        nodes[2].log_tail()
    );
    assert!(text(&logs).contains("0.0.0.0:8080"), "{}", text(&logs));

    let exec = kubectl(
        &["exec", "only3", "--", "/usr/local/bin/pier", "--version"],
        None,
    );
    assert!(exec.status.success(), "kubectl exec: {}", text(&exec));
    assert!(
        String::from_utf8_lossy(&exec.stdout).starts_with("pier "),
        "{}",
        text(&exec)
    );
    let missing = kubectl(&["exec", "only3", "--", "/no/such/binary"], None);
    assert!(!missing.status.success(), "{}", text(&missing));

    let (mut forward, ports) = port_forward(&kubeconfig, "pod/only3", "true", &[":8080"]);
    let port = ports[0];
    let url = format!("http://127.0.0.1:{port}/");
    let answered = Command::new("curl")
        .args(["-sS", "-m", "5", &url, &url])
        .output()
        .unwrap();
    forward.kill().unwrap();
    forward.wait().unwrap();
    assert!(answered.status.success(), "{}", text(&answered));
    let body = String::from_utf8_lossy(&answered.stdout);
    assert_eq!(body.matches("\"name\":\"only3\"").count(), 2, "{body}");

    let metrics = nodes[0].curl_on_node(&format!("http://{}/metrics", nodes[0].admin_address()));
    for (subresource, code) in [("log", "200"), ("exec", "101"), ("portforward", "101")] {
        let series =
            format!("pier_api_pod_relays_total{{code=\"{code}\",subresource=\"{subresource}\"}}");
        let count: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        assert!(count >= 1, "n1 relayed no {subresource}: {metrics}");
    }
}

//! The Kubernetes API as the real kubectl sees it: a daemon with `--api-listen`, a kubeconfig
//! from `pier kubeconfig`, and kubectl's discovery, get, list, selectors and errors against
//! it; requests without a valid token are refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

mod common;
use common::*;

const OBJECTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Service
metadata: {name: web, labels: {app: web, tier: front}}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: db, labels: {app: db}}
spec:
  type: NodePort
  ports: [{port: 5432}]
---
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop, labels: {app: cart, tier: front}}
spec:
  ports: [{port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-1
  labels: {kubernetes.io/service-name: db}
addressType: IPv4
endpoints:
- addresses: ["127.0.0.1"]
  conditions: {ready: true}
ports:
- {port: 5432, protocol: TCP}
"#;

/// kubectl with the test's kubeconfig and a discovery cache of its own.
struct Kubectl {
    kubeconfig: PathBuf,
    cache: PathBuf,
}

impl Kubectl {
    fn run(&self, args: &[&str]) -> Output {
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
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs kubectl, which must fail; its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "kubectl {args:?} succeeded");
        String::from_utf8(out.stderr).unwrap()
    }
}

fn start(dir: &Path) -> Option<(Daemon, Kubectl)> {
    if !have("kubectl") {
        skip("kubectl is not installed");
        return None;
    }
    let daemon = Daemon::start_with(dir, &["--no-proxy", "--api-listen", "127.0.0.1:0"]);
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

fn names(list_json: &str) -> Vec<String> {
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

/// Discovery, version and the resource list as kubectl prints them.
#[test]
fn kubectl_discovers_pier() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_daemon, kubectl)) = start(dir.path()) else {
        return;
    };
    let version: Value = serde_json::from_str(&kubectl.ok(&["version", "-o", "json"])).unwrap();
    assert_eq!(version["serverVersion"]["major"], "1");
    assert!(version["serverVersion"]["gitVersion"]
        .as_str()
        .unwrap()
        .contains("pier"));
    let resources = kubectl.ok(&["api-resources", "--no-headers"]);
    for (name, short, group) in [
        ("services", "svc", "v1"),
        ("pods", "po", "v1"),
        ("nodes", "no", "v1"),
        ("deployments", "deploy", "apps/v1"),
        ("endpointslices", "", "discovery.k8s.io/v1"),
        ("leases", "", "coordination.k8s.io/v1"),
        ("httproutes", "", "gateway.networking.k8s.io/v1"),
    ] {
        let line = resources
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} not in api-resources:\n{resources}"));
        assert!(line.contains(group), "{line}");
        assert!(short.is_empty() || line.contains(short), "{line}");
    }
}

/// get and list through kubectl: one object, every namespace, jsonpath, label and field
/// selectors, cluster-scoped kinds, and the API server's wording for a missing object.
#[test]
fn kubectl_reads_objects() {
    let dir = tempfile::tempdir().unwrap();
    let Some((daemon, kubectl)) = start(dir.path()) else {
        return;
    };
    apply_yaml(&daemon.socket(), OBJECTS);
    let ip = kubectl.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    assert!(ip.starts_with("10.96."), "{ip}");
    let web: Value =
        serde_json::from_str(&kubectl.ok(&["get", "service", "web", "-o", "json"])).unwrap();
    assert_eq!(web["apiVersion"], "v1");
    assert_eq!(web["kind"], "Service");
    assert_eq!(web["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(
        names(&kubectl.ok(&["get", "svc", "-A", "-o", "json"])),
        ["cart", "db", "web"]
    );
    assert_eq!(
        names(&kubectl.ok(&["get", "svc", "-n", "shop", "-o", "json"])),
        ["cart"]
    );
    assert_eq!(
        names(&kubectl.ok(&["get", "svc", "-A", "-l", "tier=front", "-o", "json"])),
        ["cart", "web"]
    );
    assert_eq!(
        names(&kubectl.ok(&[
            "get",
            "svc",
            "-A",
            "--field-selector",
            "metadata.namespace!=shop,spec.type=NodePort",
            "-o",
            "json"
        ])),
        ["db"]
    );
    let slice = kubectl.ok(&[
        "get",
        "endpointslices",
        "db-1",
        "-o",
        "jsonpath={.endpoints[0].addresses[0]}",
    ]);
    assert_eq!(slice, "127.0.0.1");
    let namespaces = names(&kubectl.ok(&["get", "ns", "-o", "json"]));
    assert!(namespaces.contains(&"shop".to_string()), "{namespaces:?}");
    let node_names = kubectl.ok(&["get", "nodes", "-o", "name"]);
    assert!(node_names.starts_with("node/"), "{node_names}");
    let table = kubectl.ok(&["get", "svc", "-A"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAMESPACE",
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ],
        "{table}"
    );
    let db = table.lines().find(|l| l.contains(" db ")).unwrap();
    assert!(db.contains("NodePort") && db.contains("5432:3"), "{db}");
    let wide = kubectl.ok(&["get", "svc", "web", "-o", "wide"]);
    assert!(
        wide.contains("SELECTOR") && wide.contains("app=web"),
        "{wide}"
    );
    let nodes = kubectl.ok(&["get", "nodes"]);
    assert!(
        nodes.contains("Ready") && nodes.contains("leader"),
        "{nodes}"
    );
    let missing = kubectl.fails(&["get", "svc", "nope"]);
    assert!(missing.contains("services \"nope\" not found"), "{missing}");
    let bad = kubectl.fails(&["get", "svc", "--field-selector", "spec.nodeName=x"]);
    assert!(bad.contains("field label not supported"), "{bad}");
}

/// Without a token, with a wrong one, or with a revoked one, the API answers 401; plain
/// HTTP is not served at all.
#[test]
fn the_tcp_api_wants_a_valid_token() {
    let dir = tempfile::tempdir().unwrap();
    let Some((daemon, kubectl)) = start(dir.path()) else {
        return;
    };
    kubectl.ok(&["get", "ns"]);
    let status = daemon.try_status().unwrap();
    let address = status["apiAddress"].as_str().unwrap().to_string();
    let wrong = kubectl.fails(&["get", "ns", "--token", "pier_not-a-token"]);
    assert!(wrong.contains("Unauthorized"), "{wrong}");
    let anonymous = Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("https://{address}/api/v1/namespaces"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&anonymous.stdout), "401");
    let plain = Command::new("curl")
        .args(["-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://{address}/version"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&plain.stdout),
        "000",
        "plain HTTP gets no answer"
    );
    let listed = String::from_utf8(daemon.pier(&["token", "list"]).stdout).unwrap();
    assert!(listed.contains("tester"), "{listed}");
    let tokens = std::fs::read_to_string(dir.path().join("state/api/tokens.json")).unwrap();
    let kubeconfig = std::fs::read_to_string(&kubectl.kubeconfig).unwrap();
    let token = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: "))
        .unwrap();
    assert!(!tokens.contains(token), "only digests are stored");
    assert!(daemon.pier(&["token", "revoke", "tester"]).status.success());
    let revoked = kubectl.fails(&["get", "ns"]);
    assert!(revoked.contains("Unauthorized"), "{revoked}");
}

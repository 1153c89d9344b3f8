//! The Kubernetes API as the real kubectl sees it: a daemon with `--api-listen`, a kubeconfig
//! from `pier kubeconfig`, and kubectl's discovery, get, list, selectors and errors against
//! it; requests without a valid token are refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use serde_json::Value;

mod common;
use common::kubectl::*;
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

/// Discovery, version, the resource list and explain as kubectl prints them.
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
    // explain reads the reference schemas: field types, descriptions, nested fields.
    let ports = kubectl.ok(&["explain", "service.spec.ports"]);
    assert!(ports.contains("FIELD: ports <[]ServicePort>"), "{ports}");
    assert!(ports.contains("targetPort\t<IntOrString>"), "{ports}");
    assert!(ports.contains("port\t<integer> -required-"), "{ports}");
    let image = kubectl.ok(&["explain", "deploy.spec.template.spec.containers.image"]);
    assert!(image.contains("GROUP:      apps") && image.contains("Container image name"));
    let recursive = kubectl.ok(&["explain", "endpointslices", "--recursive"]);
    assert!(
        recursive.contains("addressType\t<string> -required-"),
        "{recursive}"
    );
    let missing = kubectl.fails(&["explain", "service.spec.nope"]);
    assert!(missing.contains("nope"), "{missing}");
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
    // Chunked lists (limit and continue) come back whole, in pages.
    let paged = kubectl.run(&["get", "svc", "-A", "--chunk-size=1", "-o", "name", "-v=6"]);
    let asked = String::from_utf8_lossy(&paged.stderr);
    assert_eq!(asked.matches("continue=").count(), 2, "{asked}");
    let mut paged: Vec<&str> = std::str::from_utf8(&paged.stdout)
        .unwrap()
        .lines()
        .collect();
    paged.sort_unstable();
    assert_eq!(paged, ["service/cart", "service/db", "service/web"]);
    let page: Value =
        serde_json::from_str(&kubectl.ok(&["get", "--raw", "/api/v1/services?limit=2"])).unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(page["metadata"]["remainingItemCount"], 1);
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
    let described = kubectl.ok(&["describe", "svc", "web"]);
    let words: Vec<String> = described
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    for line in [
        "Type: ClusterIP",
        "Port: http 80/TCP",
        "TargetPort: 8080/TCP",
        "Session Affinity: None",
        "Internal Traffic Policy: Cluster",
    ] {
        assert!(
            words.iter().any(|w| w == line),
            "{line:?} not in:\n{described}"
        );
    }
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

/// `kubectl get -w` prints a change as it happens; a raw watch from a revision streams the
/// events after it with bookmarks; one from a compacted revision ends with a 410 `Expired`
/// event, and a watch without a revision starts from the current objects.
#[test]
fn watches_follow_changes_and_expire_like_the_api_server() {
    let dir = tempfile::tempdir().unwrap();
    if !have("kubectl") {
        skip("kubectl is not installed");
        return;
    }
    let config = dir.path().join("pier.toml");
    std::fs::write(&config, "event_history = 8\n").unwrap();
    let config = config.to_str().unwrap().to_string();
    let daemon = Daemon::start_with(
        dir.path(),
        &[
            "--no-proxy",
            "--api-listen",
            "127.0.0.1:0",
            "--config",
            &config,
        ],
    );
    let out = daemon.pier(&["kubeconfig"]);
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, &out.stdout).unwrap();
    let kubectl = Kubectl {
        kubeconfig,
        cache: dir.path().join("kube-cache"),
    };
    let mut watching = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubectl.kubeconfig)
        .args(["get", "svc", "-w", "--request-timeout", "20s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(800));
    apply_yaml(&daemon.socket(), OBJECTS);
    let mut stdout = std::io::BufReader::new(watching.stdout.take().unwrap());
    let mut seen = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !(seen.contains("web") && seen.contains("db")) {
        assert!(
            std::time::Instant::now() < deadline,
            "kubectl -w printed:\n{seen}"
        );
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut stdout, &mut line).unwrap() == 0 {
            break;
        }
        seen.push_str(&line);
    }
    watching.kill().unwrap();
    watching.wait().unwrap();
    assert!(seen.starts_with("NAME"), "{seen}");
    assert!(
        !seen.contains("cart"),
        "another namespace's service: {seen}"
    );

    let status = daemon.try_status().unwrap();
    let address = status["apiAddress"].as_str().unwrap().to_string();
    let token = std::fs::read_to_string(dir.path().join("kubeconfig"))
        .unwrap()
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: ").map(str::to_string))
        .unwrap();
    let curl = |query: &str, seconds: &str| -> Vec<Value> {
        let out = Command::new("curl")
            .args(["-sk", "-m", seconds, "-H"])
            .arg(format!("Authorization: Bearer {token}"))
            .arg(format!(
                "https://{address}/api/v1/namespaces/default/services?{query}"
            ))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !query.contains("watch") {
            return vec![serde_json::from_str(&text).unwrap()];
        }
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let current = curl("watch=true&timeoutSeconds=1", "5");
    let added: Vec<&str> = current
        .iter()
        .map(|e| e["object"]["metadata"]["name"].as_str().unwrap())
        .collect();
    assert!(current.iter().all(|e| e["type"] == "ADDED"), "{current:?}");
    assert_eq!(added.len(), 2, "{added:?}");
    let list = &curl("", "5")[0];
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(rv.parse::<u64>().unwrap() > 0, "{list}");
    apply_yaml(
        &daemon.socket(),
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, labels: {app: web, tier: front, v: '2'}}\nspec:\n  selector: {app: web}\n  ports: [{name: http, port: 80, targetPort: 8080}]\n",
    );
    let events = curl(
        &format!("watch=1&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=7"),
        "12",
    );
    assert_eq!(events[0]["type"], "MODIFIED", "{events:?}");
    assert_eq!(events[0]["object"]["metadata"]["labels"]["v"], "2");
    let bookmark = events
        .iter()
        .find(|e| e["type"] == "BOOKMARK")
        .expect("a bookmark");
    assert!(
        bookmark["object"]["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= rv.parse().unwrap()
    );
    // The log is trimmed 1024 events at a time: one write of 1100 objects goes past it.
    let churn: String = (0..1100)
        .map(|i| format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: churn-{i}}}\n---\n"))
        .collect();
    apply_yaml(&daemon.socket(), &churn);
    let expired = curl("watch=true&resourceVersion=2", "5");
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert_eq!(expired[0]["type"], "ERROR");
    assert_eq!(expired[0]["object"]["code"], 410);
    assert_eq!(expired[0]["object"]["reason"], "Expired");
}

/// `kubectl scale` goes through the Deployment's `scale` subresource: the desired replicas
/// change, the Scale's status counts the pods the controller then makes, and `kubectl
/// describe` shows the controller's Events for them.
#[test]
fn kubectl_scales_a_deployment() {
    let dir = tempfile::tempdir().unwrap();
    // The pods stay objects: the Scale counts them, no engine needs to run them.
    let Some((daemon, kubectl)) = start_with(dir.path(), &["--no-runtime"]) else {
        return;
    };
    apply_yaml(
        &daemon.socket(),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: app, image: example.invalid/app:1}]}\n",
    );
    let resources = kubectl.ok(&["api-resources", "--api-group", "apps", "-o", "name"]);
    assert!(resources.contains("deployments.apps"), "{resources}");
    let out = kubectl.ok(&["scale", "deploy", "web", "--replicas=3"]);
    assert!(out.contains("deployment.apps/web scaled"), "{out}");
    assert_eq!(
        kubectl.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "3"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let scale: Value = serde_json::from_str(&kubectl.ok(&[
            "get",
            "--raw",
            "/apis/apps/v1/namespaces/default/deployments/web/scale",
        ]))
        .unwrap();
        assert_eq!(scale["kind"], "Scale");
        assert_eq!(scale["spec"]["replicas"], 3);
        assert_eq!(scale["status"]["selector"], "app=web");
        if scale["status"]["replicas"] == 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{scale}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let stale = dir.path().join("stale-scale.json");
    std::fs::write(
        &stale,
        r#"{"kind":"Scale","apiVersion":"autoscaling/v1","metadata":{"name":"web","namespace":"default","resourceVersion":"1"},"spec":{"replicas":5}}"#,
    )
    .unwrap();
    let refused = kubectl.fails(&[
        "replace",
        "--raw",
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
        "-f",
        stale.to_str().unwrap(),
    ]);
    assert!(
        refused.contains("the object has been modified"),
        "{refused}"
    );
    kubectl.ok(&["scale", "deploy", "web", "--replicas=0"]);
    assert_eq!(
        kubectl.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "0"
    );
    // The controller's Events tell the story in `kubectl describe`.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let described = kubectl.ok(&["describe", "deploy", "web"]);
        let events = described.split("Events:").nth(1).unwrap_or("");
        let created = events.matches("Created pod: web-").count();
        if created == 3 && events.matches("Deleted pod: web-").count() == 3 {
            assert!(events.contains("SuccessfulCreate"), "{described}");
            assert!(events.contains("deployment-controller"), "{described}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{described}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

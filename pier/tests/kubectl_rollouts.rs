//! Argo Rollouts through kubectl: the Gateway API plugin's example manifests apply unchanged,
//! `kubectl get rollouts` prints Argo's columns, and the controller pins the Services, moves
//! the weights of an HTTPRoute or a TCPRoute and adds and removes header routes as the steps
//! say. No engine runs: pods are made ready by hand, as a node agent would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::kubectl::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/argo");

fn weights(route: &Value, rule: usize) -> Vec<(String, i64)> {
    route["spec"]["rules"][rule]["backendRefs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap().to_string(),
                b["weight"].as_i64().unwrap_or(1),
            )
        })
        .collect()
}

fn pin(kubectl: &Kubectl, svc: &str) -> String {
    kubectl.ok(&[
        "get",
        "svc",
        svc,
        "-o",
        "jsonpath={.spec.selector.rollouts-pod-template-hash}",
    ])
}

#[test]
fn argo_examples_apply_unchanged_and_their_header_routes_and_weights_move() {
    let dir = tempfile::tempdir().unwrap();
    let Some((daemon, kubectl)) = start_with(dir.path(), &["--no-runtime"]) else {
        return;
    };
    let applied = kubectl.ok(&["apply", "-f", &format!("{FIXTURES}/header-based")]);
    assert!(
        applied.contains("rollout.argoproj.io/rollouts-demo created"),
        "{applied}"
    );
    assert!(
        applied.contains("httproute.gateway.networking.k8s.io/argo-rollouts-http-route created"),
        "{applied}"
    );
    let table = kubectl.ok(&["get", "ro"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE"
        ]
    );

    // The first template is stable at once: five pods, both Services pinned to it, all
    // traffic on stable.
    until(&kubectl, &["pods"], |v| {
        v["items"].as_array().is_some_and(|p| p.len() == 5)
    });
    make_ready(&kubectl);
    let ro = until(&kubectl, &["ro", "rollouts-demo"], |v| {
        v["status"]["phase"] == "Healthy"
    });
    let stable = ro["status"]["stableRS"].as_str().unwrap().to_string();
    assert_eq!(pin(&kubectl, "argo-rollouts-stable-service"), stable);
    assert_eq!(pin(&kubectl, "argo-rollouts-canary-service"), stable);
    let route = until(&kubectl, &["httproute", "argo-rollouts-http-route"], |r| {
        r["spec"]["rules"][0]["backendRefs"][0]["weight"] == 100
    });
    assert_eq!(
        weights(&route, 0),
        [
            ("argo-rollouts-stable-service".to_string(), 100),
            ("argo-rollouts-canary-service".to_string(), 0)
        ]
    );

    // A new image: paused at the first step, the canary Service pinned to the new pods.
    kubectl.ok(&["patch", "ro", "rollouts-demo", "--type=json", "-p",
        r#"[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"argoproj/rollouts-demo:blue"}]"#]);
    let ro = until(&kubectl, &["ro", "rollouts-demo"], |v| {
        v["status"]["phase"] == "Paused" && v["status"]["currentStepIndex"] == 0
    });
    let canary = ro["status"]["currentPodHash"].as_str().unwrap().to_string();
    assert_ne!(canary, stable);
    assert_eq!(pin(&kubectl, "argo-rollouts-canary-service"), canary);
    let wide = kubectl.ok(&["get", "ro", "-o", "wide"]);
    assert!(wide.contains("Paused"), "{wide}");

    // Promoted: setCanaryScale makes one canary pod; once it serves, the header route
    // sends X-Test: test to the canary alone, and the next pause holds.
    let promoted = common::stdout(&daemon.pier(&["rollout", "promote", "ro/rollouts-demo"]));
    assert!(promoted.contains("promoted"), "{promoted}");
    until(
        &kubectl,
        &[
            "pods",
            "-l",
            &format!("rollouts-pod-template-hash={canary}"),
        ],
        |v| v["items"].as_array().is_some_and(|p| p.len() == 1),
    );
    make_ready(&kubectl);
    until(&kubectl, &["ro", "rollouts-demo"], |v| {
        v["status"]["currentStepIndex"] == 3
    });
    let route = until(&kubectl, &["httproute", "argo-rollouts-http-route"], |r| {
        r["spec"]["rules"]
            .as_array()
            .is_some_and(|rules| rules.len() == 2)
    });
    let rule = &route["spec"]["rules"][1];
    assert_eq!(rule["name"], "argo-rollouts");
    assert_eq!(rule["matches"][0]["headers"][0]["name"], "X-Test");
    assert_eq!(rule["matches"][0]["headers"][0]["value"], "test");
    assert_eq!(
        weights(&route, 1),
        [("argo-rollouts-canary-service".to_string(), 1)]
    );
    assert_eq!(
        weights(&route, 0)[1].1,
        0,
        "no weighted traffic on the canary"
    );

    // Promoted again: the header route goes.
    daemon.pier(&["rollout", "promote", "ro/rollouts-demo"]);
    until(&kubectl, &["httproute", "argo-rollouts-http-route"], |r| {
        r["spec"]["rules"]
            .as_array()
            .is_some_and(|rules| rules.len() == 1)
    });

    // The TCPRoute example: weights per connection, moved by setWeight once the canary serves.
    kubectl.ok(&[
        "delete",
        "-f",
        &format!("{FIXTURES}/header-based/rollout.yaml"),
    ]);
    let applied = kubectl.ok(&["apply", "-f", &format!("{FIXTURES}/tcproute")]);
    assert!(
        applied.contains("tcproute.gateway.networking.k8s.io/argo-rollouts-tcp-route created"),
        "{applied}"
    );
    until(&kubectl, &["tcproute", "argo-rollouts-tcp-route"], |r| {
        r["spec"]["rules"][0]["backendRefs"][0]["weight"] == 100
    });
    make_ready(&kubectl);
    until(&kubectl, &["ro", "rollouts-demo"], |v| {
        v["status"]["phase"] == "Healthy"
    });
    kubectl.ok(&["patch", "ro", "rollouts-demo", "--type=json", "-p",
        r#"[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"argoproj/rollouts-demo:blue"}]"#]);
    // 30% of 5 replicas: two canary pods, and no traffic until they serve.
    until(&kubectl, &["pods"], |v| {
        let blue = v["items"].as_array().into_iter().flatten().filter(|p| {
            p["spec"]["containers"][0]["image"] == "argoproj/rollouts-demo:blue"
                && p["metadata"]["deletionTimestamp"].is_null()
        });
        blue.count() == 2
    });
    let route: Value = serde_json::from_str(&kubectl.ok(&[
        "get",
        "tcproute",
        "argo-rollouts-tcp-route",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(weights(&route, 0)[1].1, 0);
    make_ready(&kubectl);
    let route = until(&kubectl, &["tcproute", "argo-rollouts-tcp-route"], |r| {
        r["spec"]["rules"][0]["backendRefs"][1]["weight"] == 30
    });
    assert_eq!(weights(&route, 0)[0].1, 70);
    let ro = until(&kubectl, &["ro", "rollouts-demo"], |v| {
        v["status"]["phase"] == "Paused"
    });
    assert_eq!(ro["status"]["canary"]["weights"]["canary"]["weight"], 30);

    // The same in Prometheus' terms.
    let (_, metrics) = daemon.admin("/metrics");
    for line in [
        r#"pier_rollout_canary_weight{namespace="default",rollout="rollouts-demo"} 30"#,
        r#"pier_rollout_info{namespace="default",phase="Paused",rollout="rollouts-demo"} 1"#,
        r#"pier_rollout_step{namespace="default",rollout="rollouts-demo"} 1"#,
        r#"pier_rollout_steps{namespace="default",rollout="rollouts-demo"} 8"#,
        r#"pier_rollout_replicas{namespace="default",rollout="rollouts-demo",state="desired"} 5"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    assert!(
        !metrics.contains(r#"phase="Healthy",rollout="rollouts-demo""#),
        "{metrics}"
    );
}

#[test]
fn argo_analysis_examples_apply_and_run_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let Some((daemon, kubectl)) = start_with(dir.path(), &["--no-runtime"]) else {
        return;
    };
    for f in [
        "header-based/services.yaml",
        "header-based/httproute.yaml",
        "analysis",
    ] {
        kubectl.ok(&["apply", "-f", &format!("{FIXTURES}/{f}")]);
    }
    let templates = kubectl.ok(&["get", "analysistemplates"]);
    assert!(templates.contains("success-rate"), "{templates}");
    let cluster = kubectl.ok(&["get", "cat"]);
    assert!(cluster.contains("web-check"), "{cluster}");
    until(&kubectl, &["pods"], |v| {
        v["items"].as_array().is_some_and(|p| p.len() == 5)
    });
    make_ready(&kubectl);
    until(&kubectl, &["ro", "guestbook"], |v| {
        v["status"]["phase"] == "Healthy"
    });

    // A new image: 20%, then a ten-minute pause, promoted past; at 40% the background
    // analysis starts with both templates and the argument filled in.
    kubectl.ok(&["patch", "ro", "guestbook", "--type=json", "-p",
        r#"[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"argoproj/rollouts-demo:blue"}]"#]);
    let ro = until(&kubectl, &["ro", "guestbook"], |v| {
        v["status"]["currentStepIndex"] == 0
    });
    let hash = ro["status"]["currentPodHash"].as_str().unwrap().to_string();
    until(&kubectl, &["pods"], |v| {
        v["items"].as_array().is_some_and(|p| p.len() == 6)
    });
    make_ready(&kubectl);
    until(&kubectl, &["ro", "guestbook"], |v| {
        v["status"]["currentStepIndex"] == 1
    });
    daemon.pier(&["rollout", "promote", "ro/guestbook"]);
    until(&kubectl, &["pods"], |v| {
        v["items"].as_array().is_some_and(|p| p.len() == 7)
    });
    make_ready(&kubectl);
    let name = format!("guestbook-{hash}");
    let run = until(&kubectl, &["ar", &name], |r| {
        r["status"]["metricResults"][0]["measurements"][0]["phase"] == "Error"
    });
    let query = run["spec"]["metrics"][0]["provider"]["prometheus"]["query"]
        .as_str()
        .unwrap();
    assert!(
        query.contains(r#"destination_service=~"guestbook-svc.default.svc.cluster.local""#),
        "{query}"
    );
    let url = run["spec"]["metrics"][1]["provider"]["web"]["url"]
        .as_str()
        .unwrap();
    assert!(
        url.ends_with("?service=guestbook-svc.default.svc.cluster.local"),
        "{url}"
    );
    assert_eq!(
        run["status"]["phase"], "Running",
        "one error is within the limit"
    );
    assert_eq!(run["metadata"]["ownerReferences"][0]["kind"], "Rollout");
    let ro = until(&kubectl, &["ro", "guestbook"], |v| {
        v["status"]["currentStepIndex"] == 3
    });
    assert_eq!(
        ro["status"]["canary"]["currentBackgroundAnalysisRunStatus"]["name"],
        name.as_str()
    );
    let table = kubectl.ok(&["get", "ar"]);
    assert!(table.lines().next().unwrap().contains("STATUS"), "{table}");

    // Aborted: the background run is terminated and ends as Argo ends it.
    daemon.pier(&["rollout", "abort", "ro/guestbook"]);
    let run = until(&kubectl, &["ar", &name], |r| {
        r["status"]["phase"] == "Successful"
    });
    assert_eq!(run["spec"]["terminate"], true);
    assert_eq!(run["status"]["message"], "Run Terminated");
}

#[test]
fn a_rollout_naming_no_route_gets_one_managed_in_front_of_its_stable_service() {
    let dir = tempfile::tempdir().unwrap();
    let Some((daemon, kubectl)) = start_with(dir.path(), &["--no-runtime"]) else {
        return;
    };
    kubectl.ok(&[
        "apply",
        "-f",
        &format!("{FIXTURES}/header-based/services.yaml"),
    ]);
    let rollout = "apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: demo}
spec:
  replicas: 4
  selector: {matchLabels: {app: rollouts-demo}}
  template:
    metadata: {labels: {app: rollouts-demo}}
    spec:
      containers: [{name: demo, image: 'argoproj/rollouts-demo:red', ports: [{name: http, containerPort: 8080}]}]
  strategy:
    canary:
      stableService: argo-rollouts-stable-service
      canaryService: argo-rollouts-canary-service
      steps: [{setWeight: 25}, {pause: {}}]
";
    let file = dir.path().join("rollout.yaml");
    std::fs::write(&file, rollout).unwrap();
    kubectl.ok(&["apply", "-f", file.to_str().unwrap()]);
    until(&kubectl, &["pods"], |v| {
        v["items"].as_array().is_some_and(|p| p.len() == 4)
    });
    make_ready(&kubectl);
    let route = until(&kubectl, &["tcproute", "demo-managed"], |r| {
        r["spec"]["rules"][0]["backendRefs"][0]["weight"] == 100
    });
    assert_eq!(
        route["spec"]["parentRefs"][0]["name"],
        "argo-rollouts-stable-service"
    );
    assert_eq!(route["metadata"]["ownerReferences"][0]["name"], "demo");
    std::fs::write(&file, rollout.replace(":red", ":blue")).unwrap();
    kubectl.ok(&["apply", "-f", file.to_str().unwrap()]);
    until(&kubectl, &["pods"], |v| {
        v["items"].as_array().is_some_and(|p| p.len() == 5)
    });
    make_ready(&kubectl);
    let route = until(&kubectl, &["tcproute", "demo-managed"], |r| {
        r["spec"]["rules"][0]["backendRefs"][1]["weight"] == 25
    });
    assert_eq!(
        weights(&route, 0),
        [
            ("argo-rollouts-stable-service".to_string(), 75),
            ("argo-rollouts-canary-service".to_string(), 25)
        ]
    );
    // The dataplane serves the split at the stable Service's address: the stable Service's
    // view carries the managed TCPRoute with both backends weighted.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, snapshot) = daemon.admin("/snapshot");
        let snapshot: Value = serde_json::from_str(&snapshot).unwrap();
        let stable = snapshot["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"]["name"] == "argo-rollouts-stable-service")
            .cloned()
            .unwrap_or_default();
        let split: Vec<(String, u64)> = stable["l4Routes"][0]["backends"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|b| {
                (
                    b["service"]["name"].as_str().unwrap_or("").to_string(),
                    b["weight"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        if split
            == [
                ("argo-rollouts-stable-service".to_string(), 75),
                ("argo-rollouts-canary-service".to_string(), 25),
            ]
        {
            assert_eq!(stable["l4Routes"][0]["name"], "demo-managed");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the split is not in the snapshot:\n{snapshot}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    kubectl.ok(&["delete", "ro", "demo"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while kubectl
        .run(&["get", "tcproute", "demo-managed"])
        .status
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "the managed route outlived its Rollout"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A Rollout taking its template from a Deployment (`workloadRef`) with `scaleDown:
/// onsuccess`: once the Rollout is Healthy, the Deployment is scaled to zero, as Argo does.
#[test]
fn a_workload_ref_deployment_is_scaled_down_once_the_rollout_is_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_daemon, kubectl)) = start_with(dir.path(), &["--no-runtime"]) else {
        return;
    };
    let manifests = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: 'argoproj/rollouts-demo:red'}]}
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: web, scaleDown: onsuccess}
  strategy:
    canary:
      steps: [{setWeight: 50}]
";
    let file = dir.path().join("workload-ref.yaml");
    std::fs::write(&file, manifests).unwrap();
    kubectl.ok(&["apply", "-f", file.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        make_ready(&kubectl);
        let replicas = kubectl.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]);
        let phase = kubectl.ok(&["get", "ro", "web", "-o", "jsonpath={.status.phase}"]);
        if replicas == "0" {
            assert_eq!(phase, "Healthy");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "deployment at {replicas}, rollout {phase}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        manifests.replace("scaleDown: onsuccess", "scaleDown: sometimes"),
    )
    .unwrap();
    let refused = kubectl.fails(&["apply", "-f", bad.to_str().unwrap()]);
    assert!(refused.contains("spec.workloadRef.scaleDown"), "{refused}");
}

//! Argo Rollouts on the engine: a canary of real containers behind an HTTPRoute steps
//! 20 → 50 → 100 under continuous load with no failed request and the split the weights say,
//! is aborted back to stable at once and retried, and is promoted past every step. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::canary::{front_url, services_and_route};
use common::clients::Clients;
use common::runtime::*;
use serde_json::Value;

/// The Rollout whose template runs `pier/echo:VERSION` (behind `services_and_route("web")`).
const MANIFESTS: &str = "apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  replicas: 2
  revisionHistoryLimit: 2
  selector: {matchLabels: {app: web}}
  strategy:
    canary:
      canaryService: web-canary
      stableService: web-stable
      abortScaleDownDelaySeconds: 2
      scaleDownDelaySeconds: 2
      trafficRouting:
        plugins:
          argoproj-labs/gatewayAPI: {httpRoute: web-route, namespace: default}
      steps:
      - setWeight: 20
      - pause: {}
      - setWeight: 50
      - pause: {}
      - setWeight: 100
      - pause: {}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: web
        image: pier/echo:VERSION
        args: [echo, --http, '0.0.0.0:8080', --name, VERSION, --version, VERSION]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /readyz, port: http}, periodSeconds: 1, failureThreshold: 1}
";

fn rollout(node: &Node) -> Value {
    node.d().get_json(&["rollout", "web"])
}

/// Waits until the rollout is at step `index` in `phase`.
fn wait_step(node: &Node, index: i64, phase: &str) {
    wait_for(&format!("step {index}, {phase}"), 90, || {
        let s = &rollout(node)["status"];
        s["currentStepIndex"] == index && s["phase"] == phase
    });
}

#[test]
fn a_canary_steps_aborts_retries_and_promotes_under_load() {
    if !privileged("a_canary_steps_aborts_retries_and_promotes_under_load") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(tmp.path(), 8);
    for v in ["v1", "v2", "v3"] {
        node.build_echo(v);
    }
    let apply = |v: &str| {
        let out = node.d().pier_stdin(
            &["apply", "-f", "-"],
            &(services_and_route("web") + "---\n" + MANIFESTS).replace("VERSION", v),
        );
        assert!(out.status.success(), "{}", out_text(&out));
    };
    apply("v1");
    let first = node.ok(&["rollout", "status", "ro/web", "--timeout", "90s"]);
    assert!(first.contains("Healthy"), "{first}");
    let url = front_url(&node, "web");
    let mut clients = Clients::new(url);
    assert_eq!(clients.share("v1", 50), 100.0);

    // The client loop runs for the whole release; every request must succeed.
    clients.start();
    apply("v2");
    wait_step(&node, 1, "Paused");
    let pin = |svc: &str| {
        node.d().get_json(&["svc", svc])["spec"]["selector"]["rollouts-pod-template-hash"].clone()
    };
    assert_ne!(
        pin("web-stable"),
        pin("web-canary"),
        "each Service is pinned to its own pods"
    );
    for (step, weight) in [(1, 20.0), (3, 50.0), (5, 100.0)] {
        wait_step(&node, step, "Paused");
        let seen = clients.share("v2", 400);
        println!("setWeight {weight}: {seen:.1}% of requests on the canary");
        assert!((seen - weight).abs() <= 3.0, "{seen} at setWeight {weight}");
        node.ok(&["rollout", "promote", "ro/web"]);
    }
    let done = node.ok(&["rollout", "status", "ro/web", "--timeout", "90s"]);
    assert!(done.contains("Healthy"), "{done}");
    let status = &rollout(&node)["status"];
    assert_eq!(status["stableRS"], status["currentPodHash"]);
    assert_eq!(status["canary"]["weights"]["canary"]["weight"], 0);
    let images = |node: &Node| -> Vec<String> {
        node.d().get_json(&["pods"])["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                p["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect()
    };
    wait_for(
        "the old stable pods to go after the scale-down delay",
        30,
        || images(&node) == ["pier/echo:v2", "pier/echo:v2"],
    );
    clients.stop();
    println!(
        "release v1 -> v2 under load: {} requests, {} failed",
        clients.total,
        clients.failures.len()
    );
    assert!(clients.total > 1000, "the load ran: {}", clients.total);
    assert!(
        clients.failures.is_empty(),
        "{:?}",
        &clients.failures[..clients.failures.len().min(5)]
    );

    // A release aborted by hand: all traffic on stable at once, the canary gone after
    // abortScaleDownDelaySeconds, the rollout Degraded; retry starts it again.
    apply("v3");
    wait_step(&node, 1, "Paused");
    assert!((clients.share("v3", 200) - 20.0).abs() <= 3.0);
    node.ok(&["rollout", "abort", "ro/web"]);
    wait_for("the abort to take effect", 10, || {
        rollout(&node)["status"]["phase"] == "Degraded"
    });
    assert_eq!(clients.share("v2", 200), 100.0);
    let degraded = node.fails(&["rollout", "status", "ro/web", "--timeout", "5s"]);
    assert!(degraded.contains("RolloutAborted"), "{degraded}");
    wait_for("the canary pods to go", 30, || {
        images(&node).iter().all(|i| i == "pier/echo:v2")
    });
    node.ok(&["rollout", "retry", "ro/web"]);
    wait_step(&node, 1, "Paused");
    assert!((clients.share("v3", 200) - 20.0).abs() <= 3.0);
    node.ok(&["rollout", "promote", "ro/web", "--full"]);
    let done = node.ok(&["rollout", "status", "ro/web", "--timeout", "90s"]);
    assert!(done.contains("Healthy"), "{done}");
    assert_eq!(clients.share("v3", 100), 100.0);
    let events = node.ok(&["get", "events"]);
    assert!(events.contains("TrafficWeightUpdated"), "{events}");
}

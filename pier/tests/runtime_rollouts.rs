//! Argo Rollouts on the engine: a canary of real containers behind an HTTPRoute steps
//! 20 → 50 → 100 under continuous load with no failed request and the split the weights say,
//! is aborted back to stable at once and retried, and is promoted past every step. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::proxy::{load, Tally};
use common::runtime::*;
use serde_json::Value;

/// The Services and HTTPRoute as the Gateway API plugin's examples write them (a front
/// Service the route attaches to, GAMMA style, and stable and canary Services behind it),
/// and the Rollout whose template runs `pier/echo:VERSION`.
const MANIFESTS: &str = "apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http, appProtocol: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-stable}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http, appProtocol: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-canary}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http, appProtocol: http}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: HTTPRoute
metadata: {name: web-route}
spec:
  parentRefs: [{group: core, kind: Service, name: web, port: 80}]
  rules:
  - backendRefs:
    - {group: core, kind: Service, name: web-stable, port: 80}
    - {group: core, kind: Service, name: web-canary, port: 80}
---
apiVersion: argoproj.io/v1alpha1
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

/// The client loop through the front Service: runs in the background across transitions,
/// and at each pause alone for a measured window, so the split it sees is exact. Failures
/// and totals of every request are kept.
struct Clients {
    rt: tokio::runtime::Runtime,
    url: String,
    running: Option<(Arc<AtomicBool>, tokio::task::JoinHandle<Tally>)>,
    total: usize,
    failures: Vec<String>,
}

impl Clients {
    fn new(url: String) -> Clients {
        Clients {
            rt: tokio::runtime::Runtime::new().unwrap(),
            url,
            running: None,
            total: 0,
            failures: Vec::new(),
        }
    }

    fn keep(&mut self, t: &Tally) {
        self.total += t.total();
        self.failures.extend(t.failures.iter().cloned());
    }

    /// Starts the background loop.
    fn start(&mut self) {
        let stop = Arc::new(AtomicBool::new(false));
        let task = self.rt.spawn(load(
            self.url.clone(),
            2,
            1_000_000,
            Arc::clone(&stop),
            None,
        ));
        self.running = Some((stop, task));
    }

    /// Stops the background loop, keeping its tally.
    fn stop(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            stop.store(true, Ordering::Relaxed);
            let t = self.rt.block_on(task).unwrap();
            self.keep(&t);
        }
    }

    /// `n` requests with nothing else running; the percent that `version` answered.
    fn share(&mut self, version: &str, n: usize) -> f64 {
        let background = self.running.is_some();
        self.stop();
        let t = self.rt.block_on(load(
            self.url.clone(),
            4,
            n,
            Arc::new(AtomicBool::new(false)),
            None,
        ));
        self.keep(&t);
        assert!(t.failures.is_empty(), "{:?}", t.failures);
        if background {
            self.start();
        }
        t.share(version) * 100.0
    }
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
        let out = node
            .d()
            .pier_stdin(&["apply", "-f", "-"], &MANIFESTS.replace("VERSION", v));
        assert!(out.status.success(), "{}", out_text(&out));
    };
    apply("v1");
    let first = node.ok(&["rollout", "status", "ro/web", "--timeout", "90s"]);
    assert!(first.contains("Healthy"), "{first}");
    let url = {
        let vip = node.d().get_json(&["svc", "web"])["spec"]["clusterIP"]
            .as_str()
            .unwrap()
            .to_string();
        let o: Vec<&str> = vip.split('.').collect();
        format!("http://127.{}.{}.{}:21080/", o[1], o[2], o[3])
    };
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

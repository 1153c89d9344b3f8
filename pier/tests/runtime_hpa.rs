//! HorizontalPodAutoscaler on real containers: load through a Service raises a Deployment's
//! replicas toward the target — first on pier's own request rate per pod (a `Pods` metric),
//! then on CPU utilisation read from the containers' cgroups against their requests — and when
//! the load stops they return to the minimum once the scale-down stabilisation window has
//! passed. The windows are short so the test is bounded. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use common::canary::front_url;
use common::proxy::load;
use common::runtime::*;
use serde_json::Value;

/// A Deployment of `pier echo` asking for a tenth of a core, and its Service.
const WORKLOAD: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: busy}
spec:
  replicas: 1
  selector: {matchLabels: {app: busy}}
  template:
    metadata: {labels: {app: busy}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: busy
        image: pier/echo:v1
        args: [echo, --http, '0.0.0.0:8080', --name, busy]
        ports: [{name: http, containerPort: 8080}]
        resources: {requests: {cpu: 100m}}
        readinessProbe: {httpGet: {path: /readyz, port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: busy}
spec:
  selector: {app: busy}
  ports: [{name: http, port: 80, targetPort: http, appProtocol: http}]
";

/// The autoscaler, with METRIC; down after a 4 s window, up and down by any amount per second.
const HPA: &str = "apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: busy}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: busy}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - METRIC
  behavior:
    scaleUp:
      stabilizationWindowSeconds: 0
      policies: [{type: Pods, value: 4, periodSeconds: 1}]
    scaleDown:
      stabilizationWindowSeconds: 4
      policies: [{type: Percent, value: 100, periodSeconds: 1}]
";

const REQUEST_RATE: &str = "type: Pods
    pods: {metric: {name: requests-per-second}, target: {type: AverageValue, averageValue: '20'}}";

const CPU: &str = "type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}";

/// Seconds the test waits at most for each change.
const PATIENCE: u64 = 45;

fn hpa(node: &Node) -> Value {
    node.d().get_json(&["hpa", "busy"])
}

fn replicas(node: &Node) -> i64 {
    node.d().get_json(&["deploy", "busy"])["spec"]["replicas"]
        .as_i64()
        .unwrap_or(0)
}

/// Runs requests to `url` from one worker in the background until the returned flag is set.
fn background_load(url: String) -> (Arc<AtomicBool>, std::thread::JoinHandle<usize>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let worker = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let mut total = 0;
        // `load` stops itself after 60 s; go on until told.
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            total += rt
                .block_on(load(url.clone(), 1, 1_000_000, Arc::clone(&flag), None))
                .total();
        }
        total
    });
    (stop, worker)
}

/// Scales up under `url`'s load to the maximum, then back to the minimum once it stops;
/// returns (seconds up, seconds down after the load stopped).
fn scale_cycle(node: &Node, url: &str, metric: &str) -> (f64, f64) {
    let yaml = HPA.replace("METRIC", metric);
    let out = node.d().pier_stdin(&["apply", "-f", "-"], &yaml);
    assert!(out.status.success(), "{}", out_text(&out));
    let started = Instant::now();
    let (stop, worker) = background_load(url.to_string());
    // The autoscaler writes the Deployment's replicas, then its own status: wait for both.
    wait_for("the autoscaler to reach its maximum", PATIENCE, || {
        replicas(node) == 3 && hpa(node)["status"]["desiredReplicas"] == 3
    });
    let up = started.elapsed().as_secs_f64();
    let status = hpa(node)["status"].clone();
    println!("{}", node.ok(&["get", "hpa"]));
    println!("scaled up: {status}");
    assert_eq!(status["desiredReplicas"], 3, "{status}");
    assert!(status["currentMetrics"][0]["type"].is_string(), "{status}");
    wait_for("three ready endpoints", PATIENCE, || {
        node.d().get_json(&["deploy", "busy"])["status"]["readyReplicas"] == 3
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let requests = worker.join().unwrap();
    let stopped = Instant::now();
    wait_for("the autoscaler to return to its minimum", PATIENCE, || {
        replicas(node) == 1
    });
    let down = stopped.elapsed().as_secs_f64();
    println!("{requests} requests; up in {up:.1} s, down {down:.1} s after the load stopped");
    // The scale-down waited out its 4 s window, which starts at the last high recommendation:
    // at most one sync period (1 s) before the load stopped.
    assert!(down >= 3.0, "down after {down:.1} s, inside the 4 s window");
    (up, down)
}

#[test]
fn load_scales_a_deployment_up_and_the_window_brings_it_back() {
    if !privileged("load_scales_a_deployment_up_and_the_window_brings_it_back") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start_with(tmp.path(), 14, &["--hpa-sync-period", "1s"]);
    node.build_echo("v1");
    let out = node.d().pier_stdin(&["apply", "-f", "-"], WORKLOAD);
    assert!(out.status.success(), "{}", out_text(&out));
    wait_for("the pod to be ready", PATIENCE, || {
        node.d().get_json(&["deploy", "busy"])["status"]["readyReplicas"] == 1
    });
    let url = front_url(&node, "busy");

    // pier's own request rate per pod: far above 20/s from one client loop.
    scale_cycle(&node, &url, REQUEST_RATE);
    let events = node.ok(&["get", "events"]);
    assert!(
        events.contains("SuccessfulRescale")
            && events.contains("pods metric requests-per-second above target"),
        "{events}"
    );

    // CPU against requests: each request spins 5 ms, many times a tenth of a core.
    scale_cycle(&node, &format!("{url}busy/5"), CPU);
    let events = node.ok(&["get", "events"]);
    assert!(
        events.contains("cpu resource utilization (percentage of request) above target"),
        "{events}"
    );
    let table = node.ok(&["get", "hpa"]);
    assert!(
        table.contains("Deployment/busy") && table.contains("/50%"),
        "{table}"
    );
    let (_, metrics) = node.d().admin("/metrics");
    for series in [
        "pier_hpa_replicas{hpa=\"busy\",kind=\"desired\",namespace=\"default\"} 1",
        "pier_hpa_metric_target{hpa=\"busy\",metric=\"cpu\",namespace=\"default\",target_type=\"Utilization\"} 50",
    ] {
        assert!(metrics.contains(series), "{series} not in the metrics");
    }
    node.ok(&["delete", "hpa", "busy"]);
    node.ok(&["delete", "deploy", "busy"]);
}

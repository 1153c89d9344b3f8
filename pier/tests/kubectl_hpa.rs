//! kubectl and autoscalers: `kubectl apply` creates an `autoscaling/v2`
//! HorizontalPodAutoscaler, `kubectl get hpa` prints kubectl's columns from pier's table
//! (targets included), the controller's status reads back through jsonpath, and `kubectl
//! explain` reads the reference schema. No engine runs, so the metric stays unknown and the
//! Deployment keeps its replicas.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

mod common;
use common::kubectl::*;

const MANIFESTS: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: app, image: example.invalid/app:1, resources: {requests: {cpu: 100m}}}]}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 2
  maxReplicas: 5
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 60}}
  - type: Pods
    pods: {metric: {name: requests-per-second}, target: {type: AverageValue, averageValue: '10'}}
";

#[test]
fn kubectl_applies_an_hpa_and_gets_it_in_kubectls_columns() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_daemon, kubectl)) =
        start_with(dir.path(), &["--no-runtime", "--hpa-sync-period", "1s"])
    else {
        return;
    };
    let file = dir.path().join("hpa.yaml");
    std::fs::write(&file, MANIFESTS).unwrap();
    let out = kubectl.ok(&["apply", "-f", file.to_str().unwrap()]);
    assert!(
        out.contains("horizontalpodautoscaler.autoscaling/web created"),
        "{out}"
    );
    let table = kubectl.ok(&["get", "hpa"]);
    println!("{table}");
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "REFERENCE",
            "TARGETS",
            "MINPODS",
            "MAXPODS",
            "REPLICAS",
            "AGE"
        ]
    );
    assert!(table.contains("web    Deployment/web"), "{table}");
    assert!(
        table.contains("cpu: <unknown>/60%, <unknown>/10"),
        "{table}"
    );
    // The controller ran: no pod runs here, so it reports it cannot measure.
    pier_testkit::wait_for("the autoscaler's status", Duration::from_secs(20), || {
        kubectl.ok(&[
            "get",
            "hpa",
            "web",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"ScalingActive\")].status}",
        ]) == "False"
    });
    let explained = kubectl.ok(&["explain", "hpa.spec.behavior.scaleDown"]);
    assert!(
        explained.contains("stabilizationWindowSeconds"),
        "{explained}"
    );
    let replicas = kubectl.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]);
    assert_eq!(replicas, "2");
    // A bad autoscaler is refused with the field named.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        MANIFESTS
            .split("---\n")
            .nth(1)
            .unwrap()
            .replace("maxReplicas: 5", "maxReplicas: 1"),
    )
    .unwrap();
    let refused = kubectl.fails(&["apply", "-f", bad.to_str().unwrap()]);
    assert!(refused.contains("spec.maxReplicas"), "{refused}");
}

use serde_json::json;

use super::*;

fn v2() -> Value {
    json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": "default", "annotations": {"team": "a"}},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1, "maxReplicas": 5,
            "metrics": [
                {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}},
                {"type": "Pods", "pods": {"metric": {"name": "requests-per-second"}, "target": {"type": "AverageValue", "averageValue": "10"}}}
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 4}}},
        "status": {"currentReplicas": 2, "desiredReplicas": 3, "lastScaleTime": "2026-12-03T10:00:00Z",
            "currentMetrics": [
                {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 75}}},
                {"type": "Pods", "pods": {"metric": {"name": "requests-per-second"}, "current": {"averageValue": "12"}}}
            ],
            "conditions": [{"type": "AbleToScale", "status": "True", "reason": "SucceededRescale"}]}})
}

#[test]
fn v1_holds_cpu_in_its_fields_and_the_rest_in_annotations() {
    let v1 = from_v2(v2());
    assert_eq!(v1["apiVersion"], "autoscaling/v1");
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 60);
    assert_eq!(v1["spec"]["maxReplicas"], 5);
    assert!(v1["spec"].get("metrics").is_none());
    assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 75);
    assert_eq!(v1["status"]["desiredReplicas"], 3);
    let annotations = &v1["metadata"]["annotations"];
    assert_eq!(annotations["team"], "a");
    let others: Value = serde_json::from_str(annotations[METRICS].as_str().unwrap()).unwrap();
    assert_eq!(others[0]["type"], "Pods");
    assert!(annotations[CONDITIONS]
        .as_str()
        .unwrap()
        .contains("AbleToScale"));
}

#[test]
fn a_round_trip_through_v1_loses_nothing() {
    let back = to_v2(from_v2(v2())).unwrap();
    assert_eq!(back, v2());
}

#[test]
fn a_plain_v1_autoscaler_reads_as_v2() {
    let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 3,
            "targetCPUUtilizationPercentage": 50}});
    let v2 = to_v2(v1).unwrap();
    assert_eq!(v2["apiVersion"], "autoscaling/v2");
    assert_eq!(
        v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        50
    );
    assert!(v2["metadata"].get("annotations").is_none());
    assert!(v2.get("status").is_none());
    let bad = json!({"metadata": {"annotations": {METRICS: "not json"}}, "spec": {}});
    assert!(to_v2(bad).unwrap_err().contains(METRICS));
    assert_eq!(
        to_v2(json!([1])).unwrap(),
        json!([1]),
        "not an object: left to validation"
    );
}

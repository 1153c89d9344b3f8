//! Rollout rows as Argo Rollouts' kubectl plugin columns print them.

use serde_json::Value;

use super::{items, or, s};

/// A Rollout's row: Argo's printer columns, then its phase, step and canary weight.
pub(super) fn row(v: &Value, name: String, created: String) -> Vec<String> {
    let count = |field: &str| {
        v.pointer(&format!("/status/{field}"))
            .and_then(Value::as_i64)
            .unwrap_or(0)
            .to_string()
    };
    let desired = v
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let steps = items(v, "/spec/strategy/canary/steps").len();
    let step = v
        .pointer("/status/currentStepIndex")
        .and_then(Value::as_i64)
        .map_or("-".to_string(), |i| format!("{i}/{steps}"));
    let weight = v
        .pointer("/status/canary/weights/canary/weight")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    vec![
        name,
        desired.to_string(),
        count("replicas"),
        count("updatedReplicas"),
        count("availableReplicas"),
        created,
        or(s(v, "/status/phase"), "<unknown>"),
        step,
        weight.to_string(),
    ]
}

//! `autoscaling/v1` HorizontalPodAutoscalers: the same stored `autoscaling/v2` objects, in the
//! older version's shape (one `targetCPUUtilizationPercentage`), converted both ways as the API
//! server converts them. What v1 cannot hold (other metrics, `behavior`, conditions, other
//! current metrics) rides in the `autoscaling.alpha.kubernetes.io/*` annotations Kubernetes
//! uses, in v2's shape, so a read-modify-write through v1 loses nothing.

use serde_json::{json, Map, Value};

/// The version this view serves (the stored one is `v2`).
pub(crate) const VERSION: &str = "v1";

const METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
const BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";
const CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";
const CURRENT_METRICS: &str = "autoscaling.alpha.kubernetes.io/current-metrics";

/// The spec and status fields both versions have alike.
const SPEC_FIELDS: &[&str] = &["scaleTargetRef", "minReplicas", "maxReplicas"];
const STATUS_FIELDS: &[&str] = &[
    "observedGeneration",
    "lastScaleTime",
    "currentReplicas",
    "desiredReplicas",
];

/// The `fields` of `from` that are set.
fn copied(from: &Value, fields: &[&str]) -> Map<String, Value> {
    fields
        .iter()
        .filter(|f| !from[**f].is_null())
        .map(|f| ((*f).to_owned(), from[*f].clone()))
        .collect()
}

/// Whether a v2 metric (spec or status) is the CPU utilisation v1 has a field for.
fn is_cpu(metric: &Value, target: &str) -> bool {
    metric["type"] == "Resource"
        && metric["resource"]["name"] == "cpu"
        && (target != "target" || metric["resource"]["target"]["type"] == "Utilization")
        && !metric["resource"][target]["averageUtilization"].is_null()
}

/// A stored `autoscaling/v2` autoscaler in `autoscaling/v1` form.
pub(crate) fn from_v2(mut hpa: Value) -> Value {
    let Some(map) = hpa.as_object_mut() else {
        return hpa;
    };
    let mut annotations = Map::new();
    let spec = convert_spec_down(map.remove("spec").unwrap_or_default(), &mut annotations);
    let status = convert_status_down(map.remove("status").unwrap_or_default(), &mut annotations);
    map.insert("apiVersion".into(), json!(format!("autoscaling/{VERSION}")));
    map.insert("spec".into(), spec);
    if !status.is_null() {
        map.insert("status".into(), status);
    }
    if !annotations.is_empty() {
        let meta = map.entry("metadata").or_insert_with(|| json!({}));
        if let Some(meta) = meta.as_object_mut() {
            let existing = meta.entry("annotations").or_insert_with(|| json!({}));
            if let Some(existing) = existing.as_object_mut() {
                existing.extend(annotations);
            }
        }
    }
    hpa
}

fn convert_spec_down(spec: Value, annotations: &mut Map<String, Value>) -> Value {
    let mut out = copied(&spec, SPEC_FIELDS);
    let metrics = spec["metrics"].as_array().cloned().unwrap_or_default();
    let (cpu, others): (Vec<Value>, Vec<Value>) =
        metrics.into_iter().partition(|m| is_cpu(m, "target"));
    if let Some(cpu) = cpu.first() {
        out.insert(
            "targetCPUUtilizationPercentage".into(),
            cpu["resource"]["target"]["averageUtilization"].clone(),
        );
    }
    // More than one CPU target cannot be one field: the rest travel with the other metrics.
    let others: Vec<Value> = cpu.into_iter().skip(1).chain(others).collect();
    keep(annotations, METRICS, Value::Array(others));
    keep(annotations, BEHAVIOR, spec["behavior"].clone());
    Value::Object(out)
}

fn convert_status_down(status: Value, annotations: &mut Map<String, Value>) -> Value {
    if status.is_null() {
        return status;
    }
    let mut out = copied(&status, STATUS_FIELDS);
    out.entry("currentReplicas").or_insert(json!(0));
    out.entry("desiredReplicas").or_insert(json!(0));
    let current = status["currentMetrics"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let (cpu, others): (Vec<Value>, Vec<Value>) =
        current.into_iter().partition(|m| is_cpu(m, "current"));
    if let Some(cpu) = cpu.first() {
        out.insert(
            "currentCPUUtilizationPercentage".into(),
            cpu["resource"]["current"]["averageUtilization"].clone(),
        );
    }
    keep(annotations, CURRENT_METRICS, Value::Array(others));
    keep(annotations, CONDITIONS, status["conditions"].clone());
    Value::Object(out)
}

/// Records `value` under `key` as JSON text, unless it is empty.
fn keep(annotations: &mut Map<String, Value>, key: &str, value: Value) {
    let empty = value.is_null() || value.as_array().is_some_and(Vec::is_empty);
    if !empty {
        annotations.insert(key.into(), Value::String(value.to_string()));
    }
}

/// An `autoscaling/v1` autoscaler as pier stores it (`autoscaling/v2`); an annotation that
/// does not parse is an error naming it.
pub(crate) fn to_v2(mut hpa: Value) -> Result<Value, String> {
    if !hpa.is_object() {
        return Ok(hpa);
    }
    let mut carried = take_annotations(&mut hpa)?;
    let mut take = |key: &str| carried.remove(key).unwrap_or(Value::Null);
    let (extra_metrics, behavior) = (take(METRICS), take(BEHAVIOR));
    let (conditions, extra_current) = (take(CONDITIONS), take(CURRENT_METRICS));
    let spec = hpa.get_mut("spec").map(Value::take).unwrap_or_default();
    let mut out = copied(&spec, SPEC_FIELDS);
    let mut metrics = Vec::new();
    if let Some(percent) = spec
        .get("targetCPUUtilizationPercentage")
        .filter(|p| !p.is_null())
    {
        metrics.push(json!({"type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": percent}}}));
    }
    metrics.extend(extra_metrics.as_array().cloned().unwrap_or_default());
    if !metrics.is_empty() {
        out.insert("metrics".into(), Value::Array(metrics));
    }
    if !behavior.is_null() {
        out.insert("behavior".into(), behavior);
    }
    let Some(map) = hpa.as_object_mut() else {
        return Ok(hpa);
    };
    let status = map.remove("status").unwrap_or_default();
    map.insert("apiVersion".into(), json!("autoscaling/v2"));
    map.insert("spec".into(), Value::Object(out));
    if !status.is_null() {
        map.insert(
            "status".into(),
            status_up(status, conditions, extra_current),
        );
    }
    Ok(hpa)
}

fn status_up(status: Value, conditions: Value, extra_current: Value) -> Value {
    let mut out = copied(&status, STATUS_FIELDS);
    let mut current = Vec::new();
    if let Some(percent) = status
        .get("currentCPUUtilizationPercentage")
        .filter(|p| !p.is_null())
    {
        current.push(json!({"type": "Resource",
            "resource": {"name": "cpu", "current": {"averageUtilization": percent}}}));
    }
    current.extend(extra_current.as_array().cloned().unwrap_or_default());
    if !current.is_empty() {
        out.insert("currentMetrics".into(), Value::Array(current));
    }
    if !conditions.is_null() {
        out.insert("conditions".into(), conditions);
    }
    Value::Object(out)
}

/// Removes the carrying annotations, parsed (and `annotations` itself when nothing is left).
fn take_annotations(hpa: &mut Value) -> Result<Map<String, Value>, String> {
    let mut carried = Map::new();
    let Some(meta) = hpa.get_mut("metadata").and_then(Value::as_object_mut) else {
        return Ok(carried);
    };
    let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) else {
        return Ok(carried);
    };
    for key in [METRICS, BEHAVIOR, CONDITIONS, CURRENT_METRICS] {
        let Some(text) = annotations.remove(key) else {
            continue;
        };
        let text = text.as_str().unwrap_or_default().to_owned();
        let value = serde_json::from_str(&text)
            .map_err(|e| format!("metadata.annotations[{key}]: not JSON: {e}"))?;
        carried.insert(key.into(), value);
    }
    if annotations.is_empty() {
        meta.remove("annotations");
    }
    Ok(carried)
}

#[cfg(test)]
#[path = "hpa_v1_tests.rs"]
mod tests;

//! `HorizontalPodAutoscaler` rows as kubectl prints them: `Deployment/web`, targets as
//! `cpu: 45%/50%, 12/10`, the replica bounds and count.

use serde_json::Value;

use super::s;

/// Targets kubectl shows before summarising the rest as `+ N more...`.
const SHOWN: usize = 2;

/// NAME, REFERENCE, TARGETS, MINPODS, MAXPODS, REPLICAS, AGE.
pub(super) fn row(v: &Value, name: String, created: String) -> Vec<String> {
    let reference = format!(
        "{}/{}",
        s(v, "/spec/scaleTargetRef/kind"),
        s(v, "/spec/scaleTargetRef/name")
    );
    let min = v
        .pointer("/spec/minReplicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let max = v
        .pointer("/spec/maxReplicas")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let replicas = v
        .pointer("/status/currentReplicas")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    vec![
        name,
        reference,
        targets(v),
        min.to_string(),
        max.to_string(),
        replicas.to_string(),
        created,
    ]
}

/// kubectl's `formatHPAMetrics`: each metric as `current/target`, unknown until measured.
fn targets(v: &Value) -> String {
    let specs = v
        .pointer("/spec/metrics")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if specs.is_empty() {
        return "<none>".into();
    }
    let statuses = v
        .pointer("/status/currentMetrics")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let list: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| one(spec, statuses.get(i)))
        .collect();
    let shown = list[..list.len().min(SHOWN)].join(", ");
    if list.len() > SHOWN {
        format!("{shown} + {} more...", list.len() - SHOWN)
    } else {
        shown
    }
}

fn one(spec: &Value, status: Option<&Value>) -> String {
    let current = |pointer: &str| {
        status
            .and_then(|st| st.pointer(pointer))
            .map(text)
            .unwrap_or_else(|| "<unknown>".into())
    };
    match s(spec, "/type") {
        "Resource" | "ContainerResource" => {
            let key = if s(spec, "/type") == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let name = s(spec, &format!("/{key}/name"));
            let target = format!("/{key}/target");
            match spec.pointer(&format!("{target}/averageValue")) {
                Some(avg) => format!(
                    "{name}: {}/{}",
                    current(&format!("/{key}/current/averageValue")),
                    text(avg)
                ),
                None => {
                    let now = status
                        .and_then(|st| st.pointer(&format!("/{key}/current/averageUtilization")))
                        .and_then(Value::as_i64)
                        .map_or_else(|| "<unknown>".into(), |n| format!("{n}%"));
                    let want = spec
                        .pointer(&format!("{target}/averageUtilization"))
                        .and_then(Value::as_i64)
                        .map_or_else(|| "<auto>".into(), |n| format!("{n}%"));
                    format!("{name}: {now}/{want}")
                }
            }
        }
        "Pods" => format!(
            "{}/{}",
            current("/pods/current/averageValue"),
            spec.pointer("/pods/target/averageValue")
                .map_or_else(String::new, text)
        ),
        "Object" | "External" => {
            let key = if s(spec, "/type") == "Object" {
                "object"
            } else {
                "external"
            };
            let target = spec
                .pointer(&format!("/{key}/target/value"))
                .or_else(|| spec.pointer(&format!("/{key}/target/averageValue")))
                .map_or_else(String::new, text);
            format!("<unknown>/{target}")
        }
        other => format!("<unknown type {other:?}>"),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn kubectl_shapes() {
        let v = json!({
            "spec": {
                "scaleTargetRef": {"kind": "Deployment", "name": "web"},
                "maxReplicas": 5,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
                    {"type": "Pods", "pods": {"metric": {"name": "requests-per-second"}, "target": {"type": "AverageValue", "averageValue": "10"}}},
                    {"type": "External", "external": {"metric": {"name": "q"}, "target": {"type": "Value", "value": "3"}}}
                ]
            },
            "status": {"currentReplicas": 2, "currentMetrics": [
                {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 45}}}
            ]}
        });
        let row = row(&v, "web".into(), "1m".into());
        assert_eq!(
            row,
            [
                "web",
                "Deployment/web",
                "cpu: 45%/50%, <unknown>/10 + 1 more...",
                "1",
                "5",
                "2",
                "1m"
            ]
        );
    }
}

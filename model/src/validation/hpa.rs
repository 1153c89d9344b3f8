//! Rules for `HorizontalPodAutoscaler`, after Kubernetes' own (`ValidateHorizontalPodAutoscaler`),
//! named by field.

use crate::hpa::{HorizontalPodAutoscaler, MetricSpec, MetricTarget, ScalingRules, POD_METRICS};
use crate::quantity;
use crate::report::{FieldPath, Report};
use crate::syntax::dns1123_subdomain;

use super::metadata;

/// Longest stabilisation window Kubernetes allows (one hour).
const MAX_WINDOW_SECONDS: i64 = 3600;
/// Longest policy period Kubernetes allows (30 minutes).
const MAX_PERIOD_SECONDS: i64 = 1800;

pub(crate) fn hpa(h: &HorizontalPodAutoscaler, r: &mut Report) {
    metadata(&h.metadata, dns1123_subdomain, r);
    let spec = FieldPath::root().field("spec");
    let target = &h.spec.scale_target_ref;
    let target_path = spec.field("scaleTargetRef");
    r.one_of(
        &target_path.field("kind"),
        &target.kind,
        &["Deployment", "Rollout"],
    );
    if target.name.is_empty() {
        r.error(&target_path.field("name"), "required value");
    } else {
        r.check(&target_path.field("name"), dns1123_subdomain(&target.name));
    }
    if let Some(min) = h.spec.min_replicas {
        if min < 1 {
            r.error(
                &spec.field("minReplicas"),
                "must be greater than or equal to 1",
            );
        }
    }
    if h.spec.max_replicas < 1 {
        r.error(
            &spec.field("maxReplicas"),
            "must be greater than or equal to 1",
        );
    } else if h.spec.max_replicas < h.spec.min() {
        r.error(
            &spec.field("maxReplicas"),
            format!(
                "must be greater than or equal to minReplicas ({})",
                h.spec.min()
            ),
        );
    }
    for (i, m) in h.spec.metrics.iter().enumerate() {
        metric(&spec.field("metrics").index(i), m, r);
    }
    if let Some(b) = &h.spec.behavior {
        let path = spec.field("behavior");
        for (field, rules) in [("scaleUp", &b.scale_up), ("scaleDown", &b.scale_down)] {
            if let Some(rules) = rules {
                scaling_rules(&path.field(field), rules, r);
            }
        }
    }
}

fn metric(path: &FieldPath, m: &MetricSpec, r: &mut Report) {
    let type_path = path.field("type");
    match m.type_.as_str() {
        "Resource" => match &m.resource {
            Some(res) => {
                resource_name(&path.field("resource").field("name"), &res.name, r);
                target(&path.field("resource").field("target"), &res.target, true, r);
            }
            None => r.error(&path.field("resource"), "required when type is Resource"),
        },
        "ContainerResource" => match &m.container_resource {
            Some(res) => {
                let p = path.field("containerResource");
                resource_name(&p.field("name"), &res.name, r);
                if res.container.is_empty() {
                    r.error(&p.field("container"), "required value");
                }
                target(&p.field("target"), &res.target, true, r);
            }
            None => r.error(
                &path.field("containerResource"),
                "required when type is ContainerResource",
            ),
        },
        "Pods" => match &m.pods {
            Some(pods) => {
                let p = path.field("pods");
                let name = pods.metric.name.as_str();
                if name.is_empty() {
                    r.error(&p.field("metric").field("name"), "required value");
                } else if !POD_METRICS.contains(&name) {
                    r.ignored.push(format!(
                        "{}: pier measures the Pods metrics {}; {name:?} reads as missing",
                        p.field("metric").field("name"),
                        POD_METRICS.join(", ")
                    ));
                }
                target(&p.field("target"), &pods.target, false, r);
                if pods.target.type_ != "AverageValue" {
                    r.error(
                        &p.field("target").field("type"),
                        "must be AverageValue for a Pods metric",
                    );
                }
            }
            None => r.error(&path.field("pods"), "required when type is Pods"),
        },
        "Object" | "External" => r.ignored.push(format!(
            "{type_path}: {} metrics are not measured by pier; the autoscaler reports them missing",
            m.type_
        )),
        "" => r.error(&type_path, "required value"),
        other => r.error(
            &type_path,
            format!(
                "unsupported value {other:?}: use Resource, ContainerResource, Pods, Object or External"
            ),
        ),
    }
}

fn resource_name(path: &FieldPath, name: &str, r: &mut Report) {
    r.one_of(path, name, &["cpu", "memory"]);
}

fn target(path: &FieldPath, t: &MetricTarget, utilization_allowed: bool, r: &mut Report) {
    let allowed: &[&str] = if utilization_allowed {
        &["Utilization", "AverageValue", "Value"]
    } else {
        &["AverageValue", "Value"]
    };
    r.one_of(&path.field("type"), &t.type_, allowed);
    match t.type_.as_str() {
        "Utilization" => match t.average_utilization {
            Some(u) if u > 0 => {}
            Some(_) => r.error(&path.field("averageUtilization"), "must be greater than 0"),
            None => r.error(
                &path.field("averageUtilization"),
                "required when type is Utilization",
            ),
        },
        "AverageValue" => quantity_field(path, "averageValue", t.average_value.as_deref(), r),
        "Value" => quantity_field(path, "value", t.value.as_deref(), r),
        _ => {}
    }
}

fn quantity_field(path: &FieldPath, field: &str, value: Option<&str>, r: &mut Report) {
    let p = path.field(field);
    match value.map(quantity::decimal) {
        None => r.error(&p, "required value"),
        Some(Err(e)) => r.error(&p, e),
        Some(Ok(v)) if v <= 0.0 => r.error(&p, "must be positive"),
        Some(Ok(_)) => {}
    }
}

fn scaling_rules(path: &FieldPath, rules: &ScalingRules, r: &mut Report) {
    if let Some(w) = rules.stabilization_window_seconds {
        if !(0..=MAX_WINDOW_SECONDS).contains(&w) {
            r.error(
                &path.field("stabilizationWindowSeconds"),
                format!("must be between 0 and {MAX_WINDOW_SECONDS}"),
            );
        }
    }
    if let Some(select) = &rules.select_policy {
        r.one_of(
            &path.field("selectPolicy"),
            select,
            &["Max", "Min", "Disabled"],
        );
    }
    for (i, policy) in rules.policies.iter().enumerate() {
        let p = path.field("policies").index(i);
        r.one_of(&p.field("type"), &policy.type_, &["Pods", "Percent"]);
        if policy.value <= 0 {
            r.error(&p.field("value"), "must be greater than 0");
        }
        if !(1..=MAX_PERIOD_SECONDS).contains(&policy.period_seconds) {
            r.error(
                &p.field("periodSeconds"),
                format!("must be between 1 and {MAX_PERIOD_SECONDS}"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::object::Object;

    fn check(yaml: &str) -> Result<Vec<String>, String> {
        let value: serde_json::Value = serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())?;
        Object::from_value(value)
            .map(|p| p.ignored)
            .map_err(|e| e.to_string())
    }

    const GOOD: &str = "
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 5
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
  - type: Pods
    pods: {metric: {name: requests-per-second}, target: {type: AverageValue, averageValue: '10'}}
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 60
      policies: [{type: Percent, value: 50, periodSeconds: 15}]
";

    #[test]
    fn kubernetes_manifest_is_accepted() {
        assert_eq!(check(GOOD), Ok(vec![]));
    }

    #[test]
    fn errors_name_the_field() {
        let bad = GOOD
            .replace("maxReplicas: 5", "maxReplicas: 0")
            .replace("averageUtilization: 50", "averageUtilization: 0")
            .replace("periodSeconds: 15", "periodSeconds: 0")
            .replace("averageValue: '10'", "averageValue: ten");
        let err = check(&bad).unwrap_err();
        for field in [
            "spec.maxReplicas",
            "spec.metrics[0].resource.target.averageUtilization",
            "spec.metrics[1].pods.target.averageValue",
            "spec.behavior.scaleDown.policies[0].periodSeconds",
        ] {
            assert!(err.contains(field), "{field} not in {err}");
        }
    }

    #[test]
    fn unmeasured_metrics_are_accepted_with_a_warning() {
        let external = GOOD.replace(
            "  - type: Pods\n    pods: {metric: {name: requests-per-second}, target: {type: AverageValue, averageValue: '10'}}",
            "  - type: External\n    external: {metric: {name: queue}, target: {type: Value, value: '3'}}",
        );
        let ignored = check(&external).unwrap();
        assert_eq!(ignored.len(), 1, "{ignored:?}");
        assert!(ignored[0].contains("spec.metrics[1].type"), "{ignored:?}");
    }
}

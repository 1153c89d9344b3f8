//! One metric of an autoscaler, measured over the target's pods and turned into a replica
//! proposal and the `currentMetrics` entry Kubernetes writes for it.

use std::time::Instant;

use pier_model::hpa::{
    ContainerResourceMetricStatus, MetricSpec, MetricStatus, MetricTarget, MetricValueStatus,
    PodsMetricStatus, ResourceMetricStatus,
};
use pier_model::quantity;
use pier_model::{IntOrString, Pod};

use super::measure::{Readings, Sampler};
use super::replicas::{propose, PodReading, Proposal, Target};

/// Why a metric gave no proposal: the condition reason and the message.
pub(crate) type Failure = (&'static str, String);

/// A metric's outcome.
pub(crate) struct Evaluated {
    /// Replicas it asks for and the level measured.
    pub(crate) proposal: Proposal,
    /// Its `status.currentMetrics` entry.
    pub(crate) status: MetricStatus,
    /// How Kubernetes names it in messages (`cpu resource utilization (percentage of request)`).
    pub(crate) name: String,
}

/// What a pass measures with.
pub(crate) struct Measuring<'a> {
    /// The autoscaler (`namespace/name`), which owns its rate readings.
    pub(crate) owner: &'a str,
    /// Readings kept between passes.
    pub(crate) sampler: &'a mut Sampler,
    /// Every node's counters and pods' use, read once per pass.
    pub(crate) readings: &'a Readings,
    /// This pass's moment.
    pub(crate) now: Instant,
}

/// Measures `spec` over `pods` and proposes replicas from `current`.
pub(crate) fn evaluate(
    m: &mut Measuring<'_>,
    spec: &MetricSpec,
    current: i64,
    pods: &[&Pod],
) -> Result<Evaluated, Failure> {
    match spec.type_.as_str() {
        "Resource" | "ContainerResource" => resource(m, spec, current, pods),
        "Pods" => pods_metric(m, spec, current, pods),
        "Object" => Err((
            "FailedGetObjectMetric",
            "pier does not measure Object metrics".into(),
        )),
        "External" => Err((
            "FailedGetExternalMetric",
            "pier does not measure External metrics".into(),
        )),
        other => Err((
            "InvalidMetricSourceType",
            format!("unknown metric type {other:?}"),
        )),
    }
}

fn resource(
    m: &mut Measuring<'_>,
    spec: &MetricSpec,
    current: i64,
    pods: &[&Pod],
) -> Result<Evaluated, Failure> {
    let (name, container, target) = match (&spec.resource, &spec.container_resource) {
        (Some(r), _) if spec.type_ == "Resource" => (r.name.as_str(), None, &r.target),
        (_, Some(r)) => (r.name.as_str(), Some(r.container.as_str()), &r.target),
        _ => return Err(("InvalidMetricSourceType", "the metric has no source".into())),
    };
    let cpu = name == "cpu";
    let readings: Vec<PodReading> = pods
        .iter()
        .map(|pod| {
            let value = if container.is_some_and(|c| !runs(pod, c)) {
                None
            } else if cpu {
                m.sampler.cpu(m.owner, pod, m.readings, m.now)
            } else {
                m.sampler.memory(pod, m.readings)
            };
            PodReading {
                ready: pod.is_ready(),
                value,
                request: request(pod, name, container),
            }
        })
        .collect();
    let label = match (container.is_some(), target.type_.as_str()) {
        (false, "Utilization") => format!("{name} resource utilization (percentage of request)"),
        (true, "Utilization") => {
            format!("{name} container resource utilization (percentage of request)")
        }
        (false, _) => format!("{name} resource"),
        (true, _) => format!("{name} container resource"),
    };
    let reason = if spec.type_ == "Resource" {
        "FailedGetResourceMetric"
    } else {
        "FailedGetContainerResourceMetric"
    };
    let goal = goal(target).map_err(|e| (reason, e))?;
    let proposal = propose(current, &readings, goal, cpu).map_err(|e| {
        (
            reason,
            format!(
                "failed to get {name} utilization: unable to get metrics for resource {name}: {e}"
            ),
        )
    })?;
    let average = average_of(&readings, cpu);
    let current_value = MetricValueStatus {
        average_utilization: matches!(goal, Target::Utilization(_))
            .then(|| proposal.current.round() as i64),
        average_value: Some(quantity::format_decimal(match goal {
            Target::Utilization(_) => average,
            Target::AverageValue(_) => proposal.current,
        })),
        value: None,
    };
    let status = match container {
        None => MetricStatus {
            type_: "Resource".into(),
            resource: Some(ResourceMetricStatus {
                name: name.into(),
                current: current_value,
            }),
            ..Default::default()
        },
        Some(c) => MetricStatus {
            type_: "ContainerResource".into(),
            container_resource: Some(ContainerResourceMetricStatus {
                name: name.into(),
                container: c.into(),
                current: current_value,
            }),
            ..Default::default()
        },
    };
    Ok(Evaluated {
        proposal,
        status,
        name: label,
    })
}

fn pods_metric(
    m: &mut Measuring<'_>,
    spec: &MetricSpec,
    current: i64,
    pods: &[&Pod],
) -> Result<Evaluated, Failure> {
    let Some(source) = &spec.pods else {
        return Err(("InvalidMetricSourceType", "the metric has no source".into()));
    };
    let name = source.metric.name.as_str();
    let readings: Vec<PodReading> = pods
        .iter()
        .map(|pod| PodReading {
            ready: pod.is_ready(),
            value: m.sampler.pod_metric(m.owner, pod, name, m.readings, m.now),
            request: None,
        })
        .collect();
    let goal = goal(&source.target).map_err(|e| ("FailedGetPodsMetric", e))?;
    let proposal = propose(current, &readings, goal, false).map_err(|e| {
        (
            "FailedGetPodsMetric",
            format!("unable to get metric {name}: {e}"),
        )
    })?;
    Ok(Evaluated {
        status: MetricStatus {
            type_: "Pods".into(),
            pods: Some(PodsMetricStatus {
                metric: source.metric.clone(),
                current: MetricValueStatus {
                    average_value: Some(quantity::format_decimal(proposal.current)),
                    ..Default::default()
                },
            }),
            ..Default::default()
        },
        proposal,
        name: format!("pods metric {name}"),
    })
}

/// The target as the calculator takes it.
fn goal(t: &MetricTarget) -> Result<Target, String> {
    match t.type_.as_str() {
        "Utilization" => t
            .average_utilization
            .map(|u| Target::Utilization(u as f64))
            .ok_or_else(|| "target.averageUtilization is missing".to_string()),
        "AverageValue" => t
            .average_value
            .as_deref()
            .ok_or_else(|| "target.averageValue is missing".to_string())
            .and_then(quantity::decimal)
            .map(Target::AverageValue),
        other => Err(format!(
            "target type {other:?} is not served for this metric; use Utilization or AverageValue"
        )),
    }
}

/// The mean of the readings the calculator counted.
fn average_of(readings: &[PodReading], cpu: bool) -> f64 {
    let counted: Vec<f64> = readings
        .iter()
        .filter(|r| r.ready || !cpu)
        .filter_map(|r| r.value)
        .collect();
    counted.iter().sum::<f64>() / counted.len().max(1) as f64
}

/// Whether `pod` has a container named `name`.
fn runs(pod: &Pod, name: &str) -> bool {
    pod.spec.containers.iter().any(|c| c.name == name)
}

/// The pod's request of `resource` (cores or bytes), over its containers or the one named.
fn request(pod: &Pod, resource: &str, container: Option<&str>) -> Option<f64> {
    let mut total = 0.0;
    for c in &pod.spec.containers {
        if container.is_some_and(|name| name != c.name) {
            continue;
        }
        let q: &IntOrString = c.resources.as_ref()?.requests.get(resource)?;
        total += match resource {
            "cpu" => quantity::cores(q).ok()?,
            _ => quantity::bytes(q).ok()? as f64,
        };
    }
    (total > 0.0).then_some(total)
}

/// A metric's `metric` and `target_type` labels in `pier_hpa_*` series, and its target in the
/// same unit as the value (percent for a `Utilization`).
pub(crate) fn metric_label(spec: &MetricSpec) -> (String, String, Option<f64>) {
    let target = |t: &MetricTarget| match goal(t) {
        Ok(Target::Utilization(u)) => Some(u),
        Ok(Target::AverageValue(v)) => Some(v),
        Err(_) => None,
    };
    let (name, t) = match (&spec.resource, &spec.container_resource, &spec.pods) {
        (Some(r), _, _) => (r.name.clone(), &r.target),
        (_, Some(r), _) => (format!("{}/{}", r.container, r.name), &r.target),
        (_, _, Some(p)) => (p.metric.name.clone(), &p.target),
        _ => return (spec.type_.to_ascii_lowercase(), String::new(), None),
    };
    (name, t.type_.clone(), target(t))
}

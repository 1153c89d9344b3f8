//! `autoscaling/v2` `HorizontalPodAutoscaler`: the fields pier acts on, under Kubernetes'
//! names, so manifests written for a cluster apply unchanged; its status as the Kubernetes
//! controller writes it, so kubectl and dashboards read it.

use serde::{Deserialize, Serialize};

use super::meta::{LabelSelector, ObjectMeta};

/// The utilisation target when an autoscaler names no metric (Kubernetes' default).
pub const DEFAULT_CPU_UTILIZATION: i64 = 80;
/// Pods metric: HTTP requests per second the proxy sent to each pod.
pub const REQUESTS_PER_SECOND: &str = "requests-per-second";
/// Pods metric: L4 connections per second the proxy made to each pod.
pub const CONNECTIONS_PER_SECOND: &str = "connections-per-second";
/// The Pods metrics pier measures itself.
pub const POD_METRICS: [&str; 2] = [REQUESTS_PER_SECOND, CONNECTIONS_PER_SECOND];

/// Scales a Deployment or Rollout to a metric target (`autoscaling/v2/HorizontalPodAutoscaler`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HorizontalPodAutoscaler {
    /// `autoscaling/v2`.
    pub api_version: String,
    /// `HorizontalPodAutoscaler`.
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Desired behaviour.
    #[serde(default)]
    pub spec: HpaSpec,
    /// What the autoscaler last measured and decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<HpaStatus>,
}

/// `HorizontalPodAutoscaler.spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HpaSpec {
    /// The workload scaled.
    #[serde(default)]
    pub scale_target_ref: CrossVersionObjectReference,
    /// Fewest replicas; Kubernetes' default is 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<i64>,
    /// Most replicas.
    #[serde(default)]
    pub max_replicas: i64,
    /// What is measured; empty means CPU at 80% of requests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricSpec>,
    /// How fast replicas may change each way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<HpaBehavior>,
}

impl HpaSpec {
    /// `minReplicas` with its default.
    pub fn min(&self) -> i64 {
        self.min_replicas.unwrap_or(1)
    }
}

/// `spec.scaleTargetRef`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CrossVersionObjectReference {
    /// `apps/v1` or `argoproj.io/v1alpha1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `Deployment` or `Rollout`.
    #[serde(default)]
    pub kind: String,
    /// The workload's name, in the autoscaler's namespace.
    #[serde(default)]
    pub name: String,
}

/// One entry of `spec.metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricSpec {
    /// `Resource`, `ContainerResource`, `Pods`, `Object` or `External`.
    #[serde(rename = "type", default)]
    pub type_: String,
    /// A resource of each pod against its requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceMetricSource>,
    /// A resource of one container of each pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_resource: Option<ContainerResourceMetricSource>,
    /// A per-pod metric averaged over the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<PodsMetricSource>,
    /// A metric of another object (not measured by pier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<serde_json::Value>,
    /// A metric from outside the cluster (not measured by pier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<serde_json::Value>,
}

/// `metrics[].resource`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceMetricSource {
    /// `cpu` or `memory`.
    #[serde(default)]
    pub name: String,
    /// The value aimed for.
    #[serde(default)]
    pub target: MetricTarget,
}

/// `metrics[].containerResource`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerResourceMetricSource {
    /// `cpu` or `memory`.
    #[serde(default)]
    pub name: String,
    /// Which container of each pod.
    #[serde(default)]
    pub container: String,
    /// The value aimed for.
    #[serde(default)]
    pub target: MetricTarget,
}

/// `metrics[].pods`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodsMetricSource {
    /// Which metric.
    #[serde(default)]
    pub metric: MetricIdentifier,
    /// The value aimed for (an `AverageValue`).
    #[serde(default)]
    pub target: MetricTarget,
}

/// A metric's name and selector.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricIdentifier {
    /// `requests-per-second` or `connections-per-second`.
    #[serde(default)]
    pub name: String,
    /// Narrows the metric's series (accepted, not used: pier's metrics have one series per pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// `target`: a utilisation, an average per pod, or a total.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricTarget {
    /// `Utilization`, `AverageValue` or `Value`.
    #[serde(rename = "type", default)]
    pub type_: String,
    /// Percent of the pods' requests (`Utilization`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_utilization: Option<i64>,
    /// A quantity per pod (`AverageValue`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_value: Option<String>,
    /// A quantity in all (`Value`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// `spec.behavior`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HpaBehavior {
    /// Rules for adding replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up: Option<ScalingRules>,
    /// Rules for removing replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<ScalingRules>,
}

/// `behavior.scaleUp` / `behavior.scaleDown`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalingRules {
    /// Seconds of past recommendations considered (up: 0, down: 300 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stabilization_window_seconds: Option<i64>,
    /// `Max` (default), `Min` or `Disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select_policy: Option<String>,
    /// How much may change per period.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<ScalingPolicy>,
}

/// One scaling policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalingPolicy {
    /// `Pods` or `Percent`.
    #[serde(rename = "type", default)]
    pub type_: String,
    /// Pods, or percent of the replicas at the period's start.
    #[serde(default)]
    pub value: i64,
    /// The period in seconds (1 to 1800).
    #[serde(default)]
    pub period_seconds: i64,
}

/// `HorizontalPodAutoscaler.status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HpaStatus {
    /// The generation this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the replicas were last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<String>,
    /// Replicas of the target when last measured.
    #[serde(default)]
    pub current_replicas: i64,
    /// Replicas the autoscaler asks for.
    #[serde(default)]
    pub desired_replicas: i64,
    /// The last values measured, one per metric.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub current_metrics: Vec<MetricStatus>,
    /// `AbleToScale`, `ScalingActive`, `ScalingLimited`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<HpaCondition>,
}

/// One entry of `status.currentMetrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricStatus {
    /// As the spec's metric.
    #[serde(rename = "type")]
    pub type_: String,
    /// For `Resource`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceMetricStatus>,
    /// For `ContainerResource`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_resource: Option<ContainerResourceMetricStatus>,
    /// For `Pods`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<PodsMetricStatus>,
}

/// `currentMetrics[].resource`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceMetricStatus {
    /// `cpu` or `memory`.
    pub name: String,
    /// The value measured.
    pub current: MetricValueStatus,
}

/// `currentMetrics[].containerResource`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerResourceMetricStatus {
    /// `cpu` or `memory`.
    pub name: String,
    /// Which container.
    pub container: String,
    /// The value measured.
    pub current: MetricValueStatus,
}

/// `currentMetrics[].pods`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodsMetricStatus {
    /// Which metric.
    pub metric: MetricIdentifier,
    /// The value measured.
    pub current: MetricValueStatus,
}

/// A measured value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricValueStatus {
    /// Percent of requests, averaged over the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_utilization: Option<i64>,
    /// A quantity per pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_value: Option<String>,
    /// A quantity in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// One of `status.conditions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HpaCondition {
    /// `AbleToScale`, `ScalingActive` or `ScalingLimited`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// When the status last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// A CamelCase reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What a person reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

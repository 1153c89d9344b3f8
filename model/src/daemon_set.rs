//! `apps/v1/DaemonSet`: one pod of a template on every node, under Kubernetes' field names
//! and status so `kubectl get|rollout status ds` read it as a cluster's.

use serde::{Deserialize, Serialize};

use super::deployment::PodTemplateSpec;
use super::meta::{IntOrString, LabelSelector, ObjectMeta};

/// Label with the hash of the template a DaemonSet's pod was made from (Kubernetes' name).
pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";

/// A pod per node (`apps/v1/DaemonSet`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DaemonSet {
    /// `apps/v1`.
    pub api_version: String,
    /// `DaemonSet`.
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Desired state.
    #[serde(default)]
    pub spec: DaemonSetSpec,
    /// Observed state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<DaemonSetStatus>,
}

/// Desired state of a DaemonSet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DaemonSetSpec {
    /// Which pods belong to it.
    #[serde(default)]
    pub selector: LabelSelector,
    /// The pod each node runs.
    #[serde(default)]
    pub template: PodTemplateSpec,
    /// How pods of an older template are replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_strategy: Option<DaemonSetUpdateStrategy>,
    /// Seconds a pod must be ready to count as available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ready_seconds: Option<i64>,
    /// Old revisions to keep (accepted; pier keeps none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<i64>,
}

/// `spec.updateStrategy`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DaemonSetUpdateStrategy {
    /// `RollingUpdate` (the default) or `OnDelete`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub strategy_type: Option<String>,
    /// The rolling update's bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<RollingUpdateDaemonSet>,
}

/// `spec.updateStrategy.rollingUpdate`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollingUpdateDaemonSet {
    /// Nodes whose pod may be down at once during an update (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
    /// Nodes that may run an old and a new pod at once (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<IntOrString>,
}

/// Observed state of a DaemonSet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DaemonSetStatus {
    /// Nodes that should run its pod.
    #[serde(default)]
    pub desired_number_scheduled: i64,
    /// Nodes that run at least one of its pods and should.
    #[serde(default)]
    pub current_number_scheduled: i64,
    /// Nodes that run one of its pods and should not.
    #[serde(default)]
    pub number_misscheduled: i64,
    /// Nodes whose pod is ready.
    #[serde(default)]
    pub number_ready: i64,
    /// Nodes whose pod is of the current template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_number_scheduled: Option<i64>,
    /// Nodes whose pod is available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_available: Option<i64>,
    /// Nodes that should run an available pod and do not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_unavailable: Option<i64>,
    /// The generation these counts are about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<u64>,
}

impl DaemonSet {
    /// The API server's defaults: a rolling update of one node at a time, ten revisions kept.
    pub fn set_defaults(&mut self) {
        let strategy = self
            .spec
            .update_strategy
            .get_or_insert_with(Default::default);
        let kind = strategy
            .strategy_type
            .get_or_insert_with(|| "RollingUpdate".into());
        if kind == "RollingUpdate" {
            let rolling = strategy.rolling_update.get_or_insert_with(Default::default);
            rolling.max_unavailable.get_or_insert(IntOrString::Int(1));
            rolling.max_surge.get_or_insert(IntOrString::Int(0));
        }
        self.spec.revision_history_limit.get_or_insert(10);
    }
}

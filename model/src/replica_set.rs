//! `apps/v1/ReplicaSet`: one revision of a Deployment's pod template, as the Deployment
//! controller records it (`deployment.kubernetes.io/revision`), so history and undo can find
//! the templates a Deployment ran.

use serde::{Deserialize, Serialize};

use super::deployment::PodTemplateSpec;
use super::meta::{LabelSelector, ObjectMeta};

/// Annotation with a ReplicaSet's revision number among its Deployment's (Kubernetes' name).
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";

/// Annotation a user sets on a Deployment to say why it changed; its ReplicaSets keep it.
pub const CHANGE_CAUSE_ANNOTATION: &str = "kubernetes.io/change-cause";
/// A Rollout's revision number on its ReplicaSets (Argo Rollouts' name).
pub const ROLLOUT_REVISION_ANNOTATION: &str = "rollout.argoproj.io/revision";

/// A set of pods of one template (`apps/v1/ReplicaSet`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaSet {
    /// `apps/v1`.
    pub api_version: String,
    /// `ReplicaSet`.
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Desired state.
    #[serde(default)]
    pub spec: ReplicaSetSpec,
    /// Its pods as last counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ReplicaSetStatus>,
}

/// Desired state of a ReplicaSet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaSetSpec {
    /// Pods wanted of this template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i64>,
    /// Which pods belong to it.
    #[serde(default)]
    pub selector: LabelSelector,
    /// The pod template, labelled with its `pod-template-hash`.
    #[serde(default)]
    pub template: PodTemplateSpec,
    /// Seconds a pod must be ready to count as available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ready_seconds: Option<i64>,
}

/// Observed state of a ReplicaSet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaSetStatus {
    /// Pods that exist and are not being deleted.
    #[serde(default)]
    pub replicas: i64,
    /// Of those, pods whose labels match the template's.
    #[serde(default)]
    pub fully_labeled_replicas: i64,
    /// Pods that are ready.
    #[serde(default)]
    pub ready_replicas: i64,
    /// Pods that are available (ready).
    #[serde(default)]
    pub available_replicas: i64,
    /// The generation these counts are about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<u64>,
}

impl ReplicaSet {
    /// Its revision, from the Deployment's or the Rollout's annotation; 0 when missing or
    /// malformed.
    pub fn revision(&self) -> u64 {
        let a = &self.metadata.annotations;
        a.get(REVISION_ANNOTATION)
            .or_else(|| a.get(ROLLOUT_REVISION_ANNOTATION))
            .and_then(|r| r.parse().ok())
            .unwrap_or(0)
    }
}

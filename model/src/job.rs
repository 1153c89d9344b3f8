//! `batch/v1/Job`: pods run to completion, `completions` of them succeeding, at most
//! `parallelism` at a time, retried up to `backoffLimit` failures, under Kubernetes' field
//! names and status so `kubectl get|wait|describe job` read it as a cluster's.

use serde::{Deserialize, Serialize};

use super::deployment::PodTemplateSpec;
use super::meta::LabelSelector;
use super::meta::ObjectMeta;

/// Label naming a pod's Job (Kubernetes' current name).
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// Label with the uid of a pod's Job (Kubernetes' current name).
pub const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
/// The older, unprefixed names of the same two labels, which Kubernetes still writes.
pub const LEGACY_LABELS: [&str; 2] = ["job-name", "controller-uid"];
/// Finalizer that keeps a finished pod until its Job has counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// Failures allowed before a Job fails, when `backoffLimit` is not given.
pub const DEFAULT_BACKOFF_LIMIT: i64 = 6;

/// A run-to-completion workload (`batch/v1/Job`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    /// `batch/v1`.
    pub api_version: String,
    /// `Job`.
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Desired state.
    #[serde(default)]
    pub spec: JobSpec,
    /// Observed state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<JobStatus>,
}

/// Desired state of a Job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSpec {
    /// Pods that must succeed; unset, the Job is done once any pod succeeds and the rest end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completions: Option<i64>,
    /// Pods that may run at once (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<i64>,
    /// Failed pods (or, under `OnFailure`, container restarts) tolerated (default 6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_limit: Option<i64>,
    /// Seconds the Job may be active before it fails with `DeadlineExceeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<i64>,
    /// Seconds after it finishes that the Job (and its pods) are deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds_after_finished: Option<i64>,
    /// Whether the Job is held: no pods run while it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// `NonIndexed` (the default and the only mode pier runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_mode: Option<String>,
    /// Which pods belong to it (written by the user only with `manualSelector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Whether `selector` was written by the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual_selector: Option<bool>,
    /// The pods to run; `restartPolicy` must be `Never` or `OnFailure`.
    #[serde(default)]
    pub template: PodTemplateSpec,
}

/// Observed state of a Job, as Kubernetes' Job controller reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    /// When the Job first ran pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// When it completed (not set when it failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    /// Pods pending or running.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub active: i64,
    /// Of those, pods that are ready.
    #[serde(default)]
    pub ready: i64,
    /// Pods being deleted.
    #[serde(default)]
    pub terminating: i64,
    /// Pods that succeeded.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub succeeded: i64,
    /// Pods that failed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed: i64,
    /// `Complete`, `Failed`, `SuccessCriteriaMet`, `FailureTarget`, `Suspended`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<JobCondition>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// A Job condition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobCondition {
    /// Its type.
    #[serde(rename = "type")]
    pub condition_type: String,
    /// `True` or `False`.
    pub status: String,
    /// Why, in one word.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why, in a sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When it was last checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<String>,
    /// When its status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

impl Job {
    /// The API server's selector for a Job whose user wrote none (`manualSelector` unset):
    /// its uid, as a label its template (and so each of its pods) carries with its name.
    pub fn generate_selector(&mut self, uid: &str) {
        if self.spec.manual_selector == Some(true) || self.spec.selector.is_some() {
            return;
        }
        let labels = &mut self.spec.template.metadata.labels;
        for (key, value) in [
            (CONTROLLER_UID_LABEL, uid),
            (JOB_NAME_LABEL, self.metadata.name.as_str()),
            (LEGACY_LABELS[1], uid),
            (LEGACY_LABELS[0], self.metadata.name.as_str()),
        ] {
            labels.insert(key.into(), value.into());
        }
        let mut selector = LabelSelector::default();
        selector
            .match_labels
            .insert(CONTROLLER_UID_LABEL.into(), uid.into());
        self.spec.selector = Some(selector);
    }

    /// `Complete` or `Failed` once the Job has finished, from its conditions.
    pub fn finished(&self) -> Option<&'static str> {
        let conditions = self.status.as_ref().map(|s| s.conditions.as_slice());
        ["Complete", "Failed"].into_iter().find(|t| {
            conditions
                .unwrap_or_default()
                .iter()
                .any(|c| c.condition_type == *t && c.status == "True")
        })
    }

    /// Pods that may run at once.
    pub fn parallelism(&self) -> i64 {
        self.spec.parallelism.unwrap_or(1).max(0)
    }

    /// Failures tolerated.
    pub fn backoff_limit(&self) -> i64 {
        self.spec
            .backoff_limit
            .unwrap_or(DEFAULT_BACKOFF_LIMIT)
            .max(0)
    }
}

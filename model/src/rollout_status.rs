//! `Rollout.status` as Argo Rollouts writes it: where a release stands, its pause, its
//! weights and its conditions.

use serde::{Deserialize, Serialize};

/// `Rollout.status`, under Argo's field names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// `Healthy`, `Progressing`, `Paused` or `Degraded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Why the phase is what it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Set by `pier rollout abort` or a failed analysis: traffic back on stable.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub abort: bool,
    /// When the rollout was aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted_at: Option<String>,
    /// Why the rollout is paused; cleared by `pier rollout promote`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pause_conditions: Vec<PauseCondition>,
    /// Whether the controller paused the rollout (at a pause step).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub controller_pause: bool,
    /// Skip the remaining steps (`pier rollout promote --full`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub promote_full: bool,
    /// Hash of the template being released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_pod_hash: Option<String>,
    /// Hash of the steps being run, so edited steps start again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step_hash: Option<String>,
    /// Index of the step being run; the step count once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step_index: Option<i64>,
    /// Hash of the template that serves as stable.
    #[serde(default, rename = "stableRS", skip_serializing_if = "Option::is_none")]
    pub stable_rs: Option<String>,
    /// Weights and analysis of the canary.
    #[serde(default)]
    pub canary: CanaryStatus,
    /// Live pods of the rollout.
    #[serde(default)]
    pub replicas: i64,
    /// Of those, pods of the current template.
    #[serde(default)]
    pub updated_replicas: i64,
    /// Ready pods.
    #[serde(default)]
    pub ready_replicas: i64,
    /// Available pods.
    #[serde(default)]
    pub available_replicas: i64,
    /// The generation this status is about (a string, as Argo writes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<String>,
    /// The label selector as a string, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Conditions (`Progressing`, `Available`, `Paused`, `Healthy`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<RolloutCondition>,
    /// The `spec.restartAt` whose restart finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_at: Option<String>,
}

/// Why a rollout is paused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PauseCondition {
    /// `CanaryPauseStep` or `InconclusiveAnalysisRun`.
    pub reason: String,
    /// When the pause began.
    pub start_time: String,
}

/// `status.canary`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    /// The weights last written to the routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<TrafficWeights>,
    /// The analysis of the current step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step_analysis_run_status: Option<AnalysisRunStatusRef>,
    /// The background analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_background_analysis_run_status: Option<AnalysisRunStatusRef>,
}

/// The traffic split between the canary and the stable pods.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficWeights {
    /// The canary's share.
    pub canary: WeightDestination,
    /// The stable pods' share.
    pub stable: WeightDestination,
}

/// One side of the split.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WeightDestination {
    /// Percent of traffic.
    pub weight: i64,
    /// The Service it goes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// The template hash of the pods behind it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template_hash: Option<String>,
}

/// An AnalysisRun a rollout waits on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunStatusRef {
    /// The AnalysisRun's name.
    pub name: String,
    /// Its phase (`Pending`, `Running`, `Successful`, `Failed`, `Error`, `Inconclusive`).
    pub status: String,
    /// Its message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A rollout condition: `Completed`, `Progressing`, `Available`, `Paused`, `Healthy`; the same
/// fields as a Deployment's.
pub type RolloutCondition = super::deployment::DeploymentCondition;

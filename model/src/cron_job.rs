//! `batch/v1/CronJob`: a Job made from a template on a cron schedule, under Kubernetes' field
//! names and status; `cron_schedule.rs` reads the schedule.

use serde::{Deserialize, Serialize};

use super::job::JobSpec;
use super::meta::{ObjectMeta, ObjectReference};

/// Annotation with the time a CronJob's Job was scheduled for (Kubernetes' name).
pub const SCHEDULED_TIMESTAMP_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Finished successful Jobs kept when `successfulJobsHistoryLimit` is not given.
pub const DEFAULT_SUCCESSFUL_HISTORY: i64 = 3;
/// Finished failed Jobs kept when `failedJobsHistoryLimit` is not given.
pub const DEFAULT_FAILED_HISTORY: i64 = 1;

/// A scheduled Job (`batch/v1/CronJob`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CronJob {
    /// `batch/v1`.
    pub api_version: String,
    /// `CronJob`.
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Desired state.
    #[serde(default)]
    pub spec: CronJobSpec,
    /// Observed state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<CronJobStatus>,
}

/// Desired state of a CronJob.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CronJobSpec {
    /// When to run: five cron fields, or a descriptor (`@hourly`, `@every 5m`).
    #[serde(default)]
    pub schedule: String,
    /// The IANA time zone the schedule is read in (default: UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Seconds after its time a missed run may still start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_deadline_seconds: Option<i64>,
    /// `Allow` (the default), `Forbid` or `Replace`: what a run does while one is active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_policy: Option<String>,
    /// Whether runs are held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// The Job each run makes.
    #[serde(default)]
    pub job_template: JobTemplateSpec,
    /// Finished successful Jobs to keep (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successful_jobs_history_limit: Option<i64>,
    /// Finished failed Jobs to keep (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_jobs_history_limit: Option<i64>,
}

/// The Job a CronJob makes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobTemplateSpec {
    /// Labels and annotations of the Jobs.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The Jobs' spec.
    #[serde(default)]
    pub spec: JobSpec,
}

/// Observed state of a CronJob.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CronJobStatus {
    /// Its Jobs still running.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<ObjectReference>,
    /// The time the last run was scheduled for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<String>,
    /// When a Job of it last completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<String>,
}

//! Planning a CronJob's pass as Kubernetes' CronJob controller (v2) does: track its running
//! Jobs in `status.active`, note the last success, keep only `successfulJobsHistoryLimit`
//! and `failedJobsHistoryLimit` finished Jobs, and when a scheduled time has come (within
//! `startingDeadlineSeconds`), make its Job `<name>-<minutes since the epoch>` unless the
//! `concurrencyPolicy` says otherwise. Pure functions; `cron_job_controller.rs` applies them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pier_model::cron_job::{
    CronJob, CronJobStatus, DEFAULT_FAILED_HISTORY, DEFAULT_SUCCESSFUL_HISTORY,
    SCHEDULED_TIMESTAMP_ANNOTATION,
};
use pier_model::cron_schedule::Schedule;
use pier_model::meta::{ObjectReference, OwnerReference};
use pier_model::time::{parse_rfc3339, rfc3339};
use pier_model::Job;

use super::job::JobEvent;

/// What one pass does to a CronJob and its Jobs.
#[derive(Debug, Default)]
pub struct CronPlan {
    /// The CronJob's status after this pass.
    pub status: CronJobStatus,
    /// A Job to create for the time that has come.
    pub create: Option<Job>,
    /// Jobs to delete (history beyond its limits; running ones a `Replace` supersedes).
    pub delete: Vec<String>,
    /// Events to report.
    pub events: Vec<JobEvent>,
    /// When the next scheduled time comes.
    pub requeue: Option<Duration>,
}

fn event(warning: bool, reason: &'static str, message: String) -> JobEvent {
    JobEvent {
        warning,
        reason,
        message,
    }
}

fn reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        namespace: job.metadata.namespace().to_string(),
        name: job.metadata.name.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..ObjectReference::default()
    }
}

/// Plans the pass for `cron`, whose Jobs are `jobs`, at `now`.
pub fn plan(cron: &CronJob, jobs: &[&Job], now: SystemTime) -> CronPlan {
    let mut out = CronPlan {
        status: cron.status.clone().unwrap_or_default(),
        ..CronPlan::default()
    };
    track(jobs, &mut out);
    prune(cron, jobs, &mut out);
    if cron.metadata.deletion_timestamp.is_some() || cron.spec.suspend == Some(true) {
        return out;
    }
    let schedule = match Schedule::parse(&cron.spec.schedule, cron.spec.time_zone.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            out.events.push(event(
                true,
                "InvalidSchedule",
                format!("invalid schedule: {e}"),
            ));
            return out;
        }
    };
    let made = cron
        .metadata
        .creation_timestamp
        .as_deref()
        .and_then(parse_rfc3339);
    let last = out
        .status
        .last_schedule_time
        .as_deref()
        .and_then(parse_rfc3339);
    let Some(anchor) = last.or(made) else {
        return out;
    };
    let mut earliest = anchor;
    if let Some(deadline) = cron
        .spec
        .starting_deadline_seconds
        .and_then(|s| u64::try_from(s).ok())
    {
        earliest = earliest.max(now - Duration::from_secs(deadline));
    }
    if let Some(next) = schedule.next_from(anchor, now) {
        let wait = next.duration_since(now).unwrap_or_default();
        out.requeue = Some(wait + Duration::from_millis(100));
    }
    let Some(due) = schedule.latest(earliest, now) else {
        return out;
    };
    run(cron, jobs, due, &mut out);
    out
}

/// Lists the running Jobs as active, reports those that finished since, and takes the
/// newest completion as the last success.
fn track(jobs: &[&Job], out: &mut CronPlan) {
    let was_active: Vec<String> = out.status.active.iter().map(|r| r.name.clone()).collect();
    for job in jobs {
        let Some(condition) = job.finished() else {
            continue;
        };
        if was_active.contains(&job.metadata.name) {
            out.events.push(event(
                false,
                "SawCompletedJob",
                format!(
                    "Saw completed job: {}, condition: {condition}",
                    job.metadata.name
                ),
            ));
        }
        let completed = job.status.as_ref().and_then(|s| s.completion_time.clone());
        if let Some(t) = completed.filter(|_| condition == "Complete") {
            let newer = out
                .status
                .last_successful_time
                .as_deref()
                .and_then(parse_rfc3339)
                .is_none_or(|last| parse_rfc3339(&t).is_some_and(|t| t > last));
            if newer {
                out.status.last_successful_time = Some(t);
            }
        }
    }
    let mut active: Vec<ObjectReference> = jobs
        .iter()
        .filter(|j| j.finished().is_none() && j.metadata.deletion_timestamp.is_none())
        .map(|j| reference(j))
        .collect();
    active.sort_by(|a, b| a.name.cmp(&b.name));
    out.status.active = active;
}

/// Deletes the oldest finished Jobs beyond the history limits.
fn prune(cron: &CronJob, jobs: &[&Job], out: &mut CronPlan) {
    for (condition, limit) in [
        (
            "Complete",
            cron.spec
                .successful_jobs_history_limit
                .unwrap_or(DEFAULT_SUCCESSFUL_HISTORY),
        ),
        (
            "Failed",
            cron.spec
                .failed_jobs_history_limit
                .unwrap_or(DEFAULT_FAILED_HISTORY),
        ),
    ] {
        let mut finished: Vec<&&Job> = jobs
            .iter()
            .filter(|j| j.finished() == Some(condition) && j.metadata.deletion_timestamp.is_none())
            .collect();
        finished.sort_by_key(|j| started(j));
        let extra = finished
            .len()
            .saturating_sub(usize::try_from(limit.max(0)).unwrap_or(0));
        for job in &finished[..extra] {
            out.delete.push(job.metadata.name.clone());
            out.events.push(event(
                false,
                "SuccessfulDelete",
                format!("Deleted job {}", job.metadata.name),
            ));
        }
    }
}

/// When a Job started (its start time, or its creation).
fn started(job: &Job) -> Option<SystemTime> {
    job.status
        .as_ref()
        .and_then(|s| s.start_time.as_deref())
        .or(job.metadata.creation_timestamp.as_deref())
        .and_then(parse_rfc3339)
}

/// Starts the run scheduled for `due`, as the concurrency policy allows.
fn run(cron: &CronJob, jobs: &[&Job], due: SystemTime, out: &mut CronPlan) {
    let name = job_name(cron, due);
    // Made already (a pass whose status write was lost, or a run in the same minute).
    if jobs.iter().any(|j| j.metadata.name == name) {
        out.status.last_schedule_time = Some(rfc3339(due));
        return;
    }
    let running: Vec<String> = out.status.active.iter().map(|r| r.name.clone()).collect();
    match cron.spec.concurrency_policy.as_deref() {
        Some("Forbid") if !running.is_empty() => {
            out.events.push(event(
                false,
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid"
                    .into(),
            ));
            return;
        }
        Some("Replace") => {
            for name in running {
                out.events.push(event(
                    false,
                    "SuccessfulDelete",
                    format!("Deleted job {name}"),
                ));
                out.delete.push(name);
            }
            out.status.active.clear();
        }
        _ => {}
    }
    let job = new_job(cron, &name, due);
    out.events.push(event(
        false,
        "SuccessfulCreate",
        format!("Created job {name}"),
    ));
    out.status.active.push(reference(&job));
    out.status.last_schedule_time = Some(rfc3339(due));
    out.create = Some(job);
}

/// Kubernetes' name for the run scheduled at `t`: `<cronjob>-<minutes since the epoch>`.
fn job_name(cron: &CronJob, t: SystemTime) -> String {
    let minutes = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / 60;
    format!("{}-{minutes}", cron.metadata.name)
}

/// The Job of the run scheduled at `due`: the template's, controlled by the CronJob.
fn new_job(cron: &CronJob, name: &str, due: SystemTime) -> Job {
    let template = &cron.spec.job_template;
    let mut job = Job {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        spec: template.spec.clone(),
        ..Job::default()
    };
    job.metadata.name = name.to_string();
    job.metadata.namespace = cron.metadata.namespace().to_string();
    job.metadata.labels = template.metadata.labels.clone();
    job.metadata.annotations = template.metadata.annotations.clone();
    job.metadata
        .annotations
        .insert(SCHEDULED_TIMESTAMP_ANNOTATION.into(), rfc3339(due));
    job.metadata.owner_references = vec![OwnerReference::controller(
        "batch/v1",
        "CronJob",
        &cron.metadata,
    )];
    job
}

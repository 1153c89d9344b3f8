//! Planning a Job's next step as Kubernetes' Job controller does: count each finished pod
//! once (its `batch.kubernetes.io/job-tracking` finalizer comes off in the same write as the
//! count), fail the Job past `backoffLimit` or `activeDeadlineSeconds`, complete it at
//! `completions` successes, and otherwise keep `parallelism` pods running, holding back a
//! replacement after failures by Kubernetes' backoff (10 s doubling to 6 min). Pure
//! functions; `job_controller.rs` applies them.

use std::time::{Duration, SystemTime};

use pier_model::job::{
    Job, JobCondition, JobStatus, CONTROLLER_UID_LABEL, JOB_NAME_LABEL, LEGACY_LABELS,
    TRACKING_FINALIZER,
};
use pier_model::meta::OwnerReference;
use pier_model::pod::RESTARTS_ANNOTATION;
use pier_model::time::{parse_rfc3339, rfc3339};
use pier_model::Pod;

/// Kubernetes' first delay before a failed pod is replaced; it doubles per failure.
pub const FAILURE_BACKOFF: Duration = Duration::from_secs(10);
/// Longest delay before a failed pod is replaced.
const MAX_FAILURE_BACKOFF: Duration = Duration::from_secs(360);

/// An event the controller reports on the Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEvent {
    /// Whether it is a warning.
    pub warning: bool,
    /// Why, in one word.
    pub reason: &'static str,
    /// What happened.
    pub message: String,
}

impl JobEvent {
    /// Records the event about `about`.
    pub fn record(&self, events: &crate::events::Recorder, about: &pier_model::Object) {
        if self.warning {
            events.warning(about, self.reason, self.message.clone());
        } else {
            events.normal(about, self.reason, self.message.clone());
        }
    }
}

/// What one pass does to a Job and its pods.
#[derive(Debug, Default)]
pub struct JobPlan {
    /// The Job's status after this pass.
    pub status: JobStatus,
    /// Finished pods counted now: their finalizer comes off.
    pub counted: Vec<String>,
    /// Pods to create.
    pub create: usize,
    /// Pods to terminate.
    pub terminate: Vec<String>,
    /// Events to report.
    pub events: Vec<JobEvent>,
    /// When to look again though nothing changes (backoff, deadline, TTL).
    pub requeue: Option<Duration>,
    /// Whether the Job's TTL after finishing has run out: it is deleted.
    pub expired: bool,
}

/// The controller's memory of a Job between passes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// When a pod of the Job last failed, as this controller saw it.
    pub last_failure: Option<SystemTime>,
}

/// How a pod ended, if it has: `Some(true)` succeeded, `Some(false)` failed (or was stopped
/// by its node after a delete before it succeeded).
pub fn outcome(pod: &Pod) -> Option<bool> {
    match pod.status.phase.as_deref() {
        Some("Succeeded") => Some(true),
        Some("Failed") => Some(false),
        _ if pod.is_terminating() && pod.metadata.deletion_grace_period_seconds == Some(0) => {
            Some(false)
        }
        _ => None,
    }
}

/// Whether the Job still has to count `pod`.
pub fn tracked(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .iter()
        .any(|f| f == TRACKING_FINALIZER)
}

/// A pod running or about to: not ended, not being deleted.
fn active(pod: &Pod) -> bool {
    outcome(pod).is_none() && !pod.is_terminating()
}

/// Plans the pass for `job` whose pods are `pods`, at `now`.
pub fn plan(job: &Job, pods: &[&Pod], memory: &mut Memory, now: SystemTime) -> JobPlan {
    let mut out = JobPlan {
        status: job.status.clone().unwrap_or_default(),
        ..JobPlan::default()
    };
    count_finished(pods, memory, now, &mut out);
    let active: Vec<&Pod> = pods.iter().copied().filter(|p| active(p)).collect();
    let mut running = active.len() as i64;
    if job.finished().is_some() {
        out.terminate = active.iter().map(|p| p.metadata.name.clone()).collect();
        running = 0;
        expire(job, now, &mut out);
    } else if let Some((reason, message)) = failure(job, &out.status, &active, now) {
        out.events.push(JobEvent {
            warning: true,
            reason,
            message: message.into(),
        });
        let now = rfc3339(now);
        set(
            &mut out.status,
            "FailureTarget",
            "True",
            reason,
            message,
            &now,
        );
        set(&mut out.status, "Failed", "True", reason, message, &now);
        out.terminate = active.iter().map(|p| p.metadata.name.clone()).collect();
        running = 0;
    } else if complete(job, &out.status, running) {
        let stamp = rfc3339(now);
        let message = "Reached expected number of succeeded pods";
        set(
            &mut out.status,
            "SuccessCriteriaMet",
            "True",
            "CompletionsReached",
            message,
            &stamp,
        );
        set(
            &mut out.status,
            "Complete",
            "True",
            "CompletionsReached",
            message,
            &stamp,
        );
        out.status.completion_time = Some(stamp);
        out.events.push(JobEvent {
            warning: false,
            reason: "Completed",
            message: "Job completed".into(),
        });
        out.terminate = active.iter().map(|p| p.metadata.name.clone()).collect();
        running = 0;
        expire(job, now, &mut out);
    } else if job.spec.suspend == Some(true) {
        suspend(job, &active, now, &mut out);
        running = 0;
    } else {
        resume(&mut out.status, now);
        running = keep_running(job, &active, memory, now, &mut out);
        watch_deadline(job, now, &mut out);
    }
    out.status.active = running;
    out.status.ready = active.iter().filter(|p| p.is_ready()).count() as i64;
    out.status.terminating = pods
        .iter()
        .filter(|p| p.is_terminating() && outcome(p).is_none())
        .count() as i64;
    out
}

/// Counts each tracked pod that has ended.
fn count_finished(pods: &[&Pod], memory: &mut Memory, now: SystemTime, out: &mut JobPlan) {
    for pod in pods.iter().filter(|p| tracked(p)) {
        match outcome(pod) {
            Some(true) => out.status.succeeded += 1,
            Some(false) => {
                out.status.failed += 1;
                memory.last_failure = Some(now);
            }
            None => continue,
        }
        out.counted.push(pod.metadata.name.clone());
    }
}

/// Why the Job fails now, if it does: past its backoff limit (failed pods, or under
/// `OnFailure` container restarts of its running pods) or its active deadline.
fn failure(
    job: &Job,
    status: &JobStatus,
    active: &[&Pod],
    now: SystemTime,
) -> Option<(&'static str, &'static str)> {
    let restarts: i64 = if job.spec.template.spec.restart_policy.as_deref() == Some("OnFailure") {
        active
            .iter()
            .filter_map(|p| p.metadata.annotations.get(RESTARTS_ANNOTATION))
            .filter_map(|r| r.parse::<i64>().ok())
            .sum()
    } else {
        0
    };
    if status.failed + restarts > job.backoff_limit() {
        return Some((
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ));
    }
    if deadline_left(job, status, now).is_some_and(|left| left.is_zero()) {
        return Some((
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
        ));
    }
    None
}

/// How long the Job has before its `activeDeadlineSeconds` run out, if it has one and has
/// started.
fn deadline_left(job: &Job, status: &JobStatus, now: SystemTime) -> Option<Duration> {
    let deadline = job
        .spec
        .active_deadline_seconds
        .and_then(|s| u64::try_from(s).ok())?;
    let start = status.start_time.as_deref().and_then(parse_rfc3339)?;
    Some(Duration::from_secs(deadline).saturating_sub(since(Some(start), now)))
}

/// Whether the Job has succeeded: `completions` pods did, or (with none set) one did and no
/// other is running.
fn complete(job: &Job, status: &JobStatus, running: i64) -> bool {
    match job.spec.completions {
        Some(c) => status.succeeded >= c,
        None => status.succeeded >= 1 && running == 0,
    }
}

/// Holds a suspended Job: its pods go, and it says so.
fn suspend(job: &Job, active: &[&Pod], now: SystemTime, out: &mut JobPlan) {
    out.terminate = active.iter().map(|p| p.metadata.name.clone()).collect();
    let already = condition(&out.status, "Suspended").is_some_and(|c| c.status == "True");
    if !already {
        set(
            &mut out.status,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            &rfc3339(now),
        );
        out.events.push(JobEvent {
            warning: false,
            reason: "Suspended",
            message: "Job suspended".into(),
        });
    }
    // A suspended Job's clock stops: it starts again when resumed.
    if job.finished().is_none() {
        out.status.start_time = None;
    }
}

/// Marks a Job that was suspended as resumed.
fn resume(status: &mut JobStatus, now: SystemTime) {
    if condition(status, "Suspended").is_some_and(|c| c.status == "True") {
        set(
            status,
            "Suspended",
            "False",
            "JobResumed",
            "Job resumed",
            &rfc3339(now),
        );
    }
}

/// Keeps the pods the Job wants running: more when it is short (after the failure backoff),
/// fewer when `parallelism` went down. Answers how many will be running.
fn keep_running(
    job: &Job,
    active: &[&Pod],
    memory: &Memory,
    now: SystemTime,
    out: &mut JobPlan,
) -> i64 {
    if out.status.start_time.is_none() {
        out.status.start_time = Some(rfc3339(now));
    }
    let running = active.len() as i64;
    let wanted = match job.spec.completions {
        Some(c) => job.parallelism().min((c - out.status.succeeded).max(0)),
        None if out.status.succeeded > 0 => 0,
        None => job.parallelism(),
    };
    if running > wanted {
        let mut newest: Vec<&&Pod> = active.iter().collect();
        newest.sort_by(|a, b| {
            b.metadata
                .creation_timestamp
                .cmp(&a.metadata.creation_timestamp)
        });
        let extra = (running - wanted) as usize;
        out.terminate = newest[..extra]
            .iter()
            .map(|p| p.metadata.name.clone())
            .collect();
        return wanted;
    }
    if running == wanted {
        return running;
    }
    let wait = backoff(out.status.failed).saturating_sub(since(memory.last_failure, now));
    if out.status.failed > 0 && memory.last_failure.is_some() && !wait.is_zero() {
        out.requeue = Some(wait);
        return running;
    }
    out.create = (wanted - running) as usize;
    wanted
}

/// When a running Job's `activeDeadlineSeconds` will run out, a requeue for then.
fn watch_deadline(job: &Job, now: SystemTime, out: &mut JobPlan) {
    if let Some(left) = deadline_left(job, &out.status, now) {
        let soonest = out.requeue.map_or(left, |r| r.min(left));
        out.requeue = Some(soonest.max(Duration::from_millis(100)));
    }
}

/// The delay before replacing a pod after `failed` failures.
fn backoff(failed: i64) -> Duration {
    let doublings = u32::try_from(failed.saturating_sub(1).clamp(0, 16)).unwrap_or(16);
    FAILURE_BACKOFF
        .saturating_mul(1 << doublings)
        .min(MAX_FAILURE_BACKOFF)
}

fn since(t: Option<SystemTime>, now: SystemTime) -> Duration {
    t.and_then(|t| now.duration_since(t).ok())
        .unwrap_or_default()
}

/// Whether a finished Job's `ttlSecondsAfterFinished` has run out; when it will, a requeue.
fn expire(job: &Job, now: SystemTime, out: &mut JobPlan) {
    let Some(ttl) = job
        .spec
        .ttl_seconds_after_finished
        .and_then(|s| u64::try_from(s).ok())
    else {
        return;
    };
    let finished = ["Complete", "Failed"]
        .iter()
        .filter_map(|t| condition(&out.status, t))
        .find(|c| c.status == "True")
        .and_then(|c| c.last_transition_time.as_deref())
        .and_then(parse_rfc3339)
        .unwrap_or(now);
    let left = Duration::from_secs(ttl).saturating_sub(since(Some(finished), now));
    if left.is_zero() {
        out.expired = true;
    } else {
        out.requeue = Some(left);
    }
}

fn condition<'a>(status: &'a JobStatus, kind: &str) -> Option<&'a JobCondition> {
    status.conditions.iter().find(|c| c.condition_type == kind)
}

/// Sets condition `kind`, keeping its transition time when its status is unchanged.
fn set(status: &mut JobStatus, kind: &str, value: &str, reason: &str, message: &str, now: &str) {
    let wanted = JobCondition {
        condition_type: kind.into(),
        status: value.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(now.into()),
        last_transition_time: Some(now.into()),
    };
    match status
        .conditions
        .iter_mut()
        .find(|c| c.condition_type == kind)
    {
        Some(c) if c.status == value => {
            c.reason = wanted.reason;
            c.message = wanted.message;
            c.last_probe_time = wanted.last_probe_time;
        }
        Some(c) => *c = wanted,
        None => status.conditions.push(wanted),
    }
}

/// A new pod of `job`: `<job>-<5 random>`, with its template's labels and Kubernetes' job
/// labels, controlled by the Job and held by its tracking finalizer until counted.
pub fn new_pod(job: &Job) -> Pod {
    let suffix = super::owned_pods::generated_suffix();
    let template = &job.spec.template;
    let mut pod = Pod {
        api_version: "v1".into(),
        kind: "Pod".into(),
        ..Default::default()
    };
    let meta = &job.metadata;
    pod.metadata.name = format!("{}-{suffix}", meta.name);
    pod.metadata.namespace = meta.namespace().to_string();
    pod.metadata.labels = template.metadata.labels.clone();
    for (name, value) in [
        (JOB_NAME_LABEL, &meta.name),
        (CONTROLLER_UID_LABEL, &meta.uid),
        (LEGACY_LABELS[0], &meta.name),
        (LEGACY_LABELS[1], &meta.uid),
    ] {
        pod.metadata.labels.insert(name.into(), value.clone());
    }
    pod.metadata.annotations = template.metadata.annotations.clone();
    pod.metadata.owner_references = vec![OwnerReference::controller("batch/v1", "Job", meta)];
    pod.metadata.finalizers = vec![TRACKING_FINALIZER.into()];
    pod.spec = template.spec.clone();
    pod
}

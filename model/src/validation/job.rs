//! Rules for `batch/v1` Jobs and CronJobs, after Kubernetes' own (`ValidateJob`,
//! `ValidateCronJob`), named by field.

use crate::cron_job::CronJob;
use crate::cron_schedule::Schedule;
use crate::job::{Job, JobSpec};
use crate::report::{FieldPath, Report};
use crate::syntax::dns1123_label;

use super::label_selector;
use super::workload::pod_spec;

pub(crate) fn job(job: &Job, r: &mut Report) {
    // The name becomes a label value on the Job's pods, so it must fit in one.
    super::metadata(&job.metadata, dns1123_label, r);
    job_spec(&FieldPath::root().field("spec"), &job.spec, r);
}

/// A CronJob: its schedule and time zone as Kubernetes reads them, its policies, and the
/// Job it makes checked as a Job's spec.
pub(crate) fn cron_job(cron: &CronJob, r: &mut Report) {
    super::metadata(&cron.metadata, dns1123_label, r);
    // Its Jobs are named `<name>-<minutes since the epoch>`, which must fit in a label too.
    if cron.metadata.name.len() > MAX_CRON_JOB_NAME {
        r.error(
            &FieldPath::root().field("metadata").field("name"),
            format!("must be no more than {MAX_CRON_JOB_NAME} characters"),
        );
    }
    let spec = FieldPath::root().field("spec");
    let c = &cron.spec;
    if c.schedule.trim().is_empty() {
        r.error(&spec.field("schedule"), "required value");
    } else if let Err(e) = Schedule::parse(&c.schedule, c.time_zone.as_deref()) {
        let field = if e.starts_with("unknown time zone") {
            "timeZone"
        } else {
            "schedule"
        };
        r.error(&spec.field(field), e);
    }
    if let Some(policy) = &c.concurrency_policy {
        r.one_of(
            &spec.field("concurrencyPolicy"),
            policy,
            &["Allow", "Forbid", "Replace"],
        );
    }
    for (field, value) in [
        ("startingDeadlineSeconds", c.starting_deadline_seconds),
        (
            "successfulJobsHistoryLimit",
            c.successful_jobs_history_limit,
        ),
        ("failedJobsHistoryLimit", c.failed_jobs_history_limit),
    ] {
        if let Some(n) = value.filter(|n| *n < 0) {
            r.error(
                &spec.field(field),
                format!("invalid value {n}: must be at least 0"),
            );
        }
    }
    let template = spec.field("jobTemplate");
    r.labels(
        &template.field("metadata").field("labels"),
        &c.job_template.metadata.labels,
    );
    job_spec(&template.field("spec"), &c.job_template.spec, r);
}

/// Longest CronJob name: its Jobs add `-` and 10 digits of minutes.
const MAX_CRON_JOB_NAME: usize = 52;

/// A Job's `spec` at `spec`.
fn job_spec(spec: &FieldPath, job: &JobSpec, r: &mut Report) {
    for (field, value, min) in [
        ("completions", job.completions, 0),
        ("parallelism", job.parallelism, 0),
        ("backoffLimit", job.backoff_limit, 0),
        ("activeDeadlineSeconds", job.active_deadline_seconds, 1),
        ("ttlSecondsAfterFinished", job.ttl_seconds_after_finished, 0),
    ] {
        if let Some(n) = value.filter(|n| *n < min) {
            r.error(
                &spec.field(field),
                format!("invalid value {n}: must be at least {min}"),
            );
        }
    }
    if let Some(mode) = &job.completion_mode {
        if mode == "Indexed" {
            r.error(
                &spec.field("completionMode"),
                "\"Indexed\" is not supported by pier: pods are not given completion indexes; \
                 use \"NonIndexed\"",
            );
        } else {
            r.one_of(&spec.field("completionMode"), mode, &["NonIndexed"]);
        }
    }
    let template = spec.field("template");
    if let Some(selector) = &job.selector {
        label_selector(&spec.field("selector"), selector, r);
        if !selector.matches(&job.template.metadata.labels) {
            r.error(
                &template.field("metadata").field("labels"),
                "`selector` does not match template `labels`",
            );
        }
    }
    r.labels(
        &template.field("metadata").field("labels"),
        &job.template.metadata.labels,
    );
    let pod = template.field("spec");
    pod_spec(&pod, &job.template.spec, r);
    let policy = pod.field("restartPolicy");
    match job.template.spec.restart_policy.as_deref() {
        None => r.error(
            &policy,
            "required value: supported values \"OnFailure\", \"Never\"",
        ),
        Some(p) => r.one_of(&policy, p, &["OnFailure", "Never"]),
    }
}

#[cfg(test)]
mod tests {
    use crate::manifest::objects;

    fn errors(yaml: &str) -> String {
        match objects("test", yaml) {
            Ok(_) => String::new(),
            Err(e) => e
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    const JOB: &str = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: pi}\nspec:\n  completions: COMPLETIONS\n  template:\n    spec:\n      restartPolicy: POLICY\n      containers: [{name: pi, image: busybox}]\n";

    fn job(completions: &str, policy: &str) -> String {
        JOB.replace("COMPLETIONS", completions)
            .replace("POLICY", policy)
    }

    #[test]
    fn a_job_needs_a_run_to_completion_restart_policy() {
        assert_eq!(errors(&job("3", "Never")), "");
        assert_eq!(errors(&job("3", "OnFailure")), "");
        let always = errors(&job("3", "Always"));
        assert!(
            always.contains("spec.template.spec.restartPolicy")
                && always.contains("unsupported value \"Always\""),
            "{always}"
        );
        let missing = errors(
            &JOB.replace("      restartPolicy: POLICY\n", "")
                .replace("COMPLETIONS", "1"),
        );
        assert!(
            missing.contains("spec.template.spec.restartPolicy: required value"),
            "{missing}"
        );
    }

    #[test]
    fn counts_are_checked_by_field() {
        let negative = errors(&job("-1", "Never"));
        assert!(
            negative.contains("spec.completions: invalid value -1"),
            "{negative}"
        );
        let indexed = errors(&job("2", "Never").replace(
            "spec:\n  completions",
            "spec:\n  completionMode: Indexed\n  completions",
        ));
        assert!(indexed.contains("spec.completionMode"), "{indexed}");
    }
}

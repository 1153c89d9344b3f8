//! The CronJob planner against Kubernetes' behaviour: runs on schedule, named by minute,
//! deadlines, concurrency policies, history limits.

use std::time::{Duration, SystemTime};

use super::cron_job::plan;
use pier_model::job::JobCondition;
use pier_model::manifest::objects;
use pier_model::time::{parse_rfc3339, rfc3339};
use pier_model::{CronJob, Job, Object};

fn at(t: &str) -> SystemTime {
    parse_rfc3339(t).unwrap()
}

fn cron(extra: &str) -> CronJob {
    let yaml = format!("apiVersion: batch/v1\nkind: CronJob\nmetadata: {{name: tick, uid: c1, creationTimestamp: '2026-01-01T00:00:30Z'}}\nspec:\n  schedule: '*/5 * * * *'\n{extra}  jobTemplate:\n    metadata: {{labels: {{team: a}}}}\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          containers: [{{name: c, image: i}}]\n");
    match objects("test", &yaml).unwrap().remove(0) {
        Object::CronJob(c) => c,
        other => panic!("{other:?}"),
    }
}

fn finished(name: &str, condition: &str, at: &str) -> Job {
    let mut j = Job::default();
    j.metadata.name = name.into();
    j.metadata.creation_timestamp = Some(at.into());
    let status = j.status.get_or_insert_with(Default::default);
    status.start_time = Some(at.into());
    status.completion_time = Some(at.into());
    status.conditions.push(JobCondition {
        condition_type: condition.into(),
        status: "True".into(),
        ..Default::default()
    });
    j
}

#[test]
fn a_run_starts_when_its_time_comes_named_by_the_minute() {
    let c = cron("");
    let early = plan(&c, &[], at("2026-01-01T00:03:00Z"));
    assert!(early.create.is_none());
    let wait = early.requeue.unwrap();
    assert!(
        wait >= Duration::from_secs(120) && wait < Duration::from_secs(121),
        "{wait:?}"
    );

    let due = plan(&c, &[], at("2026-01-01T00:07:00Z"));
    let job = due.create.unwrap();
    assert_eq!(
        job.metadata.name,
        format!(
            "tick-{}",
            at("2026-01-01T00:05:00Z")
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                / 60
        )
    );
    assert_eq!(job.metadata.labels["team"], "a");
    assert_eq!(job.metadata.owner_references[0].kind, "CronJob");
    assert_eq!(
        job.metadata.annotations["batch.kubernetes.io/cronjob-scheduled-timestamp"],
        "2026-01-01T00:05:00Z"
    );
    assert_eq!(
        due.status.last_schedule_time.as_deref(),
        Some("2026-01-01T00:05:00Z")
    );
    assert_eq!(due.status.active[0].name, job.metadata.name);
    assert_eq!(due.events[0].reason, "SuccessfulCreate");
}

#[test]
fn a_missed_time_past_the_starting_deadline_is_skipped() {
    let c = cron("  startingDeadlineSeconds: 30\n");
    assert!(plan(&c, &[], at("2026-01-01T00:05:40Z")).create.is_none());
    assert!(plan(&c, &[], at("2026-01-01T00:05:20Z")).create.is_some());
}

#[test]
fn concurrency_policies_forbid_or_replace_a_running_job() {
    let now = at("2026-01-01T00:10:10Z");
    let mut running = Job::default();
    running.metadata.name = "tick-old".into();
    let mut c = cron("  concurrencyPolicy: Forbid\n");
    c.status = Some(Default::default());
    c.status.as_mut().unwrap().last_schedule_time = Some("2026-01-01T00:05:00Z".into());
    let forbid = plan(&c, &[&running], now);
    assert!(forbid.create.is_none());
    assert_eq!(forbid.events[0].reason, "JobAlreadyActive");
    assert_eq!(
        forbid.status.last_schedule_time.as_deref(),
        Some("2026-01-01T00:05:00Z")
    );

    c.spec.concurrency_policy = Some("Replace".into());
    let replace = plan(&c, &[&running], now);
    assert_eq!(replace.delete, ["tick-old"]);
    assert!(replace.create.is_some());
    assert_eq!(replace.status.active.len(), 1);
    c.spec.concurrency_policy = None;
    let allow = plan(&c, &[&running], now);
    assert!(allow.delete.is_empty() && allow.create.is_some());
    assert_eq!(allow.status.active.len(), 2);
}

#[test]
fn history_keeps_the_newest_finished_jobs_and_the_last_success() {
    let c = cron("  successfulJobsHistoryLimit: 1\n  suspend: true\n");
    let a = finished("tick-1", "Complete", "2026-01-01T00:05:00Z");
    let b = finished("tick-2", "Complete", "2026-01-01T00:10:00Z");
    let f1 = finished("tick-3", "Failed", "2026-01-01T00:11:00Z");
    let f2 = finished("tick-4", "Failed", "2026-01-01T00:12:00Z");
    let step = plan(&c, &[&a, &b, &f1, &f2], at("2026-01-01T00:20:00Z"));
    assert_eq!(step.delete, ["tick-1", "tick-3"]);
    assert_eq!(
        step.status.last_successful_time.as_deref(),
        Some("2026-01-01T00:10:00Z")
    );
    assert!(step.create.is_none(), "suspended: no run");
    assert!(step.status.active.is_empty());
}

#[test]
fn every_runs_from_the_last_run_and_once_a_minute_by_name() {
    let c = cron("").clone();
    let mut c = c;
    c.spec.schedule = "@every 5s".into();
    let made = at("2026-01-01T00:00:30Z");
    let first = plan(&c, &[], made + Duration::from_secs(6));
    let job = first.create.unwrap();
    assert_eq!(
        first.status.last_schedule_time,
        Some(rfc3339(made + Duration::from_secs(5)))
    );
    // Five seconds later the run's name (by minute) is taken: no second Job that minute.
    c.status = Some(first.status);
    let again = plan(&c, &[&job], made + Duration::from_secs(11));
    assert!(again.create.is_none());
    assert_eq!(
        again.status.last_schedule_time,
        Some(rfc3339(made + Duration::from_secs(10)))
    );
}

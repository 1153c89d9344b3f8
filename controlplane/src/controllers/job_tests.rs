//! The Job planner against Kubernetes' behaviour: counting, parallelism, backoff, limits.

use std::time::{Duration, SystemTime};

use super::job::{new_pod, plan, tracked, Memory, FAILURE_BACKOFF};
use pier_model::job::TRACKING_FINALIZER;
use pier_model::manifest::objects;
use pier_model::{Job, Object, Pod};

fn job(spec: &str) -> Job {
    let yaml = format!("apiVersion: batch/v1\nkind: Job\nmetadata: {{name: work, uid: u1}}\nspec:\n{spec}  template:\n    spec:\n      restartPolicy: Never\n      containers: [{{name: c, image: i}}]\n");
    match objects("test", &yaml).unwrap().remove(0) {
        Object::Job(j) => j,
        other => panic!("{other:?}"),
    }
}

fn pod(j: &Job, phase: Option<&str>) -> Pod {
    let mut p = new_pod(j);
    p.status.phase = phase.map(str::to_string);
    p
}

#[test]
fn pods_carry_the_job_labels_owner_and_tracking_finalizer() {
    let j = job("  completions: 1\n");
    let p = new_pod(&j);
    assert!(p.metadata.name.starts_with("work-") && p.metadata.name.len() == 10);
    assert_eq!(p.metadata.labels["batch.kubernetes.io/job-name"], "work");
    assert_eq!(p.metadata.labels["controller-uid"], "u1");
    assert_eq!(p.metadata.owner_references[0].kind, "Job");
    assert_eq!(p.metadata.owner_references[0].controller, Some(true));
    assert_eq!(p.metadata.finalizers, [TRACKING_FINALIZER]);
    assert!(tracked(&p));
}

#[test]
fn parallelism_bounds_running_pods_and_completions_end_the_job() {
    let j = job("  completions: 3\n  parallelism: 2\n");
    let now = SystemTime::now();
    let mut memory = Memory::default();
    let first = plan(&j, &[], &mut memory, now);
    assert_eq!(first.create, 2);
    assert_eq!(first.status.active, 2);
    assert!(first.status.start_time.is_some());

    // One succeeded: counted once (its finalizer comes off), one more started.
    let mut j = j;
    j.status = Some(first.status);
    let (done, running) = (pod(&j, Some("Succeeded")), pod(&j, Some("Running")));
    let second = plan(&j, &[&done, &running], &mut memory, now);
    assert_eq!(second.counted, std::slice::from_ref(&done.metadata.name));
    assert_eq!((second.status.succeeded, second.create), (1, 1));

    // Counted pods are not counted again; at three the Job completes.
    j.status = Some(second.status);
    let mut counted = done.clone();
    counted.metadata.finalizers.clear();
    let (b, c) = (pod(&j, Some("Succeeded")), pod(&j, Some("Succeeded")));
    let third = plan(&j, &[&counted, &b, &c], &mut memory, now);
    assert_eq!(third.status.succeeded, 3);
    assert_eq!(third.create, 0);
    let types: Vec<&str> = third
        .status
        .conditions
        .iter()
        .map(|c| c.condition_type.as_str())
        .collect();
    assert_eq!(types, ["SuccessCriteriaMet", "Complete"]);
    assert!(third.status.completion_time.is_some());
    assert_eq!(third.events[0].reason, "Completed");
}

#[test]
fn failures_back_off_then_fail_the_job_past_its_limit() {
    let mut j = job("  backoffLimit: 1\n");
    let t0 = SystemTime::now();
    let mut memory = Memory::default();
    j.status = Some(plan(&j, &[], &mut memory, t0).status);
    let failed = pod(&j, Some("Failed"));
    let after_one = plan(&j, &[&failed], &mut memory, t0);
    assert_eq!(after_one.status.failed, 1);
    assert_eq!(after_one.create, 0, "the replacement waits out the backoff");
    assert_eq!(after_one.requeue, Some(FAILURE_BACKOFF));
    j.status = Some(after_one.status);
    let mut counted = failed.clone();
    counted.metadata.finalizers.clear();
    let later = plan(&j, &[&counted], &mut memory, t0 + FAILURE_BACKOFF);
    assert_eq!(later.create, 1, "replaced once the backoff is over");

    j.status = Some(later.status);
    let again = pod(&j, Some("Failed"));
    let end = plan(
        &j,
        &[&counted, &again],
        &mut memory,
        t0 + FAILURE_BACKOFF * 2,
    );
    assert_eq!(end.status.failed, 2);
    let failed_condition = end
        .status
        .conditions
        .iter()
        .find(|c| c.condition_type == "Failed")
        .unwrap();
    assert_eq!(
        failed_condition.reason.as_deref(),
        Some("BackoffLimitExceeded")
    );
    assert_eq!(end.create, 0);
    assert!(end.events[0].warning);
}

#[test]
fn restarts_count_against_the_limit_under_on_failure() {
    let mut j = job("  backoffLimit: 2\n");
    j.spec.template.spec.restart_policy = Some("OnFailure".into());
    let mut memory = Memory::default();
    let now = SystemTime::now();
    j.status = Some(plan(&j, &[], &mut memory, now).status);
    let mut p = pod(&j, Some("Running"));
    p.metadata
        .annotations
        .insert(pier_model::pod::RESTARTS_ANNOTATION.into(), "3".into());
    let step = plan(&j, &[&p], &mut memory, now);
    assert_eq!(step.terminate, [p.metadata.name.clone()]);
    assert!(step
        .status
        .conditions
        .iter()
        .any(|c| c.condition_type == "Failed"));
}

#[test]
fn deadlines_suspension_and_ttl() {
    let mut j = job("  activeDeadlineSeconds: 5\n  ttlSecondsAfterFinished: 30\n");
    let t0 = SystemTime::now();
    let mut memory = Memory::default();
    let first = plan(&j, &[], &mut memory, t0);
    // Start times are kept to the second, as Kubernetes keeps them.
    let wait = first.requeue.unwrap();
    assert!(
        wait <= Duration::from_secs(5) && wait > Duration::from_secs(3),
        "{wait:?}"
    );
    j.status = Some(first.status);
    let running = pod(&j, Some("Running"));
    let late = plan(&j, &[&running], &mut memory, t0 + Duration::from_secs(6));
    let reason = late
        .status
        .conditions
        .iter()
        .find(|c| c.condition_type == "Failed");
    assert_eq!(reason.unwrap().reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(late.terminate, std::slice::from_ref(&running.metadata.name));
    assert_eq!(late.requeue, None);
    j.status = Some(late.status);
    let finished = plan(&j, &[], &mut memory, t0 + Duration::from_secs(20));
    assert!(!finished.expired);
    assert!(finished.requeue.is_some());
    assert!(plan(&j, &[], &mut memory, t0 + Duration::from_secs(40)).expired);

    let mut held = job("  completions: 2\n");
    held.spec.suspend = Some(true);
    let step = plan(&held, &[], &mut memory, t0);
    assert_eq!(step.create, 0);
    assert!(step
        .status
        .conditions
        .iter()
        .any(|c| c.condition_type == "Suspended" && c.status == "True"));
}

#[test]
fn without_completions_one_success_ends_the_work_queue() {
    let j = job("  parallelism: 2\n");
    let mut memory = Memory::default();
    let now = SystemTime::now();
    let (done, running) = (pod(&j, Some("Succeeded")), pod(&j, Some("Running")));
    let step = plan(&j, &[&done, &running], &mut memory, now);
    assert_eq!(step.create, 0, "no new pods once one succeeded");
    assert!(
        step.status.conditions.is_empty(),
        "done only when the rest end"
    );
    let finished = pod(&j, Some("Succeeded"));
    let end = plan(&j, &[&done, &finished], &mut memory, now);
    assert!(end
        .status
        .conditions
        .iter()
        .any(|c| c.condition_type == "Complete"));
}

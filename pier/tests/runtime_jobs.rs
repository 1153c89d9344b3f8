//! Jobs on the engine, driven by kubectl: a Job of three completions two at a time runs to
//! `Complete` (`kubectl wait`, `kubectl get job`, `kubectl logs job/…`), a failing one is
//! retried after Kubernetes' backoff up to its `backoffLimit` and fails with
//! `BackoffLimitExceeded`, `kubectl create job` runs a one-off, and deleting a Job takes its
//! pods. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::kubectl::Kubectl;
use common::runtime::*;

const WORK: &str = "apiVersion: batch/v1
kind: Job
metadata: {name: work}
spec:
  completions: 3
  parallelism: 2
  template:
    metadata: {labels: {app: work}}
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: pier/shell:v1
        command: [/bin/sh, -c, 'echo done by $HOSTNAME']
";

const FAILING: &str = "apiVersion: batch/v1
kind: Job
metadata: {name: failing}
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: failing
        image: pier/shell:v1
        command: [/bin/sh, -c, 'echo giving up; exit 3']
";

const TICK: &str = "apiVersion: batch/v1
kind: CronJob
metadata: {name: tick}
spec:
  schedule: '@every 5s'
  concurrencyPolicy: Forbid
  jobTemplate:
    metadata: {labels: {team: tick}}
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
          - name: tick
            image: pier/shell:v1
            command: [/bin/sh, -c, 'echo tick']
";

/// Applies `yaml` with kubectl, which must take it.
fn apply(k: &Kubectl, dir: &Path, yaml: &str) {
    let file = dir.join("apply.yaml");
    std::fs::write(&file, yaml).unwrap();
    k.ok(&["apply", "-f", file.to_str().unwrap()]);
}

/// `kubectl get WHAT -o jsonpath=PATH`.
fn jsonpath(k: &Kubectl, what: &[&str], path: &str) -> String {
    let mut args = vec!["get"];
    args.extend(what);
    let path = format!("jsonpath={path}");
    args.extend(["-o", &path]);
    k.ok(&args)
}

#[test]
fn jobs_run_to_completion_retry_and_fail() {
    if !privileged("jobs_run_to_completion_retry_and_fail") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some((_node, k)) = shell_node(tmp.path(), 4) else {
        return;
    };

    // Three completions, two at a time, in Kubernetes' shape.
    let started = Instant::now();
    apply(&k, tmp.path(), WORK);
    k.ok(&[
        "wait",
        "--for=condition=complete",
        "job/work",
        "--timeout=90s",
    ]);
    eprintln!("job of 3 completed in {:?}", started.elapsed());
    let row = k.ok(&["get", "job", "work", "--no-headers"]);
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[..3], ["work", "Complete", "3/3"], "{row}");
    let status = jsonpath(
        &k,
        &["job", "work"],
        "{.status.succeeded}/{.status.failed}/{.status.active}",
    );
    assert_eq!(status, "3//", "three succeeded, none failed or running");
    let pods = k.ok(&[
        "get",
        "pods",
        "-l",
        "batch.kubernetes.io/job-name=work",
        "-o",
        "jsonpath={range .items[*]}{.status.phase} {.metadata.finalizers}{\"\\n\"}{end}",
    ]);
    assert_eq!(
        pods.lines().collect::<Vec<_>>(),
        ["Succeeded ", "Succeeded ", "Succeeded "],
        "finished pods stay, counted (no tracking finalizer left)"
    );
    let logs = k.ok(&["logs", "job/work"]);
    assert!(logs.starts_with("done by work-"), "{logs}");
    let selector = jsonpath(&k, &["job", "work"], "{.spec.selector.matchLabels}");
    assert!(
        selector.contains("batch.kubernetes.io/controller-uid"),
        "{selector}"
    );

    // A failing Job: retried once after the 10 s backoff, then failed.
    let started = Instant::now();
    apply(&k, tmp.path(), FAILING);
    k.ok(&[
        "wait",
        "--for=condition=failed",
        "job/failing",
        "--timeout=90s",
    ]);
    let took = started.elapsed();
    eprintln!("failing job with backoffLimit 1 failed in {took:?}");
    assert!(
        took >= Duration::from_secs(10),
        "the retry waited out the backoff: {took:?}"
    );
    let reason = jsonpath(
        &k,
        &["job", "failing"],
        "{.status.failed} {.status.conditions[?(@.type==\"Failed\")].reason}",
    );
    assert_eq!(reason, "2 BackoffLimitExceeded");
    let row = k.ok(&["get", "job", "failing", "--no-headers"]);
    assert!(row.contains("Failed") && row.contains("0/1"), "{row}");
    let events = k.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=failing",
    ]);
    assert!(
        events.contains("BackoffLimitExceeded") && events.contains("SuccessfulCreate"),
        "{events}"
    );
    let described = k.ok(&["describe", "job", "failing"]);
    assert!(
        described.contains("0 Active") && described.contains("2 Failed"),
        "{described}"
    );
    let failed_logs = k.ok(&["logs", "-l", "job-name=failing"]);
    assert_eq!(failed_logs.trim(), "giving up\ngiving up");

    // kubectl create job: a one-off from an image and a command.
    k.ok(&[
        "create",
        "job",
        "once",
        "--image=pier/shell:v1",
        "--",
        "/bin/true",
    ]);
    k.ok(&[
        "wait",
        "--for=condition=complete",
        "job/once",
        "--timeout=60s",
    ]);

    // Deleting a Job takes its pods with it.
    k.ok(&["delete", "job", "work"]);
    wait_for("the deleted Job's pods to go", 30, || {
        k.ok(&["get", "pods", "-l", "job-name=work", "-o", "name"])
            .trim()
            .is_empty()
    });
    cron_jobs(&k, tmp.path());

    // An orphaning delete leaves the pod, released from its Job; a foreground one waits for
    // the pods to go first.
    k.ok(&["delete", "job", "once", "--cascade=orphan"]);
    let kept = k.ok(&["get", "pods", "-l", "job-name=once", "-o", "name"]);
    assert_eq!(kept.lines().count(), 1, "the orphaned pod stays: {kept}");
    let owners = k.ok(&[
        "get",
        "pods",
        "-l",
        "job-name=once",
        "-o",
        "jsonpath={.items[*].metadata.ownerReferences}{.items[*].metadata.finalizers}",
    ]);
    assert_eq!(
        owners, "",
        "the orphaned pod has no owner or finalizer left"
    );
    k.ok(&[
        "delete",
        "job",
        "failing",
        "--cascade=foreground",
        "--timeout=60s",
    ]);
    assert!(
        k.ok(&["get", "pods", "-l", "job-name=failing", "-o", "name"])
            .trim()
            .is_empty(),
        "a foreground delete returns once the pods are gone"
    );
    // Bad input names the field.
    let bad = k.run(&[
        "create",
        "job",
        "bad",
        "--image=pier/shell:v1",
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    assert!(bad.status.success());
    let always = String::from_utf8_lossy(&bad.stdout)
        .replace("restartPolicy: Never", "restartPolicy: Always");
    let file = tmp.path().join("bad.yaml");
    std::fs::write(&file, always).unwrap();
    let refused = k.run(&["apply", "-f", file.to_str().unwrap()]);
    assert!(!refused.status.success());
    let text = out_text(&refused);
    assert!(
        text.contains("spec.template.spec.restartPolicy") && text.contains("\"Always\""),
        "{text}"
    );
}

/// A CronJob runs on schedule (its first run `@every 5s` after it is made, named by the
/// minute it was due), kubectl reads and makes them, and its Jobs go with it.
fn cron_jobs(k: &Kubectl, dir: &Path) {
    let made = Instant::now();
    apply(k, dir, TICK);
    let jobs = || k.ok(&["get", "jobs", "-l", "team=tick", "-o", "name"]);
    wait_for("the CronJob's first Job", 30, || !jobs().trim().is_empty());
    let fired = made.elapsed();
    eprintln!("the @every 5s CronJob made its first Job after {fired:?}");
    assert!(
        fired >= Duration::from_secs(4),
        "not before its time: {fired:?}"
    );
    let job = jsonpath(k, &["jobs", "-l", "team=tick"], "{.items[0].metadata.name}");
    k.ok(&[
        "wait",
        "--for=condition=complete",
        &format!("job/{job}"),
        "--timeout=60s",
    ]);
    let due = jsonpath(
        k,
        &["job", &job],
        "{.metadata.annotations.batch\\.kubernetes\\.io/cronjob-scheduled-timestamp}",
    );
    let minutes = pier_model::time::parse_rfc3339(&due)
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 60;
    assert_eq!(
        job,
        format!("tick-{minutes}"),
        "named by the minute it was due"
    );
    wait_for("the last success in the CronJob's status", 30, || {
        !jsonpath(k, &["cronjob", "tick"], "{.status.lastSuccessfulTime}").is_empty()
    });
    let row = k.ok(&["get", "cronjob", "tick", "--no-headers"]);
    assert!(
        row.starts_with("tick ") && row.contains("@every 5s"),
        "{row}"
    );
    let events = k.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=tick",
    ]);
    assert!(events.contains(&format!("Created job {job}")), "{events}");
    k.ok(&["create", "job", "by-hand", "--from=cronjob/tick"]);
    k.ok(&[
        "wait",
        "--for=condition=complete",
        "job/by-hand",
        "--timeout=60s",
    ]);
    assert_eq!(k.ok(&["logs", "job/by-hand"]).trim(), "tick");
    k.ok(&[
        "create",
        "cronjob",
        "hourly",
        "--image=pier/shell:v1",
        "--schedule=0 * * * *",
        "--",
        "/bin/true",
    ]);
    assert!(k.ok(&["get", "cronjobs"]).contains("0 * * * *"));
    k.ok(&["delete", "cronjob", "tick", "hourly"]);
    wait_for("the CronJob's Jobs to go", 30, || jobs().trim().is_empty());
}

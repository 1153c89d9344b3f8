//! Rules for `batch/v1/Job`, after Kubernetes' own (`ValidateJob`), named by field.

use crate::job::Job;
use crate::report::{FieldPath, Report};
use crate::syntax::dns1123_label;

use super::label_selector;
use super::workload::pod_spec;

pub(crate) fn job(job: &Job, r: &mut Report) {
    // The name becomes a label value on the Job's pods, so it must fit in one.
    super::metadata(&job.metadata, dns1123_label, r);
    let spec = FieldPath::root().field("spec");
    for (field, value, min) in [
        ("completions", job.spec.completions, 0),
        ("parallelism", job.spec.parallelism, 0),
        ("backoffLimit", job.spec.backoff_limit, 0),
        ("activeDeadlineSeconds", job.spec.active_deadline_seconds, 1),
        (
            "ttlSecondsAfterFinished",
            job.spec.ttl_seconds_after_finished,
            0,
        ),
    ] {
        if let Some(n) = value.filter(|n| *n < min) {
            r.error(
                &spec.field(field),
                format!("invalid value {n}: must be at least {min}"),
            );
        }
    }
    if let Some(mode) = &job.spec.completion_mode {
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
    if let Some(selector) = &job.spec.selector {
        label_selector(&spec.field("selector"), selector, r);
        if !selector.matches(&job.spec.template.metadata.labels) {
            r.error(
                &template.field("metadata").field("labels"),
                "`selector` does not match template `labels`",
            );
        }
    }
    r.labels(
        &template.field("metadata").field("labels"),
        &job.spec.template.metadata.labels,
    );
    let pod = template.field("spec");
    pod_spec(&pod, &job.spec.template.spec, r);
    let policy = pod.field("restartPolicy");
    match job.spec.template.spec.restart_policy.as_deref() {
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

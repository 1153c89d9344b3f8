//! The status a Deployment's pods give it, as Kubernetes' Deployment controller writes it:
//! counts of its pods (all, of the current template, ready, available), the generation they
//! are about, and the `Available` and `Progressing` conditions that `kubectl rollout status`
//! waits on. Pure: the controller writes it when it changes.

use pier_model::deployment::{DeploymentCondition, DeploymentStatus};
use pier_model::Deployment;

use super::deployment::{scaled, template_hash, PodView};

/// The status of `d` with live pods `pods` at time `now` (RFC 3339); condition times carry
/// over from the stored status when a condition did not change.
pub(super) fn status_of(d: &Deployment, pods: &[PodView], now: &str) -> DeploymentStatus {
    let desired = d.spec.replicas.unwrap_or(1).max(0);
    let hash = template_hash(d);
    let count = |f: &dyn Fn(&PodView) -> bool| pods.iter().filter(|p| f(p)).count() as i64;
    let replicas = pods.len() as i64;
    let updated = count(&|p| p.hash == hash);
    let ready = count(&|p| p.ready);
    let updated_available = count(&|p| p.ready && p.hash == hash);
    let max_unavailable = match d.spec.strategy.as_ref() {
        Some(s) if s.strategy_type.as_deref() == Some("Recreate") => 0,
        s => scaled(
            s.and_then(|s| s.rolling_update.as_ref())
                .and_then(|r| r.max_unavailable.as_ref()),
            desired,
            false,
        ),
    };
    let replica_set = format!("{}-{hash}", d.metadata.name);
    let available = if ready >= desired - max_unavailable {
        (
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".to_string(),
        )
    } else {
        (
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".to_string(),
        )
    };
    let complete = updated == desired && replicas == desired && updated_available == desired;
    let progressing = if d.spec.paused == Some(true) {
        (
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused".to_string(),
        )
    } else if complete {
        (
            "True",
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{replica_set}\" has successfully progressed."),
        )
    } else {
        (
            "True",
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{replica_set}\" is progressing."),
        )
    };
    let previous = d
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or(&[]);
    DeploymentStatus {
        observed_generation: Some(d.metadata.generation),
        replicas,
        updated_replicas: updated,
        ready_replicas: ready,
        available_replicas: ready,
        unavailable_replicas: (desired - ready).max(0),
        conditions: vec![
            condition("Available", available, previous, now),
            condition("Progressing", progressing, previous, now),
        ],
    }
}

/// A condition, keeping the stored one's times when nothing about it changed.
/// Condition `kind` as it stands now: its times kept while its status (and, for the update
/// time, its words) stay the same.
pub(super) fn condition(
    kind: &str,
    (status, reason, message): (&str, &str, String),
    previous: &[DeploymentCondition],
    now: &str,
) -> DeploymentCondition {
    let before = previous.iter().find(|c| c.condition_type == kind);
    let same_status = before.is_some_and(|c| c.status == status);
    let same_words = before.is_some_and(|c| {
        c.reason.as_deref() == Some(reason) && c.message.as_deref() == Some(message.as_str())
    });
    let kept = |f: fn(&DeploymentCondition) -> Option<String>, keep: bool| {
        before
            .filter(|_| keep)
            .and_then(f)
            .or_else(|| Some(now.to_string()))
    };
    DeploymentCondition {
        condition_type: kind.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: kept(|c| c.last_transition_time.clone(), same_status),
        last_update_time: kept(|c| c.last_update_time.clone(), same_status && same_words),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(replicas: i64) -> Deployment {
        let yaml = format!("apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, generation: 2}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec: {{containers: [{{name: c, image: v1}}]}}\n");
        serde_yaml_ng::from_str(&yaml).unwrap()
    }

    fn pods(d: &Deployment, current_ready: usize, current: usize, old: usize) -> Vec<PodView> {
        let hash = template_hash(d);
        (0..current)
            .map(|i| PodView {
                name: format!("n{i}"),
                hash: hash.clone(),
                ready: i < current_ready,
            })
            .chain((0..old).map(|i| PodView {
                name: format!("o{i}"),
                hash: "old".into(),
                ready: true,
            }))
            .collect()
    }

    #[test]
    fn a_rollout_progresses_until_every_pod_is_current_and_ready() {
        let d = deployment(3);
        let midway = status_of(&d, &pods(&d, 1, 2, 2), "t1");
        assert_eq!(
            (
                midway.replicas,
                midway.updated_replicas,
                midway.ready_replicas
            ),
            (4, 2, 3)
        );
        assert_eq!(midway.observed_generation, Some(2));
        assert_eq!(
            midway.conditions[1].reason.as_deref(),
            Some("ReplicaSetUpdated")
        );
        assert_eq!(
            midway.conditions[0].status, "True",
            "3 ready of 3, maxUnavailable 0"
        );
        let mut stored = d.clone();
        stored.status = Some(midway);
        let done = status_of(&stored, &pods(&d, 3, 3, 0), "t2");
        assert_eq!(
            done.conditions[1].reason.as_deref(),
            Some("NewReplicaSetAvailable")
        );
        assert_eq!(
            done.conditions[1].last_transition_time.as_deref(),
            Some("t1"),
            "still True"
        );
        assert_eq!(
            done.conditions[1].last_update_time.as_deref(),
            Some("t2"),
            "new reason"
        );
        assert_eq!(
            done.conditions[0].last_update_time.as_deref(),
            Some("t1"),
            "unchanged"
        );
        let down = status_of(&d, &pods(&d, 0, 3, 0), "t3");
        assert_eq!(down.conditions[0].status, "False");
        assert_eq!(down.unavailable_replicas, 3);
    }
}

//! Argo's `workloadRef.scaleDown`: the Deployment a Rollout takes its template from is left
//! alone (`never`, the default), scaled to zero once the Rollout is Healthy (`onsuccess`), or
//! scaled down as the Rollout's pods become available (`progressively`).

use pier_model::rollout::RolloutStatus;
use pier_model::{Deployment, Rollout};

/// The replicas `deployment` should have beside `ro` in its current `status`, if they change.
pub(super) fn scaled_deployment(
    ro: &Rollout,
    status: &RolloutStatus,
    deployment: &Deployment,
) -> Option<Deployment> {
    let policy = ro.spec.workload_ref.as_ref()?.scale_down.as_deref()?;
    let have = deployment.spec.replicas.unwrap_or(1);
    let want = match policy {
        "onsuccess" if status.phase.as_deref() == Some("Healthy") => 0,
        "progressively" => {
            let wanted = ro.spec.replicas.unwrap_or(1);
            (wanted - status.available_replicas).clamp(0, have)
        }
        _ => return None,
    };
    (want < have).then(|| {
        let mut d = deployment.clone();
        d.spec.replicas = Some(want);
        d
    })
}

#[cfg(test)]
mod tests {
    use pier_model::rollout::WorkloadRef;

    use super::*;

    fn rollout(policy: &str) -> Rollout {
        let mut ro = Rollout::default();
        ro.spec.replicas = Some(4);
        ro.spec.workload_ref = Some(WorkloadRef {
            kind: "Deployment".into(),
            name: "web".into(),
            scale_down: Some(policy.into()),
            ..Default::default()
        });
        ro
    }

    fn status(phase: &str, available: i64) -> RolloutStatus {
        RolloutStatus {
            phase: Some(phase.into()),
            available_replicas: available,
            ..Default::default()
        }
    }

    #[test]
    fn each_policy_scales_the_deployment_its_way() {
        let mut d = Deployment::default();
        d.spec.replicas = Some(4);
        assert_eq!(
            scaled_deployment(&rollout("never"), &status("Healthy", 4), &d),
            None
        );
        assert_eq!(
            scaled_deployment(&rollout("onsuccess"), &status("Progressing", 3), &d),
            None
        );
        let done = scaled_deployment(&rollout("onsuccess"), &status("Healthy", 4), &d).unwrap();
        assert_eq!(done.spec.replicas, Some(0));
        let step =
            scaled_deployment(&rollout("progressively"), &status("Progressing", 1), &d).unwrap();
        assert_eq!(step.spec.replicas, Some(3));
        // Never back up: a Rollout losing pods does not grow the Deployment again.
        d.spec.replicas = Some(1);
        assert_eq!(
            scaled_deployment(&rollout("progressively"), &status("Progressing", 1), &d),
            None
        );
    }
}

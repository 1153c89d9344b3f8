//! Argo Rollouts' `spec.restartAt`: the pods created before it are replaced one at a time,
//! the next only once every pod is ready again, and `status.restartedAt` records a restart
//! that is done.

use std::time::{Duration, SystemTime};

use pier_model::time::parse_rfc3339;
use pier_model::{Pod, Rollout};

/// Where a rollout's restart stands.
#[derive(Debug, PartialEq)]
pub(super) enum Restart<'a> {
    /// None asked for, or the last one is done and recorded.
    Idle,
    /// Asked for later: look again after this long.
    Later(Duration),
    /// Replace this pod now.
    Next(&'a Pod),
    /// A replaced pod is not ready yet.
    Waiting,
    /// Every pod is newer than `restartAt`: record it.
    Done,
}

/// The restart step for `ro`, whose live pods are `pods`.
pub(super) fn step<'a>(ro: &Rollout, pods: &[&'a Pod], now: SystemTime) -> Restart<'a> {
    let Some(text) = ro.spec.restart_at.as_deref() else {
        return Restart::Idle;
    };
    let done = ro.status.as_ref().and_then(|s| s.restarted_at.as_deref());
    let Some(at) = parse_rfc3339(text) else {
        return Restart::Idle;
    };
    if done == Some(text) {
        return Restart::Idle;
    }
    if let Ok(left) = at.duration_since(now) {
        if !left.is_zero() {
            return Restart::Later(left);
        }
    }
    let created = |p: &Pod| {
        p.metadata
            .creation_timestamp
            .as_deref()
            .and_then(parse_rfc3339)
    };
    let mut old: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| created(p).is_some_and(|c| c < at))
        .collect();
    if old.is_empty() {
        return Restart::Done;
    }
    if pods.iter().any(|p| !p.is_ready()) {
        return Restart::Waiting;
    }
    old.sort_by_key(|p| created(p));
    Restart::Next(old[0])
}

#[cfg(test)]
mod tests {
    use pier_model::pod::PodCondition;

    use super::*;

    fn pod(name: &str, created: &str, ready: bool) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = name.into();
        p.metadata.creation_timestamp = Some(created.into());
        p.status.conditions = vec![PodCondition {
            condition_type: "Ready".into(),
            status: if ready { "True" } else { "False" }.into(),
            ..Default::default()
        }];
        p
    }

    #[test]
    fn one_old_pod_at_a_time_while_all_are_ready() {
        let mut ro = Rollout::default();
        let now = parse_rfc3339("2026-12-03T12:00:10Z").unwrap();
        let (a, b) = (
            pod("a", "2026-12-03T11:00:00Z", true),
            pod("b", "2026-12-03T10:00:00Z", true),
        );
        assert_eq!(step(&ro, &[&a, &b], now), Restart::Idle);
        ro.spec.restart_at = Some("2026-12-03T12:00:00Z".into());
        assert_eq!(step(&ro, &[&a, &b], now), Restart::Next(&b));
        let fresh = pod("c", "2026-12-03T12:00:05Z", false);
        assert_eq!(step(&ro, &[&a, &fresh], now), Restart::Waiting);
        let fresh = pod("c", "2026-12-03T12:00:05Z", true);
        let newer = pod("d", "2026-12-03T12:00:06Z", true);
        assert_eq!(step(&ro, &[&newer, &fresh], now), Restart::Done);
        ro.status = Some(pier_model::rollout::RolloutStatus {
            restarted_at: ro.spec.restart_at.clone(),
            ..Default::default()
        });
        assert_eq!(step(&ro, &[&a], now), Restart::Idle);
        ro.spec.restart_at = Some("2026-12-03T12:01:00Z".into());
        assert_eq!(
            step(&ro, &[&a], now),
            Restart::Later(Duration::from_secs(50))
        );
    }
}

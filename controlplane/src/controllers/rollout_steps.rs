//! What a canary's steps add up to at step `i`: the traffic weight, the canary's pod count,
//! the header routes in force. Pure arithmetic over the steps, for `rollout.rs`'s planner.

use pier_model::rollout::CanaryStep;

use super::rollout::HeaderRoute;

/// The canary's traffic weight once steps before `i` are done: the last `setWeight` among them.
pub(super) fn weight_before(steps: &[CanaryStep], i: usize) -> i64 {
    steps[..i]
        .iter()
        .rev()
        .find_map(|s| s.set_weight)
        .unwrap_or(0)
}

/// Canary pods wanted while at step `i`: sized for that step's weight (so pods are ready
/// before traffic moves), or as the last `setCanaryScale` says.
pub(super) fn canary_count(steps: &[CanaryStep], i: usize, replicas: i64) -> i64 {
    let upto = steps.get(..=i).unwrap_or(steps);
    let weight = upto.iter().rev().find_map(|s| s.set_weight).unwrap_or(0);
    match upto.iter().rev().find_map(|s| s.set_canary_scale.as_ref()) {
        Some(s) if s.match_traffic_weight != Some(true) => match (s.replicas, s.weight) {
            (Some(n), _) => n.min(replicas),
            (None, Some(w)) => scaled(replicas, w),
            _ => scaled(replicas, weight),
        },
        _ => scaled(replicas, weight),
    }
}

/// The header routes in force once steps before `i` are done.
pub(super) fn header_routes(steps: &[CanaryStep], i: usize) -> Vec<HeaderRoute> {
    let mut routes: Vec<HeaderRoute> = Vec::new();
    for step in &steps[..i] {
        if let Some(h) = &step.set_header_route {
            routes.retain(|r| r.name != h.name);
            if !h.matches.is_empty() {
                routes.push(HeaderRoute {
                    name: h.name.clone(),
                    matches: h.matches.clone(),
                });
            }
        }
    }
    routes
}

/// `weight` percent of `replicas`, rounded up.
pub(super) fn scaled(replicas: i64, weight: i64) -> i64 {
    (replicas * weight + 99) / 100
}

//! Planning a Rollout's next move as Argo Rollouts' canary does: which step it is on, the
//! canary's traffic weight and pod count there, when a pause ends, what an abort or a
//! promotion changes. Pure functions over the rollout, its pods and what its Services
//! serve; `rollout_controller.rs` applies the plan.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use pier_model::rollout::{
    CanaryStep, HeaderRoutingMatch, PauseCondition, Rollout, RolloutStatus, TrafficWeights,
    WeightDestination,
};

use super::deployment::PodView;
use super::deployment_status::condition;
use super::rollout_analysis::{self as analysis, Runs, Verdict, WantedRun};
use super::rollout_managed_route::wants_managed_route;
use super::rollout_steps::{canary_count, header_routes, scaled, weight_before};
use pier_model::time::{parse_rfc3339, rfc3339};

/// Argo's default for `abortScaleDownDelaySeconds` and `scaleDownDelaySeconds`.
const DEFAULT_SCALE_DOWN_DELAY: i64 = 30;
/// Pause reason of a pause step.
pub const PAUSE_STEP: &str = "CanaryPauseStep";
/// Pause reason after an inconclusive analysis.
pub const PAUSE_ANALYSIS: &str = "InconclusiveAnalysisRun";
/// Condition type whose transition time marks the last promotion.
const COMPLETED: &str = "Completed";

/// What the planner reads besides the rollout.
pub struct Input<'a> {
    /// The rollout, its status as stored.
    pub rollout: &'a Rollout,
    /// Hash of the template it runs now.
    pub hash: String,
    /// Its live pods.
    pub pods: &'a [PodView],
    /// Ready endpoints that `service` has among pods of `hash` (no Services: ready pods).
    pub serving: &'a dyn Fn(Option<&str>, &str) -> i64,
    /// Its AnalysisRuns.
    pub runs: &'a Runs,
    /// The time of this pass.
    pub now: SystemTime,
}

/// A header route the canary takes: requests matching all of `matches`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderRoute {
    /// The managed route's name.
    pub name: String,
    /// Its header conditions.
    pub matches: Vec<HeaderRoutingMatch>,
}

/// The rollout's next move.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The status to write.
    pub status: RolloutStatus,
    /// Pods wanted per template hash; pods of any other hash go.
    pub desired: BTreeMap<String, i64>,
    /// Percent of traffic for the canary on the routes.
    pub weight: i64,
    /// Template hash the stable Service selects.
    pub stable: String,
    /// Template hash the canary Service selects.
    pub canary: String,
    /// Header routes to the canary.
    pub header_routes: Vec<HeaderRoute>,
    /// When to look again although nothing changes (a pause or a delay ending).
    pub requeue: Option<Duration>,
    /// AnalysisRuns that should exist; a running one not listed is terminated.
    pub runs: Vec<WantedRun>,
    /// AnalysisRuns of an earlier attempt, to delete before they are made again.
    pub stale_runs: Vec<String>,
}

/// Plans one pass for `input`.
pub fn plan(input: &Input) -> Plan {
    let ro = input.rollout;
    let canary = ro.canary();
    let steps = &canary.steps;
    let replicas = ro.spec.replicas.unwrap_or(1).max(0);
    let mut st = restart_if_changed(ro, &input.hash);
    let stable = st
        .stable_rs
        .get_or_insert_with(|| input.hash.clone())
        .clone();
    let mut p = Plan {
        status: RolloutStatus::default(),
        desired: BTreeMap::new(),
        weight: 0,
        stable: stable.clone(),
        canary: stable.clone(),
        header_routes: Vec::new(),
        requeue: None,
        runs: Vec::new(),
        stale_runs: Vec::new(),
    };
    if stable == input.hash {
        settled(input, &mut st, &mut p, replicas);
    } else if st.abort {
        aborted(input, &mut st, &mut p, replicas);
    } else {
        p.canary = input.hash.clone();
        if st.aborted_at.take().is_some() {
            // Retried (abort cleared, as Argo's plugin and pier's do): the aborted attempt's
            // analysis runs are stale, and new ones are made.
            st.canary.current_step_analysis_run_status = None;
            st.canary.current_background_analysis_run_status = None;
        }
        progress(input, &mut st, &mut p, replicas, steps);
        if st.abort {
            // An analysis failed: this very pass sends everything back to stable.
            p.canary = stable.clone();
            p.weight = 0;
            p.header_routes.clear();
            p.desired.clear();
            p.requeue = None;
            p.runs.clear();
            aborted(input, &mut st, &mut p, replicas);
        }
    }
    st.current_step_index.get_or_insert(steps.len() as i64);
    counts(input, &mut st);
    st.canary.weights = Some(TrafficWeights {
        canary: WeightDestination {
            weight: p.weight,
            service_name: canary.canary_service.clone(),
            pod_template_hash: Some(p.canary.clone()),
        },
        stable: WeightDestination {
            weight: 100 - p.weight,
            service_name: canary.stable_service.clone(),
            pod_template_hash: Some(p.stable.clone()),
        },
    });
    p.status = st;
    p
}

/// The stored status, started over at step 0 when the template or the steps changed.
fn restart_if_changed(ro: &Rollout, hash: &str) -> RolloutStatus {
    let mut st = ro.status.clone().unwrap_or_default();
    let steps_hash = steps_hash(&ro.canary().steps);
    let new_template = st.current_pod_hash.as_deref() != Some(hash);
    if new_template || st.current_step_hash.as_deref() != Some(&steps_hash) {
        if new_template {
            st.abort = false;
            st.aborted_at = None;
            st.promote_full = false;
            st.message = None;
        }
        st.pause_conditions.clear();
        st.controller_pause = false;
        st.current_step_index = Some(0);
        st.canary.current_step_analysis_run_status = None;
        st.current_pod_hash = Some(hash.to_string());
        st.current_step_hash = Some(steps_hash);
    }
    st.observed_generation = Some(ro.metadata.generation.to_string());
    st
}

/// Nothing to release: the stable template at full size; old pods kept for the scale-down
/// delay after the last promotion.
fn settled(input: &Input, st: &mut RolloutStatus, p: &mut Plan, replicas: i64) {
    let steps = input.rollout.canary().steps.len() as i64;
    st.current_step_index = Some(steps);
    st.pause_conditions.clear();
    st.controller_pause = false;
    st.abort = false;
    st.aborted_at = None;
    st.promote_full = false;
    p.desired.insert(input.hash.clone(), replicas);
    // Behind a route the old stable pods stay a while for requests under way; without one
    // they went as the canary grew.
    let canary = input.rollout.canary();
    let delay = if routed(input.rollout) {
        canary
            .scale_down_delay_seconds
            .unwrap_or(DEFAULT_SCALE_DOWN_DELAY)
    } else {
        0
    };
    set_condition(st, COMPLETED, "True", "RolloutCompleted", input.now);
    let promoted = condition_time(st, COMPLETED);
    keep_old_pods(input, p, promoted, delay);
    let ready = (input.serving)(None, &input.hash);
    if ready >= replicas {
        set_phase(st, "Healthy", None);
    } else {
        set_phase(
            st,
            "Progressing",
            Some(format!("waiting for pods: {ready} of {replicas} ready")),
        );
    }
}

/// Aborted: all traffic on stable at once; the canary's pods kept (not replaced) for
/// `abortScaleDownDelaySeconds`, then removed.
fn aborted(input: &Input, st: &mut RolloutStatus, p: &mut Plan, replicas: i64) {
    let canary = input.rollout.canary();
    st.current_step_index = Some(0);
    st.pause_conditions.clear();
    st.controller_pause = false;
    set_condition(st, COMPLETED, "False", "RolloutAborted", input.now);
    let at = st
        .aborted_at
        .get_or_insert_with(|| rfc3339(input.now))
        .clone();
    p.desired.insert(p.stable.clone(), replicas);
    let delay = canary
        .abort_scale_down_delay_seconds
        .unwrap_or(DEFAULT_SCALE_DOWN_DELAY);
    let live = count_of(input.pods, &input.hash);
    match remaining(parse_rfc3339(&at), delay, input.now) {
        Some(left) => {
            p.desired.insert(input.hash.clone(), live);
            p.requeue = Some(left);
        }
        None => {
            p.desired.insert(input.hash.clone(), 0);
        }
    }
    // With dynamicStableScale the stable pods shrank: traffic returns once they are back.
    if canary.dynamic_stable_scale == Some(true)
        && (input.serving)(canary.stable_service.as_deref(), &p.stable) < replicas
    {
        p.weight = stored_weight(input.rollout);
        p.canary = input.hash.clone();
    }
    let reason = st
        .message
        .clone()
        .filter(|m| m.starts_with("RolloutAborted"))
        .unwrap_or_else(|| "RolloutAborted: Rollout aborted update to the canary".into());
    st.phase = Some("Degraded".into());
    st.message = Some(reason);
}

/// A canary in progress: runs steps from the current one while they complete, then promotes.
fn progress(
    input: &Input,
    st: &mut RolloutStatus,
    p: &mut Plan,
    replicas: i64,
    steps: &[CanaryStep],
) {
    let ro = input.rollout;
    let canary = ro.canary();
    let n = steps.len();
    let mut i = usize::try_from(st.current_step_index.unwrap_or(0))
        .unwrap_or(0)
        .min(n);
    if st.promote_full {
        i = n;
    }
    set_condition(st, COMPLETED, "False", "RolloutProgressing", input.now);
    let user_paused = ro.spec.paused == Some(true);
    let mut held: Option<String> = None;
    match analysis::background(input, st, p, i) {
        Verdict::Abort(message) => return abort(st, message),
        Verdict::Pause => held = Some("the background analysis was inconclusive".into()),
        Verdict::Go | Verdict::Wait(_) => {}
    }
    while i < n && held.is_none() && !user_paused {
        let step = &steps[i];
        if step.set_weight.is_some() || step.set_canary_scale.is_some() {
            let want = canary_count(steps, i, replicas);
            let have = (input.serving)(canary.canary_service.as_deref(), &input.hash);
            if have < want {
                held = Some(format!(
                    "waiting for the canary: {have} of {want} pods serving"
                ));
                continue;
            }
        } else if let Some(pause) = &step.pause {
            match pause_done(st, PAUSE_STEP, pause.duration().ok().flatten(), input.now) {
                Ok(()) => {}
                Err(wait) => {
                    p.requeue = wait;
                    held = Some(format!("paused at step {i}"));
                    continue;
                }
            }
        } else if let Some(a) = &step.analysis {
            match analysis::step(input, st, p, i, a) {
                Verdict::Go => {}
                Verdict::Wait(why) => {
                    held = Some(why);
                    continue;
                }
                Verdict::Pause => {
                    held = Some(format!("the analysis of step {i} was inconclusive"));
                    continue;
                }
                Verdict::Abort(message) => return abort(st, message),
            }
        }
        i += 1;
    }
    st.current_step_index = Some(i as i64);
    p.weight = weight_before(steps, i);
    p.header_routes = header_routes(steps, i);
    // Behind a route the stable pods stay whole (unless dynamicStableScale); without one the
    // split is by pod counts, as Argo's basic canary does it.
    let routed = routed(ro);
    let stable_count = if routed && canary.dynamic_stable_scale != Some(true) {
        replicas
    } else {
        replicas - scaled(replicas, p.weight)
    };
    p.desired.insert(p.stable.clone(), stable_count);
    if i < n {
        p.desired
            .insert(input.hash.clone(), canary_count(steps, i, replicas));
        let paused = user_paused || !st.pause_conditions.is_empty();
        let phase = if paused { "Paused" } else { "Progressing" };
        let message = if user_paused {
            Some("manually paused".to_string())
        } else {
            held
        };
        set_phase(st, phase, message);
        return;
    }
    // Every step done: the canary at full size, then it becomes stable.
    p.desired.insert(input.hash.clone(), replicas);
    let serving = (input.serving)(canary.canary_service.as_deref(), &input.hash);
    if serving < replicas {
        set_phase(
            st,
            "Progressing",
            Some(format!(
                "promoting: {serving} of {replicas} canary pods serving"
            )),
        );
        return;
    }
    st.stable_rs = Some(input.hash.clone());
    st.promote_full = false;
    st.pause_conditions.clear();
    st.controller_pause = false;
    p.stable = input.hash.clone();
    p.canary = input.hash.clone();
    p.weight = 0;
    p.header_routes.clear();
    p.desired.clear();
    settled(input, st, p, replicas);
}

/// Whether traffic is split by a route (its own, or the one pier manages) rather than by
/// pod counts.
fn routed(ro: &Rollout) -> bool {
    ro.canary().traffic_routing.is_some() || wants_managed_route(ro)
}

/// Marks the rollout aborted with `message` (the planner then plans the abort).
fn abort(st: &mut RolloutStatus, message: String) {
    st.abort = true;
    st.message = Some(message);
}

/// Whether the pause of `reason` is over: a timed one once its time is up, an open one
/// once promoted (its condition removed after the controller set it). `Err` holds how long
/// to wait, if known; the pause is recorded on the way.
pub(super) fn pause_done(
    st: &mut RolloutStatus,
    reason: &str,
    duration: Option<Duration>,
    now: SystemTime,
) -> Result<(), Option<Duration>> {
    let existing = st.pause_conditions.iter().position(|c| c.reason == reason);
    match (existing, duration) {
        (None, _) if st.controller_pause => {
            // Promoted: the condition the controller set was cleared.
            st.controller_pause = false;
            Ok(())
        }
        (None, _) => {
            st.pause_conditions.push(PauseCondition {
                reason: reason.into(),
                start_time: rfc3339(now),
            });
            st.controller_pause = true;
            Err(duration)
        }
        (Some(at), Some(d)) => {
            let started = parse_rfc3339(&st.pause_conditions[at].start_time);
            match remaining(started, d.as_secs() as i64, now) {
                Some(left) => Err(Some(left)),
                None => {
                    st.pause_conditions.remove(at);
                    st.controller_pause = false;
                    Ok(())
                }
            }
        }
        (Some(_), None) => Err(None),
    }
}

/// Live pods of old templates are kept until `delay` seconds after `since`.
fn keep_old_pods(input: &Input, p: &mut Plan, since: Option<SystemTime>, delay: i64) {
    let Some(left) = since.and_then(|t| remaining(Some(t), delay, input.now)) else {
        return;
    };
    for pod in input.pods {
        if !p.desired.contains_key(&pod.hash) && !pod.hash.is_empty() {
            let n = count_of(input.pods, &pod.hash);
            p.desired.insert(pod.hash.clone(), n);
            p.requeue = Some(left);
        }
    }
}

fn count_of(pods: &[PodView], hash: &str) -> i64 {
    pods.iter().filter(|p| p.hash == hash).count() as i64
}

fn counts(input: &Input, st: &mut RolloutStatus) {
    st.replicas = input.pods.len() as i64;
    st.updated_replicas = count_of(input.pods, &input.hash);
    st.ready_replicas = input.pods.iter().filter(|p| p.ready).count() as i64;
    st.available_replicas = st.ready_replicas;
}

/// The canary weight the stored status records.
fn stored_weight(ro: &Rollout) -> i64 {
    ro.status
        .as_ref()
        .and_then(|s| s.canary.weights.as_ref())
        .map_or(0, |w| w.canary.weight)
}

fn set_phase(st: &mut RolloutStatus, phase: &str, message: Option<String>) {
    st.phase = Some(phase.into());
    st.message = message;
}

/// Sets condition `kind`, moving its transition time only when its status changes.
fn set_condition(st: &mut RolloutStatus, kind: &str, status: &str, reason: &str, now: SystemTime) {
    let words = (status, reason, format!("{kind} is {status}: {reason}"));
    let c = condition(kind, words, &st.conditions, &rfc3339(now));
    match st.conditions.iter_mut().find(|c| c.condition_type == kind) {
        Some(slot) => *slot = c,
        None => st.conditions.push(c),
    }
}

/// When condition `kind` last turned True.
fn condition_time(st: &RolloutStatus, kind: &str) -> Option<SystemTime> {
    st.conditions
        .iter()
        .find(|c| c.condition_type == kind && c.status == "True")
        .and_then(|c| parse_rfc3339(c.last_transition_time.as_deref()?))
}

/// Time left until `delay` seconds after `since`; `None` once it has passed (or no start).
fn remaining(since: Option<SystemTime>, delay: i64, now: SystemTime) -> Option<Duration> {
    let end = since? + Duration::from_secs(u64::try_from(delay).unwrap_or(0));
    end.duration_since(now).ok().filter(|d| !d.is_zero())
}

fn steps_hash(steps: &[CanaryStep]) -> String {
    let json = serde_json::to_vec(steps).unwrap_or_default();
    let hash = json.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")[..10].to_string()
}

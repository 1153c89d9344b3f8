//! The canary planner's steps, pauses, aborts and promotions, pass by pass.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::deployment::PodView;
use super::rollout::{plan, Input, Plan, PAUSE_STEP};
use pier_model::manifest::objects;
use pier_model::{Object, Rollout};

fn rollout(steps: &str) -> Rollout {
    let yaml = format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {{name: web}}\nspec:\n  replicas: 5\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec: {{containers: [{{name: c, image: x}}]}}\n  strategy:\n    canary:\n      stableService: s\n      canaryService: c\n      abortScaleDownDelaySeconds: 10\n      trafficRouting: {{plugins: {{argoproj-labs/gatewayAPI: {{httpRoute: r}}}}}}\n      steps: {steps}\n"
    );
    match objects("test", &yaml).unwrap().remove(0) {
        Object::Rollout(r) => r,
        other => panic!("{other:?}"),
    }
}

fn pods(hash: &str, n: usize, ready: bool) -> Vec<PodView> {
    (0..n)
        .map(|i| PodView {
            name: format!("{hash}-{i}"),
            hash: hash.into(),
            ready,
        })
        .collect()
}

/// One pass with `serving` ready endpoints per hash, at `now`; the plan's status is stored
/// back into `ro` as the controller would.
fn pass(
    ro: &mut Rollout,
    hash: &str,
    live: &[PodView],
    serving: &BTreeMap<&str, i64>,
    now: SystemTime,
) -> Plan {
    let count = |_: Option<&str>, h: &str| serving.get(h).copied().unwrap_or(0);
    let p = plan(&Input {
        rollout: ro,
        hash: hash.into(),
        pods: live,
        serving: &count,
        now,
    });
    ro.status = Some(p.status.clone());
    p
}

#[test]
fn the_first_template_is_stable_at_once() {
    let mut ro = rollout("[{setWeight: 20}, {pause: {}}]");
    let now = SystemTime::now();
    let p = pass(&mut ro, "a", &[], &BTreeMap::new(), now);
    assert_eq!(p.desired, BTreeMap::from([("a".to_string(), 5)]));
    assert_eq!(
        (p.weight, p.stable.as_str(), p.canary.as_str()),
        (0, "a", "a")
    );
    assert_eq!(p.status.phase.as_deref(), Some("Progressing"));
    assert_eq!(p.status.current_step_index, Some(2));
    let p = pass(
        &mut ro,
        "a",
        &pods("a", 5, true),
        &BTreeMap::from([("a", 5)]),
        now,
    );
    assert_eq!(p.status.phase.as_deref(), Some("Healthy"));
}

#[test]
fn a_weight_moves_only_once_its_canary_pods_serve_then_pauses_until_promoted() {
    let mut ro = rollout("[{setWeight: 20}, {pause: {}}, {setWeight: 60}]");
    let now = SystemTime::now();
    pass(
        &mut ro,
        "a",
        &pods("a", 5, true),
        &BTreeMap::from([("a", 5)]),
        now,
    );
    // New template: one canary pod (20% of 5, rounded up), no traffic yet.
    let p = pass(
        &mut ro,
        "b",
        &pods("a", 5, true),
        &BTreeMap::from([("a", 5)]),
        now,
    );
    assert_eq!(
        p.desired,
        BTreeMap::from([("a".to_string(), 5), ("b".to_string(), 1)])
    );
    assert_eq!((p.weight, p.canary.as_str()), (0, "b"));
    assert_eq!(p.status.current_step_index, Some(0));
    // It serves: 20%, then the pause holds.
    let serving = BTreeMap::from([("a", 5), ("b", 1)]);
    let p = pass(&mut ro, "b", &pods("a", 5, true), &serving, now);
    assert_eq!((p.weight, p.status.current_step_index), (20, Some(1)));
    assert_eq!(p.status.phase.as_deref(), Some("Paused"));
    assert_eq!(p.status.pause_conditions[0].reason, PAUSE_STEP);
    assert!(p.status.controller_pause);
    let again = pass(&mut ro, "b", &pods("a", 5, true), &serving, now);
    assert_eq!(again.status.current_step_index, Some(1), "still paused");
    // Promoted (the condition cleared): on to 60%, which needs three canary pods first.
    ro.status.as_mut().unwrap().pause_conditions.clear();
    let p = pass(&mut ro, "b", &pods("a", 5, true), &serving, now);
    assert_eq!((p.weight, p.status.current_step_index), (20, Some(2)));
    assert_eq!(p.desired["b"], 3);
    // Then every step is done: the canary at full size becomes stable.
    let p = pass(
        &mut ro,
        "b",
        &[],
        &BTreeMap::from([("a", 5), ("b", 5)]),
        now,
    );
    assert_eq!((p.weight, p.stable.as_str()), (0, "b"));
    assert_eq!(p.status.stable_rs.as_deref(), Some("b"));
    assert_eq!(p.status.phase.as_deref(), Some("Healthy"));
}

#[test]
fn timed_pauses_end_by_themselves() {
    let mut ro = rollout("[{pause: {duration: 10s}}]");
    let t0 = SystemTime::now();
    pass(&mut ro, "a", &[], &BTreeMap::new(), t0);
    let p = pass(&mut ro, "b", &[], &BTreeMap::new(), t0);
    assert_eq!(p.status.current_step_index, Some(0));
    assert!(p.requeue.is_some_and(|d| d <= Duration::from_secs(10)));
    let p = pass(
        &mut ro,
        "b",
        &[],
        &BTreeMap::from([("b", 5)]),
        t0 + Duration::from_secs(11),
    );
    assert_eq!(p.status.stable_rs.as_deref(), Some("b"), "{:?}", p.status);
}

#[test]
fn an_abort_puts_all_traffic_on_stable_and_keeps_the_canary_for_its_delay() {
    let mut ro = rollout("[{setWeight: 40}, {pause: {}}]");
    let t0 = SystemTime::now();
    pass(&mut ro, "a", &[], &BTreeMap::new(), t0);
    let mut live = pods("a", 5, true);
    live.extend(pods("b", 2, true));
    let serving = BTreeMap::from([("a", 5), ("b", 2)]);
    assert_eq!(pass(&mut ro, "b", &live, &serving, t0).weight, 40);
    ro.status.as_mut().unwrap().abort = true;
    let p = pass(&mut ro, "b", &live, &serving, t0);
    assert_eq!(p.weight, 0);
    assert_eq!(p.status.phase.as_deref(), Some("Degraded"));
    assert_eq!(p.desired["b"], 2, "kept for abortScaleDownDelaySeconds");
    let p = pass(&mut ro, "b", &live, &serving, t0 + Duration::from_secs(11));
    assert_eq!(p.desired["b"], 0);
    // Retried: from the first step again.
    let st = ro.status.as_mut().unwrap();
    st.abort = false;
    st.aborted_at = None;
    let p = pass(&mut ro, "b", &live, &serving, t0 + Duration::from_secs(12));
    assert_eq!((p.weight, p.status.current_step_index), (40, Some(1)));
}

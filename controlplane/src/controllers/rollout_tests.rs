//! The canary planner's steps, pauses, aborts and promotions, pass by pass.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::deployment::PodView;
use super::rollout::{plan, Input, Plan, PAUSE_ANALYSIS, PAUSE_STEP};
use super::rollout_analysis::{RunState, Runs};
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
    pass_with_runs(ro, hash, live, serving, &Runs::new(), now)
}

/// `pass`, with the rollout's AnalysisRuns as `runs` says.
fn pass_with_runs(
    ro: &mut Rollout,
    hash: &str,
    live: &[PodView],
    serving: &BTreeMap<&str, i64>,
    runs: &Runs,
    now: SystemTime,
) -> Plan {
    let count = |_: Option<&str>, h: &str| serving.get(h).copied().unwrap_or(0);
    let p = plan(&Input {
        rollout: ro,
        hash: hash.into(),
        pods: live,
        serving: &count,
        runs,
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

fn runs(entries: &[(&str, &str, Option<&str>)]) -> Runs {
    entries
        .iter()
        .map(|(name, phase, message)| {
            let state = RunState {
                phase: phase.to_string(),
                message: message.map(str::to_string),
            };
            (name.to_string(), state)
        })
        .collect()
}

#[test]
fn an_analysis_step_waits_for_its_run_and_a_failed_run_aborts_at_once() {
    let mut ro = rollout(
        "[{setWeight: 20}, {analysis: {templates: [{templateName: ok}]}}, {setWeight: 60}]",
    );
    let now = SystemTime::now();
    let serving = BTreeMap::from([("a", 5), ("b", 3)]);
    pass(
        &mut ro,
        "a",
        &pods("a", 5, true),
        &BTreeMap::from([("a", 5)]),
        now,
    );
    let p = pass(&mut ro, "b", &pods("a", 5, true), &serving, now);
    assert_eq!((p.weight, p.status.current_step_index), (20, Some(1)));
    assert_eq!(p.runs.len(), 1, "the step's run is wanted");
    assert_eq!(p.runs[0].name, "web-b-1");
    assert_eq!(p.runs[0].analysis.templates[0].template_name, "ok");
    let running = runs(&[("web-b-1", "Running", None)]);
    let p = pass_with_runs(&mut ro, "b", &pods("a", 5, true), &serving, &running, now);
    assert_eq!(p.status.current_step_index, Some(1), "held while it runs");
    let why = "Metric \"success\" assessed Failed due to failed (1) > failureLimit (0)";
    let failed = runs(&[("web-b-1", "Failed", Some(why))]);
    let p = pass_with_runs(&mut ro, "b", &pods("a", 5, true), &serving, &failed, now);
    assert!(p.status.abort);
    assert_eq!(p.weight, 0, "all traffic back on stable in the same pass");
    assert_eq!(p.status.phase.as_deref(), Some("Degraded"));
    let message = p.status.message.clone().unwrap_or_default();
    assert!(
        message.starts_with("RolloutAborted") && message.contains(why),
        "{message}"
    );
    assert!(p.runs.is_empty());
    // Retried: the failed run is an earlier attempt's; it goes and a new one is made.
    ro.status.as_mut().unwrap().abort = false;
    let p = pass_with_runs(&mut ro, "b", &pods("a", 5, true), &serving, &failed, now);
    assert!(!p.status.abort);
    assert_eq!(p.stale_runs, vec!["web-b-1".to_string()]);
    assert!(p.runs.is_empty());
    let p = pass(&mut ro, "b", &pods("a", 5, true), &serving, now);
    assert_eq!((p.weight, p.runs.len()), (20, 1));
    let passed = runs(&[("web-b-1", "Successful", None)]);
    let p = pass_with_runs(&mut ro, "b", &pods("a", 5, true), &serving, &passed, now);
    assert_eq!(p.weight, 60, "on to 60% once it passed");
}

#[test]
fn an_inconclusive_analysis_pauses_until_promoted() {
    let mut ro = rollout("[{setWeight: 20}, {analysis: {templates: [{templateName: t}]}}]");
    let now = SystemTime::now();
    let serving = BTreeMap::from([("a", 5), ("b", 1)]);
    pass(
        &mut ro,
        "a",
        &pods("a", 5, true),
        &BTreeMap::from([("a", 5)]),
        now,
    );
    let p = pass(&mut ro, "b", &pods("a", 5, true), &serving, now);
    assert_eq!(p.runs[0].name, "web-b-1");
    let unsure = runs(&[("web-b-1", "Inconclusive", None)]);
    let p = pass_with_runs(&mut ro, "b", &pods("a", 5, true), &serving, &unsure, now);
    assert_eq!(p.status.phase.as_deref(), Some("Paused"));
    assert_eq!(p.status.pause_conditions[0].reason, PAUSE_ANALYSIS);
    ro.status.as_mut().unwrap().pause_conditions.clear();
    let p = pass_with_runs(&mut ro, "b", &pods("a", 5, true), &serving, &unsure, now);
    assert_eq!(p.status.current_step_index, Some(2), "promoted past it");
}

#[test]
fn a_failed_background_analysis_aborts() {
    let yaml = "[{setWeight: 20}, {pause: {}}]";
    let mut ro = rollout(yaml);
    let canary = ro.spec.strategy.canary.as_mut().unwrap();
    canary.analysis = Some(pier_model::rollout::RolloutAnalysis {
        templates: vec![pier_model::rollout::AnalysisTemplateRef {
            template_name: "bg".into(),
            cluster_scope: None,
        }],
        args: Vec::new(),
        starting_step: Some(1),
    });
    let now = SystemTime::now();
    let serving = BTreeMap::from([("a", 5), ("b", 1)]);
    pass(
        &mut ro,
        "a",
        &pods("a", 5, true),
        &BTreeMap::from([("a", 5)]),
        now,
    );
    let p = pass(&mut ro, "b", &pods("a", 5, true), &serving, now);
    assert!(p.runs.is_empty(), "not before its starting step");
    let p = pass(&mut ro, "b", &pods("a", 5, true), &serving, now);
    assert_eq!(
        p.runs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["web-b"]
    );
    let failed = runs(&[("web-b", "Failed", None)]);
    let p = pass_with_runs(&mut ro, "b", &pods("a", 5, true), &serving, &failed, now);
    assert!(p.status.abort);
    assert_eq!(p.weight, 0);
}

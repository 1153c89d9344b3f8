//! A Rollout's analyses, planned as Argo runs them: an `analysis` step waits for its
//! AnalysisRun; the background analysis (`canary.analysis`) runs from its starting step until
//! the canary is promoted; a run that fails or errs aborts the rollout, an inconclusive one
//! pauses it until promoted. Pure functions beside `rollout.rs`'s planner.

use std::collections::BTreeMap;

use pier_model::analysis::phase;
use pier_model::rollout::{AnalysisRunStatusRef, RolloutAnalysis, RolloutStatus};

use super::rollout::{pause_done, Input, Plan, PAUSE_ANALYSIS};

/// What the planner knows of one of the rollout's AnalysisRuns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunState {
    /// Its phase (empty until its controller starts it).
    pub phase: String,
    /// Its message.
    pub message: Option<String>,
}

/// The rollout's AnalysisRuns by name.
pub type Runs = BTreeMap<String, RunState>;

/// An AnalysisRun the rollout wants to exist (and, while running, to go on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedRun {
    /// The run's name.
    pub name: String,
    /// The templates and arguments it runs.
    pub analysis: RolloutAnalysis,
}

/// What an analysis says about going on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Go on.
    Go,
    /// Not yet: why.
    Wait(String),
    /// Inconclusive: paused until promoted.
    Pause,
    /// Failed or erred: abort, with the message.
    Abort(String),
}

/// Name of the run for step `i` of the template `hash`.
pub fn step_run_name(rollout: &str, hash: &str, i: usize) -> String {
    format!("{rollout}-{hash}-{i}")
}

/// Name of the background run for the template `hash`.
pub fn background_run_name(rollout: &str, hash: &str) -> String {
    format!("{rollout}-{hash}")
}

/// The analysis step at `i`.
pub(super) fn step(
    input: &Input,
    st: &mut RolloutStatus,
    p: &mut Plan,
    i: usize,
    analysis: &RolloutAnalysis,
) -> Verdict {
    let name = step_run_name(&input.rollout.metadata.name, &input.hash, i);
    let slot = &mut st.canary.current_step_analysis_run_status;
    let verdict = judge(input, slot, p, &name, analysis);
    until_promoted(verdict, st, input)
}

/// The background analysis while at step `i`; it does not hold the steps back.
pub(super) fn background(input: &Input, st: &mut RolloutStatus, p: &mut Plan, i: usize) -> Verdict {
    let Some(analysis) = &input.rollout.canary().analysis else {
        return Verdict::Go;
    };
    let from = usize::try_from(analysis.starting_step.unwrap_or(0)).unwrap_or(0);
    if i < from {
        return Verdict::Go;
    }
    let name = background_run_name(&input.rollout.metadata.name, &input.hash);
    let slot = &mut st.canary.current_background_analysis_run_status;
    let verdict = judge(input, slot, p, &name, analysis);
    match until_promoted(verdict, st, input) {
        Verdict::Wait(_) => Verdict::Go,
        other => other,
    }
}

/// An inconclusive verdict holds (the pause recorded) until the rollout is promoted past it.
fn until_promoted(verdict: Verdict, st: &mut RolloutStatus, input: &Input) -> Verdict {
    match verdict {
        Verdict::Pause if pause_done(st, PAUSE_ANALYSIS, None, input.now).is_ok() => Verdict::Go,
        other => other,
    }
}

/// The verdict of run `name`, which the rollout wants; `slot` records it in the status. A
/// run that ended badly before the status named it (the rollout was retried since) is stale:
/// it goes, and a new one is made.
fn judge(
    input: &Input,
    slot: &mut Option<AnalysisRunStatusRef>,
    p: &mut Plan,
    name: &str,
    analysis: &RolloutAnalysis,
) -> Verdict {
    let known = slot.as_ref().is_some_and(|r| r.name == name);
    let state = input.runs.get(name);
    let bad = |s: &RunState| {
        matches!(
            s.phase.as_str(),
            phase::FAILED | phase::ERROR | phase::INCONCLUSIVE
        )
    };
    if let Some(s) = state.filter(|s| bad(s) && !known) {
        tracing::debug!(run = name, phase = %s.phase, "an earlier attempt's analysis goes");
        p.stale_runs.push(name.to_string());
        *slot = None;
        return Verdict::Wait(format!("starting analysis {name} again"));
    }
    p.runs.push(WantedRun {
        name: name.to_string(),
        analysis: analysis.clone(),
    });
    let phase_now = state
        .map(|s| s.phase.clone())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| phase::PENDING.to_string());
    *slot = Some(AnalysisRunStatusRef {
        name: name.to_string(),
        status: phase_now.clone(),
        message: state.and_then(|s| s.message.clone()),
    });
    match phase_now.as_str() {
        phase::SUCCESSFUL => Verdict::Go,
        phase::INCONCLUSIVE => Verdict::Pause,
        phase::FAILED | phase::ERROR => {
            let why = state
                .and_then(|s| s.message.clone())
                .unwrap_or_else(|| format!("analysis run {name} {phase_now}"));
            Verdict::Abort(format!(
                "RolloutAborted: Rollout aborted update to revision {}: {why}",
                input.hash
            ))
        }
        _ => Verdict::Wait(format!("waiting for analysis {name} ({phase_now})")),
    }
}

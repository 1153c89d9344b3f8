//! Verdicts as Argo Rollouts gives them: a measurement from its conditions, a metric from
//! its measurements and limits, a run from its metrics (the worst; a failed metric stops the
//! rest). Pure functions over an AnalysisRun's spec and status.

use std::time::{Duration, SystemTime};

use pier_model::analysis::{
    phase, AnalysisRun, AnalysisRunStatus, Measurement, Metric, MetricResult, RunSummary,
};
use pier_model::condition::{evaluate, Measured};
use pier_model::time::{parse_rfc3339, rfc3339};

/// Measurements kept per metric (Argo keeps 10 by default).
const KEPT: usize = 10;

/// A measurement's phase from the metric's conditions (Argo's `EvaluateResult`): with only a
/// success condition, false fails; with only a failure condition, false succeeds; with both
/// and neither true, inconclusive.
pub fn judge(metric: &Metric, result: &Measured) -> Result<&'static str, String> {
    let success = metric
        .success_condition
        .as_deref()
        .map(|c| evaluate(c, result))
        .transpose()?;
    let failure = metric
        .failure_condition
        .as_deref()
        .map(|c| evaluate(c, result))
        .transpose()?;
    let (success, failure) = match (success, failure) {
        (None, None) => return Ok(phase::SUCCESSFUL),
        (Some(s), None) => (s, !s),
        (None, Some(f)) => (!f, f),
        (Some(s), Some(f)) => (s, f),
    };
    Ok(if failure {
        phase::FAILED
    } else if success {
        phase::SUCCESSFUL
    } else {
        phase::INCONCLUSIVE
    })
}

/// A measurement from what a provider gave.
pub fn measurement(
    metric: &Metric,
    outcome: Result<Measured, String>,
    started: SystemTime,
    finished: SystemTime,
) -> Measurement {
    let (phase, value, message) = match outcome {
        Ok(value) => match judge(metric, &value) {
            Ok(p) => (p, Some(value.text()), None),
            Err(e) => (phase::ERROR, Some(value.text()), Some(e)),
        },
        Err(e) => (phase::ERROR, None, Some(e)),
    };
    Measurement {
        phase: phase.into(),
        value,
        message,
        started_at: Some(rfc3339(started)),
        finished_at: Some(rfc3339(finished)),
    }
}

/// Adds `m` to the result of `metric` in `status` and assesses the run again.
pub fn record(run: &AnalysisRun, status: &mut AnalysisRunStatus, metric: &str, m: Measurement) {
    let Some(result) = status.metric_results.iter_mut().find(|r| r.name == metric) else {
        return;
    };
    if phase::is_done(&result.phase) {
        return;
    }
    result.count += 1;
    match m.phase.as_str() {
        phase::SUCCESSFUL => result.successful += 1,
        phase::FAILED => result.failed += 1,
        phase::INCONCLUSIVE => result.inconclusive += 1,
        _ => result.error += 1,
    }
    if m.phase == phase::ERROR {
        result.consecutive_error += 1;
    } else {
        result.consecutive_error = 0;
    }
    result.message = m.message.clone();
    result.measurements.push(m);
    let extra = result.measurements.len().saturating_sub(KEPT);
    result.measurements.drain(..extra);
    assess(run, status);
}

/// Sets each metric's phase and the run's phase, message and summary from the measurements.
pub fn assess(run: &AnalysisRun, status: &mut AnalysisRunStatus) {
    let terminating = run.spec.terminate == Some(true)
        || status.metric_results.iter().any(|r| {
            matches!(
                r.phase.as_str(),
                phase::FAILED | phase::ERROR | phase::INCONCLUSIVE
            )
        });
    let mut worst: Option<(&'static str, Option<String>)> = None;
    let mut all_done = true;
    let mut summary = RunSummary::default();
    for metric in &run.spec.metrics {
        let Some(result) = status
            .metric_results
            .iter_mut()
            .find(|r| r.name == metric.name)
        else {
            continue;
        };
        summary.count += 1;
        let (p, why) = metric_phase(metric, result, terminating);
        result.phase = p.into();
        match p {
            phase::SUCCESSFUL => summary.successful += 1,
            phase::FAILED => summary.failed += 1,
            phase::ERROR => summary.error += 1,
            phase::INCONCLUSIVE => summary.inconclusive += 1,
            _ => all_done = false,
        }
        if phase::is_done(p) && worst.as_ref().is_none_or(|(w, _)| rank(p) > rank(w)) {
            let message = why.map(|why| {
                let mut m = format!("Metric \"{}\" assessed {p} due to {why}", metric.name);
                if let Some(last) = &result.message {
                    m.push_str(&format!(": \"Error Message: {last}\""));
                }
                m
            });
            worst = Some((p, message));
        }
    }
    status.run_summary = Some(summary);
    match worst {
        Some((p, message)) if all_done => {
            status.phase = p.into();
            status.message = message.or_else(|| {
                (run.spec.terminate == Some(true)).then(|| "Run Terminated".to_string())
            });
        }
        _ => status.phase = phase::RUNNING.into(),
    }
}

/// One metric's phase and, when it went wrong, why (Argo's `assessMetricStatus`).
fn metric_phase(
    metric: &Metric,
    result: &MetricResult,
    terminating: bool,
) -> (&'static str, Option<String>) {
    if phase::is_done(&result.phase) {
        return (done_phase(&result.phase), None);
    }
    if result.measurements.is_empty() {
        let p = if terminating {
            phase::SUCCESSFUL
        } else {
            phase::PENDING
        };
        return (p, None);
    }
    let limits = (
        metric.failure_limit().unwrap_or(0),
        metric.inconclusive_limit().unwrap_or(0),
        metric.consecutive_error_limit().unwrap_or(4),
    );
    if result.failed > limits.0 {
        let why = format!("failed ({}) > failureLimit ({})", result.failed, limits.0);
        return (phase::FAILED, Some(why));
    }
    if result.inconclusive > limits.1 {
        let why = format!(
            "inconclusive ({}) > inconclusiveLimit ({})",
            result.inconclusive, limits.1
        );
        return (phase::INCONCLUSIVE, Some(why));
    }
    if result.consecutive_error > limits.2 {
        let why = format!(
            "consecutiveErrors ({}) > consecutiveErrorLimit ({})",
            result.consecutive_error, limits.2
        );
        return (phase::ERROR, Some(why));
    }
    let count = metric.count().unwrap_or(Some(1));
    if count.is_some_and(|c| result.count >= c) || terminating {
        return (phase::SUCCESSFUL, None);
    }
    (phase::RUNNING, None)
}

fn done_phase(p: &str) -> &'static str {
    match p {
        phase::FAILED => phase::FAILED,
        phase::ERROR => phase::ERROR,
        phase::INCONCLUSIVE => phase::INCONCLUSIVE,
        _ => phase::SUCCESSFUL,
    }
}

/// Argo's order of phases, best to worst.
fn rank(p: &str) -> u8 {
    match p {
        phase::PENDING => 0,
        phase::RUNNING => 1,
        phase::SUCCESSFUL => 2,
        phase::INCONCLUSIVE => 3,
        phase::ERROR => 4,
        _ => 5,
    }
}

/// When `metric`'s next measurement is due: its initial delay after the run started, then
/// an interval after the last one started. `None` once it needs no more.
pub fn next_due(metric: &Metric, result: &MetricResult, started: SystemTime) -> Option<SystemTime> {
    if phase::is_done(&result.phase) {
        return None;
    }
    let Some(last) = result.measurements.last() else {
        return Some(started + metric.initial_delay().unwrap_or_default());
    };
    let interval = metric.interval().ok().flatten()?;
    let last_start = last
        .started_at
        .as_deref()
        .and_then(parse_rfc3339)
        .unwrap_or(started);
    Some(last_start + interval.max(Duration::from_millis(100)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pier_model::analysis::AnalysisSpec;
    use pier_model::IntOrString;

    fn run(metric: Metric) -> (AnalysisRun, AnalysisRunStatus) {
        let run = AnalysisRun {
            spec: AnalysisSpec {
                metrics: vec![metric.clone()],
                ..Default::default()
            },
            ..Default::default()
        };
        let status = AnalysisRunStatus {
            phase: phase::RUNNING.into(),
            metric_results: vec![MetricResult {
                name: metric.name,
                phase: phase::PENDING.into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        (run, status)
    }

    fn success_rate() -> Metric {
        Metric {
            name: "success".into(),
            interval: Some("5s".into()),
            count: Some(IntOrString::Int(3)),
            failure_limit: Some(IntOrString::Int(1)),
            success_condition: Some("result >= 0.95".into()),
            ..Default::default()
        }
    }

    fn measure(metric: &Metric, value: f64) -> Measurement {
        let now = SystemTime::now();
        measurement(metric, Ok(Measured::Number(value)), now, now)
    }

    #[test]
    fn conditions_judge_as_argo_does() {
        let mut m = success_rate();
        assert_eq!(judge(&m, &Measured::Number(0.99)), Ok(phase::SUCCESSFUL));
        assert_eq!(judge(&m, &Measured::Number(0.5)), Ok(phase::FAILED));
        m.failure_condition = Some("result < 0.5".into());
        assert_eq!(judge(&m, &Measured::Number(0.7)), Ok(phase::INCONCLUSIVE));
        m.success_condition = None;
        assert_eq!(judge(&m, &Measured::Number(0.7)), Ok(phase::SUCCESSFUL));
    }

    #[test]
    fn a_metric_fails_past_its_failure_limit_and_fails_the_run() {
        let metric = success_rate();
        let (run, mut status) = run(metric.clone());
        record(&run, &mut status, "success", measure(&metric, 0.5));
        assert_eq!(
            status.phase,
            phase::RUNNING,
            "one failure is within the limit"
        );
        record(&run, &mut status, "success", measure(&metric, 0.4));
        assert_eq!(status.phase, phase::FAILED);
        assert_eq!(
            status.message.as_deref(),
            Some("Metric \"success\" assessed Failed due to failed (2) > failureLimit (1)")
        );
        assert_eq!(status.run_summary.as_ref().map(|s| s.failed), Some(1));
    }

    #[test]
    fn a_metric_succeeds_once_its_count_is_reached() {
        let metric = success_rate();
        let (run, mut status) = run(metric.clone());
        for v in [0.99, 0.5, 0.97] {
            record(&run, &mut status, "success", measure(&metric, v));
        }
        assert_eq!(status.phase, phase::SUCCESSFUL);
        assert_eq!(status.metric_results[0].count, 3);
    }

    #[test]
    fn errors_in_a_row_past_the_limit_err_the_run() {
        let mut metric = success_rate();
        metric.count = None;
        let (run, mut status) = run(metric.clone());
        let now = SystemTime::now();
        for _ in 0..5 {
            let m = measurement(&metric, Err("no answer".into()), now, now);
            record(&run, &mut status, "success", m);
        }
        assert_eq!(status.phase, phase::ERROR);
        assert!(status.message.unwrap_or_default().contains("no answer"));
    }

    #[test]
    fn a_terminated_run_without_failures_succeeds() {
        let mut metric = success_rate();
        metric.count = None;
        let (mut run, mut status) = run(metric.clone());
        record(&run, &mut status, "success", measure(&metric, 0.99));
        assert_eq!(
            status.phase,
            phase::RUNNING,
            "no count: runs until terminated"
        );
        run.spec.terminate = Some(true);
        assess(&run, &mut status);
        assert_eq!(status.phase, phase::SUCCESSFUL);
        assert_eq!(status.message.as_deref(), Some("Run Terminated"));
    }

    #[test]
    fn measurements_come_due_after_the_delay_then_each_interval() {
        let mut metric = success_rate();
        metric.initial_delay = Some("2s".into());
        let (_, mut status) = run(metric.clone());
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let due = next_due(&metric, &status.metric_results[0], start);
        assert_eq!(due, Some(start + Duration::from_secs(2)));
        let m = measurement(&metric, Ok(Measured::Number(1.0)), start, start);
        status.metric_results[0].measurements.push(m);
        let due = next_due(&metric, &status.metric_results[0], start);
        assert_eq!(due, Some(start + Duration::from_secs(5)));
    }
}

//! The AnalysisRun controller: takes each running metric's measurements when they come due
//! (each in its own task, written back into the run's status), and keeps the run's verdict
//! (`assess.rs`). Leader work on the controller runner, keyed by AnalysisRun.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::task::JoinSet;

use super::assess::{assess, measurement, next_due, record};
use super::providers::Providers;
use super::resolve::with_args;
use crate::controllers::runner::{Reconciled, Reconciler};
use crate::events::Recorder;
use crate::store::{EventType, Op, Store};
use pier_model::analysis::{phase, AnalysisRun, AnalysisRunStatus, Measurement, MetricResult};
use pier_model::time::{parse_rfc3339, rfc3339};
use pier_model::{Kind, Object};

type Key = (String, String);

/// Look again this soon while a measurement is under way.
const IN_FLIGHT_RECHECK: Duration = Duration::from_secs(1);
/// Tries at writing a measurement against concurrent status writes.
const WRITE_TRIES: usize = 5;

/// A measurement under way: the run (by uid) and the metric.
type Flight = (Key, String, String);

/// The AnalysisRun controller.
pub struct AnalysisController {
    store: Arc<Store>,
    providers: Providers,
    events: Recorder,
    runs: HashMap<Key, AnalysisRun>,
    in_flight: Arc<Mutex<HashSet<Flight>>>,
    /// The measurement tasks; dropped (and so stopped) with the controller.
    tasks: JoinSet<()>,
}

impl AnalysisController {
    /// A controller measuring with `providers`, writing to `store`.
    pub fn new(store: Arc<Store>, providers: Providers, events: Recorder) -> Self {
        Self {
            store,
            providers,
            events,
            runs: HashMap::new(),
            in_flight: Arc::default(),
            tasks: JoinSet::new(),
        }
    }

    fn flying(&self, flight: &Flight) -> bool {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(flight)
    }

    /// One run's pass: its status started or assessed again, then what comes due measured.
    async fn reconcile_one(&mut self, key: Key, result: &mut Reconciled<Key>) {
        let Some(run) = self.runs.get(&key).cloned() else {
            return;
        };
        let now = SystemTime::now();
        let mut status = run.status.clone().unwrap_or_default();
        if status.phase.is_empty() {
            status = started(&run, now);
        }
        if !phase::is_done(&status.phase) {
            assess(&run, &mut status);
        }
        if run.status.as_ref() != Some(&status) {
            let mut updated = run.clone();
            updated.status = Some(status.clone());
            let op = vec![Op::PutStatus(Object::AnalysisRun(updated))];
            match self
                .store
                .blocking("writing an AnalysisRun's status", move |s| s.write(op))
                .await
            {
                Ok(_) => {}
                Err(crate::Error::Conflict(_)) => return,
                Err(e) => {
                    result.failed.push((key, crate::error::chain(&e)));
                    return;
                }
            }
        }
        if phase::is_done(&status.phase) {
            return;
        }
        let started_at = status
            .started_at
            .as_deref()
            .and_then(parse_rfc3339)
            .unwrap_or(now);
        let mut wake: Option<Duration> = None;
        let mut wake_within = |d: Duration| wake = Some(wake.map_or(d, |w| w.min(d)));
        for metric in &run.spec.metrics {
            let Some(res) = status.metric_results.iter().find(|r| r.name == metric.name) else {
                continue;
            };
            let flight = (key.clone(), run.metadata.uid.clone(), metric.name.clone());
            if self.flying(&flight) {
                wake_within(IN_FLIGHT_RECHECK);
                continue;
            }
            let Some(due) = next_due(metric, res, started_at) else {
                continue;
            };
            match due.duration_since(now) {
                Ok(left) if !left.is_zero() => {
                    wake_within(left);
                }
                _ => {
                    self.launch(&run, flight);
                    wake_within(IN_FLIGHT_RECHECK);
                }
            }
        }
        if let Some(after) = wake {
            result.requeue.push((key, after));
        }
    }

    /// Starts measuring `flight`'s metric in a task that records the measurement.
    fn launch(&mut self, run: &AnalysisRun, flight: Flight) {
        let Some(metric) = run
            .spec
            .metrics
            .iter()
            .find(|m| m.name == flight.2)
            .cloned()
        else {
            return;
        };
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(flight.clone());
        let (store, providers, in_flight) = (
            Arc::clone(&self.store),
            self.providers.clone(),
            Arc::clone(&self.in_flight),
        );
        let namespace = run.metadata.namespace().to_string();
        let args = run.spec.args.clone();
        tracing::debug!(run = %flight.0 .1, metric = %flight.2, "measuring");
        self.tasks.spawn(async move {
            let started = SystemTime::now();
            let outcome = match with_args(&metric, &args) {
                Ok(metric) => providers.measure(&namespace, &metric).await,
                Err(e) => Err(e),
            };
            let m = measurement(&metric, outcome, started, SystemTime::now());
            if let Err(e) = write_measurement(&store, &flight, m).await {
                tracing::warn!(run = %flight.0 .1, metric = %flight.2, error = %e, "a measurement was not recorded");
            }
            in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&flight);
        });
    }

    /// Events for a run that started or ended, seen as its stored phase changes (whoever
    /// wrote it: a pass here or a measurement task).
    fn report(&self, before: &str, run: &AnalysisRun) {
        let Some(after) = run.status.as_ref().filter(|s| s.phase != before) else {
            return;
        };
        let object = Object::AnalysisRun(run.clone());
        let message = after.message.clone().unwrap_or_default();
        match after.phase.as_str() {
            phase::RUNNING => {
                self.events
                    .normal(&object, "AnalysisRunRunning", "Analysis Run Running")
            }
            phase::SUCCESSFUL => self.events.normal(
                &object,
                "AnalysisRunSuccessful",
                "Analysis Run completed Successful",
            ),
            p => self.events.warning(
                &object,
                &format!("AnalysisRun{p}"),
                format!("Analysis Run completed {p}: {message}"),
            ),
        }
    }
}

/// A new run's status: running, every metric pending.
fn started(run: &AnalysisRun, now: SystemTime) -> AnalysisRunStatus {
    AnalysisRunStatus {
        phase: phase::RUNNING.into(),
        started_at: Some(rfc3339(now)),
        metric_results: run
            .spec
            .metrics
            .iter()
            .map(|m| MetricResult {
                name: m.name.clone(),
                phase: phase::PENDING.into(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// Adds `m` to the stored run's status, again on a conflict with another write.
async fn write_measurement(
    store: &Arc<Store>,
    flight: &Flight,
    m: Measurement,
) -> Result<(), String> {
    let ((ns, name), uid, metric) = flight.clone();
    for _ in 0..WRITE_TRIES {
        let (ns, name, uid, metric, m) = (
            ns.clone(),
            name.clone(),
            uid.clone(),
            metric.clone(),
            m.clone(),
        );
        let outcome = store
            .blocking("recording a measurement", move |s| {
                let Some(Object::AnalysisRun(mut run)) = s.get(Kind::AnalysisRun, &ns, &name)?
                else {
                    return Ok(());
                };
                if run.metadata.uid != uid {
                    return Ok(());
                }
                let mut status = run.status.clone().unwrap_or_default();
                if phase::is_done(&status.phase) {
                    return Ok(());
                }
                record(&run, &mut status, &metric, m);
                run.status = Some(status);
                s.write(vec![Op::PutStatus(Object::AnalysisRun(run))])
                    .map(|_| ())
            })
            .await;
        match outcome {
            Ok(()) => return Ok(()),
            Err(crate::Error::Conflict(_)) => continue,
            Err(e) => return Err(crate::error::chain(&e)),
        }
    }
    Err(format!("{WRITE_TRIES} writes conflicted"))
}

impl Reconciler for AnalysisController {
    type Key = Key;

    fn name(&self) -> &'static str {
        "analysis"
    }

    fn kinds(&self) -> &'static [Kind] {
        &[Kind::AnalysisRun]
    }

    fn observe(&mut self, event_type: EventType, object: &Object, dirty: &mut BTreeSet<Key>) {
        let Object::AnalysisRun(run) = object else {
            return;
        };
        let key = (
            run.metadata.namespace().to_string(),
            run.metadata.name.clone(),
        );
        if event_type == EventType::Deleted {
            self.runs.remove(&key);
        } else if let Some(before) = self.runs.insert(key.clone(), run.clone()) {
            let phase = before.status.map(|s| s.phase).unwrap_or_default();
            self.report(&phase, run);
        }
        dirty.insert(key);
    }

    async fn reconcile(&mut self, keys: BTreeSet<Key>) -> Reconciled<Key> {
        while self.tasks.try_join_next().is_some() {}
        let mut result = Reconciled::default();
        for key in keys {
            self.reconcile_one(key, &mut result).await;
        }
        result
    }
}

//! `pier_analysis_run_info`, and per metric the last measured value and the measurements by
//! result, from the AnalysisRuns' stored status, on every node: a follower on the controller
//! runner whose cache is the gauges themselves (nothing to reconcile).

use std::collections::{BTreeSet, HashMap};

use prometheus::{GaugeVec, IntGaugeVec, Opts, Registry};

use crate::controllers::runner::{Reconciled, Reconciler};
use crate::controllers::ROLLOUT_LABEL;
use crate::metrics::remove_series;
use crate::store::EventType;
use pier_model::analysis::{AnalysisRun, MetricResult};
use pier_model::{Kind, Object};

type Key = (String, String);

/// Measurement results a metric counts (Argo's `MetricResult` counters).
const RESULTS: [&str; 4] = ["successful", "failed", "inconclusive", "error"];

/// The AnalysisRun gauges.
#[derive(Clone)]
pub struct AnalysisMetrics {
    info: IntGaugeVec,
    value: GaugeVec,
    results: IntGaugeVec,
    /// The labels each run's info series carries, to drop it when they change.
    labels: HashMap<Key, [String; 4]>,
    /// The metrics each run has series for.
    metrics: HashMap<Key, Vec<String>>,
}

impl AnalysisMetrics {
    /// Creates the gauge and registers it.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let info = IntGaugeVec::new(
            Opts::new(
                "pier_analysis_run_info",
                "1 for each AnalysisRun, labelled with its Rollout (if any) and its phase.",
            ),
            &["namespace", "run", "rollout", "phase"],
        )?;
        registry.register(Box::new(info.clone()))?;
        let value = GaugeVec::new(
            Opts::new(
                "pier_analysis_metric_value",
                "The last value an AnalysisRun's metric measured (the first element of a vector).",
            ),
            &["namespace", "run", "metric"],
        )?;
        registry.register(Box::new(value.clone()))?;
        let results = IntGaugeVec::new(
            Opts::new(
                "pier_analysis_metric_measurements",
                "An AnalysisRun metric's measurements by result (successful, failed, inconclusive, error).",
            ),
            &["namespace", "run", "metric", "result"],
        )?;
        registry.register(Box::new(results.clone()))?;
        Ok(Self {
            info,
            value,
            results,
            labels: HashMap::new(),
            metrics: HashMap::new(),
        })
    }

    /// Each metric's last value and counts.
    fn set_results(&mut self, key: &Key, run: &AnalysisRun) {
        let results = run
            .status
            .as_ref()
            .map_or(&[][..], |s| s.metric_results.as_slice());
        self.drop_results(key);
        let (ns, name) = (key.0.as_str(), key.1.as_str());
        for m in results {
            if let Some(v) = last_value(m) {
                self.value.with_label_values(&[ns, name, &m.name]).set(v);
            }
            for (result, n) in RESULTS
                .iter()
                .zip([m.successful, m.failed, m.inconclusive, m.error])
            {
                self.results
                    .with_label_values(&[ns, name, &m.name, result])
                    .set(n);
            }
        }
        self.metrics.insert(
            key.clone(),
            results.iter().map(|m| m.name.clone()).collect(),
        );
    }

    fn drop_results(&mut self, key: &Key) {
        let (ns, name) = (key.0.as_str(), key.1.as_str());
        for metric in self.metrics.remove(key).unwrap_or_default() {
            remove_series(&self.value, &[ns, name, &metric]);
            for result in RESULTS {
                remove_series(&self.results, &[ns, name, &metric, result]);
            }
        }
    }

    fn set(&mut self, key: Key, run: &AnalysisRun) {
        let phase = run
            .status
            .as_ref()
            .map(|s| s.phase.clone())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "Pending".into());
        let rollout = run
            .metadata
            .labels
            .get(ROLLOUT_LABEL)
            .cloned()
            .unwrap_or_default();
        let labels = [key.0.clone(), key.1.clone(), rollout, phase];
        if let Some(before) = self.labels.insert(key, labels.clone()) {
            if before != labels {
                self.drop_series(&before);
            }
        }
        let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
        self.info.with_label_values(&refs).set(1);
        let key = (refs[0].to_string(), refs[1].to_string());
        self.set_results(&key, run);
    }

    fn drop_series(&self, labels: &[String; 4]) {
        let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
        remove_series(&self.info, &refs);
    }
}

/// The number in a metric's last measurement: a scalar, or a vector's first element.
fn last_value(m: &MetricResult) -> Option<f64> {
    let text = m.measurements.last()?.value.as_deref()?.trim();
    let first = text
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .next()?
        .trim();
    match first {
        "NaN" => Some(f64::NAN),
        other => other.parse().ok(),
    }
}

impl Reconciler for AnalysisMetrics {
    type Key = Key;

    fn name(&self) -> &'static str {
        "analysis-metrics"
    }

    fn kinds(&self) -> &'static [Kind] {
        &[Kind::AnalysisRun]
    }

    fn observe(&mut self, event_type: EventType, object: &Object, _dirty: &mut BTreeSet<Key>) {
        let Object::AnalysisRun(run) = object else {
            return;
        };
        let key = (
            run.metadata.namespace().to_string(),
            run.metadata.name.clone(),
        );
        if event_type == EventType::Deleted {
            if let Some(labels) = self.labels.remove(&key) {
                self.drop_series(&labels);
            }
            self.drop_results(&key);
        } else {
            self.set(key, run);
        }
    }

    async fn reconcile(&mut self, _keys: BTreeSet<Key>) -> Reconciled<Key> {
        Reconciled::default()
    }
}

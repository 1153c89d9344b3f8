//! `pier_analysis_run_info` from the AnalysisRuns' stored status, on every node: a follower on
//! the controller runner whose cache is the gauge itself (nothing to reconcile).

use std::collections::{BTreeSet, HashMap};

use prometheus::{IntGaugeVec, Opts, Registry};

use crate::controllers::runner::{Reconciled, Reconciler};
use crate::controllers::ROLLOUT_LABEL;
use crate::store::EventType;
use pier_model::analysis::AnalysisRun;
use pier_model::{Kind, Object};

type Key = (String, String);

/// The AnalysisRun gauge.
#[derive(Clone)]
pub struct AnalysisMetrics {
    info: IntGaugeVec,
    /// The labels each run's series carries, to drop it when they change.
    labels: HashMap<Key, [String; 4]>,
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
        Ok(Self {
            info,
            labels: HashMap::new(),
        })
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
    }

    fn drop_series(&self, labels: &[String; 4]) {
        let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
        if let Err(e) = self.info.remove_label_values(&refs) {
            tracing::debug!(?labels, error = %e, "no analysis series to remove");
        }
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
        } else {
            self.set(key, run);
        }
    }

    async fn reconcile(&mut self, _keys: BTreeSet<Key>) -> Reconciled<Key> {
        Reconciled::default()
    }
}

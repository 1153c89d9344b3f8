//! `pier_rollout_*` gauges from the Rollouts' stored status, on every node: a follower on the
//! controller runner whose cache is the gauges themselves (nothing to reconcile).

use std::collections::{BTreeSet, HashMap};

use prometheus::{IntGaugeVec, Opts, Registry};

use super::runner::{Reconciled, Reconciler};
use crate::metrics::remove_series;
use crate::store::EventType;
use pier_model::{Kind, Object, Rollout};

type Key = (String, String);

/// The Rollout gauges.
#[derive(Clone)]
pub struct RolloutMetrics {
    info: IntGaugeVec,
    step: IntGaugeVec,
    steps: IntGaugeVec,
    weight: IntGaugeVec,
    replicas: IntGaugeVec,
    /// The phase each rollout's `info` series carries, to drop it when the phase changes.
    phases: HashMap<Key, String>,
}

impl RolloutMetrics {
    /// Creates the gauges and registers them.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(g.clone()))?;
            Ok::<_, prometheus::Error>(g)
        };
        let ids = ["namespace", "rollout"];
        Ok(Self {
            info: gauge(
                "pier_rollout_info",
                "1 for each Rollout, labelled with its phase (Healthy, Progressing, Paused, Degraded).",
                &["namespace", "rollout", "phase"],
            )?,
            step: gauge(
                "pier_rollout_step",
                "Index of the canary step a Rollout is on (its step count once released).",
                &ids,
            )?,
            steps: gauge("pier_rollout_steps", "Canary steps a Rollout has.", &ids)?,
            weight: gauge(
                "pier_rollout_canary_weight",
                "Percent of traffic the Rollout's routes send to its canary.",
                &ids,
            )?,
            replicas: gauge(
                "pier_rollout_replicas",
                "A Rollout's pods by state: desired, current, updated, available.",
                &["namespace", "rollout", "state"],
            )?,
            phases: HashMap::new(),
        })
    }

    fn set(&mut self, key: &Key, ro: &Rollout) {
        let (ns, name) = (key.0.as_str(), key.1.as_str());
        let st = ro.status.clone().unwrap_or_default();
        let phase = st.phase.clone().unwrap_or_else(|| "Progressing".into());
        if let Some(before) = self.phases.insert(key.clone(), phase.clone()) {
            if before != phase {
                remove_series(&self.info, &[ns, name, &before]);
            }
        }
        self.info.with_label_values(&[ns, name, &phase]).set(1);
        let steps = ro.canary().steps.len() as i64;
        self.steps.with_label_values(&[ns, name]).set(steps);
        self.step
            .with_label_values(&[ns, name])
            .set(st.current_step_index.unwrap_or(steps));
        let weight = st.canary.weights.as_ref().map_or(0, |w| w.canary.weight);
        self.weight.with_label_values(&[ns, name]).set(weight);
        for (state, n) in [
            ("desired", ro.spec.replicas.unwrap_or(1)),
            ("current", st.replicas),
            ("updated", st.updated_replicas),
            ("available", st.available_replicas),
        ] {
            self.replicas.with_label_values(&[ns, name, state]).set(n);
        }
    }

    fn remove(&mut self, key: &Key) {
        let (ns, name) = (key.0.as_str(), key.1.as_str());
        if let Some(phase) = self.phases.remove(key) {
            remove_series(&self.info, &[ns, name, &phase]);
        }
        for g in [&self.step, &self.steps, &self.weight] {
            remove_series(g, &[ns, name]);
        }
        for state in ["desired", "current", "updated", "available"] {
            remove_series(&self.replicas, &[ns, name, state]);
        }
    }
}

impl Reconciler for RolloutMetrics {
    type Key = Key;

    fn name(&self) -> &'static str {
        "rollout-metrics"
    }

    fn kinds(&self) -> &'static [Kind] {
        &[Kind::Rollout]
    }

    fn observe(&mut self, event_type: EventType, object: &Object, _dirty: &mut BTreeSet<Key>) {
        let Object::Rollout(ro) = object else {
            return;
        };
        let key = (
            ro.metadata.namespace().to_string(),
            ro.metadata.name.clone(),
        );
        if event_type == EventType::Deleted {
            self.remove(&key);
        } else {
            self.set(&key, ro);
        }
    }

    async fn reconcile(&mut self, _keys: BTreeSet<Key>) -> Reconciled<Key> {
        Reconciled::default()
    }
}

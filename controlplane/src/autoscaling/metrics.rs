//! `pier_hpa_*` gauges from the autoscalers' stored spec and status, on every node: a follower
//! on the controller runner whose cache is the gauges themselves (nothing to reconcile).

use std::collections::{BTreeSet, HashMap};

use prometheus::{GaugeVec, IntGaugeVec, Opts, Registry};

use super::evaluate::metric_label;
use crate::controllers::runner::{Reconciled, Reconciler};
use crate::metrics::remove_series;
use crate::store::EventType;
use pier_model::hpa::HorizontalPodAutoscaler;
use pier_model::quantity;
use pier_model::{Kind, Object};

type Key = (String, String);

/// The `(metric, target_type)` and `(condition, status)` label pairs an autoscaler's series
/// carry.
type Series = (Vec<(String, String)>, Vec<(String, String)>);

/// The autoscaler gauges.
#[derive(Clone)]
pub struct HpaMetrics {
    replicas: IntGaugeVec,
    value: GaugeVec,
    target: GaugeVec,
    condition: IntGaugeVec,
    /// The metric and condition labels each autoscaler's series carry, to drop them.
    series: HashMap<Key, Series>,
}

impl HpaMetrics {
    /// Creates the gauges and registers them.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let ints = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(g.clone()))?;
            Ok::<_, prometheus::Error>(g)
        };
        let floats = |name: &str, help: &str| {
            let labels = ["namespace", "hpa", "metric", "target_type"];
            let g = GaugeVec::new(Opts::new(name, help), &labels)?;
            registry.register(Box::new(g.clone()))?;
            Ok::<_, prometheus::Error>(g)
        };
        Ok(Self {
            replicas: ints(
                "pier_hpa_replicas",
                "An autoscaler's replicas by kind: current, desired, min, max.",
                &["namespace", "hpa", "kind"],
            )?,
            value: floats(
                "pier_hpa_metric_value",
                "The last value an autoscaler measured per metric: percent of requests for a utilization, else the average per pod.",
            )?,
            target: floats(
                "pier_hpa_metric_target",
                "An autoscaler's target per metric, in the same unit as pier_hpa_metric_value.",
            )?,
            condition: ints(
                "pier_hpa_condition",
                "1 for each autoscaler condition (AbleToScale, ScalingActive, ScalingLimited) at its status.",
                &["namespace", "hpa", "condition", "status"],
            )?,
            series: HashMap::new(),
        })
    }

    fn set(&mut self, key: &Key, hpa: &HorizontalPodAutoscaler) {
        self.remove(key);
        let (ns, name) = (key.0.as_str(), key.1.as_str());
        let st = hpa.status.clone().unwrap_or_default();
        for (kind, n) in [
            ("current", st.current_replicas),
            ("desired", st.desired_replicas),
            ("min", hpa.spec.min()),
            ("max", hpa.spec.max_replicas),
        ] {
            self.replicas.with_label_values(&[ns, name, kind]).set(n);
        }
        let mut metrics = Vec::new();
        for (i, spec) in hpa.spec.metrics.iter().enumerate() {
            let (label, type_, want) = metric_label(spec);
            let labels = [ns, name, label.as_str(), type_.as_str()];
            if let Some(want) = want {
                self.target.with_label_values(&labels).set(want);
            }
            let now = st.current_metrics.get(i).and_then(|m| {
                let current = m
                    .resource
                    .as_ref()
                    .map(|r| &r.current)
                    .or(m.container_resource.as_ref().map(|r| &r.current))
                    .or(m.pods.as_ref().map(|p| &p.current))?;
                match current.average_utilization {
                    Some(u) => Some(u as f64),
                    None => current
                        .average_value
                        .as_deref()
                        .and_then(|v| quantity::decimal(v).ok()),
                }
            });
            if let Some(now) = now {
                self.value.with_label_values(&labels).set(now);
            }
            metrics.push((label, type_));
        }
        let mut conditions = Vec::new();
        for c in &st.conditions {
            self.condition
                .with_label_values(&[ns, name, &c.type_, &c.status])
                .set(1);
            conditions.push((c.type_.clone(), c.status.clone()));
        }
        self.series.insert(key.clone(), (metrics, conditions));
    }

    fn remove(&mut self, key: &Key) {
        let (ns, name) = (key.0.as_str(), key.1.as_str());
        let Some((metrics, conditions)) = self.series.remove(key) else {
            return;
        };
        for kind in ["current", "desired", "min", "max"] {
            remove_series(&self.replicas, &[ns, name, kind]);
        }
        for (m, t) in &metrics {
            remove_series(&self.value, &[ns, name, m, t]);
            remove_series(&self.target, &[ns, name, m, t]);
        }
        for (c, s) in &conditions {
            remove_series(&self.condition, &[ns, name, c, s]);
        }
    }
}

impl Reconciler for HpaMetrics {
    type Key = Key;

    fn name(&self) -> &'static str {
        "hpa-metrics"
    }

    fn kinds(&self) -> &'static [Kind] {
        &[Kind::HorizontalPodAutoscaler]
    }

    fn observe(&mut self, event_type: EventType, object: &Object, _dirty: &mut BTreeSet<Key>) {
        let Object::HorizontalPodAutoscaler(hpa) = object else {
            return;
        };
        let key = (
            hpa.metadata.namespace().to_string(),
            hpa.metadata.name.clone(),
        );
        if event_type == EventType::Deleted {
            self.remove(&key);
        } else {
            self.set(&key, hpa);
        }
    }

    async fn reconcile(&mut self, _keys: BTreeSet<Key>) -> Reconciled<Key> {
        Reconciled::default()
    }
}

//! The HorizontalPodAutoscaler controller: every sync period, each autoscaler's target and pods
//! are read, each metric measured and turned into a proposal, the largest one stabilised and
//! rate-limited by the v2 behavior, the target's `spec.replicas` written (conditionally on
//! its version) when it changes, and the status written as Kubernetes' controller writes it.
//! Leader work on the controller runner, keyed by autoscaler.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::behavior::{Behavior, History, Limit};
use super::evaluate::{evaluate, Evaluated, Failure, Measuring};
use super::measure::{Readings, Sampler};
use crate::cluster::NodeMetrics;
use crate::controllers::runner::{Reconciled, Reconciler};
use crate::events::Recorder;
use crate::store::{EventType, Op, Store};
use pier_model::hpa::{
    HorizontalPodAutoscaler, HpaCondition, HpaStatus, MetricSpec, MetricTarget,
    ResourceMetricSource, DEFAULT_CPU_UTILIZATION,
};
use pier_model::time::rfc3339;
use pier_model::{Kind, LabelSelector, Object, Pod};

type Key = (String, String);

/// Look again this soon after a write lost a race.
const CONFLICT_RETRY: Duration = Duration::from_millis(200);

/// The autoscaler controller.
pub struct HpaController {
    store: Arc<Store>,
    events: Recorder,
    nodes: Arc<NodeMetrics>,
    sampler: Sampler,
    period: Duration,
    hpas: HashMap<Key, HorizontalPodAutoscaler>,
    histories: HashMap<Key, History>,
}

impl HpaController {
    /// A controller passing over each autoscaler every `period`, reading pods' use and
    /// traffic from every node `nodes` reaches.
    pub fn new(
        store: Arc<Store>,
        events: Recorder,
        nodes: Arc<NodeMetrics>,
        period: Duration,
    ) -> Self {
        Self {
            store,
            events,
            nodes,
            sampler: Sampler::default(),
            period,
            hpas: HashMap::new(),
            histories: HashMap::new(),
        }
    }
}

/// A scaled workload as read.
enum ScaleTarget {
    Deployment(Box<pier_model::Deployment>),
    Rollout(Box<pier_model::Rollout>),
}

impl ScaleTarget {
    fn replicas(&self) -> i64 {
        match self {
            ScaleTarget::Deployment(d) => d.spec.replicas.unwrap_or(1),
            ScaleTarget::Rollout(r) => r.spec.replicas.unwrap_or(1),
        }
    }

    fn selector(&self) -> &LabelSelector {
        match self {
            ScaleTarget::Deployment(d) => &d.spec.selector,
            ScaleTarget::Rollout(r) => &r.spec.selector,
        }
    }

    /// The workload with `replicas`, written on the condition that it did not change.
    fn scaled(&self, replicas: i64) -> Object {
        match self {
            ScaleTarget::Deployment(d) => {
                let mut d = (**d).clone();
                d.spec.replicas = Some(replicas);
                Object::Deployment(d)
            }
            ScaleTarget::Rollout(r) => {
                let mut r = (**r).clone();
                r.spec.replicas = Some(replicas);
                Object::Rollout(r)
            }
        }
    }
}

/// What one pass decided.
struct Decision {
    desired: i64,
    status: HpaStatus,
    /// Why the replicas change (the event's reason text).
    rescale_reason: String,
}

impl HpaController {
    async fn reconcile_one(
        &mut self,
        key: &Key,
        readings: &Readings,
    ) -> Result<Option<Duration>, String> {
        let Some(hpa) = self.hpas.get(key).cloned() else {
            self.histories.remove(key);
            return Ok(None);
        };
        let (workload, pods) = match self.read(&hpa).await? {
            Ok(read) => read,
            Err(message) => {
                let mut status = hpa.status.clone().unwrap_or_default();
                let now = rfc3339(SystemTime::now());
                set_condition(
                    &mut status,
                    "AbleToScale",
                    false,
                    "FailedGetScale",
                    &message,
                    &now,
                );
                self.events.warning(
                    &Object::HorizontalPodAutoscaler(hpa.clone()),
                    "FailedGetScale",
                    message,
                );
                self.write_status(&hpa, status).await?;
                return Ok(Some(self.period));
            }
        };
        let mut decision = self.decide(key, &hpa, &workload, &pods, readings);
        let current = workload.replicas();
        if decision.desired != current {
            let object = workload.scaled(decision.desired);
            let written = self
                .store
                .blocking("scaling an autoscaler's target", move |s| {
                    s.write(vec![Op::Put(object)])
                })
                .await;
            let now = rfc3339(SystemTime::now());
            match written {
                Ok(_) => {
                    self.histories
                        .entry(key.clone())
                        .or_default()
                        .record_change(Instant::now(), decision.desired - current);
                    decision.status.last_scale_time = Some(now.clone());
                    let message = format!(
                        "the HPA controller was able to update the target scale to {}",
                        decision.desired
                    );
                    set_condition(
                        &mut decision.status,
                        "AbleToScale",
                        true,
                        "SucceededRescale",
                        &message,
                        &now,
                    );
                    self.events.normal(
                        &Object::HorizontalPodAutoscaler(hpa.clone()),
                        "SuccessfulRescale",
                        format!(
                            "New size: {}; reason: {}",
                            decision.desired, decision.rescale_reason
                        ),
                    );
                    tracing::info!(hpa = %key.1, from = current, to = decision.desired, reason = %decision.rescale_reason, "rescaled");
                }
                Err(crate::Error::Conflict(_)) => return Ok(Some(CONFLICT_RETRY)),
                Err(e) => {
                    let message = format!(
                        "the HPA controller was unable to update the target scale: {}",
                        crate::error::chain(&e)
                    );
                    set_condition(
                        &mut decision.status,
                        "AbleToScale",
                        false,
                        "FailedUpdateScale",
                        &message,
                        &now,
                    );
                    decision.status.desired_replicas = current;
                }
            }
        }
        self.write_status(&hpa, decision.status).await?;
        Ok(Some(self.period))
    }

    /// The target and its live pods, or why the target cannot be read.
    async fn read(
        &self,
        hpa: &HorizontalPodAutoscaler,
    ) -> Result<Result<(ScaleTarget, Vec<Pod>), String>, String> {
        let ns = hpa.metadata.namespace().to_string();
        let target = hpa.spec.scale_target_ref.clone();
        self.store
            .blocking("reading an autoscaler's target", move |s| {
                let kind = match target.kind.as_str() {
                    "Deployment" => Kind::Deployment,
                    "Rollout" => Kind::Rollout,
                    other => return Ok(Err(format!("cannot scale a {other}"))),
                };
                let workload = match s.get(kind, &ns, &target.name)? {
                    Some(Object::Deployment(d)) => ScaleTarget::Deployment(Box::new(d)),
                    Some(Object::Rollout(r)) => ScaleTarget::Rollout(Box::new(r)),
                    _ => {
                        return Ok(Err(format!(
                            "the HPA controller was unable to get the target's current scale: {} {:?} not found",
                            kind.plural(),
                            target.name
                        )))
                    }
                };
                let (objects, _) = s.list(Kind::Pod, Some(&ns), None)?;
                let selector = workload.selector();
                let pods = objects
                    .into_iter()
                    .filter_map(|o| match o {
                        Object::Pod(p) => Some(p),
                        _ => None,
                    })
                    .filter(|p| selector.matches(&p.metadata.labels))
                    .filter(|p| !p.is_terminating())
                    .filter(|p| {
                        !matches!(p.status.phase.as_deref(), Some("Succeeded" | "Failed"))
                    })
                    .collect();
                Ok(Ok((workload, pods)))
            })
            .await
            .map_err(|e| crate::error::chain(&e))
    }

    /// Kubernetes' `reconcileAutoscaler`: bounds first, then the metrics, then the behavior.
    fn decide(
        &mut self,
        key: &Key,
        hpa: &HorizontalPodAutoscaler,
        workload: &ScaleTarget,
        pods: &[Pod],
        readings: &Readings,
    ) -> Decision {
        let now_text = rfc3339(SystemTime::now());
        let current = workload.replicas();
        let (min, max) = (hpa.spec.min(), hpa.spec.max_replicas);
        let mut status = hpa.status.clone().unwrap_or_default();
        status.observed_generation = Some(hpa.metadata.generation as i64);
        status.current_replicas = i64::try_from(pods.len()).unwrap_or(i64::MAX);
        set_condition(
            &mut status,
            "AbleToScale",
            true,
            "ReadyForNewScale",
            "recommended size matches current size",
            &now_text,
        );
        let metrics = metrics_of(hpa);
        let owner = format!("{}/{}", key.0, key.1);
        let mut measuring = Measuring {
            owner: &owner,
            sampler: &mut self.sampler,
            readings,
            now: Instant::now(),
        };
        let live: Vec<&Pod> = pods.iter().collect();
        let outcomes: Vec<Result<Evaluated, Failure>> = metrics
            .iter()
            .map(|m| evaluate(&mut measuring, m, current, &live))
            .collect();
        let uids: BTreeSet<String> = pods
            .iter()
            .map(|p| format!("{owner}/{}", p.metadata.uid))
            .collect();
        self.sampler
            .retain(|k| !k.starts_with(&format!("{owner}/")) || uids.contains(k));
        status.current_metrics = outcomes
            .iter()
            .filter_map(|o| o.as_ref().ok().map(|e| e.status.clone()))
            .collect();

        let (recommended, reason) = if current == 0 && min != 0 {
            set_condition(
                &mut status,
                "ScalingActive",
                false,
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero",
                &now_text,
            );
            status.desired_replicas = 0;
            return Decision {
                desired: 0,
                status,
                rescale_reason: String::new(),
            };
        } else if current > max {
            (
                max,
                "Current number of replicas above Spec.MaxReplicas".to_string(),
            )
        } else if current < min {
            (
                min,
                "Current number of replicas below Spec.MinReplicas".to_string(),
            )
        } else {
            match recommend(&outcomes, current) {
                Ok((n, name, why)) => {
                    set_condition(&mut status, "ScalingActive", true, "ValidMetricFound", &format!("the HPA was able to successfully calculate a replica count from {name}"), &now_text);
                    let behavior = Behavior::from_spec(hpa.spec.behavior.as_ref());
                    let history = self.histories.entry(key.clone()).or_default();
                    let (n, limit) =
                        history.decide(&behavior, Instant::now(), current, n, (min, max));
                    limited(&mut status, limit, &now_text);
                    (n, why)
                }
                Err((reason, message)) => {
                    set_condition(
                        &mut status,
                        "ScalingActive",
                        false,
                        reason,
                        &message,
                        &now_text,
                    );
                    self.events.warning(
                        &Object::HorizontalPodAutoscaler(hpa.clone()),
                        reason,
                        message,
                    );
                    (current, String::new())
                }
            }
        };
        status.desired_replicas = recommended;
        Decision {
            desired: recommended,
            status,
            rescale_reason: reason,
        }
    }

    async fn write_status(
        &self,
        hpa: &HorizontalPodAutoscaler,
        status: HpaStatus,
    ) -> Result<(), String> {
        if hpa.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let mut updated = hpa.clone();
        updated.status = Some(status);
        let op = vec![Op::PutStatus(Object::HorizontalPodAutoscaler(updated))];
        match self
            .store
            .blocking("writing an autoscaler's status", move |s| s.write(op))
            .await
        {
            Ok(_) | Err(crate::Error::Conflict(_)) => Ok(()),
            Err(e) => Err(crate::error::chain(&e)),
        }
    }
}

/// The metrics to measure: the spec's, or CPU at 80% of requests when it names none.
fn metrics_of(hpa: &HorizontalPodAutoscaler) -> Vec<MetricSpec> {
    if !hpa.spec.metrics.is_empty() {
        return hpa.spec.metrics.clone();
    }
    vec![MetricSpec {
        type_: "Resource".into(),
        resource: Some(ResourceMetricSource {
            name: "cpu".into(),
            target: MetricTarget {
                type_: "Utilization".into(),
                average_utilization: Some(DEFAULT_CPU_UTILIZATION),
                ..Default::default()
            },
        }),
        ..Default::default()
    }]
}

/// The largest proposal, the metric it came from and the rescale reason; a scale-down is held
/// while any metric failed (as Kubernetes does), and all failing is the first failure.
fn recommend(
    outcomes: &[Result<Evaluated, Failure>],
    current: i64,
) -> Result<(i64, String, String), Failure> {
    let mut best: Option<&Evaluated> = None;
    let mut failure = None;
    for o in outcomes {
        match o {
            Ok(e) => {
                if best.is_none_or(|b| e.proposal.replicas > b.proposal.replicas) {
                    best = Some(e);
                }
            }
            Err(f) => {
                failure.get_or_insert_with(|| f.clone());
            }
        }
    }
    let Some(best) = best else {
        return Err(failure.unwrap_or((
            "FailedComputeMetricsReplicas",
            "no metric could be measured".into(),
        )));
    };
    let n = best.proposal.replicas;
    if failure.is_some() && n < current {
        return Ok((current, best.name.clone(), String::new()));
    }
    let why = if n > current {
        format!("{} above target", best.name)
    } else {
        "All metrics below target".into()
    };
    Ok((n, best.name.clone(), why))
}

/// `ScalingLimited` as the behavior left it.
fn limited(status: &mut HpaStatus, limit: Option<Limit>, now: &str) {
    match limit {
        Some(l) => {
            let (reason, message) = l.describe();
            set_condition(status, "ScalingLimited", true, reason, message, now);
        }
        None => set_condition(
            status,
            "ScalingLimited",
            false,
            "DesiredWithinRange",
            "the desired count is within the acceptable range",
            now,
        ),
    }
}

/// Sets condition `type_`, keeping its transition time while its status stays.
fn set_condition(
    status: &mut HpaStatus,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    now: &str,
) {
    let value = if ok { "True" } else { "False" };
    let since = status
        .conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == value)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.to_string());
    let condition = HpaCondition {
        type_: type_.into(),
        status: value.into(),
        last_transition_time: Some(since),
        reason: Some(reason.into()),
        message: Some(message.into()),
    };
    match status.conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => *c = condition,
        None => status.conditions.push(condition),
    }
}

impl Reconciler for HpaController {
    type Key = Key;

    fn name(&self) -> &'static str {
        "horizontal-pod-autoscaler"
    }

    fn kinds(&self) -> &'static [Kind] {
        &[Kind::HorizontalPodAutoscaler]
    }

    fn observe(&mut self, event_type: EventType, object: &Object, dirty: &mut BTreeSet<Key>) {
        let Object::HorizontalPodAutoscaler(hpa) = object else {
            return;
        };
        let key = (
            hpa.metadata.namespace().to_string(),
            hpa.metadata.name.clone(),
        );
        if event_type == EventType::Deleted {
            self.hpas.remove(&key);
            self.histories.remove(&key);
            dirty.insert(key);
            return;
        }
        // A status write (this controller's own) is no reason for an early pass: passes keep
        // to the sync period, so rates are taken over it.
        let spec_changed = self.hpas.get(&key).is_none_or(|before| {
            before.spec != hpa.spec || before.metadata.uid != hpa.metadata.uid
        });
        self.hpas.insert(key.clone(), hpa.clone());
        if spec_changed {
            dirty.insert(key);
        }
    }

    async fn reconcile(&mut self, keys: BTreeSet<Key>) -> Reconciled<Key> {
        let mut result = Reconciled::default();
        // Every node's counters and pods' use, read once for every autoscaler of this pass.
        let readings = Readings::read(&self.nodes).await;
        for key in keys {
            match self.reconcile_one(&key, &readings).await {
                Ok(Some(after)) => result.requeue.push((key, after)),
                Ok(None) => {}
                Err(e) => result.failed.push((key, e)),
            }
        }
        result
    }
}

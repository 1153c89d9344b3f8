//! The Rollout controller: runs each Argo Rollout's canary as `rollout.rs` plans it, keeping
//! its pods (labelled with their template hash), its Services' pins and its routes' weights
//! (`rollout_traffic.rs`) and its status in the store. Leader work on the controller runner,
//! keyed by Rollout.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use super::deployment::{hash_template, PodView};
use super::owned_pods::{live, terminating, view};
use super::rollout::{plan, Input, Plan};
use super::rollout_analysis::{RunState, Runs};
use super::rollout_managed_route::managed_route_name;
use super::rollout_runs::{run_ops, Templates};
use super::runner::{Reconciled, Reconciler};
use super::workload_revisions::{workload_revision_ops, Revisions, Workload};
use crate::events::Recorder;
use crate::store::{EventType, Op, Store};
use pier_model::analysis::{AnalysisRun, AnalysisTemplate};
use pier_model::deployment::PodTemplateSpec;
use pier_model::rollout::ROLLOUT_HASH_LABEL;
use pier_model::{Deployment, HttpRoute, Kind, L4Route, Object, Pod, Rollout, Service};

/// Label naming a pod's Rollout.
pub const ROLLOUT_LABEL: &str = "pier.dev/rollout";

mod ops;
mod restart;
mod slices;
mod workload_ref;

use restart::Restart;
use slices::PodSlices;

type Key = (String, String);

/// The Rollout controller.
pub struct RolloutController {
    store: Arc<Store>,
    events: Recorder,
    rollouts: HashMap<Key, Rollout>,
    /// Pods by the Rollout they belong to, then by name.
    pods: HashMap<Key, BTreeMap<String, Pod>>,
    /// What EndpointSlices say of pods (the Services themselves are read from the store
    /// when a pass needs them: a cluster of many Services costs little here).
    slices: PodSlices,
    http_routes: HashMap<Key, HttpRoute>,
    l4_routes: HashMap<(Kind, String, String), L4Route>,
    deployments: HashMap<Key, Deployment>,
    /// AnalysisRuns by the Rollout they belong to, then by name.
    runs: HashMap<Key, BTreeMap<String, AnalysisRun>>,
    templates: HashMap<Key, AnalysisTemplate>,
    cluster_templates: HashMap<String, AnalysisTemplate>,
    /// ReplicaSets (revisions) by the Rollout that controls them, then by name.
    sets: Revisions,
}

impl RolloutController {
    /// A controller writing to `store`, reporting what it does to `events`.
    pub fn new(store: Arc<Store>, events: Recorder) -> Self {
        Self {
            store,
            events,
            rollouts: HashMap::new(),
            pods: HashMap::new(),
            slices: PodSlices::default(),
            http_routes: HashMap::new(),
            l4_routes: HashMap::new(),
            deployments: HashMap::new(),
            runs: HashMap::new(),
            templates: HashMap::new(),
            cluster_templates: HashMap::new(),
            sets: Revisions::new("Rollout"),
        }
    }

    /// Marks every rollout of `namespace` dirty: a rollout's plan reads Services, slices,
    /// routes and Deployments by name, and rollouts are few.
    fn namespace_dirty(&self, namespace: &str, dirty: &mut BTreeSet<Key>) {
        dirty.extend(self.rollouts.keys().filter(|k| k.0 == namespace).cloned());
    }

    fn observe_pod(&mut self, deleted: bool, pod: &Pod, dirty: &mut BTreeSet<Key>) {
        let Some(owner) = pod.metadata.labels.get(ROLLOUT_LABEL) else {
            return;
        };
        let key = (pod.metadata.namespace().to_string(), owner.clone());
        let pods = self.pods.entry(key.clone()).or_default();
        if deleted {
            pods.remove(&pod.metadata.name);
        } else {
            pods.insert(pod.metadata.name.clone(), pod.clone());
        }
        dirty.insert(key);
    }

    fn observe_run(&mut self, deleted: bool, run: &AnalysisRun, dirty: &mut BTreeSet<Key>) {
        let Some(owner) = run.metadata.labels.get(ROLLOUT_LABEL) else {
            return;
        };
        let key = (run.metadata.namespace().to_string(), owner.clone());
        let runs = self.runs.entry(key.clone()).or_default();
        if deleted {
            runs.remove(&run.metadata.name);
        } else {
            runs.insert(run.metadata.name.clone(), run.clone());
        }
        dirty.insert(key);
    }

    /// What the planner reads of `key`'s AnalysisRuns.
    fn run_states(&self, key: &Key) -> Runs {
        self.runs
            .get(key)
            .into_iter()
            .flatten()
            .map(|(name, run)| {
                let status = run.status.as_ref();
                let state = RunState {
                    phase: status.map(|s| s.phase.clone()).unwrap_or_default(),
                    message: status.and_then(|s| s.message.clone()),
                };
                (name.clone(), state)
            })
            .collect()
    }

    /// The pod template `ro` runs: its own, or its `workloadRef` Deployment's.
    fn template<'a>(&'a self, ro: &'a Rollout) -> Result<&'a PodTemplateSpec, String> {
        let Some(w) = &ro.spec.workload_ref else {
            return Ok(&ro.spec.template);
        };
        let key = (ro.metadata.namespace().to_string(), w.name.clone());
        self.deployments
            .get(&key)
            .map(|d| &d.spec.template)
            .ok_or_else(|| format!("workloadRef: Deployment {:?} not found", w.name))
    }

    fn live(&self, key: &Key) -> Vec<&Pod> {
        live(self.pods.get(key))
    }

    fn views(&self, key: &Key) -> Vec<PodView> {
        self.live(key)
            .into_iter()
            .map(|p| view(p, ROLLOUT_HASH_LABEL))
            .collect()
    }

    /// Ready endpoints `service` lists among `key`'s pods of `hash`; with no Service, the
    /// ready pods of `hash`.
    fn serving(&self, key: &Key, service: Option<&str>, hash: &str) -> i64 {
        let of_hash: BTreeSet<&str> = self
            .live(key)
            .into_iter()
            .filter(|p| {
                p.metadata
                    .labels
                    .get(ROLLOUT_HASH_LABEL)
                    .map(String::as_str)
                    == Some(hash)
            })
            .filter(|p| service.is_some() || p.is_ready())
            .map(|p| p.metadata.name.as_str())
            .collect();
        let Some(service) = service else {
            return of_hash.len() as i64;
        };
        self.slices
            .ready(&key.0, service, |pod| of_hash.contains(pod)) as i64
    }

    /// The rollout's stable and canary Services as the store has them now, by name.
    async fn services_of(&self, ro: &Rollout) -> crate::Result<BTreeMap<String, Service>> {
        let canary = ro.canary();
        let names: Vec<String> = [&canary.stable_service, &canary.canary_service]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        if names.is_empty() {
            return Ok(BTreeMap::new());
        }
        let ns = ro.metadata.namespace().to_string();
        self.store
            .blocking("reading a Rollout's Services", move |store| {
                let mut found = BTreeMap::new();
                for name in names {
                    if let Some(Object::Service(s)) = store.get(Kind::Service, &ns, &name)? {
                        found.insert(name, s);
                    }
                }
                Ok(found)
            })
            .await
    }

    async fn write(
        &mut self,
        key: &Key,
        what: &'static str,
        ops: Vec<Op>,
        result: &mut Reconciled<Key>,
    ) -> bool {
        if ops.is_empty() {
            return true;
        }
        match self.store.blocking(what, move |s| s.write(ops)).await {
            Ok(written) => {
                for w in written {
                    if let Some(object) = &w.object {
                        let event = if w.outcome == crate::store::Outcome::Deleted {
                            EventType::Deleted
                        } else {
                            EventType::Modified
                        };
                        self.observe(event, object, &mut BTreeSet::new());
                    }
                }
                true
            }
            Err(crate::Error::Conflict(e)) => {
                // The change that conflicted brings its own event, and a pass with it.
                tracing::debug!(rollout = %key.1, error = %e, "{what}: waiting for the change that conflicted");
                false
            }
            Err(e) => {
                result.failed.push((key.clone(), crate::error::chain(&e)));
                false
            }
        }
    }

    /// One rollout's pass: plan, then traffic, status and pods, each in its own transaction.
    async fn reconcile_one(&mut self, key: Key, result: &mut Reconciled<Key>) {
        let Some(ro) = self.rollouts.get(&key).cloned() else {
            // Deleted: every pod and AnalysisRun it left goes.
            let mut ops: Vec<Op> = self.live(&key).into_iter().map(terminating).collect();
            for name in self.runs.get(&key).into_iter().flat_map(BTreeMap::keys) {
                ops.push(Op::remove(Kind::AnalysisRun, &key.0, name));
            }
            let route = managed_route_name(&key.1);
            for kind in [Kind::HttpRoute, Kind::TcpRoute, Kind::UdpRoute] {
                ops.push(Op::remove(kind, &key.0, &route));
            }
            for rs in self.sets.of(&key) {
                ops.push(Op::remove(Kind::ReplicaSet, &key.0, &rs.metadata.name));
            }
            self.write(&key, "removing a deleted Rollout's pods", ops, result)
                .await;
            return;
        };
        let template = match self.template(&ro) {
            Ok(t) => t.clone(),
            Err(message) => {
                self.write_failure(&key, &ro, message, result).await;
                return;
            }
        };
        let views = self.views(&key);
        let serving = |svc: Option<&str>, hash: &str| self.serving(&key, svc, hash);
        let runs = self.run_states(&key);
        let hash = hash_template(&template);
        let mut plan = plan(&Input {
            rollout: &ro,
            hash: hash.clone(),
            pods: &views,
            serving: &serving,
            runs: &runs,
            now: SystemTime::now(),
        });
        let (restart, restart_after) = match restart::step(&ro, &self.live(&key), SystemTime::now())
        {
            Restart::Next(p) => (Some((p.metadata.name.clone(), terminating(p))), None),
            Restart::Done => {
                plan.status.restarted_at = ro.spec.restart_at.clone();
                (None, None)
            }
            Restart::Later(after) => (None, Some(after)),
            Restart::Idle | Restart::Waiting => (None, None),
        };
        let before = ro.status.clone().unwrap_or_default();
        self.report(&ro, &before, &plan);
        let services = match self.services_of(&ro).await {
            Ok(services) => services,
            Err(e) => {
                result.failed.push((key.clone(), crate::error::chain(&e)));
                return;
            }
        };
        let traffic = self.traffic_ops(&ro, &plan, &services);
        if !self
            .write(&key, "moving a Rollout's traffic", traffic, result)
            .await
        {
            return;
        }
        let templates = Templates {
            namespaced: &self.templates,
            cluster: &self.cluster_templates,
        };
        match run_ops(&ro, &plan, self.runs.get(&key), &templates) {
            Ok(ops) => {
                if !self
                    .write(&key, "writing a Rollout's analysis runs", ops, result)
                    .await
                {
                    return;
                }
            }
            Err(message) => {
                self.write_failure(&key, &ro, message, result).await;
                return;
            }
        }
        if ro.status.as_ref() != Some(&plan.status) {
            let mut updated = ro.clone();
            updated.status = Some(plan.status.clone());
            let op = vec![Op::PutStatus(Object::Rollout(updated))];
            if !self
                .write(&key, "writing a Rollout's status", op, result)
                .await
            {
                return;
            }
        }
        if let Some(w) = &ro.spec.workload_ref {
            let d = self.deployments.get(&(key.0.clone(), w.name.clone()));
            if let Some(d) = d.and_then(|d| workload_ref::scaled_deployment(&ro, &plan.status, d)) {
                let op = vec![Op::Put(Object::Deployment(d))];
                if !self
                    .write(&key, "scaling a Rollout's workloadRef down", op, result)
                    .await
                {
                    return;
                }
            }
        }
        let mut pods = self.pod_ops(&key, &ro, &template, &plan);
        // A restart replaces one pod at a time, and only while the rest is settled.
        if let (true, Some((name, op))) = (pods.is_empty(), restart) {
            tracing::info!(rollout = %key.1, pod = %name, "restarting pod");
            self.events.normal(
                &Object::Rollout(ro.clone()),
                "RolloutRestarted",
                format!(
                    "Restarted pod {name} (restartAt {})",
                    ro.spec.restart_at.as_deref().unwrap_or("")
                ),
            );
            pods.push(op);
        }
        if !self
            .write(&key, "writing a Rollout's pods", pods, result)
            .await
        {
            return;
        }
        let sets = self.sets.of(&key);
        let revisions = workload_revision_ops(
            &Workload::rollout(&ro, &template, hash),
            &sets,
            &self.views(&key),
        );
        self.write(&key, "writing a Rollout's revisions", revisions, result)
            .await;
        for after in plan.requeue.into_iter().chain(restart_after) {
            result.requeue.push((key.clone(), after));
        }
    }

    /// Records why `ro` cannot run (its status `Degraded`), and looks again later.
    async fn write_failure(
        &mut self,
        key: &Key,
        ro: &Rollout,
        message: String,
        result: &mut Reconciled<Key>,
    ) {
        let mut status = ro.status.clone().unwrap_or_default();
        if status.message.as_deref() != Some(&message) {
            status.phase = Some("Degraded".into());
            status.message = Some(message);
            let mut updated = ro.clone();
            updated.status = Some(status);
            let op = vec![Op::PutStatus(Object::Rollout(updated))];
            self.write(key, "writing a Rollout's status", op, result)
                .await;
        }
        result
            .requeue
            .push((key.clone(), std::time::Duration::from_secs(5)));
    }

    /// Events for what changed: a step reached, a weight set, a pause, an abort, a promotion.
    fn report(&self, ro: &Rollout, before: &pier_model::rollout::RolloutStatus, plan: &Plan) {
        let object = Object::Rollout(ro.clone());
        let after = &plan.status;
        let weight = |s: &pier_model::rollout::RolloutStatus| {
            s.canary.weights.as_ref().map(|w| w.canary.weight)
        };
        if after.current_step_index != before.current_step_index {
            if let Some(i) = after.current_step_index {
                self.events.normal(
                    &object,
                    "RolloutStepCompleted",
                    format!("Rollout step {i} of {} reached", ro.canary().steps.len()),
                );
            }
        }
        if weight(after) != weight(before) {
            self.events.normal(
                &object,
                "TrafficWeightUpdated",
                format!("Traffic weight updated to {}% canary", plan.weight),
            );
        }
        if after.abort && !before.abort {
            self.events.warning(
                &object,
                "RolloutAborted",
                after.message.clone().unwrap_or_default(),
            );
        }
        if after.stable_rs != before.stable_rs && before.stable_rs.is_some() {
            self.events.normal(
                &object,
                "RolloutCompleted",
                format!(
                    "Rollout completed: {} is stable",
                    after.stable_rs.clone().unwrap_or_default()
                ),
            );
        }
    }
}

impl Reconciler for RolloutController {
    type Key = Key;

    fn name(&self) -> &'static str {
        "rollout"
    }

    fn kinds(&self) -> &'static [Kind] {
        &[
            Kind::Rollout,
            Kind::Pod,
            Kind::Service,
            Kind::EndpointSlice,
            Kind::HttpRoute,
            Kind::TcpRoute,
            Kind::UdpRoute,
            Kind::Deployment,
            Kind::AnalysisRun,
            Kind::AnalysisTemplate,
            Kind::ClusterAnalysisTemplate,
            Kind::ReplicaSet,
        ]
    }

    fn observe(&mut self, event_type: EventType, object: &Object, dirty: &mut BTreeSet<Key>) {
        let deleted = event_type == EventType::Deleted;
        let meta = object.meta();
        let key = (meta.namespace().to_string(), meta.name.clone());
        fn keep<T: Clone>(map: &mut HashMap<Key, T>, key: Key, deleted: bool, value: &T) {
            if deleted {
                map.remove(&key);
            } else {
                map.insert(key, value.clone());
            }
        }
        match object {
            Object::Rollout(ro) => {
                // Being deleted (a foreground delete waits for its pods): treated as gone.
                let going = deleted || ro.metadata.deletion_timestamp.is_some();
                keep(&mut self.rollouts, key.clone(), going, ro);
                dirty.insert(key);
                return;
            }
            Object::Pod(p) => return self.observe_pod(deleted, p, dirty),
            Object::ReplicaSet(rs) => return self.sets.observe(deleted, rs, dirty),
            Object::AnalysisRun(run) => return self.observe_run(deleted, run, dirty),
            Object::AnalysisTemplate(t) => keep(&mut self.templates, key.clone(), deleted, t),
            Object::ClusterAnalysisTemplate(t) => {
                if deleted {
                    self.cluster_templates.remove(&key.1);
                } else {
                    self.cluster_templates.insert(key.1.clone(), t.clone());
                }
                dirty.extend(self.rollouts.keys().cloned());
                return;
            }
            Object::Service(_) => {}
            Object::HttpRoute(r) => keep(&mut self.http_routes, key.clone(), deleted, r),
            Object::Deployment(d) => keep(&mut self.deployments, key.clone(), deleted, d),
            Object::TcpRoute(r) | Object::UdpRoute(r) => {
                let id = (object.kind(), key.0.clone(), key.1.clone());
                if deleted {
                    self.l4_routes.remove(&id);
                } else {
                    self.l4_routes.insert(id, r.clone());
                }
            }
            Object::EndpointSlice(s) => self.slices.observe(deleted, s),
            _ => return,
        }
        self.namespace_dirty(&key.0, dirty);
    }

    async fn reconcile(&mut self, keys: BTreeSet<Key>) -> Reconciled<Key> {
        let mut result = Reconciled::default();
        for key in keys {
            self.reconcile_one(key, &mut result).await;
        }
        result
    }
}

//! The Deployment controller: keeps each Deployment's Pods in the store as `deployment.rs`
//! plans (the node agent runs them), and its revisions as ReplicaSets as
//! `workload_revisions.rs` plans. Runs on the controller runner, keyed by Deployment.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::deployment::{
    new_pod, plan, template_hash, PodView, DEPLOYMENT_LABEL, TEMPLATE_HASH_LABEL,
};
use super::deployment_status::status_of;
use super::owned_pods::{live, terminating, view};
use super::runner::{Reconciled, Reconciler};
use super::workload_revisions::{effective, revision_ops, Revisions};
use crate::events::Recorder;
use crate::store::{EventType, Op, Outcome, Store};
use pier_model::{Deployment, Kind, Object, Pod};

type Key = (String, String);

/// The Deployment controller.
pub struct DeploymentController {
    store: Arc<Store>,
    events: Recorder,
    deployments: HashMap<Key, Deployment>,
    /// Pods by the Deployment they belong to, then by name.
    pods: HashMap<Key, BTreeMap<String, Pod>>,
    /// The Deployment each cached pod was filed under (namespace, pod name) -> key, so a pod
    /// that loses its label (orphaned) leaves its old Deployment's cache.
    pod_owner: HashMap<Key, Key>,
    /// ReplicaSets (revisions) by the Deployment that controls them, then by name.
    sets: Revisions,
}

impl DeploymentController {
    /// A controller writing to `store`, reporting the pods it creates and deletes to `events`.
    pub fn new(store: Arc<Store>, events: Recorder) -> Self {
        Self {
            store,
            events,
            deployments: HashMap::new(),
            pods: HashMap::new(),
            pod_owner: HashMap::new(),
            sets: Revisions::new("Deployment"),
        }
    }

    /// The ReplicaSet writes for `key`: its revisions kept true to its pods, or, once the
    /// Deployment is gone, deleted.
    fn set_ops(&self, key: &Key) -> Vec<Op> {
        let sets = self.sets.of(key);
        match self
            .deployments
            .get(key)
            .filter(|d| !d.metadata.deleting_in_foreground())
        {
            Some(d) if d.metadata.deletion_timestamp.is_some() => Vec::new(),
            Some(d) => effective(d, &sets)
                .map(|d| revision_ops(&d, &sets, &self.views(key)))
                .unwrap_or_default(),
            None => sets
                .iter()
                .map(|rs| Op::remove(Kind::ReplicaSet, &key.0, &rs.metadata.name))
                .collect(),
        }
    }

    fn observe_pod(&mut self, deleted: bool, pod: &Pod, dirty: &mut BTreeSet<Key>) {
        let namespace = pod.metadata.namespace().to_string();
        let id = (namespace.clone(), pod.metadata.name.clone());
        let owner = pod.metadata.labels.get(DEPLOYMENT_LABEL);
        let key = owner.map(|o| (namespace, o.clone()));
        if let Some(before) = self.pod_owner.remove(&id) {
            if Some(&before) != key.as_ref() {
                if let Some(pods) = self.pods.get_mut(&before) {
                    pods.remove(&pod.metadata.name);
                }
                dirty.insert(before);
            }
        }
        let Some(key) = key else {
            return;
        };
        let pods = self.pods.entry(key.clone()).or_default();
        if deleted {
            pods.remove(&pod.metadata.name);
        } else {
            pods.insert(pod.metadata.name.clone(), pod.clone());
            self.pod_owner.insert(id, key.clone());
        }
        dirty.insert(key);
    }

    /// The live (not terminating) pods of `key`.
    fn live(&self, key: &Key) -> Vec<&Pod> {
        live(self.pods.get(key))
    }

    /// How the planner sees `key`'s live pods.
    fn views(&self, key: &Key) -> Vec<PodView> {
        self.live(key)
            .into_iter()
            .map(|p| view(p, TEMPLATE_HASH_LABEL))
            .collect()
    }

    /// The status write for `key`, when its pods give it a status other than the stored one;
    /// conditional on the Deployment as cached.
    fn status_op(&self, key: &Key) -> Option<Op> {
        let d = self.deployments.get(key)?;
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let status = status_of(d, &self.views(key), &now);
        if d.status.as_ref() == Some(&status) {
            return None;
        }
        let mut updated = d.clone();
        updated.status = Some(status);
        Some(Op::PutStatus(Object::Deployment(updated)))
    }

    /// The writes that take `key` one step: new pods, and old ones marked for graceful
    /// deletion (the node agent drains and stops them, then deletes them).
    fn ops_for(&self, key: &Key) -> Vec<Op> {
        let live = self.live(key);
        // Deleted, or deleted in the foreground (which waits for its pods to go): every pod
        // it left goes.
        let Some(d) = self
            .deployments
            .get(key)
            .filter(|d| !d.metadata.deleting_in_foreground())
        else {
            return live.into_iter().map(terminating).collect();
        };
        // Being deleted with its pods orphaned (`kube/cascade.rs`): hands off.
        if d.metadata.deletion_timestamp.is_some() {
            return Vec::new();
        }
        let Some(d) = effective(d, &self.sets.of(key)) else {
            return Vec::new();
        };
        let d = d.as_ref();
        let views = self.views(key);
        let step = plan(d, &views);
        let hash = template_hash(d);
        let mut ops: Vec<Op> = live
            .iter()
            .filter(|p| step.terminate.contains(&p.metadata.name))
            .map(|p| terminating(p))
            .collect();
        for _ in 0..step.create {
            let pod = new_pod(d, &hash);
            tracing::info!(deployment = %d.metadata.name, pod = %pod.metadata.name, "creating pod");
            ops.push(Op::Put(Object::Pod(pod)));
        }
        for name in &step.terminate {
            tracing::info!(deployment = %d.metadata.name, pod = %name, "terminating pod");
        }
        ops
    }
}

impl DeploymentController {
    /// Reports a pod written for Deployment `key` as the ReplicaSet controller does:
    /// `SuccessfulCreate` or `SuccessfulDelete` on the Deployment.
    fn report(&self, key: &Key, outcome: Outcome, pod: &Pod) {
        let Some(d) = self.deployments.get(key) else {
            return;
        };
        let owner = Object::Deployment(d.clone());
        let name = &pod.metadata.name;
        if outcome == Outcome::Created {
            self.events
                .normal(&owner, "SuccessfulCreate", format!("Created pod: {name}"));
        } else if pod.is_terminating() {
            self.events
                .normal(&owner, "SuccessfulDelete", format!("Deleted pod: {name}"));
        }
    }

    /// Writes `ops` for `key` in one transaction and takes what was written into the cache at
    /// once, so a pass before the watch catches up counts it. A conflict on a write that the
    /// conflicting change's own event will redo (`redone_by_event`: status, ReplicaSets)
    /// waits for that event; any other failure retries `key`.
    async fn write(
        &mut self,
        key: &Key,
        what: &'static str,
        ops: Vec<Op>,
        redone_by_event: bool,
        result: &mut Reconciled<Key>,
    ) {
        if ops.is_empty() {
            return;
        }
        match self.store.blocking(what, move |s| s.write(ops)).await {
            Ok(written) => {
                for w in written {
                    let Some(object) = &w.object else { continue };
                    if let Object::Pod(p) = object {
                        self.report(key, w.outcome, p);
                    }
                    let event = if w.outcome == Outcome::Deleted {
                        EventType::Deleted
                    } else {
                        EventType::Modified
                    };
                    self.observe(event, object, &mut BTreeSet::new());
                }
            }
            Err(crate::Error::Conflict(e)) if redone_by_event => {
                tracing::debug!(deployment = %key.1, error = %e, "{what}: waiting for the change that conflicted");
            }
            Err(e) => result.failed.push((key.clone(), crate::error::chain(&e))),
        }
    }
}

impl Reconciler for DeploymentController {
    type Key = Key;

    fn name(&self) -> &'static str {
        "deployment"
    }

    fn kinds(&self) -> &'static [Kind] {
        &[Kind::Deployment, Kind::Pod, Kind::ReplicaSet]
    }

    fn observe(&mut self, event_type: EventType, object: &Object, dirty: &mut BTreeSet<Key>) {
        let deleted = event_type == EventType::Deleted;
        match object {
            Object::Deployment(d) => {
                let key = (d.metadata.namespace().to_string(), d.metadata.name.clone());
                if deleted {
                    self.deployments.remove(&key);
                } else {
                    self.deployments.insert(key.clone(), d.clone());
                }
                dirty.insert(key);
            }
            Object::Pod(p) => self.observe_pod(deleted, p, dirty),
            Object::ReplicaSet(rs) => self.sets.observe(deleted, rs, dirty),
            _ => {}
        }
    }

    /// A Deployment at a time, in three transactions (status, ReplicaSets, pods), so one that
    /// cannot be written does not hold up the others.
    async fn reconcile(&mut self, keys: BTreeSet<Key>) -> Reconciled<Key> {
        let mut result = Reconciled::default();
        for key in keys {
            let status: Vec<Op> = self.status_op(&key).into_iter().collect();
            self.write(
                &key,
                "writing a Deployment's status",
                status,
                true,
                &mut result,
            )
            .await;
            let sets = self.set_ops(&key);
            self.write(
                &key,
                "writing a Deployment's ReplicaSets",
                sets,
                true,
                &mut result,
            )
            .await;
            let pods = self.ops_for(&key);
            self.write(
                &key,
                "writing a Deployment's pods",
                pods,
                false,
                &mut result,
            )
            .await;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::StoreConfig;

    use pier_model::manifest::objects;

    fn pods(store: &Store) -> Vec<Pod> {
        store
            .list(Kind::Pod, None, None)
            .unwrap()
            .0
            .into_iter()
            .filter_map(|o| match o {
                Object::Pod(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    async fn until(what: &str, store: &Store, f: impl Fn(&[Pod]) -> bool) -> Vec<Pod> {
        for _ in 0..300 {
            let now = pods(store);
            if f(&now) {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}: {:?}", pods(store));
    }

    /// Marks every live pod ready, as a node agent would once they run.
    fn make_ready(store: &Store) {
        for mut p in pods(store).into_iter().filter(|p| !p.is_terminating()) {
            if p.is_ready() {
                continue;
            }
            p.status.phase = Some("Running".into());
            p.status.conditions = vec![pier_model::pod::PodCondition {
                condition_type: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }];
            p.metadata.resource_version.clear();
            store.apply(vec![Object::Pod(p)]).unwrap();
        }
    }

    #[tokio::test]
    async fn scales_rolls_out_and_cleans_up_through_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), StoreConfig::default()).unwrap();
        let deployment = |image: &str, replicas: u32| {
            format!("apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec: {{containers: [{{name: c, image: {image}}}]}}\n")
        };
        store
            .apply(objects("test", &deployment("v1", 3)).unwrap())
            .unwrap();
        let task = tokio::spawn(super::super::runner::run(
            Arc::clone(&store),
            DeploymentController::new(
                Arc::clone(&store),
                Recorder::start(
                    Arc::clone(&store),
                    "deployment-controller",
                    "test",
                    crate::events::DEFAULT_TTL,
                ),
            ),
        ));
        let first = until("three pods", &store, |p| p.len() == 3).await;
        assert!(first
            .iter()
            .all(|p| p.metadata.labels[DEPLOYMENT_LABEL] == "web"
                && p.metadata.labels["app"] == "web"
                && p.spec.node_name.is_none()));
        make_ready(&store);

        // A new template: one surge pod first; old ones go only as new ones turn ready.
        store
            .apply(objects("test", &deployment("v2", 3)).unwrap())
            .unwrap();
        until("a surge pod", &store, |p| p.len() == 4).await;
        for _ in 0..20 {
            make_ready(&store);
            // The node agent deletes a pod once it has drained it.
            for p in pods(&store).into_iter().filter(Pod::is_terminating) {
                store
                    .delete(Kind::Pod, "default", &p.metadata.name, None)
                    .unwrap();
            }
            let now = pods(&store);
            let v2 = now
                .iter()
                .filter(|p| p.spec.containers[0].image == "v2" && p.is_ready())
                .count();
            if v2 == 3 && now.len() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let now = pods(&store);
        assert_eq!(now.len(), 3, "{now:?}");
        assert!(now.iter().all(|p| p.spec.containers[0].image == "v2"));

        // Deleting the Deployment marks its pods for graceful deletion.
        store
            .delete(Kind::Deployment, "default", "web", None)
            .unwrap();
        until("every pod terminating", &store, |p| {
            p.iter().all(Pod::is_terminating)
        })
        .await;
        task.abort();
    }
}

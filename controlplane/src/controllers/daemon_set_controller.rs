//! The DaemonSet controller: keeps one pod of each DaemonSet bound to every node it may run
//! on, as `daemon_set.rs` plans, and its status; a node that joins, leaves or changes its
//! taints is looked at for every DaemonSet. Pods are tied to their DaemonSet by its controller
//! `ownerReference`; those of a DaemonSet that is gone are let go gracefully.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::daemon_set::{new_pod, plan};
use super::deployment::hash_template;
use super::owned_pods::{terminating, Owned};
use super::runner::{write_for, Reconciled, Reconciler};
use crate::events::Recorder;
use crate::store::{EventType, Op, Outcome, Store};
use pier_model::{DaemonSet, Kind, Node, Object, Pod};

type Key = (String, String);

/// The DaemonSet controller.
pub struct DaemonSetController {
    store: Arc<Store>,
    events: Recorder,
    sets: HashMap<Key, DaemonSet>,
    /// Pods by the object that controls them.
    pods: Owned<Pod>,
    nodes: BTreeMap<String, Node>,
}

/// The DaemonSet that controls `pod`.
fn owner(pod: &Pod) -> Option<Key> {
    pod.metadata
        .owner_references
        .iter()
        .find(|o| o.kind == "DaemonSet" && o.controller == Some(true))
        .map(|o| (pod.metadata.namespace().to_string(), o.name.clone()))
}

impl DaemonSetController {
    /// A controller writing to `store`, reporting the pods it creates and deletes to `events`.
    pub fn new(store: Arc<Store>, events: Recorder) -> Self {
        Self {
            store,
            events,
            sets: HashMap::new(),
            pods: Owned::new(),
            nodes: BTreeMap::new(),
        }
    }

    fn observe_pod(&mut self, deleted: bool, pod: &Pod, dirty: &mut BTreeSet<Key>) {
        let meta = &pod.metadata;
        let id = (meta.namespace(), meta.name.as_str());
        self.pods.observe(deleted, id, owner(pod), pod, dirty);
    }

    /// The writes that take `key` one step.
    fn pass(&self, key: &Key) -> Vec<Op> {
        let live: Vec<&Pod> = self
            .pods
            .of(key)
            .into_iter()
            .filter(|p| !p.is_terminating())
            .collect();
        let ds = self
            .sets
            .get(key)
            .filter(|d| !d.metadata.deleting_in_foreground());
        // Gone, or going in the foreground: its pods go gracefully.
        let Some(ds) = ds else {
            return live.into_iter().map(terminating).collect();
        };
        // Being deleted with its pods orphaned (`kube/cascade.rs`): hands off.
        if ds.metadata.deletion_timestamp.is_some() {
            return Vec::new();
        }
        let hash = hash_template(&ds.spec.template);
        let nodes: Vec<&Node> = self.nodes.values().collect();
        let step = plan(ds, &hash, &nodes, &live);
        let mut ops = Vec::new();
        if ds.status.as_ref() != Some(&step.status) {
            let mut updated = ds.clone();
            updated.status = Some(step.status.clone());
            ops.push(Op::PutStatus(Object::DaemonSet(updated)));
        }
        for pod in live
            .iter()
            .filter(|p| step.terminate.contains(&p.metadata.name))
        {
            tracing::info!(daemonset = %key.1, pod = %pod.metadata.name, "terminating pod");
            ops.push(terminating(pod));
        }
        for node in &step.create {
            let pod = new_pod(ds, &hash, node);
            tracing::info!(daemonset = %key.1, pod = %pod.metadata.name, node = %node, "creating pod");
            ops.push(Op::Put(Object::Pod(pod)));
        }
        ops
    }

    /// Reports the pods written for `key` as Kubernetes' DaemonSet controller does.
    fn report(&self, key: &Key, written: &[crate::store::Written]) {
        let Some(ds) = self.sets.get(key) else {
            return;
        };
        let owner = Object::DaemonSet(ds.clone());
        for w in written {
            let Some(Object::Pod(pod)) = &w.object else {
                continue;
            };
            let name = &pod.metadata.name;
            if w.outcome == Outcome::Created {
                self.events
                    .normal(&owner, "SuccessfulCreate", format!("Created pod: {name}"));
            } else if pod.is_terminating() {
                self.events
                    .normal(&owner, "SuccessfulDelete", format!("Deleted pod: {name}"));
            }
        }
    }
}

impl Reconciler for DaemonSetController {
    type Key = Key;

    fn name(&self) -> &'static str {
        "daemonset"
    }

    fn kinds(&self) -> &'static [Kind] {
        &[Kind::DaemonSet, Kind::Node, Kind::Pod]
    }

    fn observe(&mut self, event_type: EventType, object: &Object, dirty: &mut BTreeSet<Key>) {
        let deleted = event_type == EventType::Deleted;
        match object {
            Object::DaemonSet(d) => {
                let key = (d.metadata.namespace().to_string(), d.metadata.name.clone());
                if deleted {
                    self.sets.remove(&key);
                } else {
                    self.sets.insert(key.clone(), d.clone());
                }
                dirty.insert(key);
            }
            Object::Node(n) => {
                let before = if deleted {
                    self.nodes.remove(&n.metadata.name)
                } else {
                    self.nodes.insert(n.metadata.name.clone(), n.clone())
                };
                // Only joining, leaving or a change of taints moves DaemonSet pods.
                let moved = deleted || before.is_none_or(|b| b.spec.taints != n.spec.taints);
                if moved {
                    dirty.extend(self.sets.keys().cloned());
                }
            }
            Object::Pod(p) => self.observe_pod(deleted, p, dirty),
            _ => {}
        }
    }

    /// A DaemonSet at a time, in one transaction each (status and pods); what was written is
    /// taken into the cache at once, so a pass before the watch catches up makes no pod twice.
    async fn reconcile(&mut self, keys: BTreeSet<Key>) -> Reconciled<Key> {
        let mut result = Reconciled::default();
        for key in keys {
            let ops = self.pass(&key);
            let store = Arc::clone(&self.store);
            let written = write_for(
                self,
                &store,
                "writing a DaemonSet and its pods",
                &key,
                ops,
                &mut result,
            )
            .await;
            if let Some(written) = written {
                self.report(&key, &written);
            }
        }
        result
    }
}

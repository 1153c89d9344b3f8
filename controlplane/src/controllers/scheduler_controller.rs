//! The scheduler (on the leader): binds each pod that has no node to the node
//! `scheduling.rs` picks, by writing its `spec.nodeName` (conditional on the pod's
//! resourceVersion, so a pod changed meanwhile is looked at again), or records why it fits
//! nowhere in its `PodScheduled` condition. Runs on the controller runner, keyed by Pod.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::runner::{Reconciled, Reconciler};
use super::scheduling::{self, Usage};
use crate::error::Error;
use crate::events::Recorder;
use crate::store::{EventType, Store};
use pier_model::{Kind, Node, Object, Pod};

type Key = (String, String);

/// The scheduler.
pub struct Scheduler {
    store: Arc<Store>,
    events: Recorder,
    nodes: BTreeMap<String, Node>,
    pods: BTreeMap<Key, Pod>,
    usage: BTreeMap<String, Usage>,
}

impl Scheduler {
    /// A scheduler binding pods in `store`, reporting bindings and failures to `events`.
    pub fn new(store: Arc<Store>, events: Recorder) -> Self {
        Self {
            store,
            events,
            nodes: BTreeMap::new(),
            pods: BTreeMap::new(),
            usage: BTreeMap::new(),
        }
    }

    fn pending(&self) -> impl Iterator<Item = &Key> {
        self.pods.iter().filter(|(_, p)| waiting(p)).map(|(k, _)| k)
    }

    /// Records `pod` (or its removal) in the per-node usage.
    fn track(&mut self, key: Key, pod: Option<Pod>) {
        if let Some(old) = self.pods.remove(&key) {
            if let Some(node) = holds(&old) {
                scheduling::account(&mut self.usage, &node, &old, -1);
            }
        }
        if let Some(pod) = pod {
            if let Some(node) = holds(&pod) {
                scheduling::account(&mut self.usage, &node, &pod, 1);
            }
            self.pods.insert(key, pod);
        }
    }
}

/// A pod waiting for a node.
fn waiting(pod: &Pod) -> bool {
    pod.spec.node_name.as_deref().is_none_or(str::is_empty)
        && !pod.is_terminating()
        && !finished(pod)
}

fn finished(pod: &Pod) -> bool {
    matches!(pod.status.phase.as_deref(), Some("Succeeded" | "Failed"))
}

/// The node whose room `pod` takes, if any.
fn holds(pod: &Pod) -> Option<String> {
    pod.spec
        .node_name
        .clone()
        .filter(|n| !n.is_empty() && !finished(pod))
}

/// `pod` with its `PodScheduled` condition set.
fn scheduled(mut pod: Pod, status: &str, reason: Option<&str>, message: Option<String>) -> Pod {
    pod.set_condition("PodScheduled", status, reason, message);
    pod
}

impl Reconciler for Scheduler {
    type Key = Key;

    fn name(&self) -> &'static str {
        "scheduler"
    }

    fn kinds(&self) -> &'static [Kind] {
        &[Kind::Node, Kind::Pod]
    }

    fn observe(&mut self, event_type: EventType, object: &Object, dirty: &mut BTreeSet<Key>) {
        let deleted = event_type == EventType::Deleted;
        match object {
            Object::Node(node) => {
                if deleted {
                    self.nodes.remove(&node.metadata.name);
                } else {
                    self.nodes.insert(node.metadata.name.clone(), node.clone());
                }
                dirty.extend(self.pending().cloned());
            }
            Object::Pod(pod) => {
                let key = (
                    pod.metadata.namespace().to_string(),
                    pod.metadata.name.clone(),
                );
                let freed = self.pods.get(&key).and_then(holds).is_some()
                    && (deleted || holds(pod).is_none());
                self.track(key.clone(), (!deleted).then(|| pod.clone()));
                if waiting(pod) && !deleted {
                    dirty.insert(key);
                }
                if freed {
                    dirty.extend(self.pending().cloned());
                }
            }
            _ => {}
        }
    }

    async fn reconcile(&mut self, keys: BTreeSet<Key>) -> Reconciled<Key> {
        let mut result = Reconciled::default();
        for key in keys {
            let Some(pod) = self.pods.get(&key).filter(|p| waiting(p)).cloned() else {
                continue;
            };
            let (update, event) = match scheduling::place(&pod, self.nodes.values(), &self.usage) {
                Ok(node) => {
                    let mut bound = scheduled(pod.clone(), "True", None, None);
                    bound.spec.node_name = Some(node.clone());
                    tracing::info!(pod = %format!("{}/{}", key.0, key.1), node = %node, "scheduled");
                    let message = format!("Successfully assigned {}/{} to {node}", key.0, key.1);
                    (
                        bound,
                        (pier_model::core_event::NORMAL, "Scheduled", message),
                    )
                }
                Err(why) => {
                    let known = pod.status.conditions.iter().any(|c| {
                        c.condition_type == "PodScheduled" && c.message.as_deref() == Some(&why)
                    });
                    if known {
                        continue;
                    }
                    tracing::info!(pod = %format!("{}/{}", key.0, key.1), reason = %why, "unschedulable");
                    let failed = (
                        pier_model::core_event::WARNING,
                        "FailedScheduling",
                        why.clone(),
                    );
                    (
                        scheduled(pod.clone(), "False", Some("Unschedulable"), Some(why)),
                        failed,
                    )
                }
            };
            let written = self
                .store
                .blocking("binding a pod", move |s| s.apply(vec![Object::Pod(update)]))
                .await;
            match written {
                Ok(mut w) => {
                    if let Some(Object::Pod(stored)) = w.pop().and_then(|w| w.object) {
                        let (event_type, reason, message) = event;
                        let about = crate::events::reference(&Object::Pod(stored.clone()));
                        self.events.report(about, event_type, reason, message);
                        self.track(key, Some(stored));
                    }
                }
                // Changed meanwhile: its event brings it back.
                Err(Error::Conflict(_)) | Err(Error::NotFound { .. }) => {}
                Err(e) => result.failed.push((key, crate::error::chain(&e))),
            }
        }
        result
    }
}

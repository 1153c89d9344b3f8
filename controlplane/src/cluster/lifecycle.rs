//! The node lifecycle controller (on the leader): a node whose heartbeat Lease has not been
//! renewed for `node_grace` is marked `Ready=Unknown`, so every node's endpoints controller
//! takes its pods out of service at once, and its pods' `Ready` conditions turn False (as
//! Kubernetes' MarkPodsNotReady; the node agent sets them back when it returns); once it has
//! been not Ready for
//! `pod_eviction_timeout`, the pods a controller owns there (a Deployment's) are deleted, so
//! their controller makes replacements that the scheduler puts on Ready nodes (the node, if
//! it comes back, stops what was replaced). Times are taken on this controller's own clock
//! (when it saw each Lease change or a fresh Ready from the node, when it saw each node not
//! Ready), so clock skew between
//! nodes does not matter; a new leader gives every node a whole grace period from its start.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::micro_time;
use crate::controllers::runner::{Reconciled, Reconciler};
use crate::error::Error;
use crate::store::{EventType, Op, Store};
use pier_model::node::{NodeCondition, NODE_LEASE_NAMESPACE};
use pier_model::{Kind, Node, Object, Pod};

/// The node lifecycle controller.
pub struct NodeLifecycle {
    store: Arc<Store>,
    grace: Duration,
    nodes: BTreeMap<String, Node>,
    /// When each node's Lease was last seen to change (or when this controller started).
    renewed: BTreeMap<String, Instant>,
    started: Instant,
    eviction: Duration,
    /// When each node was first seen not Ready.
    unready: BTreeMap<String, Instant>,
    /// The pods bound to each node, by `(namespace, name)`.
    pods: BTreeMap<String, BTreeMap<(String, String), Pod>>,
}

/// How soon a node's pods are looked at again after a write of one of them conflicted.
const RETRY: Duration = Duration::from_secs(1);

impl NodeLifecycle {
    /// A controller that gives nodes `grace` to renew, and evicts owned pods from a node not
    /// Ready for `eviction`.
    pub fn new(store: Arc<Store>, grace: Duration, eviction: Duration) -> Self {
        Self {
            store,
            grace,
            nodes: BTreeMap::new(),
            renewed: BTreeMap::new(),
            started: Instant::now(),
            eviction,
            unready: BTreeMap::new(),
            pods: BTreeMap::new(),
        }
    }

    /// Deletes the controller-owned pods on `node`; the rest stay until it returns, and so
    /// does a DaemonSet's pod, which belongs on that node (Kubernetes gives DaemonSet pods a
    /// toleration of `unreachable`).
    async fn evict(&mut self, node: &str) -> Result<usize, Error> {
        let pods: Vec<(String, String)> = self
            .pods
            .get(node)
            .into_iter()
            .flatten()
            .filter(|(_, pod)| evicted(pod))
            .map(|(key, _)| key.clone())
            .collect();
        if pods.is_empty() {
            return Ok(0);
        }
        let count = pods.len();
        let ops = pods
            .into_iter()
            .map(|(namespace, name)| Op::Delete {
                kind: Kind::Pod,
                namespace,
                name,
                resource_version: None,
                must_exist: false,
            })
            .collect();
        self.store
            .blocking("evicting pods", move |s| s.write(ops))
            .await?;
        Ok(count)
    }

    /// Sets the `Ready` condition of the pods on `node` that still say True to False; the
    /// number written, or `None` when a pod changed meanwhile (its event brings the news).
    async fn mark_pods_not_ready(&self, node: &str) -> Result<Option<usize>, Error> {
        let marked: Vec<Pod> = self
            .pods
            .get(node)
            .into_iter()
            .flat_map(BTreeMap::values)
            .filter(|pod| pod.is_ready())
            .map(|pod| not_ready(pod.clone(), node))
            .collect();
        let count = marked.len();
        let mut conflicted = false;
        for pod in marked {
            // Conditional on the resourceVersion seen, so a fresher write by the node wins.
            let written = self
                .store
                .blocking("marking a pod not Ready", move |s| {
                    s.apply(vec![Object::Pod(pod)])
                })
                .await;
            match written {
                Ok(_) => {}
                Err(Error::Conflict(_) | Error::NotFound { .. }) => conflicted = true,
                Err(e) => return Err(e),
            }
        }
        Ok((!conflicted).then_some(count))
    }

    fn last_renewal(&self, node: &str) -> Instant {
        self.renewed
            .get(node)
            .copied()
            .unwrap_or(self.started)
            .max(self.started)
    }
}

impl Reconciler for NodeLifecycle {
    type Key = String;

    fn name(&self) -> &'static str {
        "node-lifecycle"
    }

    fn kinds(&self) -> &'static [Kind] {
        &[Kind::Node, Kind::Lease, Kind::Pod]
    }

    fn observe(&mut self, event_type: EventType, object: &Object, dirty: &mut BTreeSet<String>) {
        let name = object.meta().name.clone();
        match object {
            Object::Node(node) => {
                if event_type == EventType::Deleted {
                    self.nodes.remove(&name);
                    self.renewed.remove(&name);
                } else {
                    if node.is_ready() {
                        self.unready.remove(&name);
                        // The node itself wrote a fresh Ready (registering on its return): a
                        // heartbeat, as the Lease renewal written right after it would be.
                        if heartbeat(node) != self.nodes.get(&name).and_then(heartbeat) {
                            self.renewed.insert(name.clone(), Instant::now());
                        }
                    } else {
                        self.unready
                            .entry(name.clone())
                            .or_insert_with(Instant::now);
                    }
                    self.nodes.insert(name.clone(), node.clone());
                    dirty.insert(name);
                }
            }
            Object::Pod(pod) => {
                let key = (pod.metadata.namespace().to_string(), name);
                for pods in self.pods.values_mut() {
                    pods.remove(&key);
                }
                match &pod.spec.node_name {
                    Some(node) if event_type != EventType::Deleted && !node.is_empty() => {
                        self.pods
                            .entry(node.clone())
                            .or_default()
                            .insert(key, pod.clone());
                    }
                    _ => {}
                }
            }
            Object::Lease(_)
                if object.meta().namespace() == NODE_LEASE_NAMESPACE
                    && event_type != EventType::Deleted =>
            {
                self.renewed.insert(name.clone(), Instant::now());
                dirty.insert(name);
            }
            _ => {}
        }
    }

    fn resync_keys(&self) -> Vec<String> {
        self.nodes.keys().cloned().collect()
    }

    async fn reconcile(&mut self, keys: BTreeSet<String>) -> Reconciled<String> {
        let mut result = Reconciled::default();
        for name in keys {
            let Some(node) = self.nodes.get(&name).cloned() else {
                continue;
            };
            let quiet = self.last_renewal(&name).elapsed();
            if quiet < self.grace {
                // Looked at again when the grace would run out.
                result.requeue.push((name, self.grace - quiet));
                continue;
            }
            if !node.is_ready() {
                match self.mark_pods_not_ready(&name).await {
                    Ok(Some(0)) => {}
                    Ok(Some(n)) => {
                        tracing::warn!(node = %name, pods = n, "node not Ready: its pods marked not Ready")
                    }
                    Ok(None) => result.requeue.push((name.clone(), RETRY)),
                    Err(e) => result.failed.push((name.clone(), crate::error::chain(&e))),
                }
                let down_for = self
                    .unready
                    .get(&name)
                    .map_or(Duration::ZERO, |at| at.elapsed());
                if down_for < self.eviction {
                    result.requeue.push((name, self.eviction - down_for));
                    continue;
                }
                match self.evict(&name).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::warn!(node = %name, pods = n, "evicted the pods of a node not Ready")
                    }
                    Err(e) => result.failed.push((name, crate::error::chain(&e))),
                }
                continue;
            }
            let quiet_secs = quiet.as_secs();
            let marked = self
                .store
                .blocking("marking a node NotReady", move |s| {
                    s.apply(vec![Object::Node(unknown(node, quiet_secs))])
                })
                .await;
            match marked {
                Ok(_) => {
                    // Its pods are marked when the node's event brings it back here.
                    tracing::warn!(node = %name, quiet_secs, "node stopped renewing its lease: Ready=Unknown")
                }
                // The node wrote meanwhile (it may be back): the next event says.
                Err(Error::Conflict(_)) => {}
                Err(e) => result.failed.push((name, crate::error::chain(&e))),
            }
        }
        result
    }
}

/// When the node last said it was Ready (its Ready condition's heartbeat).
fn heartbeat(node: &Node) -> Option<&str> {
    node.ready_condition()
        .filter(|c| c.status == "True")
        .and_then(|c| c.last_heartbeat_time.as_deref())
}

/// `node` with its Ready condition Unknown, as Kubernetes' node lifecycle controller writes it.
fn unknown(mut node: Node, quiet_secs: u64) -> Node {
    let condition = NodeCondition {
        type_: "Ready".into(),
        status: "Unknown".into(),
        last_heartbeat_time: node
            .ready_condition()
            .and_then(|c| c.last_heartbeat_time.clone()),
        last_transition_time: Some(micro_time()),
        reason: Some("NodeStatusUnknown".into()),
        message: Some(format!(
            "pier on the node stopped renewing its lease ({quiet_secs}s without a renewal)"
        )),
    };
    node.status.conditions.retain(|c| c.type_ != "Ready");
    node.status.conditions.push(condition);
    node
}

/// `pod` with its `Ready` condition False because `node` is not Ready.
fn not_ready(mut pod: Pod, node: &str) -> Pod {
    pod.set_condition(
        "Ready",
        "False",
        Some("NodeNotReady"),
        Some(format!("node {node} is not Ready")),
    );
    pod
}
/// Whether a lost node's `pod` is deleted to be made again elsewhere: a controller owns it,
/// and it is not a DaemonSet's, which belongs on that node.
fn evicted(pod: &pier_model::Pod) -> bool {
    let daemon = pod
        .metadata
        .owner_references
        .iter()
        .any(|r| r.kind == "DaemonSet" && r.controller == Some(true));
    !daemon && crate::controllers::scheduling::owner(pod).is_some()
}

//! This node's membership: its `Node` (registered at start with addresses, capacity and
//! facts; the store gives it a pod range) and its heartbeat `Lease` in `kube-node-lease`,
//! renewed every `heartbeat`. A renewal also sets the Node's `Ready` condition back to True
//! when the lifecycle controller had marked it Unknown while the heartbeat lapsed.

use std::sync::Arc;

use super::{micro_time, ClusterConfig, NodeFacts};
use crate::error::{Error, Result};
use crate::store::Store;
use pier_model::node::{LeaseSpec, NodeCondition, NodeStatus, LEADER_ROLE, NODE_LEASE_NAMESPACE};
use pier_model::{Kind, Lease, Node, Object, ObjectMeta};

/// The prefix of the annotations a node publishes about its API (`api/pod_relay.rs`).
const API_ANNOTATIONS: &str = "pier.dev/api-";

/// Renews this node's heartbeat every `heartbeat`, for good; a Node that has gone is
/// registered again. A failed renewal is logged and the next comes on the next tick, not
/// after a growing backoff: once the store is back the node must be heard within its grace.
/// The daemon registers the node before it starts this (`register`).
pub async fn run(store: Arc<Store>, config: ClusterConfig, facts: NodeFacts) -> Result<()> {
    let mut tick = tokio::time::interval(config.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        let (c, f) = (config.clone(), facts.clone());
        let renewed = store
            .blocking("renewing the node's lease", move |s| {
                if renew(s, &c)? == Renewed::NodeGone {
                    tracing::warn!(node = %c.node_name, "Node is gone: registering it again");
                    register(s, &c, &f)?;
                }
                Ok(())
            })
            .await;
        match renewed {
            Ok(()) if failing => {
                tracing::info!(node = %config.node_name, "heartbeat renewed again");
                failing = false;
            }
            Ok(()) => {}
            Err(e) => {
                // Logged once per outage; it is retried on every tick.
                if !failing {
                    tracing::error!(node = %config.node_name, error = %crate::error::chain(&e), "renewing the heartbeat failed; retrying every heartbeat");
                }
                failing = true;
            }
        }
    }
}

/// Creates or updates this node's Node: its labels, addresses, capacity, facts, Ready; and
/// on a cluster store, its first heartbeat. Returns the Node as stored (with its pod range).
pub fn register(store: &Store, config: &ClusterConfig, facts: &NodeFacts) -> Result<Node> {
    let existing = match store.get(Kind::Node, "", &config.node_name)? {
        Some(Object::Node(n)) => Some(n),
        _ => None,
    };
    let mut node = existing.clone().unwrap_or_else(|| Node {
        api_version: "v1".into(),
        kind: "Node".into(),
        metadata: ObjectMeta {
            name: config.node_name.clone(),
            ..ObjectMeta::default()
        },
        ..Node::default()
    });
    // What this node publishes about its API is what it publishes now, or nothing.
    node.metadata
        .annotations
        .retain(|key, _| !key.starts_with(API_ANNOTATIONS));
    node.metadata.annotations.extend(config.annotations.clone());
    let labels = &mut node.metadata.labels;
    labels.insert("kubernetes.io/hostname".into(), config.node_name.clone());
    labels.insert(
        "kubernetes.io/os".into(),
        facts.info.operating_system.clone(),
    );
    labels.insert("kubernetes.io/arch".into(), facts.info.architecture.clone());
    if config.sole {
        labels.insert(LEADER_ROLE.into(), String::new());
    }
    node.status = NodeStatus {
        capacity: facts.capacity(),
        allocatable: facts.capacity(),
        conditions: vec![ready(existing.as_ref())],
        addresses: NodeFacts::addresses(&config.node_name, config.node_ip),
        node_info: Some(facts.info.clone()),
    };
    let written = store.write(vec![crate::store::Op::Put(Object::Node(node))])?;
    let Some(Object::Node(stored)) = written.into_iter().next().and_then(|w| w.object) else {
        return Err(Error::store(format!(
            "registering Node {}: nothing stored",
            config.node_name
        )));
    };
    if !config.sole {
        renew(store, config)?;
    }
    Ok(stored)
}

/// What a renewal found.
#[derive(Debug, PartialEq, Eq)]
enum Renewed {
    /// The lease is renewed and the Node is Ready.
    Ready,
    /// The lease is renewed, but the Node has been deleted.
    NodeGone,
}

/// The Ready=True condition, keeping its transition time when it already was True.
fn ready(existing: Option<&Node>) -> NodeCondition {
    let now = micro_time();
    let was = existing.and_then(Node::ready_condition);
    let since = match was {
        Some(c) if c.status == "True" => c.last_transition_time.clone(),
        _ => Some(now.clone()),
    };
    NodeCondition {
        type_: "Ready".into(),
        status: "True".into(),
        last_heartbeat_time: Some(now),
        last_transition_time: since,
        reason: Some("NodeReady".into()),
        message: Some("pier is running and renewing its lease".into()),
    }
}

/// Renews the heartbeat Lease, and sets the Node Ready again if it was marked otherwise.
fn renew(store: &Store, config: &ClusterConfig) -> Result<Renewed> {
    let lease = Lease {
        api_version: "coordination.k8s.io/v1".into(),
        kind: "Lease".into(),
        metadata: ObjectMeta {
            name: config.node_name.clone(),
            namespace: NODE_LEASE_NAMESPACE.into(),
            ..ObjectMeta::default()
        },
        spec: LeaseSpec {
            holder_identity: Some(config.node_name.clone()),
            lease_duration_seconds: Some(i64::try_from(config.node_grace.as_secs()).unwrap_or(10)),
            renew_time: Some(micro_time()),
            ..LeaseSpec::default()
        },
    };
    store.apply(vec![Object::Lease(lease)])?;
    let Some(Object::Node(mut node)) = store.get(Kind::Node, "", &config.node_name)? else {
        return Ok(Renewed::NodeGone);
    };
    if !node.is_ready() {
        let condition = ready(Some(&node));
        node.status.conditions.retain(|c| c.type_ != "Ready");
        node.status.conditions.push(condition);
        // Conditional: a concurrent change wins, and the next renewal looks again.
        match store.apply(vec![Object::Node(node)]) {
            Ok(_) | Err(Error::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
        tracing::info!(node = %config.node_name, "node Ready again");
    }
    Ok(Renewed::Ready)
}

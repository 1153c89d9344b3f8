//! Cluster membership and leadership: each node registers its `Node` when it starts and
//! renews its heartbeat `Lease` (`membership.rs`, with the machine's facts from `facts.rs`); one node, elected
//! through a Lease with conditional writes (`leader.rs`), runs the controllers, among them
//! the node lifecycle controller (`lifecycle.rs`), which marks a node whose lease lapsed
//! `Ready=Unknown`. Leader work that measures the cluster reads every node's metrics through
//! `node_metrics.rs`.

mod facts;
mod leader;
mod lifecycle;
mod membership;
mod node_metrics;

use std::net::IpAddr;
use std::time::Duration;

pub use facts::NodeFacts;
pub use leader::{elect, Leadership, LEASE_NAME, LEASE_NAMESPACE};
pub use lifecycle::NodeLifecycle;
pub use membership::{register, run as run_membership};
pub(crate) use node_metrics::pod_usage;
pub use node_metrics::{Gathered, NodeMetrics};

/// This node's place in the cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The Node's name (`--node-name`, default the hostname).
    pub node_name: String,
    /// The address other nodes reach this one at (`--node-ip`).
    pub node_ip: Option<IpAddr>,
    /// How often the heartbeat Lease is renewed.
    pub heartbeat: Duration,
    /// How long a lapsed heartbeat leaves a node Ready.
    pub node_grace: Duration,
    /// How long the controllers' leader holds its lease without renewing it.
    pub leader_lease: Duration,
    /// How long a node stays not Ready before its controller-owned pods are replaced.
    pub pod_eviction_timeout: Duration,
    /// How often each HorizontalPodAutoscaler measures and decides (Kubernetes'
    /// `--horizontal-pod-autoscaler-sync-period`).
    pub hpa_sync_period: Duration,
    /// The only node there is (the embedded store): it leads without an election.
    pub sole: bool,
    /// Annotations this node keeps on its Node (where other nodes relay pod requests to it).
    pub annotations: std::collections::BTreeMap<String, String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            node_name: String::new(),
            node_ip: None,
            heartbeat: Duration::from_secs(2),
            node_grace: Duration::from_secs(10),
            leader_lease: Duration::from_secs(5),
            pod_eviction_timeout: Duration::from_secs(30),
            hpa_sync_period: Duration::from_secs(15),
            sole: true,
            annotations: std::collections::BTreeMap::new(),
        }
    }
}

/// Now as a Kubernetes MicroTime (RFC 3339 with microseconds).
pub(crate) fn micro_time() -> String {
    humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests;

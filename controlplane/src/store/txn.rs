//! What a backend's write transaction offers the shared write logic (`write.rs`): objects by
//! key, allocation slots, allocation cursors and the event log. redb implements it with its
//! tables in one write transaction; etcd with reads at one revision and buffered writes,
//! committed as one etcd transaction that compares what was read.

use std::net::IpAddr;

use pier_model::{EventType, Object};

use crate::error::Result;

/// One allocatable thing: a ClusterIP or a NodePort.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Slot {
    /// A ClusterIP (either family).
    Ip(IpAddr),
    /// A NodePort.
    NodePort(u16),
    /// A node's pod range (its network address; the size is the cluster's node prefix).
    PodCidr(std::net::Ipv4Addr),
}

/// Where an allocation ring's next search starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Cursor {
    /// IPv4 ClusterIPs.
    Ip,
    /// IPv6 ClusterIPs.
    Ip6,
    /// NodePorts.
    NodePort,
    /// Nodes' pod ranges.
    PodCidr,
}

/// A write transaction in progress. Nothing is visible to readers until the backend commits.
pub(crate) trait Txn {
    /// The object stored under `key`.
    fn object(&mut self, key: &str) -> Result<Option<Object>>;
    /// Stores `object` under `key`.
    fn put_object(&mut self, key: &str, object: &Object) -> Result<()>;
    /// Removes the object under `key`, returning it.
    fn remove_object(&mut self, key: &str) -> Result<Option<Object>>;
    /// The keys of stored objects in `lo..hi`.
    fn object_keys(&mut self, lo: &str, hi: &str) -> Result<Vec<String>>;
    /// Who holds `slot`, if anyone.
    fn holder(&mut self, slot: Slot) -> Result<Option<String>>;
    /// Gives `slot` to `who`.
    fn hold(&mut self, slot: Slot, who: &str) -> Result<()>;
    /// Frees `slot`.
    fn free(&mut self, slot: Slot) -> Result<()>;
    /// An allocation ring's cursor.
    fn cursor(&mut self, cursor: Cursor) -> Result<u64>;
    /// Moves an allocation ring's cursor.
    fn set_cursor(&mut self, cursor: Cursor, value: u64) -> Result<()>;
    /// Appends a change to the backend's event log (a backend whose log is its own, like
    /// etcd's, records nothing).
    fn record(&mut self, revision: u64, event_type: EventType, object: &Object) -> Result<()>;
}

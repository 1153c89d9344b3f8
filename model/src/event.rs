//! Object events: what a revision did to one object, as kept in a store's event log and sent to
//! watchers.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::Object;

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Removed; the event carries the last state.
    Deleted,
}

/// One change, in revision order.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Revision of this change.
    pub revision: u64,
    /// Kind of change.
    pub event_type: EventType,
    /// The object after the change (before it, for deletes).
    pub object: Arc<Object>,
    /// Whether this is the last change of its transaction (on etcd the changes of one
    /// transaction share a revision; on redb each has its own and this is always true).
    pub ends_transaction: bool,
}

impl Event {
    /// The event as Kubernetes watch JSON (`{"type": "ADDED", "object": {...}}`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "type": self.event_type,
            "revision": self.revision,
            "object": self.object.to_value(),
        })
    }
}

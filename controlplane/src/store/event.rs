//! Store events: what a revision did to one object, as kept in the event log and sent to
//! watchers.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::Object;

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
}

#[derive(Serialize, Deserialize)]
pub(super) struct StoredEvent {
    #[serde(rename = "type")]
    pub(super) event_type: EventType,
    pub(super) object: serde_json::Value,
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

    pub(super) fn decode(revision: u64, bytes: &[u8]) -> Result<Event> {
        let stored: StoredEvent = serde_json::from_slice(bytes)?;
        let object = Object::from_value(stored.object)
            .map_err(|e| Error::store(format!("corrupt event {revision}: {e}")))?
            .object;
        Ok(Event {
            revision,
            event_type: stored.event_type,
            object: Arc::new(object),
        })
    }
}

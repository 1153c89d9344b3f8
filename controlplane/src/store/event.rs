//! Store events as kept in the event log: encoding and decoding of one revision's change.

use std::sync::Arc;

use pier_model::{Event, EventType, Object};
use serde::{Deserialize, Serialize};

use super::Keyring;
use crate::error::{Error, Result};

#[derive(Serialize, Deserialize)]
struct StoredEvent {
    #[serde(rename = "type")]
    event_type: EventType,
    object: serde_json::Value,
}

/// Decodes the event stored for `revision`.
pub(super) fn decode(keyring: &Keyring, revision: u64, bytes: &[u8]) -> Result<Event> {
    let stored: StoredEvent = serde_json::from_slice(&keyring.open(bytes)?)?;
    let object = Object::from_value(stored.object)
        .map_err(|e| Error::store(format!("corrupt event {revision}: {e}")))?
        .object;
    Ok(Event {
        revision,
        event_type: stored.event_type,
        object: Arc::new(object),
        ends_transaction: true,
    })
}

/// The log's record of a change (sealed when the object is a Secret).
pub(super) fn encode(keyring: &Keyring, event_type: EventType, object: &Object) -> Result<Vec<u8>> {
    let plain = serde_json::to_vec(&StoredEvent {
        event_type,
        object: object.to_value(),
    })?;
    keyring.seal(object.kind(), plain)
}

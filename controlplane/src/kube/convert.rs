//! Objects served at a version other than the one stored: which views exist and where each
//! converts. The one place reads and writes ask.

use serde_json::Value;

use super::catalog::Resource;
use super::{events_v1, hpa_v1};
use pier_model::Kind;

/// A stored object (wire form at its stored version) in `resource`'s version.
pub(crate) fn to_served(resource: &Resource, object: Value) -> Value {
    match (resource.kind, resource.group, resource.version) {
        (Kind::Event, events_v1::GROUP, _) => events_v1::from_core(object),
        (Kind::HorizontalPodAutoscaler, _, hpa_v1::VERSION) => hpa_v1::from_v2(object),
        _ => object,
    }
}

/// An object sent at `resource`'s version, in the stored version.
pub(crate) fn to_stored(resource: &Resource, object: Value) -> Result<Value, String> {
    match (resource.kind, resource.group, resource.version) {
        (Kind::Event, events_v1::GROUP, _) => Ok(events_v1::to_core(object)),
        (Kind::HorizontalPodAutoscaler, _, hpa_v1::VERSION) => hpa_v1::to_v2(object),
        _ => Ok(object),
    }
}

//! `v1/Event`: something that happened to an object (scheduled, pulled, started, unhealthy,
//! scaled...), as `kubectl describe` and `kubectl get events` show it. Repeats of one event
//! are counted on one object rather than stored again.

use serde::{Deserialize, Serialize};

use super::meta::{ObjectMeta, ObjectReference};

/// `Normal`: an expected step.
pub const NORMAL: &str = "Normal";
/// `Warning`: something went wrong.
pub const WARNING: &str = "Warning";

/// A Kubernetes `v1/Event`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CoreEvent {
    /// `v1`.
    pub api_version: String,
    /// `Event`.
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The object the event is about.
    #[serde(default)]
    pub involved_object: ObjectReference,
    /// A short CamelCase reason (`Scheduled`, `Pulled`, `Unhealthy`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// What happened, for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The component and host that reported it.
    #[serde(default)]
    pub source: EventSource,
    /// RFC 3339 time of the first occurrence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_timestamp: Option<String>,
    /// RFC 3339 time of the latest occurrence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_timestamp: Option<String>,
    /// How many times it happened.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub count: i32,
    /// `Normal` or `Warning`.
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    pub event_type: String,
    /// RFC 3339 time with microseconds, as events.k8s.io clients set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<String>,
    /// What was done or failed (`Binding`, `Pulling`...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub action: String,
    /// The controller that reported it (`default-scheduler`, `kubelet`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reporting_component: String,
    /// The instance of that controller (its node).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reporting_instance: String,
}

/// `Event.source`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventSource {
    /// The reporting component.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub component: String,
    /// The node it runs on.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
}

fn is_zero(v: &i32) -> bool {
    *v == 0
}

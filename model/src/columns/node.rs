//! Node cells as kubectl prints them: status, roles, addresses.

use serde_json::Value;

use super::{items, join_or_none, s};

/// `Ready`, `NotReady` or `Unknown` (kubectl's words), `,SchedulingDisabled` when cordoned.
pub(super) fn status(v: &Value) -> String {
    let ready = items(v, "/status/conditions")
        .into_iter()
        .find(|c| s(c, "/type") == "Ready");
    let mut status = match ready.as_ref().map(|c| s(c, "/status")) {
        Some("True") => "Ready",
        Some("False") => "NotReady",
        _ => "Unknown",
    }
    .to_string();
    if v.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    status
}

/// The roles a node's `node-role.kubernetes.io/<role>` labels give it.
pub(super) fn roles(v: &Value) -> String {
    let roles: Vec<String> = v
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .keys()
                .filter_map(|k| k.strip_prefix(crate::node::ROLE_LABEL_PREFIX))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    join_or_none(roles)
}

/// A node's address of `kind`, or `<none>`.
pub(super) fn address(v: &Value, kind: &str) -> String {
    items(v, "/status/addresses")
        .iter()
        .find(|a| s(a, "/type") == kind)
        .map(|a| s(a, "/address").to_string())
        .unwrap_or_else(|| "<none>".into())
}

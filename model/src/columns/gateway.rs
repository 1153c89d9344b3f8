//! `GatewayClass` and `Gateway` rows as kubectl prints them (the CRDs' printer columns).

use serde_json::Value;

use super::{items, s};

/// The status of condition `kind` in `status.conditions`, or `Unknown`.
fn condition(v: &Value, kind: &str) -> String {
    items(v, "/status/conditions")
        .iter()
        .find(|c| s(c, "/type") == kind)
        .map_or("Unknown", |c| s(c, "/status"))
        .to_string()
}

/// NAME, CONTROLLER, ACCEPTED, AGE, DESCRIPTION (wide).
pub(super) fn class_row(v: &Value, name: String, created: String) -> Vec<String> {
    vec![
        name,
        s(v, "/spec/controllerName").to_string(),
        condition(v, "Accepted"),
        created,
        s(v, "/spec/description").to_string(),
    ]
}

/// NAME, CLASS, ADDRESS (the first), PROGRAMMED, AGE.
pub(super) fn gateway_row(v: &Value, name: String, created: String) -> Vec<String> {
    vec![
        name,
        s(v, "/spec/gatewayClassName").to_string(),
        s(v, "/status/addresses/0/value").to_string(),
        condition(v, "Programmed"),
        created,
    ]
}

//! Event rows as the API server prints them, for core/v1 and events.k8s.io/v1 alike.

use std::time::SystemTime;

use serde_json::Value;

use super::{age, s};

/// An Event's cells, as the API server prints them: ages of its first and last occurrence,
/// `kind/name` of its object, `component, host` of its source.
pub(super) fn row(v: &Value, name: String, now: SystemTime) -> Vec<String> {
    // events.k8s.io/v1 names the same fields otherwise: read whichever the Event has.
    let field = |core: &str, new: &str| match v.pointer(core) {
        Some(value) => value.clone(),
        None => v.pointer(new).cloned().unwrap_or(Value::Null),
    };
    let v = &serde_json::json!({
        "involvedObject": field("/involvedObject", "/regarding"),
        "message": field("/message", "/note"),
        "source": field("/source", "/deprecatedSource"),
        "firstTimestamp": field("/firstTimestamp", "/deprecatedFirstTimestamp"),
        "lastTimestamp": field("/lastTimestamp", "/deprecatedLastTimestamp"),
        "count": field("/count", "/deprecatedCount"),
        "eventTime": field("/eventTime", "/eventTime"),
        "type": field("/type", "/type"),
        "reason": field("/reason", "/reason"),
    });
    let when = |pointer: &str| v.pointer(pointer).and_then(Value::as_str);
    let first = when("/firstTimestamp").or_else(|| when("/eventTime"));
    let last = when("/lastTimestamp").or(first);
    let object = match (s(v, "/involvedObject/kind"), s(v, "/involvedObject/name")) {
        (kind, "") => kind.to_lowercase(),
        (kind, name) => format!("{}/{name}", kind.to_lowercase()),
    };
    let source: Vec<&str> = [s(v, "/source/component"), s(v, "/source/host")]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect();
    vec![
        age(last, now),
        s(v, "/type").to_string(),
        s(v, "/reason").to_string(),
        object,
        s(v, "/involvedObject/fieldPath").to_string(),
        source.join(", "),
        s(v, "/message").trim().to_string(),
        age(first, now),
        v["count"].as_i64().unwrap_or(1).max(1).to_string(),
        name,
    ]
}

//! `events.k8s.io/v1` Events: the same stored `v1` Events, under the newer group's field names
//! (`regarding` for `involvedObject`, `note` for `message`, `deprecated*` for the old counters
//! and source), converted both ways as the API server converts them.

use serde_json::{Map, Value};

/// The group that names Events this way.
pub(crate) const GROUP: &str = "events.k8s.io";

/// Pairs of (`v1` field, `events.k8s.io/v1` field) that hold the same thing.
const RENAMED: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
];

/// A stored `v1` Event in `events.k8s.io/v1` form (`eventTime`, which that form requires,
/// from the first occurrence when the reporter set none).
pub(crate) fn from_core(mut event: Value) -> Value {
    let Some(map) = event.as_object_mut() else {
        return event;
    };
    rename(map, RENAMED.iter().map(|(core, new)| (*core, *new)));
    if map.get("eventTime").is_none_or(Value::is_null) {
        if let Some(Value::String(first)) = map.get("deprecatedFirstTimestamp") {
            let micro = first.replacen('Z', ".000000Z", 1);
            map.insert("eventTime".into(), Value::String(micro));
        }
    }
    map.insert("apiVersion".into(), Value::String(format!("{GROUP}/v1")));
    event
}

/// An `events.k8s.io/v1` Event as pier stores it (`v1`).
pub(crate) fn to_core(mut event: Value) -> Value {
    let Some(map) = event.as_object_mut() else {
        return event;
    };
    rename(map, RENAMED.iter().map(|(core, new)| (*new, *core)));
    map.insert("apiVersion".into(), Value::String("v1".into()));
    event
}

fn rename<'a>(map: &mut Map<String, Value>, pairs: impl Iterator<Item = (&'a str, &'a str)>) {
    for (from, to) in pairs {
        if let Some(value) = map.remove(from) {
            map.insert(to.to_string(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_read_the_same_in_both_groups() {
        let core = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "web.1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web"}, "reason": "Started", "message": "Started container web",
            "source": {"component": "kubelet", "host": "n1"}, "firstTimestamp": "2026-12-03T10:00:00Z",
            "lastTimestamp": "2026-12-03T10:00:05Z", "count": 2, "type": "Normal", "reportingComponent": "kubelet"});
        let new = from_core(core.clone());
        assert_eq!(new["apiVersion"], "events.k8s.io/v1");
        assert_eq!(new["regarding"]["name"], "web");
        assert_eq!(new["note"], "Started container web");
        assert_eq!(new["deprecatedCount"], 2);
        assert_eq!(new["reportingController"], "kubelet");
        assert_eq!(new["eventTime"], "2026-12-03T10:00:00.000000Z");
        let mut back = to_core(new);
        back.as_object_mut().unwrap().remove("eventTime");
        assert_eq!(back, core);
    }
}

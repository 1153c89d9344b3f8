//! Field sets, the unit of ownership in server-side apply: the paths to an object's leaves in
//! the FieldsV1 notation (`f:spec`, `k:{"port":80}` for a keyed list element, `.` for such an
//! element itself), read from objects, written to and read from the FieldsV1 tree kept in
//! `managedFields`, and used to read or remove the field a path names.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::keys::merge_key;

/// One path: FieldsV1 steps from the object's root.
pub(crate) type Path = Vec<String>;

/// A set of paths.
pub(crate) type FieldSet = BTreeSet<Path>;

/// Metadata the server owns: no manager ever owns these.
const SERVER_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// The fields `object` sets, leaving out what no manager owns: `apiVersion`, `kind`, `status`
/// (written through its own subresource) and server-owned metadata.
pub(crate) fn of(object: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    let Value::Object(root) = object else {
        return out;
    };
    for (key, value) in root {
        match (key.as_str(), value) {
            ("apiVersion" | "kind" | "status", _) => {}
            ("metadata", Value::Object(meta)) => {
                for (field, v) in meta {
                    if !SERVER_META.contains(&field.as_str()) {
                        let mut names = vec![key.clone(), field.clone()];
                        let mut path = vec![step(key), step(field)];
                        walk(v, &mut names, &mut path, &mut out);
                    }
                }
            }
            _ => walk(
                value,
                &mut vec![key.clone()],
                &mut vec![step(key)],
                &mut out,
            ),
        }
    }
    out
}

fn step(field: &str) -> String {
    format!("f:{field}")
}

/// Adds the leaves under `value` (at field names `names`, FieldsV1 `path`) to `out`.
fn walk(value: &Value, names: &mut Vec<String>, path: &mut Path, out: &mut FieldSet) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (field, v) in map {
                names.push(field.clone());
                path.push(step(field));
                walk(v, names, path, out);
                path.pop();
                names.pop();
            }
        }
        Value::Array(items) if !items.is_empty() && keyed(items, names).is_some() => {
            let key = keyed(items, names).unwrap_or_default();
            for item in items {
                path.push(element(key, &item[key]));
                path.push(".".into());
                out.insert(path.clone());
                path.pop();
                walk(item, names, path, out);
                path.pop();
            }
        }
        _ => {
            out.insert(path.clone());
        }
    }
}

/// The merge key of a list whose every element is an object carrying it.
fn keyed(items: &[Value], names: &[String]) -> Option<&'static str> {
    let key = merge_key(names)?;
    items.iter().all(|i| i.get(key).is_some()).then_some(key)
}

/// The step naming the element of a keyed list whose `key` is `value`.
fn element(key: &str, value: &Value) -> String {
    let mut id = Map::new();
    id.insert(key.to_string(), value.clone());
    format!("k:{}", Value::Object(id))
}

/// The value `path` names in `object` (for `.`, the list element itself).
pub(crate) fn get<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(object, |at, s| step_into(at, s))
}

fn step_into<'a>(at: &'a Value, step: &str) -> Option<&'a Value> {
    if step == "." {
        return Some(at);
    }
    if let Some(field) = step.strip_prefix("f:") {
        return at.get(field);
    }
    let id = element_id(step)?;
    at.as_array()?.iter().find(|item| is_element(item, &id))
}

fn element_id(step: &str) -> Option<Map<String, Value>> {
    serde_json::from_str(step.strip_prefix("k:")?).ok()
}

fn is_element(item: &Value, id: &Map<String, Value>) -> bool {
    id.iter().all(|(k, v)| item.get(k) == Some(v))
}

fn get_mut<'a>(object: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut at = object;
    for s in path {
        at = if let Some(field) = s.strip_prefix("f:") {
            at.get_mut(field)?
        } else {
            let id = element_id(s)?;
            at.as_array_mut()?.iter_mut().find(|i| is_element(i, &id))?
        };
    }
    Some(at)
}

/// Removes the field `path` names from `object` (for `.`, the whole list element); a path
/// that is not there is left alone.
pub(crate) fn remove(object: &mut Value, path: &[String]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    if last == "." {
        let Some((item, list)) = parent.split_last() else {
            return;
        };
        if let (Some(Value::Array(items)), Some(id)) = (get_mut(object, list), element_id(item)) {
            items.retain(|i| !is_element(i, &id));
        }
    } else if let (Some(Value::Object(map)), Some(field)) =
        (get_mut(object, parent), last.strip_prefix("f:"))
    {
        map.remove(field);
    }
}

/// `set` as a FieldsV1 tree: `{"f:spec": {"f:replicas": {}}}`.
pub(crate) fn to_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut at = &mut root;
        for s in path {
            let next = at
                .entry(s.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(map) = next else {
                break;
            };
            at = map;
        }
    }
    Value::Object(root)
}

/// The set a FieldsV1 tree holds (anything else reads as the empty set).
pub(crate) fn from_v1(tree: &Value) -> FieldSet {
    fn read(node: &Map<String, Value>, path: &mut Path, out: &mut FieldSet) {
        for (s, child) in node {
            path.push(s.clone());
            match child {
                Value::Object(map) if !map.is_empty() => read(map, path, out),
                _ => {
                    out.insert(path.clone());
                }
            }
            path.pop();
        }
    }
    let mut out = FieldSet::new();
    if let Value::Object(map) = tree {
        read(map, &mut Vec::new(), &mut out);
    }
    out
}

/// A path as the API server words it in a conflict: `.spec.ports[port=80].targetPort`.
pub(crate) fn display(path: &[String]) -> String {
    let mut out = String::new();
    for s in path {
        if let Some(field) = s.strip_prefix("f:") {
            out.push('.');
            out.push_str(field);
        } else if let Some(id) = element_id(s) {
            let keys: Vec<String> = id.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("[{}]", keys.join(",")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn service() -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web", "resourceVersion": "7", "labels": {"app": "web"}},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
               "status": {"loadBalancer": {}}})
    }

    #[test]
    fn a_set_holds_the_leaves_and_keyed_elements_an_object_sets() {
        let set = of(&service());
        let shown: Vec<String> = set.iter().map(|p| p.join(" ")).collect();
        assert_eq!(
            shown,
            [
                "f:metadata f:labels f:app",
                "f:spec f:ports k:{\"port\":80} .",
                "f:spec f:ports k:{\"port\":80} f:port",
                "f:spec f:ports k:{\"port\":80} f:targetPort",
                "f:spec f:selector f:app",
            ]
        );
        let target: Path = ["f:spec", "f:ports", "k:{\"port\":80}", "f:targetPort"]
            .map(String::from)
            .to_vec();
        assert_eq!(get(&service(), &target), Some(&json!(8080)));
        assert_eq!(display(&target), ".spec.ports[port=80].targetPort");
    }

    #[test]
    fn removing_a_keyed_element_or_a_field() {
        let mut svc = service();
        remove(
            &mut svc,
            &["f:spec", "f:ports", "k:{\"port\":80}", "."].map(String::from),
        );
        assert_eq!(svc["spec"]["ports"], json!([]));
        remove(
            &mut svc,
            &["f:metadata", "f:labels", "f:app"].map(String::from),
        );
        assert_eq!(svc["metadata"]["labels"], json!({}));
        remove(
            &mut svc,
            &["f:spec", "f:nope", "f:deeper"].map(String::from),
        );
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<i64>().prop_map(Value::from),
            "[a-z]{0,4}".prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
        ]
    }

    fn tree() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 24, 4, |inner| {
            prop::collection::btree_map("[a-z]{1,3}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect()))
        })
    }

    proptest! {
        #[test]
        fn sets_survive_the_fieldsv1_tree(spec in tree()) {
            let set = of(&json!({"spec": spec}));
            prop_assert_eq!(from_v1(&to_v1(&set)), set);
        }
    }
}

//! The patch formats of `PATCH`: JSON patch (RFC 6902) and JSON merge patch (RFC 7386) by the
//! `json-patch` crate, and Kubernetes' strategic merge patch, which kubectl sends for built-in
//! kinds: maps merge, and lists with a merge key (containers by name, Service ports by port,
//! ...) merge element by element, with the `$patch`, `$setElementOrder`,
//! `$deleteFromPrimitiveList` and `$retainKeys` directives.

use hyper::StatusCode;
use serde_json::{Map, Value};

use super::keys::merge_key;
use super::status::{self, Failure};

/// `current` with `patch` applied, by the format `content_type` names.
pub(crate) fn apply(content_type: &str, current: &Value, patch: &Value) -> Result<Value, Failure> {
    let bad = |m: String| status::failure(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", m, None);
    let media = content_type.split(';').next().unwrap_or("").trim();
    match media {
        "application/json-patch+json" => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| bad(format!("not a JSON patch: {e}")))?;
            let mut doc = current.clone();
            json_patch::patch(&mut doc, &ops).map_err(|e| bad(format!("the JSON patch does not apply: {e}")))?;
            Ok(doc)
        }
        "application/merge-patch+json" => {
            let mut doc = current.clone();
            json_patch::merge(&mut doc, patch);
            Ok(doc)
        }
        "application/strategic-merge-patch+json" => strategic(current, patch, &mut Vec::new()),
        other => Err(status::failure(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (not {other:?})"),
            None,
        )),
    }
}

/// `applied` merged into `current` as server-side apply merges: maps field by field, keyed
/// lists element by element, everything else replaced.
pub(crate) fn merge(current: &Value, applied: &Value) -> Result<Value, Failure> {
    strategic(current, applied, &mut Vec::new())
}

/// Strategic merge of `patch` into `current` at `path`.
fn strategic(current: &Value, patch: &Value, path: &mut Vec<String>) -> Result<Value, Failure> {
    let (Value::Object(cur), Value::Object(p)) = (current, patch) else {
        return Ok(patch.clone());
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replaced = p.clone();
        replaced.remove("$patch");
        return Ok(Value::Object(replaced));
    }
    let mut out = cur.clone();
    if let Some(Value::Array(keep)) = p.get("$retainKeys") {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        out.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (key, value) in p {
        if key.starts_with("$setElementOrder/") || key == "$retainKeys" || key == "$patch" {
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Value::Array(gone)) = (out.get_mut(field), value) {
                list.retain(|v| !gone.contains(v));
            }
            continue;
        }
        if value.is_null() {
            out.remove(key);
            continue;
        }
        path.push(key.clone());
        let merged = match (out.get(key), value) {
            (Some(Value::Array(old)), Value::Array(new)) => merge_list(old, new, path)?,
            (Some(old @ Value::Object(_)), Value::Object(_)) => strategic(old, value, path)?,
            _ => strip_directives(value),
        };
        path.pop();
        out.insert(key.clone(), merged);
    }
    Ok(Value::Object(out))
}

/// Merges a list element by element on its merge key; a list without one is replaced.
fn merge_list(old: &[Value], new: &[Value], path: &mut Vec<String>) -> Result<Value, Failure> {
    let Some(key) = merge_key(path) else {
        return Ok(strip_directives(&Value::Array(new.to_vec())));
    };
    let mut out: Vec<Value> = old.to_vec();
    for item in new {
        let Some(id) = item.get(key) else {
            return Err(status::failure(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                format!("{}: an element has no merge key {key:?}", path.join(".")),
                None,
            ));
        };
        let at = out.iter().position(|o| o.get(key) == Some(id));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (at, delete) {
            (Some(i), true) => {
                out.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => out[i] = strategic(&out[i], item, path)?,
            (None, false) => out.push(strip_directives(item)),
        }
    }
    Ok(Value::Array(out))
}

/// A value with patch directives removed (what is stored when it is new).
fn strip_directives(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect::<Map<String, Value>>(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SMP: &str = "application/strategic-merge-patch+json";

    #[test]
    fn strategic_merge_patch_merges_lists_by_their_keys() {
        let svc = json!({"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}],
                                   "selector": {"app": "web", "tier": "x"}}});
        let patch = json!({"spec": {"$setElementOrder/ports": [{"port": 80}, {"port": 8080}],
                                     "ports": [{"port": 8080, "name": "alt"}, {"port": 443, "$patch": "delete"}],
                                     "selector": {"tier": null}}});
        let out = apply(SMP, &svc, &patch).unwrap();
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 80, "name": "http"}, {"port": 8080, "name": "alt"}])
        );
        assert_eq!(out["spec"]["selector"], json!({"app": "web"}));

        let deploy = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "a:1", "ports": [{"containerPort": 80}], "args": ["x"]},
            {"name": "side", "image": "s:1"}]}}}});
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "a:2", "ports": [{"containerPort": 81}], "args": ["y"]}]}}}});
        let out = apply(SMP, &deploy, &patch).unwrap();
        let containers = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["image"], "a:2");
        assert_eq!(
            containers[0]["ports"],
            json!([{"containerPort": 80}, {"containerPort": 81}])
        );
        assert_eq!(
            containers[0]["args"],
            json!(["y"]),
            "lists without a key are replaced"
        );
        assert_eq!(
            containers[1]["name"], "side",
            "an element the patch leaves out stays"
        );
    }

    #[test]
    fn merge_and_json_patches_and_unknown_formats() {
        let doc = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        let merged = apply(
            "application/merge-patch+json",
            &doc,
            &json!({"metadata": {"labels": {"a": null, "c": "3"}}}),
        )
        .unwrap();
        assert_eq!(merged["metadata"]["labels"], json!({"b": "2", "c": "3"}));
        let patched = apply(
            "application/json-patch+json",
            &doc,
            &json!([{"op": "replace", "path": "/metadata/labels/a", "value": "9"}]),
        )
        .unwrap();
        assert_eq!(patched["metadata"]["labels"]["a"], "9");
        let failed = apply(
            "application/json-patch+json",
            &doc,
            &json!([{"op": "remove", "path": "/nope"}]),
        );
        assert_eq!(failed.unwrap_err().code, StatusCode::UNPROCESSABLE_ENTITY);
        let unknown = apply("text/plain", &doc, &json!({}));
        assert_eq!(
            unknown.unwrap_err().code,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }
}

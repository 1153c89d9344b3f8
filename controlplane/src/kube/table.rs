//! `meta.k8s.io/v1` `Table` answers, which `kubectl get` asks for (`Accept: application/json;
//! as=Table;v=v1;g=meta.k8s.io`) and prints as they come: the kind's columns (shared with
//! `pier get`, in `pier_model::columns`), wide ones at priority 1, one row per object
//! carrying its metadata (`PartialObjectMetadata`), the whole object, or nothing, as
//! `includeObject` asks.

use std::time::SystemTime;

use serde_json::{json, Value};

use pier_model::columns;
use pier_model::Kind;

/// Whether an `Accept` header asks for a Table.
pub(crate) fn wanted(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|t| {
            let params: Vec<&str> = t.split(';').map(str::trim).collect();
            params.contains(&"as=Table") && params.contains(&"g=meta.k8s.io")
        })
    })
}

/// The Table of `objects` (wire form) of `kind`, at list revision `resource_version`.
pub(crate) fn of(
    kind: Kind,
    objects: &[Value],
    resource_version: Option<&str>,
    include_object: Option<&str>,
) -> Value {
    let now = SystemTime::now();
    let definitions: Vec<Value> = columns::columns(kind)
        .iter()
        .map(|c| {
            json!({
                "name": title(c.name),
                "type": "string",
                "format": if c.name == "NAME" { "name" } else { "" },
                "description": "",
                "priority": c.priority,
            })
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut row = json!({ "cells": columns::row(kind, o, now) });
            match include_object.unwrap_or("PartialObjectMetadata") {
                "None" => {}
                "Object" => row["object"] = o.clone(),
                _ => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": o["metadata"].clone(),
                    });
                }
            }
            row
        })
        .collect();
    let mut metadata = json!({});
    if let Some(rv) = resource_version {
        metadata["resourceVersion"] = json!(rv);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

/// A header as API servers name columns (`CLUSTER-IP` → `Cluster-IP`); kubectl prints it
/// upper case again.
fn title(header: &str) -> String {
    header
        .split('-')
        .map(|word| {
            if word.len() <= 2 {
                return word.to_string();
            }
            let lower = word.to_ascii_lowercase();
            let mut chars = lower.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_as_kubectl_asks_for_them() {
        assert!(wanted(Some(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        )));
        assert!(!wanted(Some("application/json")));
        assert!(!wanted(None));
        assert_eq!(title("CLUSTER-IP"), "Cluster-IP");
        assert_eq!(title("PORT(S)"), "Port(s)");
        let svc = json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {"clusterIP": "10.96.0.1"}});
        let table = of(Kind::Service, &[svc], Some("7"), None);
        assert_eq!(table["rows"][0]["cells"][0], "web");
        assert_eq!(
            table["rows"][0]["object"]["metadata"]["namespace"],
            "default"
        );
        assert_eq!(table["columnDefinitions"][6]["priority"], 1);
        assert_eq!(table["metadata"]["resourceVersion"], "7");
    }
}

//! Multi-document YAML/JSON manifests, with errors naming file, document and field.

use std::fmt;

use serde::Deserialize;
use serde_json::Value;

use crate::{Object, Parsed};

/// A problem in one document of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    /// File name (or `-` for stdin).
    pub source: String,
    /// 1-based document index within the file.
    pub document: usize,
    /// What is wrong, with the field path.
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: document {}: {}",
            self.source, self.document, self.message
        )
    }
}

impl std::error::Error for ManifestError {}

/// One object read from a manifest, with where it came from.
#[derive(Debug, Clone)]
pub struct ManifestObject {
    /// 1-based document index.
    pub document: usize,
    /// The parsed object and its ignored fields.
    pub parsed: Parsed,
}

/// Parses every document of `text`; all errors are returned, none of the objects if any fails.
pub fn parse(source: &str, text: &str) -> Result<Vec<ManifestObject>, Vec<ManifestError>> {
    parse_in(source, text, None)
}

/// Puts an object without a namespace into `namespace` (`-n`), so validation and its
/// messages see the namespace it will have; a different explicit one is an error.
fn place(item: &mut Value, namespace: &str) -> Result<(), String> {
    let Some(meta) = item
        .as_object_mut()
        .map(|o| {
            o.entry("metadata")
                .or_insert_with(|| Value::Object(Default::default()))
        })
        .and_then(Value::as_object_mut)
    else {
        return Err("metadata: must be a mapping".into());
    };
    match meta.get("namespace").and_then(Value::as_str) {
        None | Some("") => {
            meta.insert("namespace".into(), Value::String(namespace.to_string()));
            Ok(())
        }
        Some(ns) if ns == namespace => Ok(()),
        Some(ns) => Err(format!(
            "metadata.namespace {ns:?} does not match -n {namespace:?}"
        )),
    }
}

/// [`parse`], with objects that name no namespace put into `namespace` when given.
pub fn parse_in(
    source: &str,
    text: &str,
    namespace: Option<&str>,
) -> Result<Vec<ManifestObject>, Vec<ManifestError>> {
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let document = i + 1;
        let err = |message: String| ManifestError {
            source: source.to_string(),
            document,
            message,
        };
        let value = match Value::deserialize(doc) {
            Ok(v) => v,
            Err(e) => {
                errors.push(err(format!("invalid YAML/JSON: {e}")));
                // A syntax error leaves the stream in an unknown place: stop here.
                break;
            }
        };
        let items = match value {
            Value::Null => continue,
            Value::Object(ref map) if map.get("kind").and_then(Value::as_str) == Some("List") => {
                match map.get("items") {
                    Some(Value::Array(items)) => items.clone(),
                    _ => {
                        errors.push(err("items: a List needs an items array".into()));
                        continue;
                    }
                }
            }
            Value::Object(_) => vec![value],
            _ => {
                errors.push(err(
                    "a document must be a mapping with apiVersion and kind".into()
                ));
                continue;
            }
        };
        for mut item in items {
            let cluster_scoped = item
                .get("kind")
                .and_then(Value::as_str)
                .and_then(crate::Kind::from_kind_field)
                .is_some_and(|k| !k.namespaced());
            if let Some(ns) = namespace.filter(|_| !cluster_scoped) {
                if let Err(e) = place(&mut item, ns) {
                    errors.push(err(e));
                    continue;
                }
            }
            match Object::from_value(item) {
                Ok(parsed) => objects.push(ManifestObject { document, parsed }),
                Err(e) => errors.push(err(e.to_string())),
            }
        }
    }
    if errors.is_empty() {
        Ok(objects)
    } else {
        Err(errors)
    }
}

/// The objects of a manifest, without where each came from.
pub fn objects(source: &str, text: &str) -> Result<Vec<crate::Object>, Vec<ManifestError>> {
    Ok(parse(source, text)?
        .into_iter()
        .map(|m| m.parsed.object)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Kind;

    #[test]
    fn multi_document_with_list_and_json() {
        let text = r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  ports: [{port: 80}]
---
---
{"apiVersion": "v1", "kind": "List", "items": [
  {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api"}, "spec": {"ports": [{"port": 8080}]}}
]}
"#;
        let objs = parse("t.yaml", text).unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[0].document, 1);
        assert_eq!(objs[1].document, 3);
        assert_eq!(objs[1].parsed.object.kind(), Kind::Service);
    }

    #[test]
    fn error_names_file_document_and_field() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: ok}\nspec: {ports: [{port: 80}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: bad}\nspec:\n  ports:\n  - port: 70000\n";
        let errs = parse("svc.yaml", text).unwrap_err();
        assert_eq!(errs.len(), 1);
        let msg = errs[0].to_string();
        assert!(
            msg.starts_with("svc.yaml: document 2: Service default/bad: spec.ports[0].port"),
            "{msg}"
        );
    }

    #[test]
    fn errors_label_objects_with_the_effective_namespace_and_name_unsupported_kinds() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: bad}\nspec:\n  ports:\n  - port: 70000\n---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: settings}\nspec: {}\n";
        let errs = parse_in("f.yaml", text, Some("other")).unwrap_err();
        let msgs: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert!(
            msgs[0].starts_with("f.yaml: document 1: Service other/bad: spec.ports[0].port"),
            "{msgs:?}"
        );
        assert!(
            msgs[1].starts_with(
                "f.yaml: document 2: PersistentVolumeClaim other/settings: kind: unsupported kind"
            ),
            "{msgs:?}"
        );
        let ok = parse_in(
            "f.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n",
            Some("other"),
        )
        .unwrap();
        assert_eq!(ok[0].parsed.object.meta().namespace(), "other");
        let clash = parse_in(
            "f.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: prod}\nspec: {ports: [{port: 80}]}\n",
            Some("other"),
        )
        .unwrap_err();
        assert!(clash[0].message.contains("does not match -n"), "{clash:?}");
    }

    #[test]
    fn traffic_policies_are_checked_and_external_only_on_node_ports() {
        let svc = |spec: &str| {
            format!("apiVersion: v1\nkind: Service\nmetadata: {{name: s}}\nspec: {{ports: [{{port: 80}}], {spec}}}\n")
        };
        let ok = parse(
            "f",
            &svc("type: NodePort, internalTrafficPolicy: Local, externalTrafficPolicy: Local"),
        )
        .unwrap();
        let Object::Service(s) = &ok[0].parsed.object else {
            panic!("not a service");
        };
        assert!(s.internal_traffic_local() && s.external_traffic_local());
        let msg = parse("f", &svc("internalTrafficPolicy: local")).unwrap_err()[0].to_string();
        assert!(
            msg.contains("spec.internalTrafficPolicy: unsupported value \"local\""),
            "{msg}"
        );
        let msg = parse("f", &svc("externalTrafficPolicy: Local")).unwrap_err()[0].to_string();
        assert!(
            msg.contains("spec.externalTrafficPolicy: may only be set for externally-accessible"),
            "{msg}"
        );
    }

    #[test]
    fn type_error_has_path() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ports:\n  - port: eighty\n";
        let msg = parse("f", text).unwrap_err()[0].to_string();
        assert!(msg.contains("spec.ports[0].port"), "{msg}");
    }

    #[test]
    fn syntax_error() {
        let msg = parse("f", "apiVersion: v1\nkind: [unclosed\n").unwrap_err()[0].to_string();
        assert!(msg.contains("document 1: invalid YAML"), "{msg}");
    }
}

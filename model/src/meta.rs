//! Object metadata and small types shared by every kind.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Standard Kubernetes object metadata; the store fills the server-owned fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// Object name, unique per kind and namespace.
    #[serde(default)]
    pub name: String,
    /// Namespace; empty means `default`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Identifying labels.
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    /// Non-identifying annotations.
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
    /// Unique id assigned at creation.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// Store revision of the last write to this object; set to make an update conditional.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    /// Incremented whenever the spec changes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u64,
    /// RFC 3339 creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    /// RFC 3339 time the object started terminating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<String>,
    /// Seconds a deleted object was given to terminate; 0 on a pod once its node has stopped
    /// its containers (finalizers may still hold the object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_grace_period_seconds: Option<i64>,
    /// What must happen before a deleted object goes: it stays, marked by
    /// `deletion_timestamp`, until each is removed (`foregroundDeletion`: its dependents are
    /// gone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
    /// Objects this one belongs to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owner_references: Vec<OwnerReference>,
    /// Which field manager owns which fields, as the Kubernetes API's server-side apply keeps it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_fields: Vec<ManagedFieldsEntry>,
}

/// A map written as `null` (`annotations:` with nothing after it, as YAML manifests often
/// have) is an empty one, as the API server reads it.
fn null_as_empty<'de, D>(d: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let map: Option<BTreeMap<String, String>> = serde::Deserialize::deserialize(d)?;
    Ok(map.unwrap_or_default())
}

/// The fields one manager owns through one kind of operation (`metav1.ManagedFieldsEntry`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedFieldsEntry {
    /// The manager's name (`kubectl`, `kubectl-client-side-apply`, ...).
    #[serde(default)]
    pub manager: String,
    /// `Apply` or `Update`.
    #[serde(default)]
    pub operation: String,
    /// The API version the fields are named in.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    /// RFC 3339 time the manager's set last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// The format of `fieldsV1` (always `FieldsV1`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fields_type: String,
    /// The owned fields as a FieldsV1 tree (`{"f:spec": {"f:replicas": {}}}`).
    #[serde(
        default,
        rename = "fieldsV1",
        skip_serializing_if = "serde_json::Value::is_null"
    )]
    pub fields_v1: serde_json::Value,
    /// The subresource the operation wrote (`scale`, `status`), empty for the object.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subresource: String,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// A reference from an object to its owner.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnerReference {
    /// Owner's apiVersion.
    pub api_version: String,
    /// Owner's kind.
    pub kind: String,
    /// Owner's name.
    pub name: String,
    /// Owner's uid.
    #[serde(default)]
    pub uid: String,
    /// Whether the owner is the managing controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<bool>,
    /// Whether deletion of the owner waits for this object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_owner_deletion: Option<bool>,
}

impl OwnerReference {
    /// A reference to `owner` (of `kind` at `api_version`) as the controller that manages the
    /// object, which its deletion waits for.
    pub fn controller(api_version: &str, kind: &str, owner: &ObjectMeta) -> Self {
        Self {
            api_version: api_version.into(),
            kind: kind.into(),
            name: owner.name.clone(),
            uid: owner.uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }
}

/// The finalizer of a foreground cascading delete: the object goes once its dependents have.
pub const FOREGROUND_DELETION: &str = "foregroundDeletion";

impl ObjectMeta {
    /// Whether the object is being deleted in the foreground (waiting for its dependents).
    pub fn deleting_in_foreground(&self) -> bool {
        self.deletion_timestamp.is_some()
            && self.finalizers.iter().any(|f| f == FOREGROUND_DELETION)
    }

    /// The namespace, with the empty namespace read as `default`.
    pub fn namespace(&self) -> &str {
        if self.namespace.is_empty() {
            "default"
        } else {
            &self.namespace
        }
    }
}

/// A value that is either a number or a name, like Kubernetes' `IntOrString`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    /// A number.
    Int(i64),
    /// A name (a port name) or a percentage such as `25%`.
    String(String),
}

/// A label query: all of `matchLabels` and all of `matchExpressions` must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Exact label matches.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Set-based requirements.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One set-based label requirement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelectorRequirement {
    /// Label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// Values for `In`/`NotIn`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

impl LabelSelector {
    /// Whether `labels` satisfy this selector (an empty selector matches everything).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|req| {
                let value = labels.get(&req.key);
                match req.operator.as_str() {
                    "In" => value.is_some_and(|v| req.values.contains(v)),
                    "NotIn" => value.is_none_or(|v| !req.values.contains(v)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    _ => false,
                }
            })
    }
}

/// Whether a plain `key=value` map selects `labels` (a Service's selector).
pub fn map_selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A parsed `-l` style selector: `a=b,c!=d,e,!f,g in (x,y)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectorQuery {
    terms: Vec<SelectorTerm>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SelectorTerm {
    Eq(String, String),
    NotEq(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

impl SelectorQuery {
    /// Parses a kubectl-style label selector string.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        for raw in split_top_level(s) {
            let t = raw.trim();
            if t.is_empty() {
                continue;
            }
            let term = if let Some((k, rest)) = t.split_once(" notin ") {
                SelectorTerm::NotIn(k.trim().to_string(), parse_set(rest)?)
            } else if let Some((k, rest)) = t.split_once(" in ") {
                SelectorTerm::In(k.trim().to_string(), parse_set(rest)?)
            } else if let Some((k, v)) = t.split_once("!=") {
                SelectorTerm::NotEq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
                SelectorTerm::Eq(k.trim().into(), v.trim().into())
            } else if let Some(k) = t.strip_prefix('!') {
                SelectorTerm::NotExists(k.trim().into())
            } else {
                SelectorTerm::Exists(t.into())
            };
            let key = match &term {
                SelectorTerm::Eq(k, _)
                | SelectorTerm::NotEq(k, _)
                | SelectorTerm::Exists(k)
                | SelectorTerm::NotExists(k)
                | SelectorTerm::In(k, _)
                | SelectorTerm::NotIn(k, _) => k,
            };
            if key.is_empty() || key.contains(char::is_whitespace) {
                return Err(format!("invalid label selector term {t:?}"));
            }
            terms.push(term);
        }
        Ok(Self { terms })
    }

    /// Whether `labels` satisfy every term.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.terms.iter().all(|t| match t {
            SelectorTerm::Eq(k, v) => labels.get(k) == Some(v),
            SelectorTerm::NotEq(k, v) => labels.get(k) != Some(v),
            SelectorTerm::Exists(k) => labels.contains_key(k),
            SelectorTerm::NotExists(k) => !labels.contains_key(k),
            SelectorTerm::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            SelectorTerm::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
        })
    }
}

fn split_top_level(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn parse_set(s: &str) -> Result<Vec<String>, String> {
    let inner = s
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("expected (a,b,...) in label selector, got {s:?}"))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

/// A reference to another object, as in `EndpointSlice.endpoints[].targetRef`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    /// Referent apiVersion.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    /// Referent kind.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Referent namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Referent name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Referent uid.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// Referent resourceVersion.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    /// The part of the referent meant (`spec.containers{web}`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub field_path: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selector_query_terms() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        assert!(SelectorQuery::parse("app=web").unwrap().matches(&l));
        assert!(SelectorQuery::parse("app==web,tier").unwrap().matches(&l));
        assert!(!SelectorQuery::parse("app!=web").unwrap().matches(&l));
        assert!(SelectorQuery::parse("!track").unwrap().matches(&l));
        assert!(SelectorQuery::parse("tier in (front, back)")
            .unwrap()
            .matches(&l));
        assert!(!SelectorQuery::parse("tier notin (front),app=web")
            .unwrap()
            .matches(&l));
        assert!(SelectorQuery::parse("tier in front").is_err());
    }

    #[test]
    fn label_selector_expressions() {
        let sel = LabelSelector {
            match_labels: labels(&[("app", "web")]),
            match_expressions: vec![LabelSelectorRequirement {
                key: "track".into(),
                operator: "NotIn".into(),
                values: vec!["canary".into()],
            }],
        };
        assert!(sel.matches(&labels(&[("app", "web")])));
        assert!(!sel.matches(&labels(&[("app", "web"), ("track", "canary")])));
        assert!(!sel.matches(&labels(&[("app", "api")])));
    }
}

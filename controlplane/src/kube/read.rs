//! Reads on the Kubernetes API: get one object, list a kind (in a namespace or across all),
//! with label selectors and the field selectors a real API server supports for the kind.
//! Objects go out in their wire form, at the group version the request named; `page.rs`
//! cuts lists into pages.

use std::sync::Arc;

use serde_json::{json, Value};

use super::catalog::Resource;
use super::status::{self, Failure};
use crate::store::Store;
use pier_model::{Kind, Object, SelectorQuery};

/// A field selector: terms that must all hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parses `a=b,c!=d,e==f` for `kind`, refusing fields the API server does not index.
    pub(crate) fn parse(kind: Kind, text: &str) -> Result<FieldSelector, Failure> {
        let mut terms = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, true, v)
            } else {
                return Err(bad(format!("invalid field selector term {term:?}")));
            };
            let field = field.trim();
            if !supported(kind, field) {
                return Err(bad(format!(
                    "field label not supported: {field} (for {})",
                    kind.plural()
                )));
            }
            // The API server's `source` selects on the reporting component.
            let field = if kind == Kind::Event && field == "source" {
                "source.component"
            } else {
                field
            };
            terms.push((field.to_string(), equal, value.trim().to_string()));
        }
        Ok(FieldSelector(terms))
    }

    fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(field, equal, want)| {
            let got = field
                .split('.')
                .try_fold(object, |v, part| v.get(part))
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                })
                .unwrap_or_default();
            (got == *want) == *equal
        })
    }
}

/// The fields a real API server lets clients select `kind` by.
fn supported(kind: Kind, field: &str) -> bool {
    if matches!(field, "metadata.name" | "metadata.namespace") {
        return true;
    }
    match kind {
        Kind::Pod => matches!(
            field,
            "spec.nodeName"
                | "spec.restartPolicy"
                | "spec.schedulerName"
                | "spec.serviceAccountName"
                | "spec.hostNetwork"
                | "status.phase"
                | "status.podIP"
                | "status.nominatedNodeName"
        ),
        Kind::Node => field == "spec.unschedulable",
        Kind::Namespace => field == "status.phase",
        Kind::Service => matches!(field, "spec.type" | "spec.clusterIP"),
        Kind::Secret => field == "type",
        Kind::Event => matches!(
            field,
            "involvedObject.kind"
                | "involvedObject.namespace"
                | "involvedObject.name"
                | "involvedObject.uid"
                | "involvedObject.apiVersion"
                | "involvedObject.resourceVersion"
                | "involvedObject.fieldPath"
                | "regarding.kind"
                | "regarding.namespace"
                | "regarding.name"
                | "regarding.uid"
                | "reason"
                | "reportingController"
                | "reportingComponent"
                | "source"
                | "type"
        ),
        _ => false,
    }
}

fn bad(message: String) -> Failure {
    status::failure(hyper::StatusCode::BAD_REQUEST, "BadRequest", message, None)
}

/// An object in its wire form at `resource`'s group version.
pub(crate) fn wire(resource: &Resource, object: &Object) -> Value {
    let mut value = object.to_value();
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), json!(resource.api_version()));
        map.insert("kind".into(), json!(resource.kind.as_str()));
    }
    super::convert::to_served(resource, value)
}

/// `GET` one object.
pub(crate) async fn get(
    store: &Arc<Store>,
    resource: Resource,
    namespace: &str,
    name: &str,
) -> Result<Value, Failure> {
    find(store, resource, namespace, name)
        .await?
        .ok_or_else(|| status::not_found(resource.plural, name))
}

/// One object in its wire form, or `None` when there is none (a write's live object).
pub(crate) async fn find(
    store: &Arc<Store>,
    resource: Resource,
    namespace: &str,
    name: &str,
) -> Result<Option<Value>, Failure> {
    let (store, ns, n) = (Arc::clone(store), namespace.to_string(), name.to_string());
    let found = blocking(move || store.get(resource.kind, &ns, &n)).await?;
    Ok(found.map(|object| wire(&resource, &object)))
}

/// The label and field selectors of a request.
#[derive(Debug, Clone, Default)]
pub(crate) struct Selectors {
    labels: Option<SelectorQuery>,
    fields: Option<FieldSelector>,
}

impl Selectors {
    /// Reads `labelSelector` and `fieldSelector` for `kind`; a malformed one is a `400`.
    pub(crate) fn parse(
        kind: Kind,
        query: &std::collections::HashMap<String, String>,
    ) -> Result<Selectors, Failure> {
        let labels = query
            .get("labelSelector")
            .filter(|s| !s.is_empty())
            .map(|s| SelectorQuery::parse(s))
            .transpose()
            .map_err(|e| bad(format!("labelSelector: {e}")))?;
        let fields = query
            .get("fieldSelector")
            .map(|f| FieldSelector::parse(kind, f))
            .transpose()?;
        Ok(Selectors { labels, fields })
    }

    /// Whether `object` (and its wire form) is selected.
    pub(crate) fn selects(&self, object: &Object, wire: &Value) -> bool {
        self.labels
            .as_ref()
            .is_none_or(|l| l.matches(&object.meta().labels))
            && self.fields.as_ref().is_none_or(|f| f.matches(wire))
    }
}

/// `GET` a collection: every object of the kind, in `namespace` if given, that the
/// selectors select.
pub(crate) async fn list(
    store: &Arc<Store>,
    resource: Resource,
    namespace: Option<&str>,
    selectors: &Selectors,
) -> Result<Value, Failure> {
    let (store, ns, labels) = (
        Arc::clone(store),
        namespace.map(str::to_string),
        selectors.labels.clone(),
    );
    let (objects, revision) =
        blocking(move || store.list(resource.kind, ns.as_deref(), labels.as_ref())).await?;
    let items: Vec<Value> = objects
        .iter()
        .map(|o| wire(&resource, o))
        .filter(|v| selectors.fields.as_ref().is_none_or(|f| f.matches(v)))
        .collect();
    Ok(json!({
        "apiVersion": resource.api_version(),
        "kind": format!("{}List", resource.kind.as_str()),
        "metadata": {"resourceVersion": revision.to_string()},
        "items": items,
    }))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::Result<T> + Send + 'static,
) -> Result<T, Failure> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(|e| status::from_error(&e)),
        Err(e) => Err(status::from_error(&crate::Error::store_from(
            "an API worker",
            e,
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_selectors_as_the_api_server_takes_them() {
        let pod = json!({"metadata": {"name": "a", "namespace": "x"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let sel =
            FieldSelector::parse(Kind::Pod, "spec.nodeName=n1,status.phase!=Pending").unwrap();
        assert!(sel.matches(&pod));
        let sel = FieldSelector::parse(Kind::Pod, "metadata.namespace==y").unwrap();
        assert!(!sel.matches(&pod));
        let unset = FieldSelector::parse(Kind::Pod, "status.podIP=").unwrap();
        assert!(unset.matches(&pod), "an unset field selects as empty");
        let event = json!({"involvedObject": {"kind": "Pod", "name": "a", "uid": "u1"},
                           "source": {"component": "kubelet"}, "type": "Warning"});
        let sel = FieldSelector::parse(
            Kind::Event,
            "involvedObject.kind=Pod,involvedObject.name=a,involvedObject.uid=u1,source=kubelet",
        )
        .unwrap();
        assert!(sel.matches(&event));
        assert!(!FieldSelector::parse(Kind::Event, "type=Normal")
            .unwrap()
            .matches(&event));
        let err = FieldSelector::parse(Kind::Service, "spec.nodeName=n1").unwrap_err();
        assert_eq!(err.code, hyper::StatusCode::BAD_REQUEST);
        assert!(FieldSelector::parse(Kind::Pod, "nonsense").is_err());
    }
}

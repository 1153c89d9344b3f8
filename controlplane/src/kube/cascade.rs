//! What a DELETE does to the object's dependents, by its `propagationPolicy` (DeleteOptions,
//! or the older `orphanDependents`). `Background`, kubectl's default, deletes the object and
//! leaves the dependents to its controller's cleanup (the Deployment controller terminates the
//! pods of a Deployment that is gone and deletes its ReplicaSets). `Orphan` leaves them be: a
//! Deployment's pods lose the label that ties them to it in the same transaction as the delete,
//! so they keep running with no controller; its ReplicaSets, records of its revisions, go with
//! it. The orphaning is two writes, as the API server's garbage collector does it: the
//! Deployment is first marked for deletion (`deletionTimestamp`), which stops its controller,
//! then its pods are released and it is deleted in one transaction; a controller pass between
//! any two events sees a Deployment that is going, and neither replaces nor terminates pods.
//! `Foreground` waits on finalizers, which pier does not keep: it is refused with that
//! reason rather than carried out as another policy.

use hyper::StatusCode;
use pier_model::{Kind, Object};
use serde_json::Value;

use super::status::{self, Failure};
use crate::controllers::deployment::DEPLOYMENT_LABEL;
use crate::store::{Op, Store};

/// How a delete treats dependents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    /// Delete the object; its controller cleans up after it.
    Background,
    /// Delete the object; its dependents stay, without an owner.
    Orphan,
}

/// The policy a DeleteOptions body asks for.
pub(crate) fn policy(options: &Value) -> Result<Policy, Failure> {
    let orphan = options.get("orphanDependents").and_then(Value::as_bool);
    match options.get("propagationPolicy").and_then(Value::as_str) {
        None if orphan == Some(true) => Ok(Policy::Orphan),
        None | Some("Background") => Ok(Policy::Background),
        Some("Orphan") => Ok(Policy::Orphan),
        Some("Foreground") => Err(status::failure(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "propagationPolicy: Foreground is not supported: pier keeps no finalizers to hold the \
             object until its dependents are gone; use Background (the default) or Orphan",
            None,
        )),
        Some(other) => Err(status::failure(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("propagationPolicy: unknown value {other:?}: Background, Orphan or Foreground"),
            None,
        )),
    }
}

/// The object marked as being deleted, to write before its dependents are released (an
/// orphaning delete of a Deployment), with the version it was read at; `None` when the
/// delete needs no such step.
pub(crate) fn mark(
    store: &Store,
    kind: Kind,
    namespace: &str,
    name: &str,
    policy: Policy,
) -> crate::Result<Option<Object>> {
    if policy != Policy::Orphan || kind != Kind::Deployment {
        return Ok(None);
    }
    let Some(mut object) = store.get(kind, namespace, name)? else {
        return Ok(None);
    };
    if object.meta().deletion_timestamp.is_some() {
        return Ok(None);
    }
    object.meta_mut().deletion_timestamp =
        Some(humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string());
    Ok(Some(object))
}

/// The writes that go with deleting `kind` `namespace`/`name` under `policy`, in the same
/// transaction: for an orphaned Deployment, its pods without the Deployment's label (each
/// conditional on the pod as read) and its ReplicaSets deleted.
pub(crate) fn dependents(
    store: &Store,
    kind: Kind,
    namespace: &str,
    name: &str,
    policy: Policy,
) -> crate::Result<Vec<Op>> {
    if policy != Policy::Orphan || kind != Kind::Deployment {
        return Ok(Vec::new());
    }
    let mut ops = Vec::new();
    for object in store.list(Kind::Pod, Some(namespace), None)?.0 {
        if let Object::Pod(mut pod) = object {
            if pod
                .metadata
                .labels
                .get(DEPLOYMENT_LABEL)
                .map(String::as_str)
                == Some(name)
            {
                pod.metadata.labels.remove(DEPLOYMENT_LABEL);
                ops.push(Op::Put(Object::Pod(pod)));
            }
        }
    }
    for object in store.list(Kind::ReplicaSet, Some(namespace), None)?.0 {
        let owned = object
            .meta()
            .owner_references
            .iter()
            .any(|o| o.kind == "Deployment" && o.name == name && o.controller == Some(true));
        if owned {
            ops.push(Op::remove(Kind::ReplicaSet, namespace, &object.meta().name));
        }
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn policies_read_as_the_api_server_reads_them() {
        assert_eq!(policy(&Value::Null).unwrap(), Policy::Background);
        assert_eq!(
            policy(&json!({"propagationPolicy": "Background"})).unwrap(),
            Policy::Background
        );
        assert_eq!(
            policy(&json!({"propagationPolicy": "Orphan"})).unwrap(),
            Policy::Orphan
        );
        assert_eq!(
            policy(&json!({"orphanDependents": true})).unwrap(),
            Policy::Orphan
        );
        let foreground = policy(&json!({"propagationPolicy": "Foreground"})).unwrap_err();
        assert_eq!(foreground.code, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            policy(&json!({"propagationPolicy": "Later"}))
                .unwrap_err()
                .code,
            StatusCode::BAD_REQUEST
        );
    }
}

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
//! `Foreground` marks the object (`deletionTimestamp` and the `foregroundDeletion`
//! finalizer) and leaves it to `controllers/foreground.rs`, which deletes it once its
//! dependents are gone. An object with finalizers of its own is only marked, whatever the
//! policy: it goes when the last is removed (`write.rs`).

use std::sync::Arc;

use hyper::StatusCode;
use pier_model::job::TRACKING_FINALIZER;
use pier_model::meta::FOREGROUND_DELETION;
use pier_model::{Kind, Object};
use serde_json::Value;

use super::read::wire;
use super::status::{self, Failure};
use super::write::{conflict_or, write, Target, Written};
use crate::controllers::deployment::DEPLOYMENT_LABEL;
use crate::store::{Op, Store};

/// How a delete treats dependents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    /// Delete the object; its controller cleans up after it.
    Background,
    /// Delete the object; its dependents stay, without an owner.
    Orphan,
    /// Delete the dependents first, then the object.
    Foreground,
}

/// The policy a DeleteOptions body asks for.
pub(crate) fn policy(options: &Value) -> Result<Policy, Failure> {
    let orphan = options.get("orphanDependents").and_then(Value::as_bool);
    match options.get("propagationPolicy").and_then(Value::as_str) {
        None if orphan == Some(true) => Ok(Policy::Orphan),
        None | Some("Background") => Ok(Policy::Background),
        Some("Orphan") => Ok(Policy::Orphan),
        Some("Foreground") => Ok(Policy::Foreground),
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
    let owns = matches!(
        kind,
        Kind::Deployment | Kind::Job | Kind::CronJob | Kind::DaemonSet
    );
    if policy != Policy::Orphan || !owns {
        return Ok(None);
    }
    let Some(mut object) = store.get(kind, namespace, name)? else {
        return Ok(None);
    };
    if object.meta().deletion_timestamp.is_some() {
        return Ok(None);
    }
    object.meta_mut().deletion_timestamp = Some(crate::store::now_rfc3339());
    Ok(Some(object))
}

/// The object marked for a deletion that does not happen at once: a foreground delete (with
/// the `foregroundDeletion` finalizer added), or any delete of an object with finalizers;
/// `None` when the object can go now. A held pod is given its grace period: its node stops
/// it, and it goes once that is done and no finalizer is left (`write.rs`).
pub(crate) fn held(mut object: Object, policy: Policy) -> Option<Object> {
    let kind = object.kind();
    let grace = match &object {
        Object::Pod(pod) if pod.spec.node_name.is_none() => Some(0),
        Object::Pod(pod) => Some(
            pod.spec
                .termination_grace_period_seconds
                .unwrap_or(DEFAULT_POD_GRACE_SECONDS),
        ),
        _ => None,
    };
    let meta = object.meta_mut();
    let foreground = policy == Policy::Foreground && kind != Kind::Pod;
    if foreground && !meta.finalizers.iter().any(|f| f == FOREGROUND_DELETION) {
        meta.finalizers.push(FOREGROUND_DELETION.to_string());
    }
    if meta.finalizers.is_empty() {
        return None;
    }
    if meta.deletion_timestamp.is_none() {
        meta.deletion_timestamp = Some(crate::store::now_rfc3339());
        meta.deletion_grace_period_seconds = grace;
    }
    Some(object)
}

/// A pod's `terminationGracePeriodSeconds` when its spec gives none (the API server's default).
const DEFAULT_POD_GRACE_SECONDS: i64 = 30;

/// The writes that go with deleting `kind` `namespace`/`name` under `policy`, in the same
/// transaction: an orphaned Deployment's, Job's or CronJob's dependents released from it.
pub(crate) fn dependents(
    store: &Store,
    kind: Kind,
    namespace: &str,
    name: &str,
    policy: Policy,
) -> crate::Result<Vec<Op>> {
    if policy != Policy::Orphan {
        return Ok(Vec::new());
    }
    match kind {
        Kind::Deployment => orphan_deployment(store, namespace, name),
        Kind::Job => release(store, Kind::Pod, "Job", namespace, name),
        Kind::CronJob => release(store, Kind::Job, "CronJob", namespace, name),
        Kind::DaemonSet => release(store, Kind::Pod, "DaemonSet", namespace, name),
        _ => Ok(Vec::new()),
    }
}

/// The `dependent`s controlled by `owner_kind` `name`, without that `ownerReference` (and a
/// pod without the Job's tracking finalizer), each conditional on the object as read: they
/// stay, with no controller.
fn release(
    store: &Store,
    dependent: Kind,
    owner_kind: &str,
    namespace: &str,
    name: &str,
) -> crate::Result<Vec<Op>> {
    let mut ops = Vec::new();
    for mut object in store.list(dependent, Some(namespace), None)?.0 {
        let meta = object.meta_mut();
        let before = meta.owner_references.len();
        meta.owner_references
            .retain(|o| !(o.kind == owner_kind && o.name == name && o.controller == Some(true)));
        if meta.owner_references.len() != before {
            meta.finalizers.retain(|f| f != TRACKING_FINALIZER);
            ops.push(Op::Put(object));
        }
    }
    Ok(ops)
}

/// A Deployment's pods without its label, and its ReplicaSets deleted.
fn orphan_deployment(store: &Store, namespace: &str, name: &str) -> crate::Result<Vec<Op>> {
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

/// A delete that marks rather than removes (a foreground delete, or an object with
/// finalizers): the object as marked, answered 200 as the API server answers it; `None` when
/// the object can go now.
pub(crate) async fn hold(
    store: &Arc<Store>,
    t: &Target<'_>,
    name: &str,
    policy: Policy,
    resource_version: Option<&str>,
) -> Result<Option<Written>, Failure> {
    let (kind, namespace, owner) = (
        t.resource.kind,
        t.namespace.unwrap_or("").to_string(),
        name.to_string(),
    );
    let found = store
        .blocking("reading an object to delete", move |s| {
            s.get(kind, &namespace, &owner)
        })
        .await
        .map_err(|e| status::from_error(&e))?;
    let Some(mut held) = found.and_then(|o| held(o, policy)) else {
        return Ok(None);
    };
    if let Some(rv) = resource_version {
        held.meta_mut().resource_version = rv.to_string();
    }
    let marked = write(store, Op::Put(held))
        .await
        .map_err(|e| conflict_or(&e, t.resource.plural, name))?;
    Ok(Some(Written {
        code: StatusCode::OK,
        body: wire(&t.resource, &marked),
        warnings: Vec::new(),
    }))
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
        assert_eq!(
            policy(&json!({"propagationPolicy": "Foreground"})).unwrap(),
            Policy::Foreground
        );
        assert_eq!(
            policy(&json!({"propagationPolicy": "Later"}))
                .unwrap_err()
                .code,
            StatusCode::BAD_REQUEST
        );
    }
}

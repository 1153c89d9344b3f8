//! Foreground cascading deletion, after the API server's garbage collector: an object deleted
//! with `propagationPolicy: Foreground` stays, marked by `deletionTimestamp` and the
//! `foregroundDeletion` finalizer, while its dependents go; then the finalizer is removed and,
//! with no other finalizer left, the object is deleted. Dependents are the objects whose
//! `ownerReferences` name it (ReplicaSets, EndpointSlices, AnalysisRuns, managed routes) and
//! the pods of a Deployment or Rollout (tied to it by pier's label). Their own controllers
//! treat an owner being deleted in the foreground as gone and let its pods go gracefully;
//! this controller deletes what no controller would, and waits for the rest.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use pier_model::meta::FOREGROUND_DELETION;
use pier_model::{Kind, Object};

use super::deployment::DEPLOYMENT_LABEL;
use super::owned_pods::terminating;
use super::runner::{Reconciled, Reconciler};
use super::ROLLOUT_LABEL;
use crate::store::{EventType, Op, Store};

/// An object being deleted in the foreground: (kind, namespace, name).
type Key = (Kind, String, String);

/// How often an owner whose dependents are still going is looked at, events or not.
const RECHECK: Duration = Duration::from_secs(1);

/// The kinds followed: those only owners first, then those that can be dependents.
const KINDS: &[Kind] = &[
    Kind::Deployment,
    Kind::Rollout,
    Kind::Service,
    Kind::CronJob,
    Kind::DaemonSet,
    Kind::Job,
    Kind::ReplicaSet,
    Kind::Pod,
    Kind::EndpointSlice,
    Kind::AnalysisRun,
    Kind::HttpRoute,
    Kind::TcpRoute,
    Kind::UdpRoute,
];

/// The kinds an owner's dependents can be (named by their `ownerReferences`, or a
/// workload's pods).
const DEPENDENT_KINDS: &[Kind] = KINDS.split_at(5).1;

/// Finishes foreground deletes (leader work).
pub struct ForegroundDeletion {
    store: Arc<Store>,
    /// Owners being deleted in the foreground.
    owners: BTreeSet<Key>,
}

impl ForegroundDeletion {
    /// A controller writing to `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            owners: BTreeSet::new(),
        }
    }
}

impl Reconciler for ForegroundDeletion {
    type Key = Key;

    fn name(&self) -> &'static str {
        "foreground-deletion"
    }

    fn kinds(&self) -> &'static [Kind] {
        KINDS
    }

    fn observe(&mut self, event_type: EventType, object: &Object, dirty: &mut BTreeSet<Key>) {
        let meta = object.meta();
        let namespace = meta.namespace().to_string();
        let key = (object.kind(), namespace.clone(), meta.name.clone());
        if event_type != EventType::Deleted && meta.deleting_in_foreground() {
            self.owners.insert(key);
        } else {
            self.owners.remove(&key);
        }
        // Any change in the namespace may be a dependent going.
        dirty.extend(self.owners.iter().filter(|k| k.1 == namespace).cloned());
    }

    async fn reconcile(&mut self, keys: BTreeSet<Key>) -> Reconciled<Key> {
        let mut result = Reconciled::default();
        for key in keys {
            let job = key.clone();
            let pass = self
                .store
                .blocking("finishing a foreground delete", move |s| step(s, &job))
                .await;
            match pass {
                Ok(true) => result.requeue.push((key, RECHECK)),
                Ok(false) => {}
                Err(e) => result.failed.push((key, crate::error::chain(&e))),
            }
        }
        result
    }
}

/// One step of `key`'s foreground delete; whether dependents are still going.
fn step(store: &Store, key: &Key) -> crate::Result<bool> {
    let (kind, namespace, name) = key;
    let Some(owner) = store.get(*kind, namespace, name)? else {
        return Ok(false);
    };
    if !owner.meta().deleting_in_foreground() {
        return Ok(false);
    }
    let dependents = dependents(store, &owner)?;
    if dependents.is_empty() {
        store.write(vec![finish(owner)])?;
        return Ok(false);
    }
    let ops: Vec<Op> = dependents
        .iter()
        .filter_map(|d| match d {
            // A workload's pods are let go by its own controller.
            Object::Pod(p) if p.is_terminating() || workload_pod(p) => None,
            Object::Pod(p) => Some(terminating(p)),
            other if other.meta().deletion_timestamp.is_some() => None,
            other => Some(Op::remove(
                other.kind(),
                other.meta().namespace(),
                &other.meta().name,
            )),
        })
        .collect();
    if !ops.is_empty() {
        store.write(ops)?;
    }
    Ok(true)
}

/// Whether a Deployment's or Rollout's controller manages `pod`.
fn workload_pod(pod: &pier_model::Pod) -> bool {
    [DEPLOYMENT_LABEL, ROLLOUT_LABEL]
        .iter()
        .any(|l| pod.metadata.labels.contains_key(*l))
}

/// The objects that must go before `owner` does.
fn dependents(store: &Store, owner: &Object) -> crate::Result<Vec<Object>> {
    let meta = owner.meta();
    let namespace = meta.namespace();
    let label = match owner.kind() {
        Kind::Deployment => Some(DEPLOYMENT_LABEL),
        Kind::Rollout => Some(ROLLOUT_LABEL),
        _ => None,
    };
    let mut found = Vec::new();
    for kind in DEPENDENT_KINDS {
        for object in store.list(*kind, Some(namespace), None)?.0 {
            let m = object.meta();
            let owned = m.owner_references.iter().any(|r| r.uid == meta.uid)
                || (*kind == Kind::Pod
                    && label.is_some_and(|l| m.labels.get(l) == Some(&meta.name)));
            if owned {
                found.push(object);
            }
        }
    }
    Ok(found)
}

/// `owner` without the `foregroundDeletion` finalizer: deleted when no other remains,
/// conditional on the version read.
fn finish(mut owner: Object) -> Op {
    let kind = owner.kind();
    let meta = owner.meta_mut();
    meta.finalizers.retain(|f| f != FOREGROUND_DELETION);
    if !meta.finalizers.is_empty() {
        return Op::Put(owner);
    }
    Op::Delete {
        kind,
        namespace: meta.namespace().to_string(),
        name: meta.name.clone(),
        resource_version: Some(meta.resource_version.clone()),
        must_exist: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;
    use serde_json::json;

    fn object(value: serde_json::Value) -> Object {
        Object::from_value(value).expect("valid").object
    }

    #[test]
    fn dependents_go_first_then_the_owner_then_only_when_no_finalizer_is_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("s.redb"), StoreConfig::default()).expect("store");
        let svc = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "finalizers": ["example.com/keep"]},
            "spec": {"ports": [{"port": 80}]}});
        let written = store.write(vec![Op::Put(object(svc))]).expect("service");
        let uid = written[0]
            .object
            .as_ref()
            .expect("written")
            .meta()
            .uid
            .clone();
        let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-1", "labels": {"kubernetes.io/service-name": "web"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "web", "uid": uid}]},
            "addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"]}], "ports": [{"port": 80}]});
        store.write(vec![Op::Put(object(slice))]).expect("slice");
        let key = (Kind::Service, "default".to_string(), "web".to_string());
        assert!(
            !step(&store, &key).expect("step"),
            "not being deleted: nothing to do"
        );

        let mut marked = store
            .get(Kind::Service, "default", "web")
            .expect("get")
            .expect("svc");
        marked.meta_mut().deletion_timestamp = Some("2026-12-03T10:00:00Z".into());
        marked
            .meta_mut()
            .finalizers
            .push(FOREGROUND_DELETION.into());
        store.write(vec![Op::Put(marked)]).expect("mark");
        assert!(
            step(&store, &key).expect("step"),
            "its slice is still going"
        );
        assert!(store
            .get(Kind::EndpointSlice, "default", "web-1")
            .expect("get")
            .is_none());
        assert!(!step(&store, &key).expect("step"));
        let kept = store
            .get(Kind::Service, "default", "web")
            .expect("get")
            .expect("held");
        assert_eq!(
            kept.meta().finalizers,
            ["example.com/keep"],
            "another finalizer holds it"
        );
        assert!(kept.meta().deletion_timestamp.is_some());
    }
}

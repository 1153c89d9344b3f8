//! How this node writes the pods it runs. Its writes carry what the node owns (status,
//! `spec.nodeName`, the engine's annotations, the deletion mark) onto the object as stored, so
//! a change someone else made meanwhile (labels, finalizers, a delete begun) is kept, as the
//! kubelet's status-only writes keep it. And how a pod ends once its containers are gone:
//! deleted, or, while finalizers hold it, kept with its containers stopped
//! (`deletionGracePeriodSeconds: 0`) until the last is removed, when the API deletes it.

use std::sync::Arc;

use pier_controlplane::store::Store;
use pier_model::pod::{CONTAINER_ANNOTATION, ERROR_ANNOTATION, RESTARTS_ANNOTATION};
use pier_model::{Kind, Object, Pod};

use super::{blocking, lock, Node, NODE_ANNOTATION};
use crate::error::Result;

/// The annotations the node writes: its own copy says whether each is there.
const NODE_OWNED: [&str; 4] = [
    NODE_ANNOTATION,
    CONTAINER_ANNOTATION,
    RESTARTS_ANNOTATION,
    ERROR_ANNOTATION,
];

/// Tries of a write that lost a race with another writer before it gives up.
const ATTEMPTS: usize = 5;

impl Node {
    /// Writes a pod this node owns: what the node owns, onto the object as stored.
    pub(super) async fn write(&self, pod: &Pod) -> Result<()> {
        let key = (
            pod.metadata.namespace().to_string(),
            pod.metadata.name.clone(),
        );
        // Recorded first: an event of an earlier write that comes in meanwhile must not
        // look like someone else's change (see `restore_ready`).
        if let Some(handle) = lock(&self.pods).get_mut(&key) {
            handle.written_ready = Some(pod.is_ready());
        }
        let store = Arc::clone(&self.store);
        let ours = pod.clone();
        blocking(move || {
            write_onto_stored(&store, &ours, Some(&ours), |stored| {
                Some(merged(stored, &ours))
            })
        })
        .await
    }

    /// Ends a pod whose containers have stopped and been removed: deletes it, or, while
    /// finalizers hold it, marks it stopped (`deletionGracePeriodSeconds: 0`, not ready, its
    /// final phase) for the API to delete when the last finalizer goes.
    pub(super) async fn finish(&self, pod: &Pod) -> Result<()> {
        let store = Arc::clone(&self.store);
        let ours = pod.clone();
        blocking(move || {
            write_onto_stored(&store, &ours, None, |stored| {
                if stored.metadata.finalizers.is_empty() {
                    return None;
                }
                let mut held = merged(stored, &ours);
                if held.metadata.deletion_timestamp.is_none() {
                    held.metadata.deletion_timestamp =
                        Some(pier_controlplane::store::now_rfc3339());
                }
                held.metadata.deletion_grace_period_seconds = Some(0);
                super::pod_work::set_ready(&mut held, false);
                Some(held)
            })
        })
        .await
    }
}

/// Writes `change(stored)` conditionally on the stored version, again when another write
/// came in between; a delete when `change` gives `None`; `absent` (if any) when the pod is
/// not stored.
fn write_onto_stored(
    store: &Store,
    ours: &Pod,
    absent: Option<&Pod>,
    change: impl Fn(Pod) -> Option<Pod>,
) -> pier_controlplane::Result<()> {
    let (namespace, name) = (ours.metadata.namespace(), ours.metadata.name.as_str());
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let stored = match store.get(Kind::Pod, namespace, name)? {
            Some(Object::Pod(stored)) => stored,
            _ => {
                let Some(pod) = absent else {
                    return Ok(());
                };
                let mut pod = pod.clone();
                pod.metadata.resource_version.clear();
                return store.apply(vec![Object::Pod(pod)]).map(drop);
            }
        };
        let version = stored.metadata.resource_version.clone();
        let written = match change(stored) {
            Some(pod) => store.apply(vec![Object::Pod(pod)]).map(drop),
            None => store
                .delete(Kind::Pod, namespace, name, Some(version))
                .map(drop),
        };
        match written {
            Err(e @ pier_controlplane::Error::Conflict(_)) => last = Some(e),
            Err(pier_controlplane::Error::NotFound { .. }) => return Ok(()),
            other => return other,
        }
    }
    Err(last.unwrap_or_else(|| pier_controlplane::Error::store("pod write: no attempt made")))
}

/// `stored` with what this node owns taken from `ours`; conditional on the stored version.
fn merged(mut stored: Pod, ours: &Pod) -> Pod {
    stored.status = ours.status.clone();
    if ours.spec.node_name.is_some() {
        stored.spec.node_name.clone_from(&ours.spec.node_name);
    }
    for key in NODE_OWNED {
        match ours.metadata.annotations.get(key) {
            Some(value) => stored
                .metadata
                .annotations
                .insert(key.to_string(), value.clone()),
            None => stored.metadata.annotations.remove(key),
        };
    }
    if stored.metadata.deletion_timestamp.is_none() {
        stored
            .metadata
            .deletion_timestamp
            .clone_from(&ours.metadata.deletion_timestamp);
    }
    stored
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_status_write_keeps_what_others_changed_and_carries_what_the_node_owns() {
        let stored = pod(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "web", "resourceVersion": "7", "labels": {"app": "web"},
                "finalizers": ["example.com/keep"],
                "deletionTimestamp": "2026-12-05T10:00:00Z",
                "annotations": {"pier.dev/error": "old", "note": "theirs"}
            },
            "spec": {"containers": [{"name": "web", "image": "echo"}]}
        }));
        let ours = pod(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "web", "labels": {"app": "web", "gone": "yes"},
                "annotations": {"pier.dev/node": "n1", "pier.dev/restarts": "2"}
            },
            "spec": {"nodeName": "n1", "containers": [{"name": "web", "image": "echo"}]},
            "status": {"phase": "Running"}
        }));
        let out = merged(stored, &ours);
        assert_eq!(out.metadata.resource_version, "7", "conditional");
        assert_eq!(out.metadata.labels.len(), 1, "labels as stored");
        assert_eq!(out.metadata.finalizers, ["example.com/keep"]);
        assert!(out.metadata.deletion_timestamp.is_some());
        assert_eq!(out.metadata.annotations["pier.dev/node"], "n1");
        assert_eq!(out.metadata.annotations["pier.dev/restarts"], "2");
        assert_eq!(out.metadata.annotations["note"], "theirs");
        assert!(!out.metadata.annotations.contains_key(ERROR_ANNOTATION));
        assert_eq!(out.spec.node_name.as_deref(), Some("n1"));
        assert_eq!(out.status.phase.as_deref(), Some("Running"));
    }
}

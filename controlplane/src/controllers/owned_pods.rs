//! What the workload controllers (Deployments, Rollouts) share about the pods they own: how
//! a planner sees one, and how one is let go.

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::deployment::PodView;
use crate::store::Op;
use pier_model::{Object, Pod};

/// The live (not terminating) pods of one owner's cache entry.
pub(super) fn live(pods: Option<&BTreeMap<String, Pod>>) -> Vec<&Pod> {
    pods.into_iter()
        .flat_map(BTreeMap::values)
        .filter(|p| !p.is_terminating())
        .collect()
}

/// How a planner sees `pod`, its template hash read from label `hash_label`; a failed pod
/// is replaced, so it counts as of no template and not ready.
pub(super) fn view(pod: &Pod, hash_label: &str) -> PodView {
    let failed = pod.status.phase.as_deref() == Some("Failed");
    PodView {
        name: pod.metadata.name.clone(),
        hash: if failed {
            String::new()
        } else {
            pod.metadata
                .labels
                .get(hash_label)
                .cloned()
                .unwrap_or_default()
        },
        ready: pod.is_ready(),
    }
}

/// `pod` marked for graceful deletion (the node agent drains and stops it, then deletes it),
/// written only if nothing changed it since it was read.
pub(super) fn terminating(pod: &Pod) -> Op {
    let mut pod = pod.clone();
    pod.metadata.deletion_timestamp =
        Some(humantime::format_rfc3339_seconds(SystemTime::now()).to_string());
    Op::Put(Object::Pod(pod))
}

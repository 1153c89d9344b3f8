//! What the workload controllers (Deployments, Rollouts, Jobs, DaemonSets) share about the
//! pods they own: how a planner sees one, how one is let go, and how a new one is named.

use std::collections::{BTreeMap, BTreeSet, HashMap};
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

/// Five random characters from Kubernetes' `generateName` alphabet (no vowels, no look-alike
/// digits), to end a generated pod name.
pub(super) fn generated_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4().as_bytes()[..5]
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

/// A controller's cache of the objects it owns, filed by owner key (namespace, name), with
/// each object's owner remembered so one whose owner changes (an orphaning delete releases
/// it) leaves its old owner's entry.
pub(super) struct Owned<T> {
    by_owner: HashMap<Key, BTreeMap<String, T>>,
    owner_of: HashMap<Key, Key>,
}

type Key = (String, String);

impl<T: Clone> Owned<T> {
    /// An empty cache.
    pub(super) fn new() -> Self {
        Self {
            by_owner: HashMap::new(),
            owner_of: HashMap::new(),
        }
    }

    /// Files (or, when `deleted`, drops) `item`, named `namespace`/`name`, under `owner`;
    /// every owner key whose objects changed goes into `dirty`.
    pub(super) fn observe(
        &mut self,
        deleted: bool,
        (namespace, name): (&str, &str),
        owner: Option<Key>,
        item: &T,
        dirty: &mut BTreeSet<Key>,
    ) {
        let id = (namespace.to_string(), name.to_string());
        if let Some(before) = self.owner_of.remove(&id) {
            if Some(&before) != owner.as_ref() {
                if let Some(cached) = self.by_owner.get_mut(&before) {
                    cached.remove(name);
                }
                dirty.insert(before);
            }
        }
        let Some(owner) = owner else {
            return;
        };
        let items = self.by_owner.entry(owner.clone()).or_default();
        if deleted {
            items.remove(name);
        } else {
            items.insert(name.to_string(), item.clone());
            self.owner_of.insert(id, owner.clone());
        }
        dirty.insert(owner);
    }

    /// The objects `owner` owns.
    pub(super) fn of(&self, owner: &Key) -> Vec<&T> {
        self.by_owner
            .get(owner)
            .into_iter()
            .flat_map(BTreeMap::values)
            .collect()
    }
}

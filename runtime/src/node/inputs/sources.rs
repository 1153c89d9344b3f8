//! The ConfigMaps and Secrets this node has seen, decoded to bytes per key, so pods can start
//! and their volumes follow changes without a store read.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use pier_controlplane::store::EventType;
use pier_model::Object;
use tokio::sync::watch;

/// The keys of one ConfigMap or Secret with their values.
pub(crate) type Keys = BTreeMap<String, Vec<u8>>;

/// Which kind of object a pod takes values from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum SourceKind {
    /// A `v1/ConfigMap`.
    ConfigMap,
    /// A `v1/Secret`.
    Secret,
}

impl SourceKind {
    /// The lower-case noun the kubelet's messages use (`configmap "x" not found`).
    pub(crate) fn noun(self) -> &'static str {
        match self {
            Self::ConfigMap => "configmap",
            Self::Secret => "secret",
        }
    }

    /// The kind's name (`ConfigMap`).
    pub(crate) fn kind(self) -> &'static str {
        match self {
            Self::ConfigMap => "ConfigMap",
            Self::Secret => "Secret",
        }
    }
}

/// `(kind, namespace, name)` of a source object.
pub(crate) type SourceKey = (SourceKind, String, String);

/// The cache, with a counter that moves on every change (pods waiting on a missing object
/// watch it).
pub(crate) struct Sources {
    objects: Mutex<HashMap<SourceKey, Arc<Keys>>>,
    changed: watch::Sender<u64>,
}

impl Default for Sources {
    fn default() -> Self {
        Self {
            objects: Mutex::new(HashMap::new()),
            changed: watch::channel(0).0,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Sources {
    /// Takes in a store event; the key of the object it was about, if it is a source.
    pub(crate) fn observe(&self, event_type: EventType, object: &Object) -> Option<SourceKey> {
        let (key, keys) = match object {
            Object::ConfigMap(cm) => (
                (
                    SourceKind::ConfigMap,
                    cm.metadata.namespace().to_string(),
                    cm.metadata.name.clone(),
                ),
                cm.values(),
            ),
            Object::Secret(s) => (
                (
                    SourceKind::Secret,
                    s.metadata.namespace().to_string(),
                    s.metadata.name.clone(),
                ),
                s.values(),
            ),
            _ => return None,
        };
        {
            let mut objects = lock(&self.objects);
            if event_type == EventType::Deleted {
                objects.remove(&key);
            } else {
                objects.insert(key.clone(), Arc::new(keys));
            }
        }
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
        Some(key)
    }

    /// The keys of an object, if this node has seen it.
    pub(crate) fn get(&self, kind: SourceKind, namespace: &str, name: &str) -> Option<Arc<Keys>> {
        lock(&self.objects)
            .get(&(kind, namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// A receiver that sees every change.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

//! The store: a global revision, a resourceVersion per object, conditional writes,
//! all-or-nothing multi-object writes and an ordered watch from a revision, on one of two
//! backends: an embedded redb file (the default, one node) or an etcd cluster (many nodes).
//!
//! A write is one backend transaction (one fsynced redb transaction, or one etcd
//! transaction comparing what it read): either all of its operations are durable when it
//! returns, or none are. The write's logic (validation, allocations, namespace rules) is the
//! same for both (`write.rs` over `txn.rs`).

mod alloc;
mod etcd;
mod event;
mod families;
mod namespaces;
mod pod_cidrs;
mod prepare;
mod redb;
mod seal;
mod service_accounts;
mod txn;
mod watch;
mod write;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

pub use alloc::AllocConfig;
pub use etcd::EtcdConfig;
pub use seal::Keyring;
pub use watch::Watch;

use self::etcd::EtcdStore;
use self::redb::RedbStore;
use crate::error::{Error, Result};
pub use pier_model::{Event, EventType};
use pier_model::{Kind, Object, SelectorQuery};

/// Store settings.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// ClusterIP and NodePort ranges.
    pub alloc: AllocConfig,
    /// How many past events are kept for watchers resuming from a revision.
    pub event_history: u64,
    /// redb page cache size in bytes (the redb backend). Reads past it come from the kernel's
    /// page cache: the snapshot and the controllers keep what they need in memory anyway.
    pub cache_bytes: usize,
    /// The keys Secrets are sealed with at rest (none: stored as they are).
    pub keyring: Arc<Keyring>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            alloc: AllocConfig::default(),
            event_history: 100_000,
            cache_bytes: 8 << 20,
            keyring: Arc::new(Keyring::none()),
        }
    }
}

/// One operation of a write batch.
#[allow(clippy::large_enum_variant)] // Batches are short-lived; see `Object`.
#[derive(Debug, Clone)]
pub enum Op {
    /// Create or replace; conditional when `metadata.resourceVersion` is set.
    Put(Object),
    /// Create; a conflict when the object exists (Kubernetes' POST).
    Create(Object),
    /// Replace only the status of an existing object (Kubernetes' `status` subresource);
    /// conditional when `metadata.resourceVersion` is set.
    PutStatus(Object),
    /// Delete; conditional when `resource_version` is set; `must_exist` makes a missing object an error.
    Delete {
        /// Kind.
        kind: Kind,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Expected resourceVersion.
        resource_version: Option<String>,
        /// Whether a missing object is an error.
        must_exist: bool,
    },
}

impl Op {
    /// Deletes `kind` `namespace`/`name` whatever its version, and is no error when it is gone.
    pub fn remove(kind: Kind, namespace: impl Into<String>, name: impl Into<String>) -> Op {
        Op::Delete {
            kind,
            namespace: namespace.into(),
            name: name.into(),
            resource_version: None,
            must_exist: false,
        }
    }
}

/// What a write did to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// A new object.
    Created,
    /// An existing object changed.
    Configured,
    /// Nothing changed; no revision was used.
    Unchanged,
    /// Deleted.
    Deleted,
    /// Delete of an object that did not exist.
    NotFound,
}

/// The result of one operation.
#[derive(Debug, Clone)]
pub struct Written {
    /// What happened.
    pub outcome: Outcome,
    /// The object as stored (as it was, for deletes); `None` when nothing existed.
    pub object: Option<Object>,
}

/// The store, on its backend.
pub struct Store {
    backend: Backend,
    config: StoreConfig,
    id: uuid::Uuid,
    /// The last committed revision (redb; etcd's backend tracks its own).
    revision: AtomicU64,
    /// Objects per kind (redb; etcd counts on request).
    counts: Mutex<BTreeMap<Kind, u64>>,
    /// Committed changes for live watchers (redb; etcd watches are etcd's).
    events: broadcast::Sender<Arc<Event>>,
}

/// Where the store keeps its objects.
enum Backend {
    Redb(RedbStore),
    Etcd(Arc<EtcdStore>),
}

/// `Kind/namespace/name` (`Kind//name` when cluster-scoped): sorts by kind, then namespace,
/// so lists are range scans.
fn object_key(kind: Kind, namespace: &str, name: &str) -> String {
    let namespace = if kind.namespaced() { namespace } else { "" };
    format!("{}/{}/{}", kind.as_str(), namespace, name)
}

/// Now, as RFC 3339 with seconds (how metadata times are written).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Store {
    /// Opens (creating if needed) the embedded store file at `path`.
    pub fn open(path: &Path, config: StoreConfig) -> Result<Arc<Store>> {
        let opened = RedbStore::open(path, &config)?;
        Store::start(
            Backend::Redb(opened.store),
            config,
            opened.id,
            opened.revision,
            opened.counts,
        )
    }

    /// Connects to an etcd cluster that holds (or will hold) the store.
    pub fn connect(etcd: EtcdConfig, config: StoreConfig) -> Result<Arc<Store>> {
        let (backend, id) = EtcdStore::connect(etcd, config.keyring.clone())?;
        Store::start(Backend::Etcd(backend), config, id, 0, BTreeMap::new())
    }

    fn start(
        backend: Backend,
        config: StoreConfig,
        id: uuid::Uuid,
        revision: u64,
        counts: BTreeMap<Kind, u64>,
    ) -> Result<Arc<Store>> {
        let (events, _) = broadcast::channel(4096);
        let store = Arc::new(Store {
            backend,
            config,
            id,
            revision: AtomicU64::new(revision),
            counts: Mutex::new(counts),
            events,
        });
        // The built-in namespaces exist in every store, as in a Kubernetes cluster.
        let missing = namespaces::missing_built_ins(&store)?;
        if !missing.is_empty() {
            store.apply(missing)?;
        }
        Ok(store)
    }

    /// Runs store calls off the async threads (the store's API blocks: redb does file I/O,
    /// etcd a network round trip).
    pub async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        what: &'static str,
        f: impl FnOnce(&Store) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = Arc::clone(self);
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| Error::store_from(what, e))?
    }

    /// The store's identity, made when it was created and kept for its life.
    pub fn id(&self) -> uuid::Uuid {
        self.id
    }

    /// The revision of the last committed write this node knows of.
    pub fn revision(&self) -> u64 {
        match &self.backend {
            Backend::Redb(_) => self.revision.load(Ordering::Acquire),
            Backend::Etcd(etcd) => etcd.revision(),
        }
    }

    /// Number of stored objects per kind.
    pub fn counts(&self) -> BTreeMap<Kind, u64> {
        match &self.backend {
            Backend::Redb(_) => lock(&self.counts).clone(),
            Backend::Etcd(etcd) => etcd.counts(),
        }
    }

    /// Creates or replaces objects in one transaction.
    pub fn apply(&self, objects: Vec<Object>) -> Result<Vec<Written>> {
        self.write(objects.into_iter().map(Op::Put).collect())
    }

    /// Runs a batch of operations as one durable transaction; on any error nothing is written.
    pub fn write(&self, ops: Vec<Op>) -> Result<Vec<Written>> {
        let done = match &self.backend {
            Backend::Redb(redb) => redb.write(&self.config, ops, |done| self.publish(done))?,
            Backend::Etcd(etcd) => etcd.write(&self.config, ops)?,
        };
        Ok(done.results)
    }

    /// After a redb commit: the revision, the per-kind counts, and the events for live
    /// watchers.
    fn publish(&self, done: &write::Done) {
        self.revision.store(done.revision, Ordering::Release);
        {
            let mut counts = lock(&self.counts);
            for (kind, delta) in &done.count_delta {
                let c = counts.entry(*kind).or_default();
                *c = c.saturating_add_signed(*delta);
            }
        }
        for event in &done.events {
            // No receiver is fine: watchers read history from the log.
            let _no_receiver = self.events.send(Arc::clone(event));
        }
    }

    /// Deletes one object.
    pub fn delete(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        resource_version: Option<String>,
    ) -> Result<Object> {
        let mut written = self.write(vec![Op::Delete {
            kind,
            namespace: namespace.into(),
            name: name.into(),
            resource_version,
            must_exist: true,
        }])?;
        written
            .pop()
            .and_then(|w| w.object)
            .ok_or_else(|| Error::store("delete returned nothing"))
    }

    /// Reads one object.
    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Result<Option<Object>> {
        match &self.backend {
            Backend::Redb(redb) => redb.get(kind, namespace, name),
            Backend::Etcd(etcd) => etcd.get(kind, namespace, name),
        }
    }

    /// Lists objects of a kind, optionally in one namespace and matching a label selector, with the revision read.
    pub fn list(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        selector: Option<&SelectorQuery>,
    ) -> Result<(Vec<Object>, u64)> {
        let (mut objects, revision) = match &self.backend {
            Backend::Redb(redb) => redb.list(kind, namespace)?,
            Backend::Etcd(etcd) => etcd.list(kind, namespace)?,
        };
        if let Some(selector) = selector {
            objects.retain(|o| selector.matches(&o.meta().labels));
        }
        Ok((objects, revision))
    }

    /// Watches every change with revision `>= from`, in order.
    pub fn watch(self: &Arc<Self>, from: u64) -> Result<Watch> {
        self.watch_of(from, None)
    }

    /// A watch of changes to objects of `kinds` from `from` on: what a controller follows.
    /// On etcd, changes to other kinds are skipped before they are decoded.
    pub fn watch_kinds(self: &Arc<Self>, from: u64, kinds: &'static [Kind]) -> Result<Watch> {
        self.watch_of(from, Some(kinds))
    }

    fn watch_of(self: &Arc<Self>, from: u64, kinds: Option<&'static [Kind]>) -> Result<Watch> {
        match &self.backend {
            Backend::Redb(_) => Watch::log(Arc::clone(self), from, kinds),
            Backend::Etcd(etcd) => Ok(Watch::etcd(etcd.watch(from, kinds), kinds)),
        }
    }

    /// The embedded backend, which keeps its own event log for watchers.
    fn redb(&self) -> Result<&RedbStore> {
        match &self.backend {
            Backend::Redb(redb) => Ok(redb),
            Backend::Etcd(_) => Err(Error::store(
                "the etcd backend keeps no event log of its own",
            )),
        }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    /// The oldest revision the event log still holds.
    pub(crate) fn oldest_event(&self) -> Result<u64> {
        self.redb()?.oldest_event()
    }

    /// Reads logged events with revision in `from..=to`.
    pub(crate) fn history(&self, from: u64, to: u64) -> Result<Vec<Arc<Event>>> {
        Ok(self
            .redb()?
            .history(from, to)?
            .into_iter()
            .map(Arc::new)
            .collect())
    }
}

fn kind_range(kind: Kind, namespace: Option<&str>) -> (String, String) {
    match namespace.filter(|_| kind.namespaced()) {
        // '0' is the character after '/', so this covers every key with the prefix.
        Some(ns) => (
            format!("{}/{ns}/", kind.as_str()),
            format!("{}/{ns}0", kind.as_str()),
        ),
        None => (format!("{}/", kind.as_str()), format!("{}0", kind.as_str())),
    }
}

#[cfg(test)]
mod tests;

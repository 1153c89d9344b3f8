//! The embedded store: one redb file, a global revision, conditional writes and ordered watch.
//!
//! Every call to [`Store::write`] is one fsynced redb transaction: either all of its
//! operations are durable when it returns, or none are. Each object written gets its
//! own revision; events are kept in the file (bounded history) so watchers can resume.

mod alloc;
mod event;
mod families;
mod namespaces;
mod prepare;
mod watch;
mod write;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

pub use alloc::AllocConfig;
pub use watch::Watch;

use crate::error::{Error, Result};
use crate::model::{Kind, Object, SelectorQuery};
use alloc::{IPS, IPS6, NODE_PORTS};
pub use event::{Event, EventType};

const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const REVISION: &str = "revision";
const OLDEST_EVENT: &str = "oldest_event";
const IP_CURSOR: &str = "ip_cursor";
const PORT_CURSOR: &str = "node_port_cursor";
const IP6_CURSOR: &str = "ip6_cursor";
/// The store's identity (a UUID, as two halves), made when the file is created.
const ID_HIGH: &str = "store_id_high";
const ID_LOW: &str = "store_id_low";

/// Store settings.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// ClusterIP and NodePort ranges.
    pub alloc: AllocConfig,
    /// How many past events are kept for watchers resuming from a revision.
    pub event_history: u64,
    /// redb page cache size in bytes.
    pub cache_bytes: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            alloc: AllocConfig::default(),
            event_history: 100_000,
            cache_bytes: 32 << 20,
        }
    }
}

/// One operation of a write batch.
#[allow(clippy::large_enum_variant)] // Batches are short-lived; see `Object`.
#[derive(Debug, Clone)]
pub enum Op {
    /// Create or replace; conditional when `metadata.resourceVersion` is set.
    Put(Object),
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

/// The embedded store.
pub struct Store {
    db: Database,
    config: StoreConfig,
    revision: AtomicU64,
    id: uuid::Uuid,
    counts: Mutex<BTreeMap<Kind, u64>>,
    writer: Mutex<()>,
    events: broadcast::Sender<Arc<Event>>,
}

/// `Kind/namespace/name` (`Kind//name` when cluster-scoped): sorts by kind, then namespace,
/// so lists are range scans.
fn object_key(kind: Kind, namespace: &str, name: &str) -> String {
    let namespace = if kind.namespaced() { namespace } else { "" };
    format!("{}/{}/{}", kind.as_str(), namespace, name)
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Store {
    /// Opens (creating if needed) the store file at `path`.
    pub fn open(path: &Path, config: StoreConfig) -> Result<Arc<Store>> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::store_from(format!("creating {}", dir.display()), e))?;
        }
        let db = Database::builder()
            .set_cache_size(config.cache_bytes)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => Error::store(format!(
                    "{} is in use by another process (another pier daemon with the same --state-dir?)",
                    path.display()
                )),
                other => other.into(),
            })?;
        let txn = db.begin_write()?;
        let revision;
        let id;
        {
            txn.open_table(OBJECTS)?;
            txn.open_table(EVENTS)?;
            txn.open_table(IPS)?;
            txn.open_table(IPS6)?;
            txn.open_table(NODE_PORTS)?;
            let mut meta = txn.open_table(META)?;
            revision = meta.get(REVISION)?.map(|v| v.value()).unwrap_or(0);
            let high = meta.get(ID_HIGH)?.map(|v| v.value());
            let low = meta.get(ID_LOW)?.map(|v| v.value());
            id = match (high, low) {
                (Some(high), Some(low)) => uuid::Uuid::from_u64_pair(high, low),
                _ => {
                    let made = uuid::Uuid::new_v4();
                    let (high, low) = made.as_u64_pair();
                    meta.insert(ID_HIGH, high)?;
                    meta.insert(ID_LOW, low)?;
                    made
                }
            };
        }
        txn.commit()?;
        let mut counts = BTreeMap::new();
        {
            let read = db.begin_read()?;
            let objects = read.open_table(OBJECTS)?;
            for kind in Kind::ALL {
                let (lo, hi) = kind_range(kind, None);
                let n = objects.range(lo.as_str()..hi.as_str())?.count() as u64;
                counts.insert(kind, n);
            }
        }
        let (events, _) = broadcast::channel(4096);
        let store = Arc::new(Store {
            db,
            config,
            revision: AtomicU64::new(revision),
            id,
            counts: Mutex::new(counts),
            writer: Mutex::new(()),
            events,
        });
        // The built-in namespaces exist in every store, as in a Kubernetes cluster.
        let missing = {
            let read = store.db.begin_read()?;
            namespaces::missing_built_ins(&read.open_table(OBJECTS)?)?
        };
        if !missing.is_empty() {
            store.apply(missing)?;
        }
        Ok(store)
    }

    /// The store's identity, made when its file was created and kept for its life.
    pub fn id(&self) -> uuid::Uuid {
        self.id
    }

    /// The revision of the last committed write.
    pub fn revision(&self) -> u64 {
        self.revision.load(Ordering::Acquire)
    }

    /// Number of stored objects per kind.
    pub fn counts(&self) -> BTreeMap<Kind, u64> {
        lock(&self.counts).clone()
    }

    /// Creates or replaces objects in one transaction.
    pub fn apply(&self, objects: Vec<Object>) -> Result<Vec<Written>> {
        self.write(objects.into_iter().map(Op::Put).collect())
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
        let read = self.db.begin_read()?;
        let objects = read.open_table(OBJECTS)?;
        match objects.get(object_key(kind, namespace, name).as_str())? {
            Some(bytes) => Ok(Some(decode_object(bytes.value())?)),
            None => Ok(None),
        }
    }

    /// Lists objects of a kind, optionally in one namespace and matching a label selector, with the revision read.
    pub fn list(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        selector: Option<&SelectorQuery>,
    ) -> Result<(Vec<Object>, u64)> {
        let read = self.db.begin_read()?;
        let revision = meta_value(&read, REVISION, 0)?;
        let objects = read.open_table(OBJECTS)?;
        let (lo, hi) = kind_range(kind, namespace);
        let mut out = Vec::new();
        for entry in objects.range(lo.as_str()..hi.as_str())? {
            let (_, bytes) = entry?;
            let object = decode_object(bytes.value())?;
            if selector.is_none_or(|s| s.matches(&object.meta().labels)) {
                out.push(object);
            }
        }
        Ok((out, revision))
    }

    /// Watches every change with revision `>= from`, in order.
    pub fn watch(self: &Arc<Self>, from: u64) -> Result<Watch> {
        Watch::new(Arc::clone(self), from)
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    /// The oldest revision the event log still holds.
    pub(crate) fn oldest_event(&self) -> Result<u64> {
        meta_value(&self.db.begin_read()?, OLDEST_EVENT, 1)
    }

    /// Reads stored events with revision in `from..=to`.
    pub(crate) fn history(&self, from: u64, to: u64) -> Result<Vec<Arc<Event>>> {
        let read = self.db.begin_read()?;
        let oldest = meta_value(&read, OLDEST_EVENT, 1)?;
        if from < oldest && from <= to {
            return Err(Error::Compacted {
                requested: from,
                oldest,
            });
        }
        let log = read.open_table(EVENTS)?;
        let mut out = Vec::new();
        for entry in log.range(from..=to)? {
            let (rev, bytes) = entry?;
            out.push(Arc::new(Event::decode(rev.value(), bytes.value())?));
        }
        Ok(out)
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

/// A counter of the `meta` table as a read transaction sees it, or `default` when unset.
fn meta_value(read: &redb::ReadTransaction, key: &str, default: u64) -> Result<u64> {
    Ok(read
        .open_table(META)?
        .get(key)?
        .map(|v| v.value())
        .unwrap_or(default))
}

fn decode_object(bytes: &[u8]) -> Result<Object> {
    Object::from_stored(bytes).map_err(|e| Error::store(format!("corrupt object: {e}")))
}

#[cfg(test)]
mod tests;

//! The embedded backend: one redb file holding objects, the event log, allocations and
//! counters. Every write is one fsynced redb transaction.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use redb::{Database, ReadableDatabase, ReadableTable, Table, TableDefinition, WriteTransaction};

use super::txn::{Cursor, Slot, Txn};
use super::write::{self, Done};
use super::{event, kind_range, lock, object_key, Event, EventType, Keyring, Op, StoreConfig};
use crate::error::{Error, Result};
use pier_model::{Kind, Object};

const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const IPS: TableDefinition<u32, &str> = TableDefinition::new("alloc_cluster_ips");
const IPS6: TableDefinition<u128, &str> = TableDefinition::new("alloc_cluster_ips6");
const NODE_PORTS: TableDefinition<u16, &str> = TableDefinition::new("alloc_node_ports");
const POD_CIDRS: TableDefinition<u32, &str> = TableDefinition::new("alloc_pod_cidrs");

const REVISION: &str = "revision";
const OLDEST_EVENT: &str = "oldest_event";
/// The store's identity (a UUID, as two halves), made when the file is created.
const ID_HIGH: &str = "store_id_high";
const ID_LOW: &str = "store_id_low";

fn cursor_name(cursor: Cursor) -> &'static str {
    match cursor {
        Cursor::Ip => "ip_cursor",
        Cursor::Ip6 => "ip6_cursor",
        Cursor::NodePort => "node_port_cursor",
        Cursor::PodCidr => "pod_cidr_cursor",
    }
}

/// The redb backend.
pub(super) struct RedbStore {
    db: Database,
    writer: Mutex<()>,
    keyring: Arc<Keyring>,
}

/// What opening found: the backend, its revision, identity and object counts.
pub(super) struct Opened {
    pub(super) store: RedbStore,
    pub(super) revision: u64,
    pub(super) id: uuid::Uuid,
    pub(super) counts: BTreeMap<Kind, u64>,
}

impl RedbStore {
    /// Opens (creating if needed) the store file at `path`.
    pub(super) fn open(path: &Path, config: &StoreConfig) -> Result<Opened> {
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
        let (revision, id);
        {
            txn.open_table(OBJECTS)?;
            txn.open_table(EVENTS)?;
            txn.open_table(IPS)?;
            txn.open_table(IPS6)?;
            txn.open_table(NODE_PORTS)?;
            txn.open_table(POD_CIDRS)?;
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
        reseal_stale(&db, &config.keyring)?;
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
        let store = RedbStore {
            db,
            writer: Mutex::new(()),
            keyring: config.keyring.clone(),
        };
        Ok(Opened {
            store,
            revision,
            id,
            counts,
        })
    }

    /// Reads one object.
    pub(super) fn get(&self, kind: Kind, namespace: &str, name: &str) -> Result<Option<Object>> {
        let read = self.db.begin_read()?;
        let objects = read.open_table(OBJECTS)?;
        match objects.get(object_key(kind, namespace, name).as_str())? {
            Some(bytes) => Ok(Some(decode_object(&self.keyring, bytes.value())?)),
            None => Ok(None),
        }
    }

    /// Lists objects of a kind (in one namespace, when given), with the revision read.
    pub(super) fn list(&self, kind: Kind, namespace: Option<&str>) -> Result<(Vec<Object>, u64)> {
        let read = self.db.begin_read()?;
        let revision = meta_value(&read, REVISION, 0)?;
        let objects = read.open_table(OBJECTS)?;
        let (lo, hi) = kind_range(kind, namespace);
        let mut out = Vec::new();
        for entry in objects.range(lo.as_str()..hi.as_str())? {
            out.push(decode_object(&self.keyring, entry?.1.value())?);
        }
        Ok((out, revision))
    }

    /// The oldest revision the event log still holds.
    pub(super) fn oldest_event(&self) -> Result<u64> {
        meta_value(&self.db.begin_read()?, OLDEST_EVENT, 1)
    }

    /// Reads stored events with revision in `from..=to`.
    pub(super) fn history(&self, from: u64, to: u64) -> Result<Vec<Event>> {
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
            out.push(event::decode(&self.keyring, rev.value(), bytes.value())?);
        }
        Ok(out)
    }

    /// Runs a batch as one durable transaction; `publish` sees what committed while writes
    /// are still serialized, so watchers get events in revision order.
    pub(super) fn write(
        &self,
        config: &StoreConfig,
        ops: Vec<Op>,
        publish: impl FnOnce(&Done),
    ) -> Result<Done> {
        let _writer = lock(&self.writer);
        let txn = self.db.begin_write()?;
        let done = {
            let mut tables = RedbTxn::open(&txn, &self.keyring)?;
            let base = tables.meta.get(REVISION)?.map(|v| v.value()).unwrap_or(0);
            let done = write::apply(&mut tables, &config.alloc, base, ops)?;
            if !done.events.is_empty() {
                tables.meta.insert(REVISION, done.revision)?;
                tables.trim_events(done.revision, config.event_history)?;
            }
            done
        };
        if done.events.is_empty() {
            txn.abort()?;
            return Ok(done);
        }
        txn.commit()?;
        publish(&done);
        Ok(done)
    }
}

/// The tables of one redb write transaction.
struct RedbTxn<'txn> {
    objects: Table<'txn, &'static str, &'static [u8]>,
    event_log: Table<'txn, u64, &'static [u8]>,
    meta: Table<'txn, &'static str, u64>,
    ips: Table<'txn, u32, &'static str>,
    ips6: Table<'txn, u128, &'static str>,
    ports: Table<'txn, u16, &'static str>,
    pod_cidrs: Table<'txn, u32, &'static str>,
    keyring: &'txn Keyring,
}

impl<'txn> RedbTxn<'txn> {
    fn open(txn: &'txn WriteTransaction, keyring: &'txn Keyring) -> Result<Self> {
        Ok(Self {
            objects: txn.open_table(OBJECTS)?,
            event_log: txn.open_table(EVENTS)?,
            meta: txn.open_table(META)?,
            ips: txn.open_table(IPS)?,
            ips6: txn.open_table(IPS6)?,
            ports: txn.open_table(NODE_PORTS)?,
            pod_cidrs: txn.open_table(POD_CIDRS)?,
            keyring,
        })
    }

    /// Keeps the last `history` events; trims in chunks so an ordinary write does not pay for
    /// it every time.
    fn trim_events(&mut self, revision: u64, history: u64) -> Result<()> {
        let oldest = self.meta.get(OLDEST_EVENT)?.map(|v| v.value()).unwrap_or(1);
        let keep_from = revision.saturating_sub(history) + 1;
        if keep_from > oldest + 1024 {
            self.event_log.retain_in(oldest..keep_from, |_, _| false)?;
            self.meta.insert(OLDEST_EVENT, keep_from)?;
        } else if self.meta.get(OLDEST_EVENT)?.is_none() {
            self.meta.insert(OLDEST_EVENT, oldest)?;
        }
        Ok(())
    }
}

impl Txn for RedbTxn<'_> {
    fn object(&mut self, key: &str) -> Result<Option<Object>> {
        match self.objects.get(key)? {
            Some(bytes) => Ok(Some(decode_object(self.keyring, bytes.value())?)),
            None => Ok(None),
        }
    }

    fn put_object(&mut self, key: &str, object: &Object) -> Result<()> {
        let plain = serde_json::to_vec(&object.to_value())?;
        let stored = self.keyring.seal(object.kind(), plain)?;
        self.objects.insert(key, stored.as_slice())?;
        Ok(())
    }

    fn remove_object(&mut self, key: &str) -> Result<Option<Object>> {
        match self.objects.remove(key)? {
            Some(bytes) => Ok(Some(decode_object(self.keyring, bytes.value())?)),
            None => Ok(None),
        }
    }

    fn object_keys(&mut self, lo: &str, hi: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        for entry in self.objects.range(lo..hi)? {
            keys.push(entry?.0.value().to_string());
        }
        Ok(keys)
    }

    fn holder(&mut self, slot: Slot) -> Result<Option<String>> {
        let held = match slot {
            Slot::Ip(IpAddr::V4(v4)) => self.ips.get(u32::from(v4))?.map(|h| h.value().into()),
            Slot::Ip(IpAddr::V6(v6)) => self.ips6.get(u128::from(v6))?.map(|h| h.value().into()),
            Slot::NodePort(port) => self.ports.get(port)?.map(|h| h.value().into()),
            Slot::PodCidr(net) => self
                .pod_cidrs
                .get(u32::from(net))?
                .map(|h| h.value().into()),
        };
        Ok(held)
    }

    fn hold(&mut self, slot: Slot, who: &str) -> Result<()> {
        match slot {
            Slot::Ip(IpAddr::V4(v4)) => self.ips.insert(u32::from(v4), who)?,
            Slot::Ip(IpAddr::V6(v6)) => self.ips6.insert(u128::from(v6), who)?,
            Slot::NodePort(port) => self.ports.insert(port, who)?,
            Slot::PodCidr(net) => self.pod_cidrs.insert(u32::from(net), who)?,
        };
        Ok(())
    }

    fn free(&mut self, slot: Slot) -> Result<()> {
        match slot {
            Slot::Ip(IpAddr::V4(v4)) => self.ips.remove(u32::from(v4))?,
            Slot::Ip(IpAddr::V6(v6)) => self.ips6.remove(u128::from(v6))?,
            Slot::NodePort(port) => self.ports.remove(port)?,
            Slot::PodCidr(net) => self.pod_cidrs.remove(u32::from(net))?,
        };
        Ok(())
    }

    fn cursor(&mut self, cursor: Cursor) -> Result<u64> {
        Ok(self
            .meta
            .get(cursor_name(cursor))?
            .map(|v| v.value())
            .unwrap_or(0))
    }

    fn set_cursor(&mut self, cursor: Cursor, value: u64) -> Result<()> {
        self.meta.insert(cursor_name(cursor), value)?;
        Ok(())
    }

    fn record(&mut self, revision: u64, event_type: EventType, object: &Object) -> Result<()> {
        self.event_log.insert(
            revision,
            event::encode(self.keyring, event_type, object)?.as_slice(),
        )?;
        Ok(())
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

fn decode_object(keyring: &Keyring, bytes: &[u8]) -> Result<Object> {
    Object::from_stored(&keyring.open(bytes)?)
        .map_err(|e| Error::store(format!("corrupt object: {e}")))
}

/// Seals again, under the keyring's first key, the Secrets (and their logged changes) sealed
/// under an older one, so a rotated-out key can leave the key file.
fn reseal_stale(db: &Database, keyring: &Keyring) -> Result<()> {
    if keyring.primary().is_none() {
        return Ok(());
    }
    let txn = db.begin_write()?;
    let mut resealed = 0usize;
    {
        let mut objects = txn.open_table(OBJECTS)?;
        let (lo, hi) = kind_range(Kind::Secret, None);
        let mut stale = Vec::new();
        for entry in objects.range(lo.as_str()..hi.as_str())? {
            let (key, bytes) = entry?;
            if keyring.stale(bytes.value()) {
                stale.push((
                    key.value().to_string(),
                    keyring.open(bytes.value())?.into_owned(),
                ));
            }
        }
        for (key, plain) in stale {
            objects.insert(key.as_str(), keyring.seal(Kind::Secret, plain)?.as_slice())?;
            resealed += 1;
        }
        let mut log = txn.open_table(EVENTS)?;
        let mut stale = Vec::new();
        for entry in log.iter()? {
            let (revision, bytes) = entry?;
            if keyring.stale(bytes.value()) {
                stale.push((revision.value(), keyring.open(bytes.value())?.into_owned()));
            }
        }
        for (revision, plain) in stale {
            log.insert(revision, keyring.seal(Kind::Secret, plain)?.as_slice())?;
            resealed += 1;
        }
    }
    if resealed == 0 {
        txn.abort()?;
        return Ok(());
    }
    txn.commit()?;
    tracing::info!(
        resealed,
        key = keyring.primary().unwrap_or_default(),
        "sealed stored Secrets again under the keyring's first key"
    );
    Ok(())
}

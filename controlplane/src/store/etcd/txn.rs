//! One write against etcd, as software transactional memory: reads at one revision are
//! remembered with their mod revisions, writes are buffered, and the commit is one etcd
//! transaction that applies the writes only if nothing read has changed since (else the
//! caller runs the batch again from fresh reads).

use std::collections::BTreeMap;
use std::net::IpAddr;

use etcd_client::{Compare, CompareOp, GetOptions, Txn as EtcdTx, TxnOp};

use super::{encode_object, EtcdStore};
use crate::error::{Error, Result};
use crate::store::txn::{Cursor, Slot, Txn};
use pier_model::{EventType, Object};

/// Allocation holders and cursors.
const ALLOC: &str = "/pier-alloc/";

fn slot_key(slot: Slot) -> String {
    match slot {
        Slot::Ip(IpAddr::V4(ip)) => format!("{ALLOC}ip/{ip}"),
        Slot::Ip(IpAddr::V6(ip)) => format!("{ALLOC}ip6/{ip}"),
        Slot::NodePort(port) => format!("{ALLOC}nodeport/{port}"),
        Slot::PodCidr(net) => format!("{ALLOC}podcidr/{net}"),
    }
}

fn cursor_key(cursor: Cursor) -> String {
    let name = match cursor {
        Cursor::Ip => "ip",
        Cursor::Ip6 => "ip6",
        Cursor::NodePort => "nodeport",
        Cursor::PodCidr => "podcidr",
    };
    format!("{ALLOC}cursor/{name}")
}

/// What a key held when first read: its mod revision (0: absent) and value.
struct Read {
    mod_revision: i64,
    value: Option<Vec<u8>>,
}

/// One write in progress.
pub(super) struct EtcdTxn<'a> {
    store: &'a EtcdStore,
    /// The revision every read sees (set by the first read).
    at: Option<i64>,
    reads: BTreeMap<String, Read>,
    /// Ranges listed: no key in them may change before the commit.
    ranges: Vec<(String, String)>,
    /// Buffered writes: a value to put, or `None` to delete.
    writes: BTreeMap<String, Option<Vec<u8>>>,
}

impl<'a> EtcdTxn<'a> {
    pub(super) fn new(store: &'a EtcdStore) -> Self {
        EtcdTxn {
            store,
            at: None,
            reads: BTreeMap::new(),
            ranges: Vec::new(),
            writes: BTreeMap::new(),
        }
    }

    /// Options that read at the transaction's revision, once it has one.
    fn at(&self) -> GetOptions {
        match self.at {
            Some(revision) => GetOptions::new().with_revision(revision),
            None => GetOptions::new(),
        }
    }

    /// The value under `key` as this transaction sees it: its own writes first, then etcd.
    fn value(&mut self, key: &str) -> Result<Option<Vec<u8>>> {
        if let Some(written) = self.writes.get(key) {
            return Ok(written.clone());
        }
        if let Some(read) = self.reads.get(key) {
            return Ok(read.value.clone());
        }
        let (k, options) = (key.to_string(), self.at());
        let response = self.store.call("reading for a write", move |mut c| {
            let (k, options) = (k.clone(), options.clone());
            async move { c.get(k, Some(options)).await }
        })?;
        self.pin(response.header().map(|h| h.revision()));
        let kv = response.kvs().first();
        let read = Read {
            mod_revision: kv.map(|kv| kv.mod_revision()).unwrap_or(0),
            value: kv.map(|kv| kv.value().to_vec()),
        };
        let value = read.value.clone();
        self.reads.insert(key.to_string(), read);
        Ok(value)
    }

    fn pin(&mut self, revision: Option<i64>) {
        if let Some(revision) = revision {
            self.store.saw(revision);
            self.at.get_or_insert(revision);
        }
    }

    /// Commits the buffered writes if nothing read changed: `Some(revision)` when committed,
    /// `None` when a concurrent write got there first.
    pub(super) fn commit(self) -> Result<Option<u64>> {
        let at = self.at.unwrap_or(0);
        let mut compares: Vec<Compare> = self
            .reads
            .iter()
            .map(|(key, read)| {
                Compare::mod_revision(key.as_str(), CompareOp::Equal, read.mod_revision)
            })
            .collect();
        compares.extend(self.ranges.iter().map(|(lo, hi)| {
            Compare::mod_revision(lo.as_str(), CompareOp::Less, at + 1).with_range(hi.as_str())
        }));
        let ops: Vec<TxnOp> = self
            .writes
            .into_iter()
            .map(|(key, value)| match value {
                Some(value) => TxnOp::put(key, value, None),
                None => TxnOp::delete(key, None),
            })
            .collect();
        let limit = self.store.config.max_txn_ops;
        if ops.len() > limit || compares.len() > limit {
            return Err(Error::BadRequest(format!(
                "this write needs {} etcd operations and {} comparisons in one transaction, over \
                 etcd's limit of {limit} (--max-txn-ops on the etcd members); split the \
                 manifest into smaller files or raise the limit",
                ops.len(),
                compares.len()
            )));
        }
        let txn = EtcdTx::new().when(compares).and_then(ops);
        let response = self.store.call("committing a write", move |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })?;
        let revision = response.header().map(|h| h.revision()).unwrap_or(0);
        self.store.saw(revision);
        Ok(response
            .succeeded()
            .then(|| u64::try_from(revision).unwrap_or(0)))
    }
}

impl Txn for EtcdTxn<'_> {
    fn object(&mut self, key: &str) -> Result<Option<Object>> {
        let key = super::object_etcd_key(key);
        let Some(bytes) = self.value(&key)? else {
            return Ok(None);
        };
        let mut object = Object::from_stored(&self.store.keyring.open(&bytes)?)
            .map_err(|e| Error::store(format!("corrupt object at {key}: {e}")))?;
        // What this batch wrote has no revision yet; what etcd holds has its mod revision.
        if !self.writes.contains_key(&key) {
            if let Some(read) = self.reads.get(&key) {
                object.meta_mut().resource_version = read.mod_revision.to_string();
            }
        }
        Ok(Some(object))
    }

    fn put_object(&mut self, key: &str, object: &Object) -> Result<()> {
        self.writes.insert(
            super::object_etcd_key(key),
            Some(encode_object(&self.store.keyring, object)?),
        );
        Ok(())
    }

    fn remove_object(&mut self, key: &str) -> Result<Option<Object>> {
        let old = self.object(key)?;
        if old.is_some() {
            self.writes.insert(super::object_etcd_key(key), None);
        }
        Ok(old)
    }

    fn object_keys(&mut self, lo: &str, hi: &str) -> Result<Vec<String>> {
        let (lo, hi) = (super::object_etcd_key(lo), super::object_etcd_key(hi));
        let options = self.at().with_range(hi.as_str()).with_keys_only();
        let first = lo.clone();
        let response = self.store.call("listing for a write", move |mut c| {
            let (first, options) = (first.clone(), options.clone());
            async move { c.get(first, Some(options)).await }
        })?;
        self.pin(response.header().map(|h| h.revision()));
        self.ranges.push((lo, hi));
        let mut keys: Vec<String> = response
            .kvs()
            .iter()
            .filter_map(|kv| kv.key_str().ok())
            .filter(|k| !matches!(self.writes.get(*k), Some(None)))
            .filter_map(|k| k.strip_prefix(super::OBJECTS).map(str::to_string))
            .collect();
        keys.sort();
        Ok(keys)
    }

    fn holder(&mut self, slot: Slot) -> Result<Option<String>> {
        Ok(self
            .value(&slot_key(slot))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn hold(&mut self, slot: Slot, who: &str) -> Result<()> {
        let key = slot_key(slot);
        // Reading it makes the commit fail if someone else takes it meanwhile.
        self.value(&key)?;
        self.writes.insert(key, Some(who.as_bytes().to_vec()));
        Ok(())
    }

    fn free(&mut self, slot: Slot) -> Result<()> {
        let key = slot_key(slot);
        // Reading it makes the commit fail if someone else changes it meanwhile.
        self.value(&key)?;
        self.writes.insert(key, None);
        Ok(())
    }

    fn cursor(&mut self, cursor: Cursor) -> Result<u64> {
        Ok(self
            .value(&cursor_key(cursor))?
            .and_then(|v| String::from_utf8_lossy(&v).trim().parse().ok())
            .unwrap_or(0))
    }

    fn set_cursor(&mut self, cursor: Cursor, value: u64) -> Result<()> {
        self.writes
            .insert(cursor_key(cursor), Some(value.to_string().into_bytes()));
        Ok(())
    }

    fn record(&mut self, _: u64, _: EventType, _: &Object) -> Result<()> {
        // etcd's own history is the event log.
        Ok(())
    }
}

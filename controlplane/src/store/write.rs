//! One write: a batch of operations as one durable redb transaction, in named phases: open
//! the tables, apply each put or delete (a namespace's deletion queues its contents), record
//! each change's event, save the counters and trim the log, commit, then publish.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use redb::{ReadableTable, Table, WriteTransaction};

use super::alloc::{Allocator, IPS, IPS6, NODE_PORTS};
use super::event::StoredEvent;
use super::prepare::prepare_put;
use super::{
    decode_object, lock, namespaces, object_key, Event, EventType, Op, Outcome, Store, Written,
    EVENTS, IP6_CURSOR, IP_CURSOR, META, OBJECTS, OLDEST_EVENT, PORT_CURSOR, REVISION,
};
use crate::error::{Error, Result};
use crate::model::{Kind, Object};

/// The tables and running state of one write transaction.
struct Batch<'a, 'txn> {
    objects: Table<'txn, &'static str, &'static [u8]>,
    event_log: Table<'txn, u64, &'static [u8]>,
    meta: Table<'txn, &'static str, u64>,
    alloc: Allocator<'a, 'txn>,
    revision: u64,
    events: Vec<Arc<Event>>,
    results: Vec<Written>,
    count_delta: BTreeMap<Kind, i64>,
}

/// What one operation did: the event to record, and the result to report.
type Change = (EventType, Object, Written);

/// A batch ready to commit.
struct Done {
    events: Vec<Arc<Event>>,
    results: Vec<Written>,
    count_delta: BTreeMap<Kind, i64>,
    revision: u64,
}

impl Store {
    /// Runs a batch of operations as one durable transaction; on any error nothing is written.
    pub fn write(&self, ops: Vec<Op>) -> Result<Vec<Written>> {
        let _writer = lock(&self.writer);
        let txn = self.db.begin_write()?;
        let done = {
            let mut batch = Batch::open(&txn, self)?;
            // Deletes a namespace's deletion adds run next and report no result of their own.
            let mut queue: VecDeque<(Op, bool)> = ops.into_iter().map(|op| (op, true)).collect();
            while let Some((op, reported)) = queue.pop_front() {
                let change = match op {
                    Op::Put(object) => batch.put(object)?,
                    Op::Delete {
                        kind,
                        namespace,
                        name,
                        resource_version,
                        must_exist,
                    } => {
                        if kind == Kind::Namespace {
                            namespaces::check_deletable(&name)?;
                            let contents = namespaces::contents(&batch.objects, &name)?;
                            for cascade in contents.into_iter().rev() {
                                queue.push_front((cascade, false));
                            }
                        }
                        batch.delete(kind, namespace, name, resource_version, must_exist)?
                    }
                };
                if let Some(change) = change {
                    batch.record(change, reported)?;
                }
            }
            batch.finish(self)?
        };
        if done.events.is_empty() {
            txn.abort()?;
            return Ok(done.results);
        }
        txn.commit()?;
        self.publish(done.revision, done.count_delta, done.events);
        Ok(done.results)
    }

    /// After a commit: the revision, the per-kind counts, and the events for live watchers.
    fn publish(&self, revision: u64, count_delta: BTreeMap<Kind, i64>, events: Vec<Arc<Event>>) {
        self.revision.store(revision, Ordering::Release);
        {
            let mut counts = lock(&self.counts);
            for (kind, delta) in count_delta {
                let c = counts.entry(kind).or_default();
                *c = c.saturating_add_signed(delta);
            }
        }
        for event in events {
            // No receiver is fine: watchers read history from the table.
            let _no_receiver = self.events.send(event);
        }
    }
}

impl<'a, 'txn> Batch<'a, 'txn> {
    fn open(txn: &'txn WriteTransaction, store: &'a Store) -> Result<Self> {
        let meta = txn.open_table(META)?;
        let cursor =
            |name: &str| -> Result<u64> { Ok(meta.get(name)?.map(|v| v.value()).unwrap_or(0)) };
        let alloc = Allocator {
            config: &store.config.alloc,
            ips: txn.open_table(IPS)?,
            ips6: txn.open_table(IPS6)?,
            ports: txn.open_table(NODE_PORTS)?,
            ip_cursor: cursor(IP_CURSOR)?,
            ip6_cursor: cursor(IP6_CURSOR)?,
            port_cursor: cursor(PORT_CURSOR)?,
        };
        let revision = cursor(REVISION)?;
        Ok(Self {
            objects: txn.open_table(OBJECTS)?,
            event_log: txn.open_table(EVENTS)?,
            meta,
            alloc,
            revision,
            events: Vec::new(),
            results: Vec::new(),
            count_delta: BTreeMap::new(),
        })
    }

    /// Creates or replaces an object; `None` when it is unchanged (reported, no event).
    fn put(&mut self, object: Object) -> Result<Option<Change>> {
        namespaces::check_exists(&self.objects, &object)?;
        let key = object_key(
            object.kind(),
            object.meta().namespace(),
            &object.meta().name,
        );
        let existing = match self.objects.get(key.as_str())? {
            Some(bytes) => Some(decode_object(bytes.value())?),
            None => None,
        };
        let Some(stored) = prepare_put(
            object,
            existing.as_ref(),
            &mut self.alloc,
            self.revision + 1,
        )?
        else {
            self.results.push(Written {
                outcome: Outcome::Unchanged,
                object: existing,
            });
            return Ok(None);
        };
        self.revision += 1;
        self.objects.insert(
            key.as_str(),
            serde_json::to_vec(&stored.to_value())?.as_slice(),
        )?;
        let (ty, outcome) = if existing.is_some() {
            (EventType::Modified, Outcome::Configured)
        } else {
            *self.count_delta.entry(stored.kind()).or_default() += 1;
            (EventType::Added, Outcome::Created)
        };
        let written = Written {
            outcome,
            object: Some(stored.clone()),
        };
        Ok(Some((ty, stored, written)))
    }

    /// Deletes an object, if its resourceVersion (when given) still matches; `None` when it
    /// was not there and need not be (reported, no event).
    fn delete(
        &mut self,
        kind: Kind,
        namespace: String,
        name: String,
        resource_version: Option<String>,
        must_exist: bool,
    ) -> Result<Option<Change>> {
        let key = object_key(kind, &namespace, &name);
        let Some(bytes) = self.objects.remove(key.as_str())? else {
            if must_exist {
                return Err(Error::NotFound {
                    kind: kind.to_string(),
                    namespace,
                    name,
                });
            }
            self.results.push(Written {
                outcome: Outcome::NotFound,
                object: None,
            });
            return Ok(None);
        };
        let old = decode_object(bytes.value())?;
        drop(bytes);
        if let Some(rv) = resource_version.filter(|rv| !rv.is_empty()) {
            if rv != old.meta().resource_version {
                return Err(Error::Conflict(format!(
                    "{}: resourceVersion {rv} does not match the stored {}",
                    old.describe(),
                    old.meta().resource_version
                )));
            }
        }
        if let Object::Service(svc) = &old {
            self.alloc.release(svc)?;
        }
        self.revision += 1;
        *self.count_delta.entry(kind).or_default() -= 1;
        let written = Written {
            outcome: Outcome::Deleted,
            object: Some(old.clone()),
        };
        Ok(Some((EventType::Deleted, old, written)))
    }

    /// Appends a change's event to the log and the batch; reports it unless it was a
    /// namespace deletion's cascade.
    fn record(&mut self, (event_type, object, written): Change, reported: bool) -> Result<()> {
        let stored = StoredEvent {
            event_type,
            object: object.to_value(),
        };
        self.event_log
            .insert(self.revision, serde_json::to_vec(&stored)?.as_slice())?;
        self.events.push(Arc::new(Event {
            revision: self.revision,
            event_type,
            object: Arc::new(object),
        }));
        if reported {
            self.results.push(written);
        }
        Ok(())
    }

    /// Saves the revision and allocation cursors and trims the event log.
    fn finish(mut self, store: &Store) -> Result<Done> {
        self.meta.insert(REVISION, self.revision)?;
        self.meta.insert(IP_CURSOR, self.alloc.ip_cursor)?;
        self.meta.insert(IP6_CURSOR, self.alloc.ip6_cursor)?;
        self.meta.insert(PORT_CURSOR, self.alloc.port_cursor)?;
        self.trim_events(store.config.event_history)?;
        Ok(Done {
            events: self.events,
            results: self.results,
            count_delta: self.count_delta,
            revision: self.revision,
        })
    }

    /// Keeps the last `history` events; trims in chunks so an ordinary write does not pay for
    /// it every time.
    fn trim_events(&mut self, history: u64) -> Result<()> {
        let oldest = self.meta.get(OLDEST_EVENT)?.map(|v| v.value()).unwrap_or(1);
        let keep_from = self.revision.saturating_sub(history) + 1;
        if keep_from > oldest + 1024 {
            self.event_log.retain_in(oldest..keep_from, |_, _| false)?;
            self.meta.insert(OLDEST_EVENT, keep_from)?;
        } else if self.meta.get(OLDEST_EVENT)?.is_none() {
            self.meta.insert(OLDEST_EVENT, oldest)?;
        }
        Ok(())
    }
}

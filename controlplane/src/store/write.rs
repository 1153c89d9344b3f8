//! One write's logic, shared by the backends: a batch of operations applied through a
//! backend transaction (`txn.rs`) in named phases: apply each put or delete (a namespace's
//! deletion queues its contents), record each change's event, and report. The backend opens
//! the transaction, commits it and publishes.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use super::alloc::{AllocConfig, Allocator};
use super::prepare::prepare_put;
use super::txn::Txn;
use super::{namespaces, object_key, service_accounts, Event, EventType, Op, Outcome, Written};
use crate::error::{Error, Result};
use pier_model::{Kind, Object};

/// The running state of one write.
struct Batch<'a> {
    txn: &'a mut dyn Txn,
    alloc: &'a AllocConfig,
    revision: u64,
    events: Vec<Arc<Event>>,
    results: Vec<Written>,
    count_delta: BTreeMap<Kind, i64>,
}

/// What one operation did: the event to record, and the result to report.
type Change = (EventType, Object, Written);

/// A batch applied to its transaction, ready to commit.
pub(super) struct Done {
    /// The changes, numbered from the base revision on (one revision each).
    pub(super) events: Vec<Arc<Event>>,
    /// One result per operation asked for.
    pub(super) results: Vec<Written>,
    /// How many objects of each kind were added (or, negative, removed).
    pub(super) count_delta: BTreeMap<Kind, i64>,
    /// The revision of the last change.
    pub(super) revision: u64,
}

/// Applies `ops` through `txn`, numbering changes after `base_revision`; on any error the
/// caller drops the transaction and nothing is written.
pub(super) fn apply(
    txn: &mut dyn Txn,
    alloc: &AllocConfig,
    base_revision: u64,
    ops: Vec<Op>,
) -> Result<Done> {
    let mut batch = Batch {
        txn,
        alloc,
        revision: base_revision,
        events: Vec::new(),
        results: Vec::new(),
        count_delta: BTreeMap::new(),
    };
    // Deletes a namespace's deletion adds run next and report no result of their own.
    let mut queue: VecDeque<(Op, bool)> = ops.into_iter().map(|op| (op, true)).collect();
    while let Some((op, reported)) = queue.pop_front() {
        let change = match op {
            Op::Put(object) => batch.put(object, false)?,
            Op::Create(object) => batch.put(object, true)?,
            Op::PutStatus(object) => batch.put_status(object)?,
            Op::Delete {
                kind,
                namespace,
                name,
                resource_version,
                must_exist,
            } => {
                if kind == Kind::Namespace {
                    namespaces::check_deletable(&name)?;
                    let contents = namespaces::contents(batch.txn, &name)?;
                    for cascade in contents.into_iter().rev() {
                        queue.push_front((cascade, false));
                    }
                }
                batch.delete(kind, namespace, name, resource_version, must_exist)?
            }
        };
        if let Some(change) = change {
            if let Some(account) =
                namespaces::default_account_after(&change.1, &change.2.outcome, reported)
            {
                queue.push_front((Op::Put(Object::ServiceAccount(account)), false));
            }
            batch.record(change, reported)?;
        }
    }
    Ok(Done {
        events: batch.events,
        results: batch.results,
        count_delta: batch.count_delta,
        revision: batch.revision,
    })
}

impl Batch<'_> {
    /// Creates or replaces an object (only creates, with `create_only`); `None` when it is
    /// unchanged (reported, no event).
    fn put(&mut self, object: Object, create_only: bool) -> Result<Option<Change>> {
        namespaces::check_exists(self.txn, &object)?;
        let mut object = object;
        service_accounts::admit(self.txn, &mut object)?;
        let key = object_key(
            object.kind(),
            object.meta().namespace(),
            &object.meta().name,
        );
        let existing = self.txn.object(&key)?;
        if create_only && existing.is_some() {
            return Err(Error::Conflict(format!(
                "{} already exists",
                object.describe()
            )));
        }
        // The status of such a kind is written only through `PutStatus`.
        if object.has_status_subresource() {
            object.set_status_from(existing.as_ref());
        }
        self.put_prepared(object, existing)
    }

    /// Replaces the status of an existing object, keeping the rest as stored.
    fn put_status(&mut self, object: Object) -> Result<Option<Change>> {
        let key = object_key(
            object.kind(),
            object.meta().namespace(),
            &object.meta().name,
        );
        let Some(existing) = self.txn.object(&key)? else {
            return Err(Error::NotFound {
                kind: object.kind().to_string(),
                namespace: object.meta().namespace().to_string(),
                name: object.meta().name.clone(),
            });
        };
        let mut updated = existing.clone();
        updated.set_status_from(Some(&object));
        updated
            .meta_mut()
            .resource_version
            .clone_from(&object.meta().resource_version);
        self.put_prepared(updated, Some(existing))
    }

    /// Writes `object` over `existing` (prepared: validated, allocated, stamped).
    fn put_prepared(&mut self, object: Object, existing: Option<Object>) -> Result<Option<Change>> {
        let key = object_key(
            object.kind(),
            object.meta().namespace(),
            &object.meta().name,
        );
        let mut alloc = Allocator {
            config: self.alloc,
            txn: &mut *self.txn,
        };
        let Some(stored) = prepare_put(object, existing.as_ref(), &mut alloc, self.revision + 1)?
        else {
            self.results.push(Written {
                outcome: Outcome::Unchanged,
                object: existing,
            });
            return Ok(None);
        };
        self.revision += 1;
        self.txn.put_object(&key, &stored)?;
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
        let Some(old) = self.txn.remove_object(&key)? else {
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
        if let Some(rv) = resource_version.filter(|rv| !rv.is_empty()) {
            if rv != old.meta().resource_version {
                return Err(Error::Conflict(format!(
                    "{}: resourceVersion {rv} does not match the stored {}",
                    old.describe(),
                    old.meta().resource_version
                )));
            }
        }
        Allocator {
            config: self.alloc,
            txn: &mut *self.txn,
        }
        .release_object(&old)?;
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
        self.txn.record(self.revision, event_type, &object)?;
        self.events.push(Arc::new(Event {
            revision: self.revision,
            event_type,
            object: Arc::new(object),
            ends_transaction: true,
        }));
        if reported {
            self.results.push(written);
        }
        Ok(())
    }
}

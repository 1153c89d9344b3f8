//! Following etcd's watch of every object from a revision: the stream is resumed after a
//! break (any member serves it from its own copy), ends on compaction or cancellation, and
//! hands each change, as a store event, to a sink (the node's shared feed, or one reader).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{EventType as EtcdEventType, WatchOptions};

use super::{decode_object, EtcdStore, OBJECTS};
use crate::error::{Error, Result};
use crate::store::Keyring;
use pier_model::{Event, EventType, Kind};

/// The first pause before resuming a broken watch, doubled up to `RESUME_MAX`.
const RESUME_FIRST: Duration = Duration::from_millis(50);
const RESUME_MAX: Duration = Duration::from_secs(2);

/// Where a followed stream hands its events, and finally the error that ended it.
pub(super) trait Sink: Send + Sync {
    /// Hands over one item; `false` when nobody takes them any more (the stream stops).
    fn send(&self, item: Result<Arc<Event>>) -> impl Future<Output = bool> + Send;
}

impl Sink for tokio::sync::mpsc::Sender<Result<Arc<Event>>> {
    async fn send(&self, item: Result<Arc<Event>>) -> bool {
        tokio::sync::mpsc::Sender::send(self, item).await.is_ok()
    }
}

/// Follows the watch until the receiver goes or it meets a failure a resumed watch cannot mend
/// (compaction, cancellation), which is the last thing sent. A broken stream (a member went
/// away) is resumed from the revision after the last one delivered, on the next member, as
/// etcd's own clients do: any member serves a watch from its own copy, so this needs no quorum.
pub(super) async fn follow(
    store: &EtcdStore,
    from: u64,
    kinds: Option<&'static [Kind]>,
    tx: &impl Sink,
) {
    let mut next = from;
    let mut pause = RESUME_FIRST;
    // Nodes start on different members, so one member does not carry every node's watch.
    let mut member = std::process::id() as usize;
    loop {
        let delivered = next;
        let client = store.member(member);
        let e = match stream(store, client, &mut next, kinds, tx).await {
            Ok(()) => return,
            Err(Break::End(e)) => e,
            Err(Break::Resume(e)) => {
                if next > delivered {
                    pause = RESUME_FIRST;
                }
                member = member.wrapping_add(1);
                tracing::warn!(from = next, error = %crate::error::chain(&e), retry_in = ?pause, "resuming an etcd watch on the next member");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RESUME_MAX);
                continue;
            }
        };
        if !tx.send(Err(e)).await {
            tracing::debug!("an etcd watch ended after its reader went");
        }
        return;
    }
}

/// Why a watch stream stopped.
enum Break {
    /// The stream broke; a new one from the next revision carries on.
    Resume(Error),
    /// The watch cannot go on (compacted, cancelled, undecodable): the reader relists.
    End(Error),
}

/// Streams events from `*next` on, advancing it past every revision handed over.
async fn stream(
    store: &EtcdStore,
    client: &etcd_client::Client,
    next: &mut u64,
    kinds: Option<&'static [Kind]>,
    tx: &impl Sink,
) -> std::result::Result<(), Break> {
    let from = *next;
    let options = WatchOptions::new()
        .with_prefix()
        .with_prev_key()
        .with_start_revision(i64::try_from(from.max(1)).unwrap_or(i64::MAX));
    let mut watch = client
        .clone()
        .watch(OBJECTS, Some(options))
        .await
        .map_err(|e| Break::Resume(store.error("starting a watch", e)))?;
    loop {
        let Some(response) = watch
            .message()
            .await
            .map_err(|e| Break::Resume(store.error("following a watch", e)))?
        else {
            return Err(Break::Resume(Error::store(format!(
                "{}: the watch stream ended",
                store.config.describe()
            ))));
        };
        if response.compact_revision() > 0 {
            return Err(Break::End(Error::Compacted {
                requested: from,
                oldest: u64::try_from(response.compact_revision()).unwrap_or(0),
            }));
        }
        if response.canceled() {
            return Err(Break::End(Error::store(format!(
                "{}: the watch was cancelled: {}",
                store.config.describe(),
                response.cancel_reason()
            ))));
        }
        // Noted first, so a reader holding an event knows the store has seen its revision.
        if let Some(h) = response.header() {
            store.saw(h.revision());
        }
        // One transaction's events share a revision and come in one response; the last of
        // them sent says so, for readers that take whole transactions.
        let mut batch: Vec<Event> = Vec::new();
        for event in response.events() {
            let wanted =
                kinds.is_none_or(|kinds| event.kv().is_some_and(|kv| of_kinds(kv.key(), kinds)));
            if wanted {
                if let Some(event) = convert(&store.keyring, event).map_err(Break::End)? {
                    if let Some(before) = batch.last_mut() {
                        before.ends_transaction = before.revision != event.revision;
                    }
                    batch.push(event);
                }
            }
        }
        for event in batch {
            let revision = event.revision;
            if !tx.send(Ok(Arc::new(event))).await {
                return Ok(());
            }
            *next = (*next).max(revision + 1);
        }
        if let Some(last) = response.events().last().and_then(|e| e.kv()) {
            let revision = u64::try_from(last.mod_revision()).unwrap_or(0);
            *next = (*next).max(revision + 1);
        }
    }
}

/// Whether the etcd key of an object (`/pier/Kind/namespace/name`) is of one of `kinds`.
fn of_kinds(key: &[u8], kinds: &[Kind]) -> bool {
    let kind = key
        .strip_prefix(OBJECTS.as_bytes())
        .and_then(|rest| rest.split(|b| *b == b'/').next());
    kind.is_some_and(|kind| kinds.iter().any(|k| k.as_str().as_bytes() == kind))
}

/// A store event from an etcd event (`None` for a delete etcd kept no previous value of).
fn convert(keyring: &Keyring, event: &etcd_client::Event) -> Result<Option<Event>> {
    let Some(kv) = event.kv() else {
        return Ok(None);
    };
    let revision = u64::try_from(kv.mod_revision()).unwrap_or(0);
    let (event_type, object) = match event.event_type() {
        EtcdEventType::Put => {
            let ty = if kv.create_revision() == kv.mod_revision() {
                EventType::Added
            } else {
                EventType::Modified
            };
            (ty, decode_object(keyring, kv)?)
        }
        EtcdEventType::Delete => {
            let Some(prev) = event.prev_kv() else {
                return Ok(None);
            };
            let mut object = decode_object(keyring, prev)?;
            // As Kubernetes reports it: the last state, at the deletion's revision.
            object.meta_mut().resource_version = revision.to_string();
            (EventType::Deleted, object)
        }
    };
    Ok(Some(Event {
        revision,
        event_type,
        object: Arc::new(object),
        ends_transaction: true,
    }))
}

//! Ordered watch over the store. On redb: the logged history first, then live events, no
//! gaps; history is read off the async threads (`spawn_blocking`), when the watch starts and
//! whenever it falls behind the live broadcast. On etcd: etcd's own watch (`etcd/watch.rs`).

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError};

use super::etcd::EtcdWatch;
use super::{Event, Store};
use crate::error::Result;
use pier_model::Kind;

/// A stream of events in revision order, starting at a requested revision (of some kinds
/// only, if asked).
pub struct Watch {
    inner: Inner,
    kinds: Option<&'static [Kind]>,
    /// The last event taken did not end its transaction: the rest of it is on its way.
    open: bool,
}

enum Inner {
    Log(LogWatch),
    Etcd(EtcdWatch),
}

impl Watch {
    /// A watch over the redb event log.
    pub(super) fn log(
        store: Arc<Store>,
        from: u64,
        kinds: Option<&'static [Kind]>,
    ) -> Result<Watch> {
        Ok(Watch {
            inner: Inner::Log(LogWatch::new(store, from)?),
            kinds,
            open: false,
        })
    }

    /// A watch over etcd.
    pub(super) fn etcd(watch: EtcdWatch, kinds: Option<&'static [Kind]>) -> Watch {
        Watch {
            inner: Inner::Etcd(watch),
            kinds,
            open: false,
        }
    }

    fn wanted(&self, event: &Event) -> bool {
        self.kinds
            .is_none_or(|kinds| kinds.contains(&event.object.kind()))
    }

    /// Waits for the next event.
    pub async fn next(&mut self) -> Result<Arc<Event>> {
        loop {
            let event = match &mut self.inner {
                Inner::Log(w) => w.next().await,
                Inner::Etcd(w) => w.next().await,
            }?;
            self.open = !event.ends_transaction;
            if self.wanted(&event) {
                return Ok(event);
            }
        }
    }

    /// Every event already committed and not yet taken: the rest of the transaction the last
    /// event came from, and any after it, so a reader that applies them together never sees
    /// half a transaction. On redb, events a writer is still publishing are waited for; on
    /// etcd, the rest of a transaction the stream is still delivering.
    pub async fn committed(&mut self) -> Result<Vec<Arc<Event>>> {
        let mut events = Vec::new();
        loop {
            let event = match &mut self.inner {
                Inner::Log(w) if w.behind() => w.next().await?,
                Inner::Log(_) => break,
                Inner::Etcd(w) if self.open => w.next().await?,
                Inner::Etcd(w) => match w.try_next()? {
                    Some(event) => event,
                    None => break,
                },
            };
            self.open = !event.ends_transaction;
            if self.wanted(&event) {
                events.push(event);
            }
        }
        Ok(events)
    }

    /// Returns the next event if one is ready now. A watch that must read history first says
    /// none is; the next `next` reads it.
    pub fn try_next(&mut self) -> Result<Option<Arc<Event>>> {
        loop {
            let event = match &mut self.inner {
                Inner::Log(w) => w.try_next(),
                Inner::Etcd(w) => w.try_next(),
            }?;
            if let Some(event) = &event {
                self.open = !event.ends_transaction;
            }
            match event {
                Some(event) if !self.wanted(&event) => continue,
                other => return Ok(other),
            }
        }
    }
}

/// Events with consecutive revisions from the redb log and its live broadcast.
struct LogWatch {
    store: Arc<Store>,
    live: broadcast::Receiver<Arc<Event>>,
    backlog: VecDeque<Arc<Event>>,
    next: u64,
    /// History from `next` must be read before live events are taken.
    stale: bool,
}

impl LogWatch {
    /// A watch from revision `from`; `Compacted` if the log no longer reaches back that far.
    /// (The history itself is read by the first `next`.)
    fn new(store: Arc<Store>, from: u64) -> Result<LogWatch> {
        let from = from.max(1);
        let oldest = store.oldest_event()?;
        if from < oldest && from <= store.revision() {
            return Err(crate::error::Error::Compacted {
                requested: from,
                oldest,
            });
        }
        Ok(LogWatch {
            live: store.subscribe(),
            store,
            backlog: VecDeque::new(),
            next: from,
            stale: true,
        })
    }

    async fn next(&mut self) -> Result<Arc<Event>> {
        loop {
            if self.stale {
                self.refill().await?;
            }
            if let Some(event) = self.pop_backlog() {
                return Ok(event);
            }
            match self.live.recv().await {
                Ok(event) => {
                    if let Some(event) = self.accept_live(event)? {
                        return Ok(event);
                    }
                }
                Err(RecvError::Lagged(_)) => self.stale = true,
                Err(RecvError::Closed) => {
                    return Err(crate::error::Error::store("store closed"));
                }
            }
        }
    }

    /// Whether a committed revision has not been taken yet (it is in the backlog, the log,
    /// or on its way through the broadcast: the revision is published before its events).
    fn behind(&self) -> bool {
        self.next <= self.store.revision()
    }

    fn try_next(&mut self) -> Result<Option<Arc<Event>>> {
        loop {
            if let Some(event) = self.pop_backlog() {
                return Ok(Some(event));
            }
            if self.stale {
                return Ok(None);
            }
            match self.live.try_recv() {
                Ok(event) => {
                    if let Some(event) = self.accept_live(event)? {
                        return Ok(Some(event));
                    }
                }
                Err(broadcast::error::TryRecvError::Lagged(_)) => self.stale = true,
                Err(_) => return Ok(None),
            }
        }
    }

    /// The next unseen event from the stored history, if any.
    fn pop_backlog(&mut self) -> Option<Arc<Event>> {
        while let Some(event) = self.backlog.pop_front() {
            if event.revision >= self.next {
                self.next = event.revision + 1;
                return Some(event);
            }
        }
        None
    }

    /// A live event if it is the next one; a gap refills from the stored log instead.
    fn accept_live(&mut self, event: Arc<Event>) -> Result<Option<Arc<Event>>> {
        if event.revision < self.next {
            return Ok(None);
        }
        if event.revision > self.next {
            self.stale = true;
            return Ok(None);
        }
        self.next += 1;
        Ok(Some(event))
    }

    /// Reads the stored history from `next` on. The live receiver is renewed first, so
    /// nothing committed while the history is read is missed.
    async fn refill(&mut self) -> Result<()> {
        self.live = self.live.resubscribe();
        let (store, from) = (Arc::clone(&self.store), self.next);
        let history = tokio::task::spawn_blocking(move || store.history(from, store.revision()))
            .await
            .map_err(|e| crate::error::Error::store_from("reading the event log", e))??;
        self.backlog.extend(history);
        self.stale = false;
        Ok(())
    }
}

//! Ordered watch over the store: stored history first, then live events, no gaps.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError};

use super::{Event, Store};
use crate::error::Result;

/// A stream of events with consecutive revisions, starting at a requested revision.
pub struct Watch {
    store: Arc<Store>,
    live: broadcast::Receiver<Arc<Event>>,
    backlog: VecDeque<Arc<Event>>,
    next: u64,
}

impl Watch {
    pub(super) fn new(store: Arc<Store>, from: u64) -> Result<Watch> {
        // Subscribe before reading history, so nothing committed in between is missed.
        let live = store.subscribe();
        let from = from.max(1);
        let backlog = store.history(from, store.revision())?.into();
        Ok(Watch {
            store,
            live,
            backlog,
            next: from,
        })
    }

    /// The revision the next event will have at least.
    pub fn next_revision(&self) -> u64 {
        self.next
    }

    /// Waits for the next event.
    pub async fn next(&mut self) -> Result<Arc<Event>> {
        loop {
            if let Some(event) = self.backlog.pop_front() {
                if event.revision < self.next {
                    continue;
                }
                self.next = event.revision + 1;
                return Ok(event);
            }
            match self.live.recv().await {
                Ok(event) if event.revision < self.next => continue,
                Ok(event) if event.revision == self.next => {
                    self.next += 1;
                    return Ok(event);
                }
                // A gap or a lag: catch up from the stored log.
                Ok(_) | Err(RecvError::Lagged(_)) => self.refill()?,
                Err(RecvError::Closed) => {
                    return Err(crate::error::Error::Store("store closed".into()));
                }
            }
        }
    }

    /// Returns the next event if one is ready now.
    pub fn try_next(&mut self) -> Result<Option<Arc<Event>>> {
        loop {
            if let Some(event) = self.backlog.pop_front() {
                if event.revision < self.next {
                    continue;
                }
                self.next = event.revision + 1;
                return Ok(Some(event));
            }
            match self.live.try_recv() {
                Ok(event) if event.revision < self.next => continue,
                Ok(event) if event.revision == self.next => {
                    self.next += 1;
                    return Ok(Some(event));
                }
                Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => self.refill()?,
                Err(_) => return Ok(None),
            }
        }
    }

    fn refill(&mut self) -> Result<()> {
        self.live = self.live.resubscribe();
        let history = self.store.history(self.next, self.store.revision())?;
        self.backlog.extend(history);
        Ok(())
    }
}

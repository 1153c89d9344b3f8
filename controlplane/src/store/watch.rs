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

    /// Waits for the next event.
    pub async fn next(&mut self) -> Result<Arc<Event>> {
        loop {
            if let Some(event) = self.pop_backlog() {
                return Ok(event);
            }
            match self.live.recv().await {
                Ok(event) => {
                    if let Some(event) = self.accept_live(event)? {
                        return Ok(event);
                    }
                }
                Err(RecvError::Lagged(_)) => self.refill()?,
                Err(RecvError::Closed) => {
                    return Err(crate::error::Error::Store("store closed".into()));
                }
            }
        }
    }

    /// Returns the next event if one is ready now.
    pub fn try_next(&mut self) -> Result<Option<Arc<Event>>> {
        loop {
            if let Some(event) = self.pop_backlog() {
                return Ok(Some(event));
            }
            match self.live.try_recv() {
                Ok(event) => {
                    if let Some(event) = self.accept_live(event)? {
                        return Ok(Some(event));
                    }
                }
                Err(broadcast::error::TryRecvError::Lagged(_)) => self.refill()?,
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
            self.refill()?;
            return Ok(None);
        }
        self.next += 1;
        Ok(Some(event))
    }

    fn refill(&mut self) -> Result<()> {
        self.live = self.live.resubscribe();
        let history = self.store.history(self.next, self.store.revision())?;
        self.backlog.extend(history);
        Ok(())
    }
}

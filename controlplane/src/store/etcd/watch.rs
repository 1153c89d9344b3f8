//! One reader's watch of every object change from a revision on: from the node's shared feed
//! (`hub.rs`) when it holds what the reader needs, otherwise from a stream of the reader's own
//! (`stream.rs`), handed over a bounded channel. A reader that falls behind the shared feed
//! carries on alone, exactly after the last event it took, even in the middle of a
//! transaction's events.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{mpsc, oneshot};

use super::hub::{Hub, Item, Joined};
use super::{stream, EtcdStore};
use crate::error::{Error, Result};
use pier_model::{Event, Kind};

/// Events handed over but not yet taken, per reader of its own stream.
const BUFFER: usize = 1024;

/// A watch of object changes from a revision on.
pub(in crate::store) struct EtcdWatch {
    store: Arc<EtcdStore>,
    /// Kinds a stream of its own may skip undecoded (the caller filters shared events).
    kinds: Option<&'static [Kind]>,
    source: Source,
    /// Where the reader is: the events it took of the newest revision it took any of.
    at: Position,
}

enum Source {
    Shared {
        hub: Arc<Hub>,
        generation: u64,
        backlog: VecDeque<Arc<Event>>,
        live: tokio::sync::broadcast::Receiver<Item>,
    },
    Own {
        events: mpsc::Receiver<Result<Arc<Event>>>,
        /// Dropping it stops the stream's task.
        _stop: oneshot::Sender<()>,
    },
}

/// The newest revision a reader took events of, how many of that revision it took, and how
/// many of them a source it just switched to will repeat.
#[derive(Debug, Clone, Copy)]
struct Position {
    revision: u64,
    taken: usize,
    skip: usize,
}

impl Position {
    /// Before revision `from`: every event of the revision before it counts as taken.
    fn before(from: u64) -> Position {
        Position {
            revision: from.saturating_sub(1),
            taken: usize::MAX,
            skip: usize::MAX,
        }
    }

    /// A new source starts again at `revision`: the events of it already taken come again.
    fn restart(&mut self) {
        self.skip = self.taken;
    }

    /// The revision a new stream of the reader's own starts at.
    fn resume_from(&self) -> u64 {
        if self.skip == usize::MAX {
            self.revision + 1
        } else {
            self.revision
        }
    }

    /// Whether `event` is new to the reader; if so it is counted as taken.
    fn take(&mut self, event: &Event) -> bool {
        if event.revision < self.revision {
            return false;
        }
        if event.revision == self.revision {
            if self.skip > 0 {
                self.skip -= 1;
                return false;
            }
            self.taken = self.taken.saturating_add(1);
            return true;
        }
        *self = Position {
            revision: event.revision,
            taken: 1,
            skip: 0,
        };
        true
    }
}

impl EtcdWatch {
    pub(super) fn start(
        store: Arc<EtcdStore>,
        hub: &Arc<Hub>,
        from: u64,
        kinds: Option<&'static [Kind]>,
    ) -> EtcdWatch {
        let at = Position::before(from);
        let source = match hub.join(&store, from.max(1)) {
            Some(joined) => shared(hub, joined),
            None => own(&store, at.resume_from(), kinds),
        };
        EtcdWatch {
            store,
            kinds,
            source,
            at,
        }
    }

    /// Waits for the next event.
    pub(in crate::store) async fn next(&mut self) -> Result<Arc<Event>> {
        loop {
            let event = match &mut self.source {
                Source::Shared { backlog, live, .. } => match backlog.pop_front() {
                    Some(event) => event,
                    None => match live.recv().await {
                        Ok(item) => item.map_err(|ended| ended.error())?,
                        Err(RecvError::Lagged(_)) => {
                            self.fell_behind();
                            continue;
                        }
                        Err(RecvError::Closed) => return Err(stopped()),
                    },
                },
                Source::Own { events, .. } => events.recv().await.ok_or_else(stopped)??,
            };
            if self.at.take(&event) {
                return Ok(event);
            }
        }
    }

    /// The next event if one is ready now.
    pub(in crate::store) fn try_next(&mut self) -> Result<Option<Arc<Event>>> {
        loop {
            let event = match &mut self.source {
                Source::Shared { backlog, live, .. } => match backlog.pop_front() {
                    Some(event) => event,
                    None => match live.try_recv() {
                        Ok(item) => item.map_err(|ended| ended.error())?,
                        Err(TryRecvError::Lagged(_)) => {
                            self.fell_behind();
                            continue;
                        }
                        Err(TryRecvError::Empty) => return Ok(None),
                        Err(TryRecvError::Closed) => return Err(stopped()),
                    },
                },
                Source::Own { events, .. } => match events.try_recv() {
                    Ok(event) => event?,
                    Err(mpsc::error::TryRecvError::Empty) => return Ok(None),
                    Err(mpsc::error::TryRecvError::Disconnected) => return Err(stopped()),
                },
            };
            if self.at.take(&event) {
                return Ok(Some(event));
            }
        }
    }

    /// The shared feed moved on without this reader (further behind than the hub keeps):
    /// it leaves the feed and follows etcd alone from where it is.
    fn fell_behind(&mut self) {
        let Source::Shared {
            hub, generation, ..
        } = &self.source
        else {
            return;
        };
        tracing::debug!(
            at = self.at.revision,
            "a watch reader fell behind the shared feed; it follows etcd alone"
        );
        hub.leave(*generation);
        self.at.restart();
        self.source = own(&self.store, self.at.resume_from(), self.kinds);
    }
}

impl Drop for EtcdWatch {
    fn drop(&mut self) {
        if let Source::Shared {
            hub, generation, ..
        } = &self.source
        {
            hub.leave(*generation);
        }
    }
}

fn shared(hub: &Arc<Hub>, joined: Joined) -> Source {
    Source::Shared {
        hub: Arc::clone(hub),
        generation: joined.generation,
        backlog: joined.backlog,
        live: joined.live,
    }
}

/// A stream of the reader's own from revision `from`.
fn own(store: &Arc<EtcdStore>, from: u64, kinds: Option<&'static [Kind]>) -> Source {
    let (tx, events) = mpsc::channel(BUFFER);
    let (stop, stopped) = oneshot::channel();
    let runner = Arc::clone(store);
    store.spawn(async move {
        tokio::select! {
            () = stream::follow(&runner, from, kinds, &tx) => {}
            _ = stopped => {}
        }
    });
    Source::Own {
        events,
        _stop: stop,
    }
}

fn stopped() -> Error {
    Error::store("the etcd watch stopped")
}

//! The node's one etcd watch, shared by every reader, after kube-apiserver's watch cache: a
//! single stream is followed and decoded once, its events fanned out to every reader and the
//! most recent kept, so a reader starting a little behind (it listed, then watches from the
//! list's revision) starts from them. Each stream costs etcd work and the node buffers; a
//! leader has seven readers. A reader that asks for older history than the hub keeps, or
//! falls too far behind, follows etcd on its own instead (`watch.rs`).
//!
//! The hub follows etcd while it has readers: the first one starts it, the last to go stops
//! it. A stream that cannot go on (compaction, cancellation) ends every reader with the error,
//! and the next reader starts a new one.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{broadcast, oneshot};

use super::stream::{self, Sink};
use super::EtcdStore;
use crate::error::{Error, Result};
use pier_model::Event;

/// Recent events kept for readers that start behind the stream.
const RECENT: usize = if cfg!(test) { 16 } else { 256 };
/// Events handed out but not yet taken by every reader; one further behind catches up alone.
const FAN_OUT: usize = if cfg!(test) { 64 } else { 4096 };
/// How far behind the newest revision seen a first reader may start the stream; one asking
/// for older history follows etcd alone, so that history etcd may have compacted ends only
/// that reader's watch.
const START_WINDOW: u64 = 1000;

/// What readers of the hub receive: an event, or why the stream ended.
pub(super) type Item = std::result::Result<Arc<Event>, Ended>;

/// Why the shared stream ended, in a form every reader can be given.
#[derive(Debug, Clone)]
pub(super) enum Ended {
    /// The revision asked for was compacted.
    Compacted { requested: u64, oldest: u64 },
    /// Any other end, as its message.
    Failed(String),
}

impl Ended {
    fn of(e: &Error) -> Ended {
        match e {
            Error::Compacted { requested, oldest } => Ended::Compacted {
                requested: *requested,
                oldest: *oldest,
            },
            other => Ended::Failed(crate::error::chain(other)),
        }
    }

    /// The store error a reader returns.
    pub(super) fn error(&self) -> Error {
        match self {
            Ended::Compacted { requested, oldest } => Error::Compacted {
                requested: *requested,
                oldest: *oldest,
            },
            Ended::Failed(message) => Error::store(message.clone()),
        }
    }
}

/// The shared watch of one etcd store.
#[derive(Default)]
pub(super) struct Hub {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Which stream is current; a stream that finds a newer one stops.
    generation: u64,
    /// The current stream, while it runs.
    running: Option<Running>,
}

struct Running {
    /// Every event from this revision on is in `recent` or still to come.
    covers_from: u64,
    recent: VecDeque<Arc<Event>>,
    live: broadcast::Sender<Item>,
    readers: usize,
    /// Dropping it stops the stream's task.
    _stop: oneshot::Sender<()>,
}

/// A reader's place on the hub: what it missed from the recent events, then the live feed.
pub(super) struct Joined {
    pub(super) generation: u64,
    pub(super) backlog: VecDeque<Arc<Event>>,
    pub(super) live: broadcast::Receiver<Item>,
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves nothing half-done worth refusing.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Joins the feed from revision `from`, starting the stream if none runs; `None` when
    /// the hub no longer holds events that old (the reader follows etcd alone).
    pub(super) fn join(self: &Arc<Self>, store: &Arc<EtcdStore>, from: u64) -> Option<Joined> {
        let mut state = self.lock();
        if state.running.is_none() {
            if from.saturating_add(START_WINDOW) < store.revision() {
                return None;
            }
            state.generation += 1;
            state.running = Some(self.start(store, from, state.generation));
        }
        let generation = state.generation;
        let running = state.running.as_mut()?;
        if from < running.covers_from {
            return None;
        }
        running.readers += 1;
        Some(Joined {
            generation,
            backlog: running
                .recent
                .iter()
                .filter(|e| e.revision >= from)
                .cloned()
                .collect(),
            live: running.live.subscribe(),
        })
    }

    /// A reader of `generation` went; the last one stops the stream.
    pub(super) fn leave(&self, generation: u64) {
        let mut state = self.lock();
        if state.generation != generation {
            return;
        }
        let last = state.running.as_mut().is_some_and(|r| {
            r.readers = r.readers.saturating_sub(1);
            r.readers == 0
        });
        if last {
            state.running = None;
        }
    }

    fn start(self: &Arc<Self>, store: &Arc<EtcdStore>, from: u64, generation: u64) -> Running {
        let (live, _) = broadcast::channel(FAN_OUT);
        let (stop, stopped) = oneshot::channel();
        let sink = HubSink {
            hub: Arc::clone(self),
            generation,
        };
        let runner = Arc::clone(store);
        store.spawn(async move {
            tokio::select! {
                () = stream::follow(&runner, from, None, &sink) => {}
                _ = stopped => {}
            }
        });
        Running {
            covers_from: from.max(1),
            recent: VecDeque::with_capacity(RECENT),
            live,
            readers: 0,
            _stop: stop,
        }
    }

    /// Takes one item from the stream of `generation`: kept and fanned out, or, for the error
    /// that ended it, handed to every reader before the stream is forgotten.
    fn deliver(&self, generation: u64, item: Result<Arc<Event>>) -> bool {
        let mut state = self.lock();
        if state.generation != generation {
            return false;
        }
        let Some(running) = state.running.as_mut() else {
            return false;
        };
        match item {
            Ok(event) => {
                if running.recent.len() == RECENT {
                    if let Some(oldest) = running.recent.pop_front() {
                        running.covers_from = running.covers_from.max(oldest.revision + 1);
                    }
                }
                running.recent.push_back(Arc::clone(&event));
                // No receiver now only means every reader is between two joins.
                let _unread = running.live.send(Ok(event));
                true
            }
            Err(e) => {
                tracing::warn!(error = %crate::error::chain(&e), "the node's etcd watch ended; its readers start again");
                let _unread = running.live.send(Err(Ended::of(&e)));
                state.running = None;
                false
            }
        }
    }
}

/// The hub's end of one stream.
struct HubSink {
    hub: Arc<Hub>,
    generation: u64,
}

impl Sink for HubSink {
    async fn send(&self, item: Result<Arc<Event>>) -> bool {
        self.hub.deliver(self.generation, item)
    }
}

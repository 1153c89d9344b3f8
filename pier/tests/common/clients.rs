//! A client loop through a Service for release tests: continuous in the background across
//! transitions, alone for measured windows so the split it sees is exact; every request's
//! outcome is kept.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::proxy::{load, Tally};

/// The client loop through the front Service: runs in the background across transitions,
/// and at each pause alone for a measured window, so the split it sees is exact. Failures
/// and totals of every request are kept.
pub(crate) struct Clients {
    rt: tokio::runtime::Runtime,
    url: String,
    running: Option<(Arc<AtomicBool>, tokio::task::JoinHandle<Tally>)>,
    /// Requests made.
    pub(crate) total: usize,
    /// The failed ones, described.
    pub(crate) failures: Vec<String>,
}

impl Clients {
    pub(crate) fn new(url: String) -> Clients {
        Clients {
            rt: tokio::runtime::Runtime::new().unwrap(),
            url,
            running: None,
            total: 0,
            failures: Vec::new(),
        }
    }

    fn keep(&mut self, t: &Tally) {
        self.total += t.total();
        self.failures.extend(t.failures.iter().cloned());
    }

    /// Starts the background loop.
    pub(crate) fn start(&mut self) {
        let stop = Arc::new(AtomicBool::new(false));
        let task = self.rt.spawn(load(
            self.url.clone(),
            2,
            1_000_000,
            Arc::clone(&stop),
            None,
        ));
        self.running = Some((stop, task));
    }

    /// Stops the background loop, keeping its tally.
    pub(crate) fn stop(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            stop.store(true, Ordering::Relaxed);
            let t = self.rt.block_on(task).unwrap();
            self.keep(&t);
        }
    }

    /// `n` requests with nothing else running; the percent that `version` answered.
    pub(crate) fn share(&mut self, version: &str, n: usize) -> f64 {
        let background = self.running.is_some();
        self.stop();
        let t = self.rt.block_on(load(
            self.url.clone(),
            4,
            n,
            Arc::new(AtomicBool::new(false)),
            None,
        ));
        self.keep(&t);
        assert!(t.failures.is_empty(), "{:?}", t.failures);
        if background {
            self.start();
        }
        t.share(version) * 100.0
    }
}

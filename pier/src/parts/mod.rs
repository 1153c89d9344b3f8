//! The daemon's parts, one file each: `control.rs` (the snapshot publisher, this node's
//! membership, the leader election and the controllers), `dns.rs`, `proxy.rs`, `ebpf.rs` (the
//! socket-LB), `runtime.rs` (the container engine and node agent), `follower.rs` (following a Kubernetes
//! API server instead of running controllers) and `memory.rs` (freed
//! memory back to the kernel after a burst). Each starts from a [`Parts`] context.

pub(crate) mod api;
pub(crate) mod control;
pub(crate) mod dns;
pub(crate) mod ebpf;
pub(crate) mod follower;
pub(crate) mod memory;
pub(crate) mod proxy;
pub(crate) mod runtime;

use std::sync::Arc;

use pier_controlplane::metrics::Metrics;
use pier_controlplane::store::Store;
use pier_snapshot::SnapshotHandle;
use prometheus::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What every part starts from: the store, the published snapshot, the metrics registry, the
/// shutdown signal, and the daemon's task list, which each part adds its tasks to.
pub(crate) struct Parts {
    /// The store.
    pub store: Arc<Store>,
    /// The published snapshot.
    pub snapshot: Arc<SnapshotHandle>,
    /// Where parts register their metrics.
    pub registry: Registry,
    /// The control plane's metrics (which also observe snapshot consumers).
    pub metrics: Arc<Metrics>,
    /// Turns true at shutdown.
    pub shutdown: watch::Receiver<bool>,
    /// Every task the daemon waits for at shutdown.
    pub tasks: Vec<JoinHandle<()>>,
}

impl Parts {
    /// Feeds every published snapshot to a dataplane part until shutdown.
    pub(crate) fn follow<C: pier_snapshot::SnapshotConsumer>(&mut self, part: C) {
        let follow = pier_snapshot::follow(
            Arc::clone(&self.snapshot),
            part,
            Arc::clone(&self.metrics) as Arc<dyn pier_snapshot::ConsumerObserver>,
        );
        self.spawn_until_shutdown(follow);
    }

    /// Runs `task` until it ends or the daemon shuts down.
    pub(crate) fn spawn_until_shutdown(
        &mut self,
        task: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let mut stop = self.shutdown.clone();
        self.tasks.push(tokio::spawn(async move {
            tokio::select! {
                () = task => {}
                _ = stop.changed() => {}
            }
        }));
    }
}

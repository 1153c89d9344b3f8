//! The node snapshot: an immutable, versioned view of every Service, published to the dataplane.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pier_model::snapshot::SnapshotBuilder;
use pier_snapshot::SnapshotHandle;

use crate::error::Result;
use crate::store::Store;

/// Observes snapshot builds (for metrics).
pub trait BuildObserver: Send + Sync {
    /// Called after each published snapshot with how long applying events and building took.
    fn built(&self, revision: u64, duration: Duration, services: usize);
}

/// Follows the store and publishes a snapshot after every batch of changes, until the store closes.
pub async fn run(
    store: Arc<Store>,
    handle: Arc<SnapshotHandle>,
    observer: Arc<dyn BuildObserver>,
) -> Result<()> {
    let start = Instant::now();
    let (mut builder, revision) = store
        .blocking("listing objects for the first snapshot", |s| {
            let revision = s.revision();
            let mut builder = SnapshotBuilder::new();
            for kind in SnapshotBuilder::KINDS {
                for object in s.list(kind, None, None)?.0 {
                    builder.upsert(&Arc::new(object));
                }
            }
            builder.set_revision(revision);
            Ok((builder, revision))
        })
        .await?;
    let snapshot = builder.build();
    observer.built(snapshot.revision, start.elapsed(), snapshot.services.len());
    handle.publish(snapshot);
    let mut watch = store.watch(revision + 1)?;
    loop {
        let first = watch.next().await?;
        let start = Instant::now();
        builder.apply(&first);
        // Coalesce the rest of its transaction, and whatever else is committed, into the same
        // snapshot: a multi-object write (an abort's pins and weights) is never half applied.
        for event in watch.committed().await? {
            builder.apply(&event);
        }
        let snapshot = builder.build();
        observer.built(snapshot.revision, start.elapsed(), snapshot.services.len());
        handle.publish(snapshot);
    }
}

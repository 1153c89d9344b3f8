//! Returns memory freed by a burst of changes to the kernel once the node settles. mimalloc
//! purges freed pages lazily, on its next allocations, so a daemon that goes quiet after
//! applying 10,000 Services kept tens of MB it no longer used. A zero purge delay would do it
//! too, but on every proxied request's frees; a purge after the burst leaves the hot path as
//! it is.

use std::time::Duration;

use super::Parts;

/// How long without a new snapshot counts as settled (the dataplane parts apply a snapshot
/// within milliseconds of its publication).
const SETTLED: Duration = Duration::from_secs(2);
/// A second purge this long after the first catches what slow consumers freed later.
const AGAIN: Duration = Duration::from_secs(10);

/// Starts the purge that follows each burst of snapshots.
pub(crate) fn start(parts: &mut Parts) {
    let mut published = parts.snapshot.subscribe();
    parts.spawn_until_shutdown(async move {
        while published.changed().await.is_ok() {
            // Settled: no new snapshot for a while.
            while tokio::time::timeout(SETTLED, published.changed())
                .await
                .is_ok_and(|changed| changed.is_ok())
            {}
            purge().await;
            tokio::time::sleep(AGAIN).await;
            purge().await;
        }
    });
}

/// Collects this thread's free pages and purges every arena's freed memory (process-wide).
async fn purge() {
    let collected = tokio::task::spawn_blocking(|| {
        // SAFETY: `mi_collect` takes no pointers; mimalloc allows it from any thread at any
        // time.
        #[allow(unsafe_code)]
        unsafe {
            libmimalloc_sys::mi_collect(true);
        }
    })
    .await;
    if let Err(e) = collected {
        tracing::warn!(error = %e, "returning freed memory to the kernel");
    }
}

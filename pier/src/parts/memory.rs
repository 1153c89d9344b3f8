//! Keeps the daemon's memory close to what it uses. mimalloc frees pages back to the kernel
//! only after a delay, and only when the thread that freed them allocates again, so a daemon
//! that goes quiet after applying 10,000 Services kept tens of MB it no longer used. Two
//! measures: a zero purge delay (set before any thread starts), and a full collection once a
//! burst of snapshots settles, for what idle threads still hold. And transparent huge pages
//! off for the daemon: mimalloc asks for them on its arenas, and a 2 MiB page counts whole in
//! RSS however little of it is used.
//!
//! Measured with `pier-bench cluster` at 10,000 Services x 10 endpoints, RSS 15 s after the
//! load: leader 164 -> 147-153 MB with the zero delay, followers 142-148 -> 130-142 MB, and
//! `pier-bench proxy` showed no cost. Huge pages off, on a later build: leader 184-192 ->
//! 141 MB, followers 150-162 -> 129-131 MB, for about 8% of h2c proxying's requests per
//! second (`bench/results/cluster-2026-12-05-huge-pages.txt`).

use std::time::Duration;

use super::Parts;

/// How long without a new snapshot counts as settled (the dataplane parts apply a snapshot
/// within milliseconds of its publication).
const SETTLED: Duration = Duration::from_secs(2);
/// A second purge this long after the first catches what slow consumers freed later.
const AGAIN: Duration = Duration::from_secs(10);

/// mimalloc's `mi_option_purge_delay` (the same index in its v2 and v3 headers).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// In the daemon's environment when it turned transparent huge pages off, for its children.
const HUGE_PAGES_OFF_ENV: &str = "PIER_DAEMON_THP_OFF";

/// Turns transparent huge pages off for the daemon unless `MIMALLOC_ALLOW_THP` is set or they
/// already are off. With them, mimalloc's arenas kept 30-37 MB of partly used 2 MiB pages
/// resident at 10,000 Services x 10 endpoints. Call before any other thread starts: it sets an
/// environment variable, which tells the container launcher to turn them back on.
pub(crate) fn keep_huge_pages_off() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return;
    }
    match nix::sys::prctl::get_thp_disable() {
        Ok(true) => return,
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(error = %e, "reading whether transparent huge pages are off");
            return;
        }
    }
    match nix::sys::prctl::set_thp_disable(true) {
        Ok(()) => std::env::set_var(HUGE_PAGES_OFF_ENV, "1"),
        Err(e) => tracing::warn!(error = %e, "turning transparent huge pages off"),
    }
}

/// In a child of the daemon that starts container processes: turns transparent huge pages
/// back on when the daemon turned them off, so containers get the machine's setting (the
/// flag is inherited across fork and exec).
pub(crate) fn give_containers_huge_pages_back() {
    if std::env::var_os(HUGE_PAGES_OFF_ENV).is_none() {
        return;
    }
    if let Err(e) = nix::sys::prctl::set_thp_disable(false) {
        eprintln!("pier: turning transparent huge pages back on for containers: {e}");
    }
}

/// Makes mimalloc hand freed pages back at once instead of after its 10 ms default, unless
/// `MIMALLOC_PURGE_DELAY` says otherwise. Call it before any other thread starts: mimalloc's
/// options are not synchronised.
pub(crate) fn purge_freed_pages_at_once() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: takes no pointers; called while the process has one thread (see above).
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
    }
}

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

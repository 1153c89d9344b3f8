//! The one way controllers run, after kube-runtime's `Controller`: list the kinds a
//! reconciler follows, then follow the store's watch; each event marks keys dirty; dirty keys
//! are reconciled in batches; a key whose reconcile failed is tried again with backoff, and
//! one that asked to be looked at later is requeued for then. The one file that decides how
//! a controller is run.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::Result;
use crate::store::{EventType, Store};
use pier_model::{Kind, Object};

/// First wait before a failed key is reconciled again; it doubles per failure.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(100);
/// Longest wait before a failed key is reconciled again.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What one reconcile pass asks of the runner.
#[derive(Debug)]
pub struct Reconciled<K> {
    /// Keys that failed: reconciled again after a backoff that grows per key.
    pub failed: Vec<(K, String)>,
    /// Keys to look at again after a while even if nothing changes (a pod still starting).
    pub requeue: Vec<(K, Duration)>,
}

impl<K> Default for Reconciled<K> {
    fn default() -> Self {
        Self {
            failed: Vec::new(),
            requeue: Vec::new(),
        }
    }
}

/// A controller: a cache fed by store events, and a reconcile of the keys they touch.
pub trait Reconciler: Send + 'static {
    /// What a reconcile is about (a Service, a Deployment, a Pod).
    type Key: Ord + Clone + Debug + Send + Sync + 'static;

    /// Name in logs.
    fn name(&self) -> &'static str;

    /// The kinds whose events this controller follows.
    fn kinds(&self) -> &'static [Kind];

    /// Takes an object change into the cache and adds the keys it touches to `dirty`.
    fn observe(&mut self, event_type: EventType, object: &Object, dirty: &mut BTreeSet<Self::Key>);

    /// Keys worth reconciling once the initial list is in, beyond those `observe` marked
    /// (the runner's first pass covers both).
    fn resync_keys(&self) -> Vec<Self::Key> {
        Vec::new()
    }

    /// Brings the store (or the node) in line for `keys`.
    fn reconcile(
        &mut self,
        keys: BTreeSet<Self::Key>,
    ) -> impl Future<Output = Reconciled<Self::Key>> + Send;
}

/// Writes `ops` for `key` in one transaction and takes what was written into `controller`'s
/// cache at once, so a pass before the watch catches up sees it; a failure is queued in
/// `result` for a retry of `key`. What was written, when there was something and it went in.
pub async fn write_for<R: Reconciler>(
    controller: &mut R,
    store: &Arc<Store>,
    what: &'static str,
    key: &R::Key,
    ops: Vec<crate::store::Op>,
    result: &mut Reconciled<R::Key>,
) -> Option<Vec<crate::store::Written>> {
    if ops.is_empty() {
        return None;
    }
    match store.blocking(what, move |s| s.write(ops)).await {
        Ok(written) => {
            observe_written(controller, &written);
            Some(written)
        }
        Err(e) => {
            result.failed.push((key.clone(), crate::error::chain(&e)));
            None
        }
    }
}

fn observe_written<R: Reconciler>(controller: &mut R, written: &[crate::store::Written]) {
    for w in written {
        let Some(object) = &w.object else { continue };
        let event = if w.outcome == crate::store::Outcome::Deleted {
            EventType::Deleted
        } else {
            EventType::Modified
        };
        controller.observe(event, object, &mut BTreeSet::new());
    }
}

/// Runs `controller` until the store closes or its watch fails (the caller restarts it).
pub async fn run<R: Reconciler>(store: Arc<Store>, mut controller: R) -> Result<()> {
    let mut queue = Queue::default();
    let revision = list_into(&store, &mut controller, &mut queue.dirty).await?;
    queue.dirty.extend(controller.resync_keys());
    let kinds = controller.kinds();
    let mut watch = store.watch_kinds(revision + 1, kinds)?;
    loop {
        let ready = queue.take_ready(Instant::now());
        if !ready.is_empty() {
            let result = controller.reconcile(ready).await;
            queue.settle(controller.name(), result, Instant::now());
        }
        let event = match queue.next_deadline() {
            Some(at) if at <= Instant::now() => None,
            Some(at) => tokio::time::timeout_at(at, watch.next()).await.ok(),
            None => Some(watch.next().await),
        };
        if let Some(event) = event {
            let event = event?;
            controller.observe(event.event_type, &event.object, &mut queue.dirty);
        }
        // Coalesce what is already committed (whole transactions) into the same pass.
        for event in watch.committed().await? {
            controller.observe(event.event_type, &event.object, &mut queue.dirty);
        }
    }
}

/// Lists every followed kind into the controller's cache (off the async threads); returns the
/// revision the list reflects.
async fn list_into<R: Reconciler>(
    store: &Arc<Store>,
    controller: &mut R,
    dirty: &mut BTreeSet<R::Key>,
) -> Result<u64> {
    let kinds = controller.kinds();
    let (objects, revision) = store
        .blocking("listing for a controller", move |s| {
            let revision = s.revision();
            let mut all = Vec::new();
            for kind in kinds {
                all.extend(s.list(*kind, None, None)?.0);
            }
            Ok((all, revision))
        })
        .await?;
    for object in &objects {
        controller.observe(EventType::Added, object, dirty);
    }
    Ok(revision)
}

/// Keys waiting for a reconcile: dirty now, or due at a time (a retry or a requeue).
struct Queue<K: Ord> {
    dirty: BTreeSet<K>,
    due: BTreeMap<K, Instant>,
    backoff: BTreeMap<K, Duration>,
}

impl<K: Ord> Default for Queue<K> {
    fn default() -> Self {
        Self {
            dirty: BTreeSet::new(),
            due: BTreeMap::new(),
            backoff: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone + Debug> Queue<K> {
    /// Every dirty key and every key that is due, once each.
    fn take_ready(&mut self, now: Instant) -> BTreeSet<K> {
        let mut ready = std::mem::take(&mut self.dirty);
        let due: Vec<K> = self
            .due
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            self.due.remove(&k);
            ready.insert(k);
        }
        // A dirty key is reconciled now; a retry scheduled for it is no longer needed.
        for k in &ready {
            self.due.remove(k);
        }
        ready
    }

    /// Records a pass: failures back off per key, successes forget their backoff.
    fn settle(&mut self, name: &'static str, result: Reconciled<K>, now: Instant) {
        let failed: BTreeSet<K> = result.failed.iter().map(|(k, _)| k.clone()).collect();
        self.backoff.retain(|k, _| failed.contains(k));
        for (key, error) in result.failed {
            let wait = self
                .backoff
                .get(&key)
                .map_or(BACKOFF_FIRST, |w| (*w * 2).min(BACKOFF_MAX));
            tracing::warn!(controller = name, ?key, %error, retry_in = ?wait, "reconcile failed");
            self.backoff.insert(key.clone(), wait);
            self.due.insert(key, now + wait);
        }
        for (key, after) in result.requeue {
            let at = now + after;
            let slot = self.due.entry(key).or_insert(at);
            *slot = (*slot).min(at);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        if !self.dirty.is_empty() {
            return Some(Instant::now());
        }
        self.due.values().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_per_key_and_success_resets() {
        let mut q: Queue<u32> = Queue::default();
        let t0 = Instant::now();
        q.dirty.extend([1, 2]);
        assert_eq!(q.take_ready(t0), BTreeSet::from([1, 2]));
        let fail = |k: u32| Reconciled {
            failed: vec![(k, "boom".to_string())],
            requeue: Vec::new(),
        };
        q.settle("t", fail(1), t0);
        assert_eq!(q.next_deadline(), Some(t0 + BACKOFF_FIRST));
        assert!(q.take_ready(t0).is_empty(), "not before its backoff");
        let t1 = t0 + BACKOFF_FIRST;
        assert_eq!(q.take_ready(t1), BTreeSet::from([1]));
        q.settle("t", fail(1), t1);
        assert_eq!(q.due[&1], t1 + BACKOFF_FIRST * 2, "the backoff doubles");
        let t2 = t1 + BACKOFF_FIRST * 2;
        assert_eq!(q.take_ready(t2), BTreeSet::from([1]));
        q.settle("t", Reconciled::default(), t2);
        assert!(q.backoff.is_empty() && q.due.is_empty(), "success forgets");
    }

    #[test]
    fn requeues_keep_the_earliest_time_and_dirty_keys_go_first() {
        let mut q: Queue<u32> = Queue::default();
        let t0 = Instant::now();
        let requeue = |after: u64| Reconciled {
            failed: Vec::new(),
            requeue: vec![(7, Duration::from_secs(after))],
        };
        q.settle("t", requeue(10), t0);
        q.settle("t", requeue(3), t0);
        assert_eq!(q.next_deadline(), Some(t0 + Duration::from_secs(3)));
        q.dirty.insert(7);
        assert_eq!(q.take_ready(t0), BTreeSet::from([7]));
        assert!(q.due.is_empty(), "a dirty key's pending requeue is dropped");
    }

    #[test]
    fn the_backoff_is_capped() {
        let mut q: Queue<u32> = Queue::default();
        let mut now = Instant::now();
        for _ in 0..20 {
            q.take_ready(now);
            q.settle(
                "t",
                Reconciled {
                    failed: vec![(1, "x".into())],
                    requeue: Vec::new(),
                },
                now,
            );
            now = q.due[&1];
        }
        assert_eq!(q.backoff[&1], BACKOFF_MAX);
    }
}

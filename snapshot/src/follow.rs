//! Driving a dataplane part from the published snapshot: diff, apply, or reject, keep the last
//! good one and retry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{diff, NodeSnapshot, SnapshotDiff, SnapshotHandle};

/// Why a dataplane part did not apply a snapshot. Either way it still serves the last one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The snapshot asks for what this part cannot serve (two services on one address, a
    /// route that does not compile): the same snapshot would fail again, so it waits for the
    /// next publish.
    #[error("{0}")]
    Invalid(String),
    /// A resource the part needs failed or is busy (a port in use, a map or netlink write):
    /// the same snapshot is retried with backoff.
    #[error("{0}")]
    Transient(String),
}

impl ApplyError {
    /// Whether applying the same snapshot again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ApplyError::Transient(_))
    }

    fn kind(&self) -> &'static str {
        match self {
            ApplyError::Invalid(_) => "invalid",
            ApplyError::Transient(_) => "transient",
        }
    }
}

/// A dataplane part (proxy, DNS, eBPF) that applies snapshots incrementally.
pub trait SnapshotConsumer: Send + 'static {
    /// Name used in logs and metric labels.
    fn name(&self) -> &'static str;

    /// Applies `diff` (from the last snapshot this part applied) whose result is `snapshot`.
    ///
    /// On error the part must still be serving the previous snapshot unchanged: validate, then swap.
    fn apply(
        &mut self,
        diff: &SnapshotDiff,
        snapshot: &Arc<NodeSnapshot>,
    ) -> Result<(), ApplyError>;
}

/// Observes what consumers do with snapshots (for metrics).
pub trait ConsumerObserver: Send + Sync {
    /// A snapshot was applied.
    fn applied(&self, part: &'static str, revision: u64, seconds: f64);
    /// An attempt to apply a snapshot failed; the part keeps serving `kept_revision`.
    fn rejected(&self, part: &'static str, revision: u64, kept_revision: u64);
}

/// First wait before a rejected snapshot is tried again; it doubles per failure.
pub const RETRY_FIRST: Duration = Duration::from_millis(100);
/// Longest wait between two tries of the same snapshot.
pub const RETRY_MAX: Duration = Duration::from_secs(10);

/// Applies every snapshot `handle` publishes to `part`, until the handle is dropped.
///
/// A rejected snapshot is logged and counted, and the part keeps serving the last one it
/// applied, like an xDS NACK. A transient failure is retried with exponential backoff
/// (`RETRY_FIRST` doubling up to `RETRY_MAX`) until it applies or a newer snapshot comes;
/// every attempt diffs from the last applied snapshot, so a fix is applied as a whole.
pub async fn follow<C: SnapshotConsumer>(
    handle: Arc<SnapshotHandle>,
    mut part: C,
    observer: Arc<dyn ConsumerObserver>,
) {
    let mut changes = handle.subscribe();
    let mut applied = Arc::new(NodeSnapshot::default());
    let mut retry: Option<Duration> = None;
    loop {
        let current = handle.load();
        if !Arc::ptr_eq(&current, &applied) {
            retry = match try_apply(&mut part, &applied, &current, observer.as_ref(), retry) {
                Ok(()) => {
                    applied = current;
                    None
                }
                Err(next) => next,
            };
        }
        let published = match retry {
            Some(wait) => tokio::select! {
                changed = changes.changed() => changed.is_ok(),
                () = tokio::time::sleep(wait) => true,
            },
            None => changes.changed().await.is_ok(),
        };
        if !published {
            return;
        }
    }
}

/// One attempt to bring `part` from `applied` to `current`. On failure, the wait before the
/// next attempt of the same snapshot (`None`: wait for a newer one).
fn try_apply<C: SnapshotConsumer>(
    part: &mut C,
    applied: &NodeSnapshot,
    current: &Arc<NodeSnapshot>,
    observer: &dyn ConsumerObserver,
    last_wait: Option<Duration>,
) -> Result<(), Option<Duration>> {
    let d = diff(applied, current);
    let started = Instant::now();
    match part.apply(&d, current) {
        Ok(()) => {
            observer.applied(
                part.name(),
                current.revision,
                started.elapsed().as_secs_f64(),
            );
            Ok(())
        }
        Err(error) => {
            let next = error
                .is_retryable()
                .then(|| last_wait.map_or(RETRY_FIRST, |w| (w * 2).min(RETRY_MAX)));
            tracing::error!(
                part = part.name(),
                revision = current.revision,
                kept = applied.revision,
                kind = error.kind(),
                retry_in = ?next,
                %error,
                "snapshot rejected; still serving the previous one"
            );
            observer.rejected(part.name(), current.revision, applied.revision);
            Err(next)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    use imbl::OrdMap;

    use super::*;
    use crate::policy::TrafficPolicy;
    use crate::Endpoints;
    use crate::{ServiceKey, ServiceView};

    #[derive(Default)]
    struct Seen {
        applied: Mutex<Vec<u64>>,
        rejected: Mutex<Vec<(u64, u64)>>,
    }

    impl ConsumerObserver for Seen {
        fn applied(&self, _: &'static str, revision: u64, _: f64) {
            self.applied.lock().unwrap().push(revision);
        }
        fn rejected(&self, _: &'static str, revision: u64, kept: u64) {
            self.rejected.lock().unwrap().push((revision, kept));
        }
    }

    /// Mirrors the service map from diffs; refuses a service named "bad", and one named
    /// "busy" while `busy` is set (a port another process holds, say).
    struct Mirror {
        services: Arc<Mutex<OrdMap<ServiceKey, Arc<ServiceView>>>>,
        busy: Arc<AtomicBool>,
    }

    impl SnapshotConsumer for Mirror {
        fn name(&self) -> &'static str {
            "mirror"
        }
        fn apply(&mut self, diff: &SnapshotDiff, _: &Arc<NodeSnapshot>) -> Result<(), ApplyError> {
            let mut next = self.services.lock().unwrap().clone();
            diff.apply_to(&mut next);
            if next.keys().any(|k| k.name == "bad") {
                return Err(ApplyError::Invalid(
                    "service \"bad\" cannot be served".into(),
                ));
            }
            if next.keys().any(|k| k.name == "busy") && self.busy.load(Ordering::SeqCst) {
                return Err(ApplyError::Transient("port 80 is in use".into()));
            }
            *self.services.lock().unwrap() = next;
            Ok(())
        }
    }

    fn svc(name: &str) -> Arc<ServiceView> {
        Arc::new(ServiceView {
            key: ServiceKey::new("default", name),
            cluster_ip: None,
            cluster_ips: Vec::new(),
            headless: false,
            service_type: "ClusterIP".into(),
            external_name: None,
            affinity_timeout: None,
            publish_not_ready: false,
            internal_local: false,
            external_local: false,
            ports: Vec::new(),
            endpoints: Endpoints::default(),
            http_routes: Vec::new(),
            l4_routes: Vec::new(),
            policy: Arc::new(TrafficPolicy::default()),
        })
    }

    fn snapshot(revision: u64, names: &[&str]) -> NodeSnapshot {
        NodeSnapshot {
            revision,
            services: names
                .iter()
                .map(|n| (ServiceKey::new("default", n), svc(n)))
                .collect(),
            edge: Default::default(),
        }
    }

    async fn until(what: &str, f: impl Fn() -> bool) {
        for _ in 0..2500 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("timed out waiting for {what}");
    }

    type Services = Arc<Mutex<OrdMap<ServiceKey, Arc<ServiceView>>>>;

    fn start(
        handle: &Arc<SnapshotHandle>,
        busy: bool,
    ) -> (
        Services,
        Arc<AtomicBool>,
        Arc<Seen>,
        tokio::task::JoinHandle<()>,
    ) {
        let services = Arc::new(Mutex::new(OrdMap::new()));
        let busy = Arc::new(AtomicBool::new(busy));
        let seen = Arc::new(Seen::default());
        let task = tokio::spawn(follow(
            Arc::clone(handle),
            Mirror {
                services: Arc::clone(&services),
                busy: Arc::clone(&busy),
            },
            seen.clone(),
        ));
        (services, busy, seen, task)
    }

    #[tokio::test]
    async fn applies_diffs_and_keeps_last_good_on_reject() {
        let handle = Arc::new(SnapshotHandle::default());
        let (services, _, seen, task) = start(&handle, false);
        handle.publish(snapshot(1, &["a"]));
        until("revision 1", || seen.applied.lock().unwrap().contains(&1)).await;
        assert_eq!(services.lock().unwrap().len(), 1);

        handle.publish(snapshot(2, &["a", "bad"]));
        until("the rejection", || {
            !seen.rejected.lock().unwrap().is_empty()
        })
        .await;
        assert_eq!(seen.rejected.lock().unwrap()[0], (2, 1));
        assert_eq!(services.lock().unwrap().len(), 1, "previous state kept");
        tokio::time::sleep(RETRY_FIRST * 3).await;
        assert_eq!(
            seen.rejected.lock().unwrap().len(),
            1,
            "an invalid snapshot waits for the next publish"
        );

        handle.publish(snapshot(3, &["a", "b"]));
        until("revision 3", || seen.applied.lock().unwrap().contains(&3)).await;
        let names: Vec<String> = services
            .lock()
            .unwrap()
            .keys()
            .map(|k| k.name.clone())
            .collect();
        assert_eq!(names, ["a", "b"]);
        task.abort();
    }

    #[tokio::test]
    async fn a_transient_failure_converges_without_another_publish() {
        let handle = Arc::new(SnapshotHandle::default());
        let (services, busy, seen, task) = start(&handle, true);
        handle.publish(snapshot(1, &["a", "busy"]));
        until("two failed tries", || {
            seen.rejected.lock().unwrap().len() >= 2
        })
        .await;
        assert!(
            services.lock().unwrap().is_empty(),
            "nothing applied while busy"
        );
        busy.store(false, Ordering::SeqCst);
        until("the retry to apply revision 1", || {
            seen.applied.lock().unwrap().contains(&1)
        })
        .await;
        assert_eq!(services.lock().unwrap().len(), 2);
        let rejected = seen.rejected.lock().unwrap().clone();
        assert!(rejected.iter().all(|r| *r == (1, 0)), "{rejected:?}");
        tokio::time::sleep(RETRY_FIRST * 3).await;
        assert_eq!(
            seen.rejected.lock().unwrap().len(),
            rejected.len(),
            "no retry after success"
        );
        task.abort();
    }
}

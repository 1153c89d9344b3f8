//! Driving a dataplane part from the published snapshot: diff, apply, or reject and keep the last good one.

use std::sync::Arc;
use std::time::Instant;

use super::{diff, NodeSnapshot, SnapshotDiff, SnapshotHandle};

/// A dataplane part (proxy, DNS, eBPF) that applies snapshots incrementally.
pub trait SnapshotConsumer: Send + 'static {
    /// Name used in logs and metric labels.
    fn name(&self) -> &'static str;

    /// Applies `diff` (from the last snapshot this part applied) whose result is `snapshot`.
    ///
    /// On error the part must still be serving the previous snapshot unchanged: validate, then swap.
    fn apply(&mut self, diff: &SnapshotDiff, snapshot: &Arc<NodeSnapshot>) -> Result<(), String>;
}

/// Observes what consumers do with snapshots (for metrics).
pub trait ConsumerObserver: Send + Sync {
    /// A snapshot was applied.
    fn applied(&self, part: &'static str, revision: u64, seconds: f64);
    /// A snapshot was rejected; the part keeps serving `kept_revision`.
    fn rejected(&self, part: &'static str, revision: u64, kept_revision: u64);
}

/// Applies every snapshot `handle` publishes to `part`, until the handle is dropped.
///
/// A rejected snapshot is logged and counted; the next attempt diffs from the last applied
/// snapshot again, so a later fix is applied as a whole, like an xDS NACK followed by an ACK.
pub async fn follow<C: SnapshotConsumer>(
    handle: Arc<SnapshotHandle>,
    mut part: C,
    observer: Arc<dyn ConsumerObserver>,
) {
    let mut changes = handle.subscribe();
    let mut applied = Arc::new(NodeSnapshot::default());
    loop {
        let current = handle.load();
        if !Arc::ptr_eq(&current, &applied) {
            let d = diff(&applied, &current);
            let started = Instant::now();
            match part.apply(&d, &current) {
                Ok(()) => {
                    observer.applied(
                        part.name(),
                        current.revision,
                        started.elapsed().as_secs_f64(),
                    );
                    applied = current;
                }
                Err(reason) => {
                    tracing::error!(
                        part = part.name(),
                        revision = current.revision,
                        kept = applied.revision,
                        %reason,
                        "snapshot rejected; still serving the previous one"
                    );
                    observer.rejected(part.name(), current.revision, applied.revision);
                }
            }
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use imbl::OrdMap;

    use super::*;
    use crate::model::Object;
    use crate::snapshot::{ServiceKey, ServiceView, SnapshotBuilder};

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

    /// Mirrors the service map from diffs; refuses any service named "bad".
    struct Mirror {
        services: Arc<Mutex<OrdMap<ServiceKey, Arc<ServiceView>>>>,
    }

    impl SnapshotConsumer for Mirror {
        fn name(&self) -> &'static str {
            "mirror"
        }
        fn apply(&mut self, diff: &SnapshotDiff, _: &Arc<NodeSnapshot>) -> Result<(), String> {
            let mut next = self.services.lock().unwrap().clone();
            diff.apply_to(&mut next);
            if next.keys().any(|k| k.name == "bad") {
                return Err("service \"bad\" cannot be served".into());
            }
            *self.services.lock().unwrap() = next;
            Ok(())
        }
    }

    fn svc(name: &str) -> Arc<Object> {
        Arc::new(
            Object::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                "spec": {"clusterIP": "10.96.0.9", "ports": [{"port": 80}]}
            }))
            .unwrap()
            .object,
        )
    }

    async fn until(what: &str, f: impl Fn() -> bool) {
        for _ in 0..500 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test]
    async fn applies_diffs_and_keeps_last_good_on_reject() {
        let handle = Arc::new(SnapshotHandle::default());
        let services = Arc::new(Mutex::new(OrdMap::new()));
        let seen = Arc::new(Seen::default());
        let task = tokio::spawn(follow(
            Arc::clone(&handle),
            Mirror {
                services: Arc::clone(&services),
            },
            seen.clone(),
        ));
        let mut builder = SnapshotBuilder::new();
        builder.upsert(&svc("a"));
        builder.set_revision(1);
        handle.publish(builder.build());
        until("revision 1", || seen.applied.lock().unwrap().contains(&1)).await;
        assert_eq!(services.lock().unwrap().len(), 1);

        builder.upsert(&svc("bad"));
        builder.set_revision(2);
        handle.publish(builder.build());
        until("the rejection", || {
            !seen.rejected.lock().unwrap().is_empty()
        })
        .await;
        assert_eq!(seen.rejected.lock().unwrap()[0], (2, 1));
        assert_eq!(services.lock().unwrap().len(), 1, "previous state kept");

        builder.remove(&svc("bad"));
        builder.upsert(&svc("b"));
        builder.set_revision(3);
        handle.publish(builder.build());
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
}

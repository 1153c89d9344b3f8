//! Kubernetes Events, recorded as client-go's recorder records them. The controllers and the
//! engine each hold a `Recorder` naming their component and node, and report what they do;
//! a writer task stores the reports as `v1/Event` objects in the object's namespace, counts a
//! repeat (same object, type, reason and message) on the one Event rather than adding another,
//! and deletes its own Events once their last occurrence is older than the TTL (an hour by
//! default, as the API server keeps them). Recording never blocks the reporter: when the
//! writer falls behind, reports are dropped with a log line.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use crate::store::{Op, Store};
use pier_model::core_event::{EventSource, NORMAL, WARNING};
use pier_model::time::{parse_rfc3339, rfc3339};
use pier_model::{CoreEvent, Kind, Object, ObjectMeta, ObjectReference};

/// How long an Event is kept after its last occurrence, unless configured.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// Reports waiting for the writer; more are dropped.
const QUEUE: usize = 1024;
/// Repeats remembered for counting; the memory is cleared past this.
const REMEMBERED: usize = 4096;
/// How often expired Events are looked for.
const EXPIRE_EVERY: Duration = Duration::from_secs(60);
/// A repeat is written at most this often per Event; repeats in between are counted and
/// written with the next.
const REPEAT_EVERY: Duration = Duration::from_secs(10);

/// Reports Events for one component (`default-scheduler`, `kubelet`...) on one node.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Report>,
}

/// One report: what happened to which object.
struct Report {
    about: ObjectReference,
    event_type: &'static str,
    reason: String,
    message: String,
    at: SystemTime,
}

impl Recorder {
    /// A recorder for `component` on `host`, with its writer task on the current runtime
    /// (it ends when the last clone of the recorder is dropped).
    pub fn start(store: Arc<Store>, component: &str, host: &str, ttl: Duration) -> Recorder {
        let (tx, rx) = mpsc::channel(QUEUE);
        let source = EventSource {
            component: component.to_string(),
            host: host.to_string(),
        };
        tokio::spawn(Writer::new(store, source, ttl).run(rx));
        Recorder { tx }
    }

    /// Reports a `Normal` event about `object`.
    pub fn normal(&self, object: &Object, reason: &str, message: impl Into<String>) {
        self.report(reference(object), NORMAL, reason, message.into());
    }

    /// Reports a `Warning` event about `object`.
    pub fn warning(&self, object: &Object, reason: &str, message: impl Into<String>) {
        self.report(reference(object), WARNING, reason, message.into());
    }

    /// Reports an event about the object (or part of it, by `fieldPath`) `about` refers to.
    pub fn report(
        &self,
        about: ObjectReference,
        event_type: &'static str,
        reason: &str,
        message: String,
    ) {
        let report = Report {
            about,
            event_type,
            reason: reason.to_string(),
            message,
            at: SystemTime::now(),
        };
        if let Err(e) = self.tx.try_send(report) {
            let (what, report) = match e {
                mpsc::error::TrySendError::Full(r) => ("the event writer is behind", r),
                mpsc::error::TrySendError::Closed(r) => ("the event writer stopped", r),
            };
            tracing::warn!(object = %report.about.name, reason = %report.reason, "event dropped: {what}");
        }
    }
}

/// A reference to `object` for an Event's `involvedObject`.
pub fn reference(object: &Object) -> ObjectReference {
    reference_to(object.kind(), object.meta())
}

/// A reference to the object of `kind` with metadata `meta`.
pub fn reference_to(kind: Kind, meta: &ObjectMeta) -> ObjectReference {
    ObjectReference {
        api_version: kind.api_versions()[0].to_string(),
        kind: kind.as_str().to_string(),
        namespace: if kind.namespaced() {
            meta.namespace().to_string()
        } else {
            String::new()
        },
        name: meta.name.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        field_path: String::new(),
    }
}

/// What makes two reports the same event.
type Key = (
    String,
    String,
    String,
    String,
    String,
    &'static str,
    String,
    String,
);

fn key(r: &Report) -> Key {
    let a = &r.about;
    (
        a.kind.clone(),
        a.namespace.clone(),
        a.name.clone(),
        a.uid.clone(),
        a.field_path.clone(),
        r.event_type,
        r.reason.clone(),
        r.message.clone(),
    )
}

/// The task that turns reports into stored Events.
struct Writer {
    store: Arc<Store>,
    source: EventSource,
    ttl: Duration,
    /// The Event each recent report went to, to count repeats on.
    seen: HashMap<Key, Seen>,
}

/// An Event as last counted, when it was last written, and whether counts wait to be.
struct Seen {
    event: CoreEvent,
    written: Instant,
    dirty: bool,
}

impl Writer {
    fn new(store: Arc<Store>, source: EventSource, ttl: Duration) -> Writer {
        Writer {
            store,
            source,
            ttl,
            seen: HashMap::new(),
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Report>) {
        let mut expire = tokio::time::interval(EXPIRE_EVERY);
        let mut flush = tokio::time::interval(REPEAT_EVERY);
        loop {
            tokio::select! {
                got = rx.recv() => {
                    let Some(first) = got else {
                        self.flush(true).await;
                        return;
                    };
                    let mut batch = vec![first];
                    while let Ok(more) = rx.try_recv() {
                        batch.push(more);
                    }
                    self.count(batch);
                    self.flush(false).await;
                }
                _ = flush.tick() => self.flush(true).await,
                _ = expire.tick() => self.expire().await,
            }
        }
    }

    /// Writes the Events `dirty` picks.
    async fn flush(&mut self, all: bool) {
        let events = self.dirty(all);
        self.store_events(events).await;
    }

    /// The Events with counts to write: all of them with `all`, else those not written
    /// within `REPEAT_EVERY`; each is marked written.
    fn dirty(&mut self, all: bool) -> Vec<CoreEvent> {
        let now = Instant::now();
        self.seen
            .values_mut()
            .filter(|s| s.dirty && (all || now.duration_since(s.written) >= REPEAT_EVERY))
            .map(|s| {
                s.dirty = false;
                s.written = now;
                s.event.clone()
            })
            .collect()
    }

    /// Counts a batch of reports: a new Event each, or one more on the Event they repeat.
    fn count(&mut self, batch: Vec<Report>) {
        if self.seen.len() > REMEMBERED {
            self.seen.retain(|_, s| s.dirty);
        }
        for report in batch {
            let k = key(&report);
            let at = rfc3339(report.at);
            match self.seen.get_mut(&k) {
                Some(seen) => {
                    seen.event.count += 1;
                    seen.event.last_timestamp = Some(at);
                    seen.dirty = true;
                }
                None => {
                    let event = self.event(report, at);
                    let written = Instant::now()
                        .checked_sub(REPEAT_EVERY)
                        .unwrap_or_else(Instant::now);
                    let seen = Seen {
                        event,
                        written,
                        dirty: true,
                    };
                    self.seen.insert(k, seen);
                }
            }
        }
    }

    /// Writes Events to the store, each on its own (one that cannot be written, say in a
    /// namespace being deleted, does not hold up the others).
    async fn store_events(&self, events: Vec<CoreEvent>) {
        if events.is_empty() {
            return;
        }
        let written = self
            .store
            .blocking("recording events", move |store| {
                let mut failed = Vec::new();
                for event in events {
                    let name = event.metadata.name.clone();
                    if let Err(e) = store.write(vec![Op::Put(Object::Event(event))]) {
                        failed.push(format!("{name}: {}", crate::error::chain(&e)));
                    }
                }
                Ok(failed)
            })
            .await;
        match written {
            Ok(failed) if failed.is_empty() => {}
            Ok(failed) => tracing::warn!(events = %failed.join("; "), "events not stored"),
            Err(e) => tracing::warn!(error = %crate::error::chain(&e), "events not stored"),
        }
    }

    /// A new Event for `report`, named as client-go names them (`<object>.<hex nanos>`).
    fn event(&self, report: Report, at: String) -> CoreEvent {
        let nanos = report
            .at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let namespace = match report.about.namespace.as_str() {
            "" => "default".to_string(),
            ns => ns.to_string(),
        };
        CoreEvent {
            api_version: "v1".into(),
            kind: "Event".into(),
            metadata: ObjectMeta {
                name: format!("{}.{nanos:x}", report.about.name),
                namespace,
                ..ObjectMeta::default()
            },
            involved_object: report.about,
            reason: report.reason,
            message: report.message,
            source: self.source.clone(),
            first_timestamp: Some(at.clone()),
            last_timestamp: Some(at),
            count: 1,
            event_type: report.event_type.to_string(),
            event_time: None,
            action: String::new(),
            reporting_component: self.source.component.clone(),
            reporting_instance: self.source.host.clone(),
        }
    }

    /// Deletes this writer's Events whose last occurrence is older than the TTL.
    async fn expire(&mut self) {
        let Some(cutoff) = SystemTime::now().checked_sub(self.ttl) else {
            return;
        };
        let source = self.source.clone();
        let expired = self
            .store
            .blocking("expiring events", move |store| {
                let (events, _) = store.list(Kind::Event, None, None)?;
                let ops: Vec<Op> = events
                    .iter()
                    .filter_map(|o| match o {
                        Object::Event(e) if e.source == source && older(e, cutoff) => {
                            Some(Op::remove(
                                Kind::Event,
                                e.metadata.namespace(),
                                e.metadata.name.clone(),
                            ))
                        }
                        _ => None,
                    })
                    .collect();
                let count = ops.len();
                if !ops.is_empty() {
                    store.write(ops)?;
                }
                Ok(count)
            })
            .await;
        match expired {
            Ok(0) => {}
            Ok(n) => {
                let cutoff_text = rfc3339(cutoff);
                self.seen.retain(|_, s| {
                    s.event
                        .last_timestamp
                        .as_deref()
                        .is_some_and(|t| t > cutoff_text.as_str())
                });
                tracing::debug!(count = n, "expired events deleted");
            }
            Err(e) => tracing::warn!(error = %crate::error::chain(&e), "expiring events failed"),
        }
    }
}

/// Whether `event` last happened before `cutoff`.
fn older(event: &CoreEvent, cutoff: SystemTime) -> bool {
    let last = event
        .last_timestamp
        .as_deref()
        .or(event.event_time.as_deref())
        .or(event.metadata.creation_timestamp.as_deref());
    last.and_then(parse_rfc3339).is_some_and(|t| t < cutoff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;
    use pier_model::Pod;

    fn pod() -> Object {
        let mut pod = Pod::default();
        pod.metadata.name = "web".into();
        pod.metadata.uid = "u1".into();
        Object::Pod(pod)
    }

    #[tokio::test]
    async fn repeats_are_counted_on_one_event() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), StoreConfig::default()).unwrap();
        let recorder = Recorder::start(Arc::clone(&store), "kubelet", "n1", DEFAULT_TTL);
        for _ in 0..3 {
            recorder.warning(&pod(), "Unhealthy", "Readiness probe failed");
        }
        recorder.normal(&pod(), "Started", "Started container web");
        // The writer writes what it counted when the last recorder goes.
        drop(recorder);
        let deadline = Instant::now() + Duration::from_secs(10);
        let events = loop {
            let (objects, _) = store.list(Kind::Event, Some("default"), None).unwrap();
            let events: Vec<CoreEvent> = objects
                .into_iter()
                .filter_map(|o| match o {
                    Object::Event(e) => Some(e),
                    _ => None,
                })
                .collect();
            // The writer stores each counted event on its own, so wait for both.
            let unhealthy = events
                .iter()
                .any(|e| e.reason == "Unhealthy" && e.count == 3);
            let started = events.iter().any(|e| e.reason == "Started");
            if unhealthy && started {
                break events;
            }
            assert!(Instant::now() < deadline, "{events:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(events.len(), 2, "{events:?}");
        let unhealthy = events.iter().find(|e| e.reason == "Unhealthy").unwrap();
        assert_eq!(unhealthy.event_type, WARNING);
        assert_eq!(unhealthy.involved_object.kind, "Pod");
        assert_eq!(unhealthy.involved_object.uid, "u1");
        assert_eq!(unhealthy.source.host, "n1");
        assert!(unhealthy.metadata.name.starts_with("web."));
    }

    #[test]
    fn an_event_expires_by_its_last_occurrence() {
        let mut event = CoreEvent {
            last_timestamp: Some("2026-01-01T10:00:00Z".into()),
            ..CoreEvent::default()
        };
        let at = |t: &str| humantime::parse_rfc3339(t).unwrap();
        assert!(older(&event, at("2026-01-01T10:00:01Z")));
        assert!(!older(&event, at("2026-01-01T09:59:59Z")));
        event.last_timestamp = None;
        event.event_time = Some("2026-01-01T10:00:00.123456Z".into());
        assert!(older(&event, at("2026-01-01T10:00:01Z")));
    }
}

//! `?watch=true` on a collection, as the API server streams it: one JSON event per line
//! (`ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`, `ERROR`). Without a `resourceVersion` (or
//! with `0`) the current objects come first as `ADDED`; with one, the changes after it. A
//! revision the store no longer holds ends the stream with an `ERROR` event carrying a 410
//! `Expired` Status, so the client lists again. Bookmarks (`allowWatchBookmarks`) say how far
//! the stream has got while nothing matches; `timeoutSeconds` ends it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch as signal};

use super::catalog::Resource;
use super::read::{self, Selectors};
use super::status::{self, Failure};
use super::table;
use crate::store::Store;
use pier_model::EventType;

/// How often a bookmark is sent when asked for.
const BOOKMARK_EVERY: Duration = Duration::from_secs(5);
/// Events written but not yet sent to a slow client.
const BUFFER: usize = 256;

/// What a watch serves and how.
pub(crate) struct WatchRequest {
    pub(crate) resource: Resource,
    pub(crate) namespace: Option<String>,
    pub(crate) selectors: Selectors,
    /// The `resourceVersion` asked for, if any.
    pub(crate) from: Option<u64>,
    pub(crate) bookmarks: bool,
    pub(crate) timeout: Option<Duration>,
    /// Objects as one-row Tables (`kubectl get -w`).
    pub(crate) table: bool,
}

impl WatchRequest {
    /// Reads the watch's parameters; a malformed one is a `400`.
    pub(crate) fn parse(
        resource: Resource,
        namespace: Option<&str>,
        query: &std::collections::HashMap<String, String>,
        table: bool,
    ) -> Result<WatchRequest, Failure> {
        let bad = |m: String| status::failure(StatusCode::BAD_REQUEST, "BadRequest", m, None);
        let selectors = Selectors::parse(resource.kind, query)?;
        let from = match query.get("resourceVersion").map(String::as_str) {
            None | Some("" | "0") => None,
            Some(rv) => Some(rv.parse::<u64>().map_err(|_| {
                bad(format!(
                    "resourceVersion {rv:?} is not one this server gave"
                ))
            })?),
        };
        let timeout = query
            .get("timeoutSeconds")
            .map(|t| {
                t.parse::<u64>()
                    .map_err(|_| bad(format!("timeoutSeconds {t:?} is not a number")))
            })
            .transpose()?
            .map(Duration::from_secs);
        Ok(WatchRequest {
            resource,
            namespace: namespace.map(str::to_string),
            selectors,
            from,
            bookmarks: query
                .get("allowWatchBookmarks")
                .is_some_and(|b| b == "true"),
            timeout,
            table,
        })
    }

    fn selects(&self, object: &pier_model::Object, wire: &Value) -> bool {
        object.kind() == self.resource.kind
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| object.meta().namespace() == ns)
            && self.selectors.selects(object, wire)
    }

    fn event(&self, kind: &str, wire: Value) -> Bytes {
        let object = if self.table {
            table::of(self.resource.kind, &[wire], None, None)
        } else {
            wire
        };
        line(&json!({ "type": kind, "object": object }))
    }
}

/// Starts the watch; its lines arrive on the receiver until the client goes, the stream
/// times out, the store fails or the daemon stops.
pub(crate) async fn start(
    store: &Arc<Store>,
    request: WatchRequest,
    shutdown: signal::Receiver<bool>,
) -> Result<mpsc::Receiver<Bytes>, Failure> {
    let (tx, rx) = mpsc::channel(BUFFER);
    let (initial, from) = match request.from {
        Some(rv) => (Vec::new(), rv + 1),
        None => {
            let list = read::list(
                store,
                request.resource,
                request.namespace.as_deref(),
                &request.selectors,
            )
            .await?;
            let rv = list["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|r| r.parse::<u64>().ok())
                .unwrap_or(0);
            let items = list["items"].as_array().cloned().unwrap_or_default();
            (items, rv + 1)
        }
    };
    match store.watch_kinds(from, kind_slice(request.resource.kind)) {
        Ok(watch) => {
            tokio::spawn(follow(request, initial, watch, from, tx, shutdown));
        }
        // As the API server does: the stream starts, and its one event says why it ends.
        Err(e @ crate::Error::Compacted { .. }) => {
            if tx.try_send(error_event(&e)).is_err() {
                tracing::debug!("a watch ended before its error was sent");
            }
        }
        Err(e) => return Err(status::from_error(&e)),
    }
    Ok(rx)
}

/// The `ERROR` event that ends a watch: `410 Expired` for compacted history.
fn error_event(e: &crate::Error) -> Bytes {
    let failure = match e {
        crate::Error::Compacted { .. } => status::failure(
            StatusCode::GONE,
            "Expired",
            format!("too old resource version: {}", crate::error::chain(e)),
            None,
        ),
        other => status::from_error(other),
    };
    line(&json!({"type": "ERROR", "object": failure.body}))
}

async fn follow(
    request: WatchRequest,
    initial: Vec<Value>,
    mut watch: crate::store::Watch,
    from: u64,
    tx: mpsc::Sender<Bytes>,
    mut shutdown: signal::Receiver<bool>,
) {
    for wire in initial {
        if tx.send(request.event("ADDED", wire)).await.is_err() {
            return;
        }
    }
    let mut at = from.saturating_sub(1);
    let deadline = request.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut bookmark = tokio::time::interval(BOOKMARK_EVERY);
    bookmark.tick().await;
    loop {
        let event = tokio::select! {
            e = watch.next() => e,
            _ = bookmark.tick(), if request.bookmarks => {
                let mark = json!({
                    "kind": request.resource.kind.as_str(),
                    "apiVersion": request.resource.api_version(),
                    "metadata": {"resourceVersion": at.to_string()},
                });
                if tx.send(line(&json!({"type": "BOOKMARK", "object": mark}))).await.is_err() {
                    return;
                }
                continue;
            }
            () = sleep_until(deadline) => return,
            _ = shutdown.changed() => return,
            () = tx.closed() => return,
        };
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                if tx.send(error_event(&e)).await.is_err() {
                    tracing::debug!("a watch client went before its error was sent");
                }
                return;
            }
        };
        at = at.max(event.revision);
        let wire = read::wire(&request.resource, &event.object);
        if !request.selects(&event.object, &wire) {
            continue;
        }
        let kind = match event.event_type {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        };
        if tx.send(request.event(kind, wire)).await.is_err() {
            return;
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn line(value: &Value) -> Bytes {
    let mut text = value.to_string();
    text.push('\n');
    Bytes::from(text)
}

/// The one-kind slice a kind's store watch follows.
fn kind_slice(kind: pier_model::Kind) -> &'static [pier_model::Kind] {
    let all: &'static [pier_model::Kind] = &pier_model::Kind::ALL;
    let at = all.iter().position(|k| *k == kind).unwrap_or(0);
    &all[at..=at]
}

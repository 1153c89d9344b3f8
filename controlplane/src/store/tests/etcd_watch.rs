//! The etcd backend's shared watch: a node's readers share one etcd watch stream (counted by
//! etcd itself), a reader that falls behind the shared feed or starts before what it keeps
//! carries on alone, and every reader sees exactly the events after where it started, in
//! order, even when it fell behind in the middle of a transaction's events. (In tests the
//! feed keeps 16 recent events and fans out 64.)

use std::io::{Read, Write};
use std::time::Duration;

use super::{etcd_config, svc, Backend, Opened};
use crate::store::{Store, StoreConfig, Watch};
use pier_model::Object;

fn open() -> Option<Opened> {
    Opened::new(Backend::Etcd, StoreConfig::default())
}

/// Writes `txns` transactions of `per` Services each; returns the names in commit order.
fn write(store: &Store, tag: &str, txns: usize, per: usize) -> Vec<String> {
    let mut names = Vec::new();
    for t in 0..txns {
        let batch: Vec<Object> = (0..per)
            .map(|i| svc(&format!("{tag}-{t}-{i}"), ""))
            .collect();
        for w in store.apply(batch).unwrap() {
            names.push(w.object.unwrap().meta().name.clone());
        }
    }
    names
}

/// The names of the next `n` events, failing if they take longer than 10 s.
fn take(runtime: &tokio::runtime::Runtime, watch: &mut Watch, n: usize) -> Vec<String> {
    runtime.block_on(async {
        let mut names = Vec::new();
        for _ in 0..n {
            let event = tokio::time::timeout(Duration::from_secs(10), watch.next())
                .await
                .expect("an event within 10 s")
                .unwrap();
            names.push(event.object.meta().name.clone());
        }
        names
    })
}

/// No further event arrives within a short while.
fn quiet(runtime: &tokio::runtime::Runtime, watch: &mut Watch) {
    let extra = runtime
        .block_on(async { tokio::time::timeout(Duration::from_millis(300), watch.next()).await });
    assert!(extra.is_err(), "an unexpected extra event: {extra:?}");
}

/// A gauge from the etcd member's own metrics.
fn etcd_gauge(endpoint: &str, name: &str) -> f64 {
    let host = endpoint.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(host).unwrap();
    write!(conn, "GET /metrics HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut body = String::new();
    conn.read_to_string(&mut body).unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in etcd's metrics"))
}

/// Waits up to 5 s for etcd to count `want` watchers.
fn wait_watchers(endpoint: &str, want: f64) -> f64 {
    let mut seen = etcd_gauge(endpoint, "etcd_debugging_mvcc_watcher_total");
    for _ in 0..50 {
        if (seen - want).abs() < f64::EPSILON {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        seen = etcd_gauge(endpoint, "etcd_debugging_mvcc_watcher_total");
    }
    seen
}

/// Five readers of one node cost etcd one watcher, which goes when the last reader does.
#[test]
fn a_nodes_readers_share_one_etcd_watch() {
    let Some(mut t) = open() else { return };
    let endpoint = t.etcd().unwrap().endpoints().remove(0);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let from = t.store.revision() + 1;
    let mut readers: Vec<Watch> = (0..5).map(|_| t.store.watch(from).unwrap()).collect();
    let names = write(&t.store, "a", 2, 3);
    for reader in &mut readers {
        assert_eq!(take(&runtime, reader, 6), names);
    }
    assert_eq!(
        wait_watchers(&endpoint, 1.0),
        1.0,
        "one etcd watcher for five readers"
    );
    drop(readers);
    assert_eq!(
        wait_watchers(&endpoint, 0.0),
        0.0,
        "the watch stops with its last reader"
    );
}

/// A reader that stops reading while more than the feed holds is written, having taken part
/// of a transaction's events, carries on alone from exactly the next event; the readers that
/// kept up stay on the feed.
#[test]
fn a_reader_that_falls_behind_resumes_exactly() {
    let Some(t) = open() else { return };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let from = t.store.revision() + 1;
    let mut slow = t.store.watch(from).unwrap();
    let mut steady = t.store.watch(from).unwrap();
    let first = write(&t.store, "b", 2, 5);
    assert_eq!(take(&runtime, &mut slow, 7), first[..7]);
    assert_eq!(take(&runtime, &mut steady, 10), first);
    let mut later = Vec::new();
    for round in 0..30 {
        let names = write(&t.store, &format!("c{round}"), 1, 5);
        assert_eq!(take(&runtime, &mut steady, 5), names);
        later.extend(names);
    }
    let expected: Vec<String> = first[7..].iter().chain(&later).cloned().collect();
    assert_eq!(take(&runtime, &mut slow, expected.len()), expected);
    quiet(&runtime, &mut slow);
    let last = write(&t.store, "d", 1, 3);
    assert_eq!(take(&runtime, &mut slow, 3), last);
    assert_eq!(take(&runtime, &mut steady, 3), last);
}

/// A reader starting within the feed's recent events gets them from the feed; one starting
/// before them gets them from etcd; both see exactly the events from their start on.
#[test]
fn readers_starting_behind_the_feed_see_every_event_from_their_start() {
    let Some(mut t) = open() else { return };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let other = Store::connect(etcd_config(t.etcd().unwrap()), StoreConfig::default()).unwrap();
    let start = other.revision() + 1;
    let mut first = other.watch(start).unwrap();
    let names = write(&t.store, "e", 8, 5);
    assert_eq!(take(&runtime, &mut first, 40), names);
    let head = t.store.revision();
    let mut recent = other.watch(head - 1).unwrap();
    let mut old = other.watch(start).unwrap();
    assert_eq!(take(&runtime, &mut recent, 10), names[30..]);
    assert_eq!(take(&runtime, &mut old, 40), names);
    let more = write(&t.store, "f", 1, 2);
    for reader in [&mut first, &mut recent, &mut old] {
        assert_eq!(take(&runtime, reader, 2), more);
        quiet(&runtime, reader);
    }
}

/// A reader taking `next` and then `committed` always holds whole transactions: the events
/// of one etcd transaction share a revision, and all but the last say more follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_never_splits_a_transaction() {
    let Some(t) = open() else {
        return;
    };
    let store = std::sync::Arc::clone(&t.store);
    let mut watch = store.watch(store.revision() + 1).unwrap();
    const BATCHES: usize = 100;
    let writer = std::thread::spawn(move || write(&store, "whole", BATCHES, 3));
    let mut taken = 0;
    while taken < BATCHES * 3 {
        let first = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("an event within 10 s")
            .unwrap();
        assert!(
            !first.ends_transaction,
            "revision {} began a pass",
            first.revision
        );
        let rest = watch.committed().await.unwrap();
        assert_eq!(
            rest.len() % 3,
            2,
            "a pass from revision {} held {} events",
            first.revision,
            1 + rest.len()
        );
        assert!(rest.iter().all(|e| e.revision >= first.revision));
        assert!(rest.last().unwrap().ends_transaction);
        taken += 1 + rest.len();
    }
    assert_eq!(writer.join().unwrap().len(), BATCHES * 3);
}

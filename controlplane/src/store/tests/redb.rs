//! What only the redb backend has: its own event log, trimmed to `event_history`, and a live
//! broadcast that a slow watcher can fall behind.

use super::{svc, Backend, Opened};
use crate::error::Error;
use crate::store::StoreConfig;
use pier_model::Object;

#[tokio::test]
async fn watch_survives_lag() {
    let t = Opened::new(Backend::Redb, StoreConfig::default()).unwrap();
    let store = &t.store;
    let first = store.revision() + 1;
    let mut watch = store.watch(first).unwrap();
    // More events than the live channel holds: the watch must catch up from the log.
    let batch: Vec<Object> = (0..5000).map(|i| svc(&format!("s{i}"), "")).collect();
    store.apply(batch).unwrap();
    for rev in first..first + 5000 {
        let e = watch.next().await.unwrap();
        assert_eq!(e.revision, rev);
    }
    assert!(watch.try_next().unwrap().is_none());
}

#[test]
fn compacted_history_is_reported() {
    let config = StoreConfig {
        event_history: 10,
        ..StoreConfig::default()
    };
    let t = Opened::new(Backend::Redb, config).unwrap();
    let store = &t.store;
    for i in 0..1100 {
        store.apply(vec![svc(&format!("s{i}"), "")]).unwrap();
    }
    assert!(matches!(store.watch(1), Err(Error::Compacted { .. })));
    assert!(store.watch(store.revision() - 5).is_ok());
}

/// A reader taking `next` and then `committed` always holds whole transactions, even while a
/// writer on another thread is still publishing one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_never_splits_a_transaction() {
    let t = Opened::new(Backend::Redb, StoreConfig::default()).unwrap();
    let store = std::sync::Arc::clone(&t.store);
    let mut watch = store.watch(store.revision() + 1).unwrap();
    const BATCHES: usize = 300;
    let writer = std::thread::spawn(move || {
        for b in 0..BATCHES {
            let batch = (0..3).map(|i| svc(&format!("b{b}-{i}"), "")).collect();
            store.apply(batch).unwrap();
        }
    });
    let mut taken = 0;
    while taken < BATCHES * 3 {
        let first = watch.next().await.unwrap();
        let rest = watch.committed().await.unwrap();
        let pass = 1 + rest.len();
        assert_eq!(
            pass % 3,
            0,
            "a pass from revision {} held {pass} events",
            first.revision
        );
        taken += pass;
    }
    writer.join().unwrap();
}

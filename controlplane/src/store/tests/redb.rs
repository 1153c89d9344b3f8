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

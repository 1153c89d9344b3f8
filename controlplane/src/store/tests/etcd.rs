//! What only the etcd backend has: several nodes writing at once, etcd's compaction, etcd's
//! limit on one transaction, and members going away.

use std::sync::Arc;
use std::time::Duration;

use super::{cluster_ip, etcd_config, svc, Backend, Opened};
use crate::error::Error;
use crate::store::{Store, StoreConfig};
use pier_model::{Kind, Object};

fn open() -> Option<Opened> {
    Opened::new(Backend::Etcd, StoreConfig::default())
}

/// Two nodes allocating at the same time never hand out the same ClusterIP or NodePort.
#[test]
fn concurrent_nodes_never_share_an_address() {
    let Some(mut t) = open() else { return };
    let etcd = t.etcd().unwrap();
    let nodes: Vec<Arc<Store>> = (0..3)
        .map(|_| Store::connect(etcd_config(etcd), StoreConfig::default()).unwrap())
        .collect();
    let writers: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(n, store)| {
            let store = Arc::clone(store);
            std::thread::spawn(move || {
                for i in 0..20 {
                    store
                        .apply(vec![svc(&format!("n{n}-{i}"), "  type: NodePort\n")])
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let (services, _) = t.store.list(Kind::Service, None, None).unwrap();
    assert_eq!(services.len(), 60);
    let mut ips: Vec<String> = services.iter().map(cluster_ip).collect();
    let mut ports: Vec<i64> = services
        .iter()
        .filter_map(|o| match o {
            Object::Service(s) => s.spec.ports[0].node_port,
            _ => None,
        })
        .collect();
    ips.sort();
    ips.dedup();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(
        (ips.len(), ports.len()),
        (60, 60),
        "no address handed out twice"
    );
}

/// A write from one node is seen by another's watch, and by its reads.
#[test]
fn a_write_on_one_node_reaches_anothers_watch() {
    let Some(mut t) = open() else { return };
    let other = Store::connect(etcd_config(t.etcd().unwrap()), StoreConfig::default()).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut watch = other.watch(other.revision() + 1).unwrap();
    let written = t.store.apply(vec![svc("web", "")]).unwrap()[0]
        .object
        .clone()
        .unwrap();
    let e = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(5), watch.next()).await })
        .unwrap()
        .unwrap();
    assert_eq!(*e.object, written);
    assert_eq!(
        other.get(Kind::Service, "default", "web").unwrap(),
        Some(written)
    );
    assert_eq!(other.id(), t.store.id(), "one store, one identity");
}

/// A watch from a revision etcd has compacted away ends with `Compacted`, so the watcher
/// relists.
#[test]
fn compacted_history_is_reported() {
    let Some(mut t) = open() else { return };
    for i in 0..5 {
        t.store.apply(vec![svc(&format!("s{i}"), "")]).unwrap();
    }
    let revision = t.store.revision();
    let endpoints = t.etcd().unwrap().endpoints();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut client = etcd_client::Client::connect(endpoints, None).await.unwrap();
        client
            .compact(i64::try_from(revision).unwrap(), None)
            .await
            .unwrap();
    });
    let mut watch = t.store.watch(2).unwrap();
    let err = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(5), watch.next()).await })
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, Error::Compacted { .. }), "{err}");
    let mut fresh = t.store.watch(revision + 1).unwrap();
    t.store.apply(vec![svc("after", "")]).unwrap();
    let e = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(5), fresh.next()).await })
        .unwrap()
        .unwrap();
    assert_eq!(e.object.meta().name, "after");
}

/// A file too big for one etcd transaction fails as a whole, with an error that says so.
#[test]
fn a_write_over_etcds_transaction_limit_fails_whole_and_says_why() {
    let Some(t) = open() else { return };
    let big: Vec<Object> = (0..100).map(|i| svc(&format!("s{i}"), "")).collect();
    let err = t.store.apply(big).unwrap_err();
    assert!(err.to_string().contains("--max-txn-ops"), "{err}");
    assert!(t
        .store
        .list(Kind::Service, None, None)
        .unwrap()
        .0
        .is_empty());
}

/// With a three-member cluster, losing one member changes nothing; losing two makes writes
/// fail with an error naming etcd; bringing them back makes everything work again.
#[test]
fn member_loss_quorum_and_recovery() {
    if !pier_testkit::Etcd::available() {
        pier_testkit::skip("etcd is not installed (apt-get install etcd-server)");
        return;
    }
    let mut etcd = pier_testkit::Etcd::start(3);
    let store = Store::connect(etcd_config(&etcd), StoreConfig::default()).unwrap();
    store.apply(vec![svc("before", "")]).unwrap();
    etcd.stop_member(0);
    store.apply(vec![svc("one-down", "")]).unwrap();
    etcd.stop_member(1);
    let err = store.apply(vec![svc("two-down", "")]).unwrap_err();
    let message = crate::error::chain(&err);
    assert!(
        message.contains("etcd 127.0.0.1:") && message.contains("quorum"),
        "{message}"
    );
    etcd.start_member(0);
    etcd.start_member(1);
    etcd.wait_healthy(0);
    etcd.wait_healthy(1);
    pier_testkit::wait_for("writes to work again", Duration::from_secs(20), || {
        store.apply(vec![svc("healed", "")]).is_ok()
    });
    let names: Vec<String> = store
        .list(Kind::Service, None, None)
        .unwrap()
        .0
        .iter()
        .map(|o| o.meta().name.clone())
        .collect();
    assert_eq!(names, ["before", "healed", "one-down"]);
}

/// A watch rides out the loss of whichever member it follows (it resumes on another from
/// the next revision, missing nothing and repeating nothing), and keeps following a lone
/// member after quorum is lost: a node still learns what was committed before.
#[test]
fn a_watch_resumes_on_another_member() {
    if !pier_testkit::Etcd::available() {
        pier_testkit::skip("etcd is not installed (apt-get install etcd-server)");
        return;
    }
    let mut etcd = pier_testkit::Etcd::start(3);
    let (writer, watcher) = (
        Store::connect(etcd_config(&etcd), StoreConfig::default()).unwrap(),
        Store::connect(etcd_config(&etcd), StoreConfig::default()).unwrap(),
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut watch = watcher.watch(watcher.revision() + 1).unwrap();
    let mut next = |want: &str| {
        let e = runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(15), watch.next()).await })
            .unwrap_or_else(|_| panic!("no event for {want}"))
            .unwrap();
        assert_eq!(e.object.meta().name, want);
    };
    // Each member in turn goes away, so one of them is the one the watch was on.
    for member in 0..3 {
        etcd.stop_member(member);
        let name = format!("while-{member}-is-down");
        writer.apply(vec![svc(&name, "")]).unwrap();
        next(&name);
        etcd.start_member(member);
        etcd.wait_healthy(member);
    }
    // Committed by two members, then one of them goes too: the last one still tells, once
    // it has applied the entry (raft lets a follower hold a committed entry it has not yet
    // heard is committed; if the leader dies first, no lone member can ever apply it).
    etcd.stop_member(0);
    let written = writer.apply(vec![svc("last-with-quorum", "")]).unwrap();
    let revision = written[0]
        .object
        .as_ref()
        .unwrap()
        .meta()
        .resource_version
        .parse()
        .unwrap();
    etcd.wait_applied(2, revision);
    etcd.stop_member(1);
    next("last-with-quorum");
}

/// A list longer than one page comes back whole, in key order.
#[test]
fn lists_page_through_many_objects() {
    let Some(t) = open() else { return };
    for batch in 0..24 {
        let services: Vec<Object> = (0..50)
            .map(|i| svc(&format!("s{:04}", batch * 50 + i), ""))
            .collect();
        t.store.apply(services).unwrap();
    }
    let (listed, revision) = t.store.list(Kind::Service, None, None).unwrap();
    assert_eq!(listed.len(), 1200);
    assert_eq!(revision, t.store.revision());
    let names: Vec<String> = listed.iter().map(|o| o.meta().name.clone()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert_eq!(names[0], "s0000");
    assert_eq!(names[1199], "s1199");
}

/// TLS with a client certificate: a client with the CA and its certificate reads and writes;
/// one without a certificate is refused, with an error naming etcd.
#[test]
fn tls_with_client_certificates() {
    if !pier_testkit::Etcd::available() || !pier_testkit::have("openssl") {
        pier_testkit::skip("etcd and openssl are needed (apt-get install etcd-server openssl)");
        return;
    }
    let (etcd, tls) = pier_testkit::Etcd::start_tls();
    let mut config = etcd_config(&etcd);
    config.ca = Some(tls.ca.clone());
    config.client_cert = Some((tls.cert.clone(), tls.key.clone()));
    let store = Store::connect(config.clone(), StoreConfig::default()).unwrap();
    let written = store.apply(vec![svc("secure", "")]).unwrap();
    assert!(written[0].object.is_some());
    assert!(store
        .get(Kind::Service, "default", "secure")
        .unwrap()
        .is_some());
    config.client_cert = None;
    let Err(err) = Store::connect(config, StoreConfig::default()) else {
        panic!("a client without a certificate got in");
    };
    assert!(
        crate::error::chain(&err).contains("etcd 127.0.0.1:"),
        "{err}"
    );
}

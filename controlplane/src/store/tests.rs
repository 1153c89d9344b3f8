use std::time::Duration;

use super::*;
use crate::manifest;

fn store() -> (tempfile::TempDir, Arc<Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("pier.redb"), StoreConfig::default()).unwrap();
    (dir, store)
}

fn objs(yaml: &str) -> Vec<Object> {
    manifest::parse("test", yaml)
        .unwrap()
        .into_iter()
        .map(|m| m.parsed.object)
        .collect()
}

fn svc(name: &str, extra: &str) -> Object {
    objs(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  ports: [{{port: 80}}]\n{extra}"
    ))
    .remove(0)
}

fn cluster_ip(o: &Object) -> String {
    match o {
        Object::Service(s) => s.spec.cluster_ip.clone(),
        _ => panic!("not a service"),
    }
}

/// The revision a new store starts at: its built-in namespaces are its first writes.
const FIRST: u64 = crate::model::namespace::BUILT_IN.len() as u64;

#[test]
fn revisions_and_server_fields() {
    let (_d, store) = store();
    assert_eq!(store.revision(), FIRST, "the built-in namespaces");
    let w = store.apply(vec![svc("a", ""), svc("b", "")]).unwrap();
    assert_eq!(store.revision(), FIRST + 2);
    let a = w[0].object.clone().unwrap();
    assert_eq!(a.meta().resource_version, (FIRST + 1).to_string());
    assert_eq!(a.meta().generation, 1);
    assert_eq!(a.meta().namespace, "default");
    assert!(!a.meta().uid.is_empty());
    assert!(a.meta().creation_timestamp.is_some());
    // Re-applying the same thing changes nothing and uses no revision.
    let again = store.apply(vec![svc("a", "")]).unwrap();
    assert_eq!(again[0].outcome, Outcome::Unchanged);
    assert_eq!(store.revision(), FIRST + 2);
    // A spec change bumps generation, keeps uid and creation time.
    let changed = store
        .apply(vec![svc("a", "  sessionAffinity: ClientIP\n")])
        .unwrap();
    let c = changed[0].object.clone().unwrap();
    assert_eq!(changed[0].outcome, Outcome::Configured);
    assert_eq!(c.meta().generation, 2);
    assert_eq!(c.meta().uid, a.meta().uid);
    assert_eq!(c.meta().resource_version, (FIRST + 3).to_string());
    assert_eq!(
        cluster_ip(&c),
        cluster_ip(&a),
        "clusterIP kept across updates"
    );
}

#[test]
fn conditional_update_conflicts() {
    let (_d, store) = store();
    store.apply(vec![svc("a", "")]).unwrap();
    let mut stale = svc("a", "  sessionAffinity: ClientIP\n");
    stale.meta_mut().resource_version = "99".into();
    let err = store.apply(vec![stale]).unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    let mut fresh = svc("a", "  sessionAffinity: ClientIP\n");
    fresh.meta_mut().resource_version = (FIRST + 1).to_string();
    store.apply(vec![fresh]).unwrap();
    let err = store
        .delete(Kind::Service, "default", "a", Some((FIRST + 1).to_string()))
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)));
    store
        .delete(Kind::Service, "default", "a", Some((FIRST + 2).to_string()))
        .unwrap();
    assert!(store.get(Kind::Service, "default", "a").unwrap().is_none());
    let err = store
        .delete(Kind::Service, "default", "a", None)
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }));
}

#[test]
fn batch_is_all_or_nothing() {
    let (_d, store) = store();
    let mut bad = svc("b", "");
    if let Object::Service(s) = &mut bad {
        s.spec.ports[0].port = 0;
    }
    let err = store.apply(vec![svc("a", ""), bad]).unwrap_err();
    assert!(err.to_string().contains("spec.ports[0].port"), "{err}");
    assert_eq!(store.revision(), FIRST);
    assert!(store.list(Kind::Service, None, None).unwrap().0.is_empty());
}

#[test]
fn cluster_ip_allocation() {
    let (_d, store) = store();
    let a = store.apply(vec![svc("a", "")]).unwrap()[0]
        .object
        .clone()
        .unwrap();
    assert_eq!(cluster_ip(&a), "10.96.0.1");
    let b = store.apply(vec![svc("b", "")]).unwrap()[0]
        .object
        .clone()
        .unwrap();
    assert_eq!(cluster_ip(&b), "10.96.0.2");
    // Explicit IP honoured; taken IP refused with a clear conflict; out of range refused.
    let c = store
        .apply(vec![svc("c", "  clusterIP: 10.96.0.10\n")])
        .unwrap()[0]
        .object
        .clone()
        .unwrap();
    assert_eq!(cluster_ip(&c), "10.96.0.10");
    let err = store
        .apply(vec![svc("d", "  clusterIP: 10.96.0.1\n")])
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("already allocated to service default/a"),
        "{err}"
    );
    let err = store
        .apply(vec![svc("d", "  clusterIP: 192.168.0.1\n")])
        .unwrap_err();
    assert!(
        err.to_string().contains("not in the service range"),
        "{err}"
    );
    let err = store
        .apply(vec![svc("a", "  clusterIP: 10.96.0.50\n")])
        .unwrap_err();
    assert!(err.to_string().contains("immutable"), "{err}");
    // Released addresses are not reused before the ring comes round.
    store.delete(Kind::Service, "default", "a", None).unwrap();
    let e = store.apply(vec![svc("e", "")]).unwrap()[0]
        .object
        .clone()
        .unwrap();
    assert_eq!(cluster_ip(&e), "10.96.0.3");
    let h = store.apply(vec![svc("h", "  clusterIP: None\n")]).unwrap()[0]
        .object
        .clone()
        .unwrap();
    assert_eq!(cluster_ip(&h), "None");
}

#[test]
fn small_range_exhausts_and_reuses_after_release() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        alloc: AllocConfig {
            service_cidr: "10.0.0.0/30".parse().unwrap(),
            node_ports: 30000..=30001,
            ..AllocConfig::default()
        },
        ..StoreConfig::default()
    };
    let store = Store::open(&dir.path().join("s.redb"), config).unwrap();
    store.apply(vec![svc("a", ""), svc("b", "")]).unwrap();
    let err = store.apply(vec![svc("c", "")]).unwrap_err();
    assert!(matches!(err, Error::Exhausted(_)), "{err}");
    store.delete(Kind::Service, "default", "a", None).unwrap();
    let c = store.apply(vec![svc("c", "")]).unwrap()[0]
        .object
        .clone()
        .unwrap();
    assert_eq!(cluster_ip(&c), "10.0.0.1");
}

#[test]
fn node_port_allocation() {
    let (_d, store) = store();
    let a = store.apply(vec![svc("a", "  type: NodePort\n")]).unwrap()[0]
        .object
        .clone()
        .unwrap();
    let Object::Service(a) = a else { panic!() };
    assert_eq!(a.spec.ports[0].node_port, Some(30000));
    let err = store
        .apply(vec![objs("apiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec:\n  type: NodePort\n  ports: [{port: 80, nodePort: 30000}]\n").remove(0)])
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("node port 30000 is already allocated"),
        "{err}"
    );
    let err = store
        .apply(vec![objs("apiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec:\n  type: NodePort\n  ports: [{port: 80, nodePort: 80}]\n").remove(0)])
        .unwrap_err();
    assert!(
        err.to_string().contains("outside the node port range"),
        "{err}"
    );
    // Re-applying without nodePort keeps the allocated one; switching to ClusterIP releases it.
    let again = store.apply(vec![svc("a", "  type: NodePort\n")]).unwrap();
    assert_eq!(again[0].outcome, Outcome::Unchanged);
    store.apply(vec![svc("a", "")]).unwrap();
    let b = store
        .apply(vec![objs("apiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec:\n  type: NodePort\n  ports: [{port: 80, nodePort: 30000}]\n").remove(0)])
        .unwrap();
    assert_eq!(b[0].outcome, Outcome::Created);
}

#[test]
fn list_by_namespace_and_selector() {
    let (_d, store) = store();
    store
        .apply(objs(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: prod}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: a, labels: {app: web}}\nspec: {ports: [{port: 80}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: b, namespace: prod, labels: {app: api}}\nspec: {ports: [{port: 80}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: c, namespace: prod, labels: {app: web}}\nspec: {ports: [{port: 80}]}\n",
        ))
        .unwrap();
    let names = |v: Vec<Object>| v.iter().map(|o| o.meta().name.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(store.list(Kind::Service, None, None).unwrap().0),
        ["a", "b", "c"]
    );
    assert_eq!(
        names(store.list(Kind::Service, Some("prod"), None).unwrap().0),
        ["b", "c"]
    );
    let sel = SelectorQuery::parse("app=web").unwrap();
    assert_eq!(
        names(store.list(Kind::Service, None, Some(&sel)).unwrap().0),
        ["a", "c"]
    );
    assert!(store.list(Kind::Pod, None, None).unwrap().0.is_empty());
    assert_eq!(store.counts()[&Kind::Service], 3);
}

#[tokio::test]
async fn watch_replays_history_then_follows_live() {
    let (_d, store) = store();
    store.apply(vec![svc("a", ""), svc("b", "")]).unwrap();
    let mut watch = store.watch(FIRST + 2).unwrap();
    let e = watch.next().await.unwrap();
    assert_eq!((e.revision, e.event_type), (FIRST + 2, EventType::Added));
    let s2 = Arc::clone(&store);
    let writer = tokio::task::spawn_blocking(move || {
        s2.apply(vec![svc("c", "")]).unwrap();
        s2.delete(Kind::Service, "default", "a", None).unwrap();
    });
    let e = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (e.revision, e.event_type, e.object.meta().name.as_str()),
        (FIRST + 3, EventType::Added, "c")
    );
    let e = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (e.revision, e.event_type, e.object.meta().name.as_str()),
        (FIRST + 4, EventType::Deleted, "a")
    );
    writer.await.unwrap();
}

#[tokio::test]
async fn watch_survives_lag() {
    let (_d, store) = store();
    let mut watch = store.watch(FIRST + 1).unwrap();
    // More events than the live channel holds: the watch must catch up from the log.
    let batch: Vec<Object> = (0..5000).map(|i| svc(&format!("s{i}"), "")).collect();
    store.apply(batch).unwrap();
    for rev in FIRST + 1..=FIRST + 5000 {
        let e = watch.next().await.unwrap();
        assert_eq!(e.revision, rev);
    }
    assert!(watch.try_next().unwrap().is_none());
}

#[test]
fn compacted_history_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        event_history: 10,
        ..StoreConfig::default()
    };
    let store = Store::open(&dir.path().join("s.redb"), config).unwrap();
    for i in 0..1100 {
        store.apply(vec![svc(&format!("s{i}"), "")]).unwrap();
    }
    assert!(matches!(store.watch(1), Err(Error::Compacted { .. })));
    assert!(store.watch(1095).is_ok());
}

#[test]
fn reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let ip = {
        let store = Store::open(&path, StoreConfig::default()).unwrap();
        let w = store.apply(vec![svc("a", "")]).unwrap();
        cluster_ip(w[0].object.as_ref().unwrap())
    };
    let store = Store::open(&path, StoreConfig::default()).unwrap();
    assert_eq!(
        store.revision(),
        FIRST + 1,
        "reopening creates no namespace again"
    );
    let a = store.get(Kind::Service, "default", "a").unwrap().unwrap();
    assert_eq!(cluster_ip(&a), ip);
    let b = store.apply(vec![svc("b", "")]).unwrap()[0]
        .object
        .clone()
        .unwrap();
    assert_eq!(cluster_ip(&b), "10.96.0.2", "allocation cursor persisted");
}

#[test]
fn namespaces_hold_their_objects() {
    let (_d, store) = store();
    let names = |kind| {
        store
            .list(kind, None, None)
            .unwrap()
            .0
            .iter()
            .map(|o: &Object| o.meta().name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(Kind::Namespace),
        ["default", "kube-node-lease", "kube-public", "kube-system"]
    );
    // Nothing goes into a namespace that does not exist...
    let shop = "apiVersion: v1\nkind: Service\nmetadata: {name: cart, namespace: shop}\nspec: {ports: [{port: 80}]}\n";
    let err = store.apply(objs(shop)).unwrap_err();
    assert!(
        err.to_string().contains("namespace \"shop\" not found"),
        "{err}"
    );
    // ...but a Namespace earlier in the same write is enough.
    let with_ns = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: shop}}\n---\n{shop}---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: cart, namespace: shop}}\n"
    );
    store.apply(objs(&with_ns)).unwrap();
    let ns = store.get(Kind::Namespace, "", "shop").unwrap().unwrap();
    assert_eq!(ns.meta().namespace, "", "cluster-scoped");
    assert_eq!(ns.describe(), "Namespace shop");
    let cart = store.get(Kind::Service, "shop", "cart").unwrap().unwrap();
    let ip = cluster_ip(&cart);
    // Deleting the namespace deletes what is in it, in the same revision range, and frees
    // the Service's ClusterIP.
    let before = store.revision();
    let deleted = store.delete(Kind::Namespace, "", "shop", None).unwrap();
    assert_eq!(deleted.describe(), "Namespace shop");
    assert_eq!(store.revision(), before + 3);
    assert!(store.get(Kind::Service, "shop", "cart").unwrap().is_none());
    assert!(store
        .get(Kind::ServiceAccount, "shop", "cart")
        .unwrap()
        .is_none());
    // The freed ClusterIP can be asked for again (it would conflict if still held).
    let again = store
        .apply(vec![svc("again", &format!("  clusterIP: {ip}\n"))])
        .unwrap()[0]
        .object
        .clone()
        .unwrap();
    assert_eq!(cluster_ip(&again), ip);
    // The built-in namespaces stay.
    let err = store
        .delete(Kind::Namespace, "", "default", None)
        .unwrap_err();
    assert!(err.to_string().contains("may not be deleted"), "{err}");
}

#[test]
fn dual_stack_services_get_one_address_per_family() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        alloc: AllocConfig {
            service_cidr_v6: Some("fd00:10:96::/112".parse().unwrap()),
            ..AllocConfig::default()
        },
        ..StoreConfig::default()
    };
    let store = Store::open(&dir.path().join("s.redb"), config).unwrap();
    let spec = |o: &Object| match o {
        Object::Service(s) => s.spec.clone(),
        _ => panic!("not a service"),
    };
    let put = |extra: &str| {
        store
            .apply(vec![svc("web", extra)])
            .map(|w| spec(w[0].object.as_ref().unwrap()))
    };
    // Single-stack by default, IPv4 first: the defaults Kubernetes writes back.
    let single = put("").unwrap();
    assert_eq!(single.cluster_ips, ["10.96.0.1"]);
    assert_eq!(single.ip_families, ["IPv4"]);
    assert_eq!(single.ip_family_policy.as_deref(), Some("SingleStack"));
    // Upgraded to PreferDualStack: the IPv4 address stays, an IPv6 one is added.
    let dual = put("  ipFamilyPolicy: PreferDualStack\n").unwrap();
    assert_eq!(dual.cluster_ips, ["10.96.0.1", "fd00:10:96::1"]);
    assert_eq!(dual.ip_families, ["IPv4", "IPv6"]);
    // The primary family is immutable; an address outside the range is refused.
    let err = put("  ipFamilyPolicy: PreferDualStack\n  ipFamilies: [IPv6, IPv4]\n").unwrap_err();
    assert!(err.to_string().contains("immutable"), "{err}");
    // Back to single-stack releases the IPv6 address, which another service can then take.
    put("").unwrap();
    let v6only = store
        .apply(vec![svc(
            "api",
            "  ipFamilies: [IPv6]\n  clusterIP: fd00:10:96::1\n",
        )])
        .unwrap();
    let api = spec(v6only[0].object.as_ref().unwrap());
    assert_eq!(api.cluster_ip, "fd00:10:96::1");
    assert_eq!(api.ip_families, ["IPv6"]);
    let err = store
        .apply(vec![svc("out", "  clusterIP: fd00:99::1\n")])
        .unwrap_err();
    assert!(
        err.to_string().contains("not in the service range"),
        "{err}"
    );
    // RequireDualStack on a cluster without IPv6 fails, naming the field.
    let v4_only = tempfile::tempdir().unwrap();
    let plain = Store::open(&v4_only.path().join("s.redb"), StoreConfig::default()).unwrap();
    let err = plain
        .apply(vec![svc("web", "  ipFamilyPolicy: RequireDualStack\n")])
        .unwrap_err();
    assert!(err.to_string().contains("spec.ipFamilies"), "{err}");
}

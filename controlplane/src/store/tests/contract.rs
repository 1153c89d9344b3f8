//! The store's contract, the same for every backend: `both!` runs each test on redb and on
//! etcd.

use std::sync::Arc;
use std::time::Duration;

use super::{cluster_ip, objs, rv, svc, Backend, Opened};
use crate::error::Error;
use crate::store::{AllocConfig, EventType, Outcome, StoreConfig, Watch};
use pier_model::{Kind, Object, SelectorQuery};

/// Runs each named test on both backends.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod on_redb {
            $( #[test] fn $name() { super::$name(super::Backend::Redb) } )*
        }
        mod on_etcd {
            $( #[test] fn $name() { super::$name(super::Backend::Etcd) } )*
        }
    };
}

both!(
    revisions_and_server_fields,
    conditional_update_conflicts,
    batch_is_all_or_nothing,
    cluster_ip_allocation,
    small_range_exhausts_and_reuses_after_release,
    node_port_allocation,
    list_by_namespace_and_selector,
    watch_replays_history_then_follows_live,
    a_watch_of_some_kinds_skips_the_rest,
    reopen_keeps_everything,
    namespaces_hold_their_objects,
    dual_stack_services_get_one_address_per_family,
    pod_cidrs_are_one_per_node,
    create_refuses_what_exists,
    pods_get_their_service_accounts_pull_secrets,
    a_deleted_default_account_comes_back,
);

fn open(backend: Backend) -> Option<Opened> {
    Opened::new(backend, StoreConfig::default())
}

/// The next event, within five seconds.
fn next(runtime: &tokio::runtime::Runtime, watch: &mut Watch) -> Arc<crate::store::Event> {
    runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(5), watch.next()).await })
        .unwrap()
        .unwrap()
}

fn revisions_and_server_fields(backend: Backend) {
    let Some(t) = open(backend) else { return };
    let store = &t.store;
    let base = store.revision();
    assert!(base > 0, "the built-in namespaces were written");
    let w = store.apply(vec![svc("a", ""), svc("b", "")]).unwrap();
    let after = store.revision();
    assert!(after > base);
    let a = w[0].object.clone().unwrap();
    assert!(
        rv(&a) > base && rv(&a) <= after,
        "{} in {base}..={after}",
        rv(&a)
    );
    assert_eq!(a.meta().generation, 1);
    assert_eq!(a.meta().namespace, "default");
    assert!(!a.meta().uid.is_empty());
    assert!(a.meta().creation_timestamp.is_some());
    let stored = store.get(Kind::Service, "default", "a").unwrap().unwrap();
    assert_eq!(stored, a, "what a write returns is what a read gets");
    // Re-applying the same thing changes nothing and uses no revision.
    let again = store.apply(vec![svc("a", "")]).unwrap();
    assert_eq!(again[0].outcome, Outcome::Unchanged);
    assert_eq!(store.revision(), after);
    // A spec change bumps generation, keeps uid and creation time.
    let changed = store
        .apply(vec![svc("a", "  sessionAffinity: ClientIP\n")])
        .unwrap();
    let c = changed[0].object.clone().unwrap();
    assert_eq!(changed[0].outcome, Outcome::Configured);
    assert_eq!(c.meta().generation, 2);
    assert_eq!(c.meta().uid, a.meta().uid);
    assert_eq!(c.meta().creation_timestamp, a.meta().creation_timestamp);
    assert_eq!(rv(&c), store.revision());
    assert!(rv(&c) > after);
    assert_eq!(
        cluster_ip(&c),
        cluster_ip(&a),
        "clusterIP kept across updates"
    );
}

fn conditional_update_conflicts(backend: Backend) {
    let Some(t) = open(backend) else { return };
    let store = &t.store;
    let first = store.apply(vec![svc("a", "")]).unwrap()[0]
        .object
        .clone()
        .unwrap();
    let mut stale = svc("a", "  sessionAffinity: ClientIP\n");
    stale.meta_mut().resource_version = "99999".into();
    let err = store.apply(vec![stale]).unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    let mut fresh = svc("a", "  sessionAffinity: ClientIP\n");
    fresh.meta_mut().resource_version = first.meta().resource_version.clone();
    let second = store.apply(vec![fresh]).unwrap()[0].object.clone().unwrap();
    let err = store
        .delete(
            Kind::Service,
            "default",
            "a",
            Some(first.meta().resource_version.clone()),
        )
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)));
    store
        .delete(
            Kind::Service,
            "default",
            "a",
            Some(second.meta().resource_version.clone()),
        )
        .unwrap();
    assert!(store.get(Kind::Service, "default", "a").unwrap().is_none());
    let err = store
        .delete(Kind::Service, "default", "a", None)
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }));
}

fn batch_is_all_or_nothing(backend: Backend) {
    let Some(t) = open(backend) else { return };
    let store = &t.store;
    let base = store.revision();
    let mut bad = svc("b", "");
    if let Object::Service(s) = &mut bad {
        s.spec.ports[0].port = 0;
    }
    let err = store.apply(vec![svc("a", ""), bad]).unwrap_err();
    assert!(err.to_string().contains("spec.ports[0].port"), "{err}");
    assert_eq!(store.revision(), base);
    assert!(store.list(Kind::Service, None, None).unwrap().0.is_empty());
}

fn cluster_ip_allocation(backend: Backend) {
    let Some(t) = open(backend) else { return };
    let store = &t.store;
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

fn small_range_exhausts_and_reuses_after_release(backend: Backend) {
    let config = StoreConfig {
        alloc: AllocConfig {
            service_cidr: "10.0.0.0/30".parse().unwrap(),
            node_ports: 30000..=30001,
            ..AllocConfig::default()
        },
        ..StoreConfig::default()
    };
    let Some(t) = Opened::new(backend, config) else {
        return;
    };
    let store = &t.store;
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

fn node_port_allocation(backend: Backend) {
    let Some(t) = open(backend) else { return };
    let store = &t.store;
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

fn list_by_namespace_and_selector(backend: Backend) {
    let Some(t) = open(backend) else { return };
    let store = &t.store;
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
    // etcd counts in the background: the first answer may be the previous count.
    pier_testkit::wait_for("3 services counted", Duration::from_secs(10), || {
        store.counts().get(&Kind::Service) == Some(&3)
    });
}

fn watch_replays_history_then_follows_live(backend: Backend) {
    let Some(t) = open(backend) else { return };
    let store = &t.store;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    store.apply(vec![svc("a", "")]).unwrap();
    let b = store.apply(vec![svc("b", "")]).unwrap()[0]
        .object
        .clone()
        .unwrap();
    let mut watch = store.watch(rv(&b)).unwrap();
    let e = next(&runtime, &mut watch);
    assert_eq!(
        (e.revision, e.event_type, e.object.meta().name.as_str()),
        (rv(&b), EventType::Added, "b")
    );
    let s2 = Arc::clone(store);
    let writer = std::thread::spawn(move || {
        s2.apply(vec![svc("c", "")]).unwrap();
        s2.delete(Kind::Service, "default", "a", None).unwrap();
    });
    let c = next(&runtime, &mut watch);
    assert_eq!(
        (c.event_type, c.object.meta().name.as_str()),
        (EventType::Added, "c")
    );
    assert!(c.revision > e.revision);
    assert_eq!(rv(&c.object), c.revision);
    let d = next(&runtime, &mut watch);
    assert_eq!(
        (d.event_type, d.object.meta().name.as_str()),
        (EventType::Deleted, "a")
    );
    assert!(d.revision > c.revision);
    writer.join().unwrap();
    assert_eq!(store.revision(), d.revision);
}

fn a_watch_of_some_kinds_skips_the_rest(backend: Backend) {
    let Some(t) = open(backend) else { return };
    let store = &t.store;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let from = store.revision() + 1;
    let account = |name: &str| {
        objs(&format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {name}}}\n"
        ))
    };
    // History: a Service between ServiceAccounts; then live, the same again.
    store.apply(account("x")).unwrap();
    store.apply(vec![svc("a", "")]).unwrap();
    store.apply(account("y")).unwrap();
    let mut watch = store.watch_kinds(from, &[Kind::Service]).unwrap();
    let a = next(&runtime, &mut watch);
    assert_eq!(a.object.describe(), "Service default/a");
    let s2 = Arc::clone(store);
    let writer = std::thread::spawn(move || {
        s2.apply(account("z")).unwrap();
        s2.delete(Kind::Service, "default", "a", None).unwrap();
    });
    let gone = next(&runtime, &mut watch);
    assert_eq!(
        (gone.event_type, gone.object.describe()),
        (EventType::Deleted, "Service default/a".to_string())
    );
    assert!(
        gone.revision > a.revision + 1,
        "the skipped revisions lie between"
    );
    writer.join().unwrap();
    assert!(
        watch.try_next().unwrap().is_none(),
        "nothing else was a Service"
    );
}

fn reopen_keeps_everything(backend: Backend) {
    let Some(t) = open(backend) else { return };
    let w = t.store.apply(vec![svc("a", "")]).unwrap();
    let ip = cluster_ip(w[0].object.as_ref().unwrap());
    let revision = t.store.revision();
    let t = t.reopen();
    let store = &t.store;
    let a = store.get(Kind::Service, "default", "a").unwrap().unwrap();
    assert_eq!(cluster_ip(&a), ip);
    assert_eq!(
        store.revision(),
        revision,
        "reopening creates no namespace again"
    );
    let b = store.apply(vec![svc("b", "")]).unwrap()[0]
        .object
        .clone()
        .unwrap();
    assert_eq!(cluster_ip(&b), "10.96.0.2", "allocation cursor persisted");
}

fn namespaces_hold_their_objects(backend: Backend) {
    let Some(t) = open(backend) else { return };
    let store = &t.store;
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
    // A new namespace gets its `default` ServiceAccount in the same write.
    assert!(store
        .get(Kind::ServiceAccount, "shop", "default")
        .unwrap()
        .is_some());
    let ns = store.get(Kind::Namespace, "", "shop").unwrap().unwrap();
    assert_eq!(ns.meta().namespace, "", "cluster-scoped");
    assert_eq!(ns.describe(), "Namespace shop");
    let cart = store.get(Kind::Service, "shop", "cart").unwrap().unwrap();
    let ip = cluster_ip(&cart);
    // Deleting the namespace deletes what is in it, in the same write, and frees the
    // Service's ClusterIP.
    let before = store.revision();
    let mut watch = store.watch(before + 1).unwrap();
    let deleted = store.delete(Kind::Namespace, "", "shop", None).unwrap();
    assert_eq!(deleted.describe(), "Namespace shop");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut gone: Vec<String> = (0..4)
        .map(|_| {
            let e = next(&runtime, &mut watch);
            assert_eq!(e.event_type, EventType::Deleted);
            e.object.describe()
        })
        .collect();
    gone.sort();
    assert_eq!(
        gone,
        [
            "Namespace shop",
            "Service shop/cart",
            "ServiceAccount shop/cart",
            "ServiceAccount shop/default"
        ]
    );
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

fn dual_stack_services_get_one_address_per_family(backend: Backend) {
    let config = StoreConfig {
        alloc: AllocConfig {
            service_cidr_v6: Some("fd00:10:96::/112".parse().unwrap()),
            ..AllocConfig::default()
        },
        ..StoreConfig::default()
    };
    let Some(t) = Opened::new(backend, config) else {
        return;
    };
    let store = &t.store;
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
    let Some(v4_only) = open(backend) else { return };
    let err = v4_only
        .store
        .apply(vec![svc("web", "  ipFamilyPolicy: RequireDualStack\n")])
        .unwrap_err();
    assert!(err.to_string().contains("spec.ipFamilies"), "{err}");
}

fn node(name: &str, extra: &str) -> Object {
    objs(&format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: {name}}}\n{extra}"
    ))
    .remove(0)
}

fn pod_cidr(o: &Object) -> String {
    match o {
        Object::Node(n) => n.spec.pod_cidr.clone().unwrap_or_default(),
        _ => panic!("not a node"),
    }
}

fn pod_cidrs_are_one_per_node(backend: Backend) {
    let config = StoreConfig {
        alloc: AllocConfig {
            pod_cidr: Some("10.88.0.0/22".parse().unwrap()),
            ..AllocConfig::default()
        },
        ..StoreConfig::default()
    };
    let Some(t) = Opened::new(backend, config) else {
        return;
    };
    let store = &t.store;
    let first = |w: Vec<crate::store::Written>| w[0].object.clone().unwrap();
    let a = first(store.apply(vec![node("a", "")]).unwrap());
    let b = first(store.apply(vec![node("b", "")]).unwrap());
    assert_eq!(
        (pod_cidr(&a).as_str(), pod_cidr(&b).as_str()),
        ("10.88.0.0/24", "10.88.1.0/24")
    );
    // Re-registering keeps the range; asking for another is refused; a taken one conflicts.
    let again = first(store.apply(vec![node("a", "")]).unwrap());
    assert_eq!(pod_cidr(&again), "10.88.0.0/24");
    let err = store
        .apply(vec![node("a", "spec: {podCIDR: 10.88.3.0/24}\n")])
        .unwrap_err();
    assert!(err.to_string().contains("immutable"), "{err}");
    let err = store
        .apply(vec![node("c", "spec: {podCIDR: 10.88.1.0/24}\n")])
        .unwrap_err();
    assert!(err.to_string().contains("already given to node b"), "{err}");
    let err = store
        .apply(vec![node("c", "spec: {podCIDR: 10.99.0.0/24}\n")])
        .unwrap_err();
    assert!(
        err.to_string().contains("pod network 10.88.0.0/22"),
        "{err}"
    );
    // Four /24s in a /22: the fifth node finds none; deleting one frees its range.
    store.apply(vec![node("c", ""), node("d", "")]).unwrap();
    let err = store.apply(vec![node("e", "")]).unwrap_err();
    assert!(matches!(err, Error::Exhausted(_)), "{err}");
    store.delete(Kind::Node, "", "b", None).unwrap();
    let e = first(store.apply(vec![node("e", "")]).unwrap());
    assert_eq!(pod_cidr(&e), "10.88.1.0/24");
}

fn create_refuses_what_exists(backend: Backend) {
    let Some(t) = open(backend) else { return };
    let store = &t.store;
    store
        .write(vec![crate::store::Op::Create(svc("a", ""))])
        .unwrap();
    let err = store
        .write(vec![crate::store::Op::Create(svc("a", ""))])
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    assert!(err.to_string().contains("already exists"), "{err}");
}

/// A pod that names no pull secrets gets its account's (`serviceAccountName`, else
/// `default`), read in the same write; one that names its own keeps them.
fn pods_get_their_service_accounts_pull_secrets(backend: Backend) {
    let Some(t) = open(backend) else { return };
    let store = &t.store;
    // Every built-in namespace has its `default` account.
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(
            store
                .get(Kind::ServiceAccount, ns, "default")
                .unwrap()
                .is_some(),
            "{ns}"
        );
    }
    let pod = |name: &str, extra: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers: [{{name: c, image: r.lan/app:v1}}]\n{extra}"
        )
    };
    let accounts = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: default}\nimagePullSecrets: [{name: team-cred}]\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: builder}\nimagePullSecrets: [{name: ci-cred}, {name: mirror-cred}]\n";
    let yaml = format!(
        "{accounts}---\n{}---\n{}---\n{}---\n{}",
        pod("plain", ""),
        pod("built", "  serviceAccountName: builder\n"),
        pod("legacy", "  serviceAccount: builder\n"),
        pod(
            "own",
            "  serviceAccountName: builder\n  imagePullSecrets: [{name: mine}]\n"
        ),
    );
    store.apply(objs(&yaml)).unwrap();
    let secrets = |name: &str| match store.get(Kind::Pod, "default", name).unwrap() {
        Some(Object::Pod(p)) => p
            .spec
            .image_pull_secrets
            .iter()
            .map(|s| s.name.clone())
            .collect::<Vec<_>>(),
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(secrets("plain"), ["team-cred"]);
    assert_eq!(secrets("built"), ["ci-cred", "mirror-cred"]);
    assert_eq!(secrets("legacy"), ["ci-cred", "mirror-cred"]);
    assert_eq!(secrets("own"), ["mine"]);
    // An account that does not exist gives nothing, and the pod is still taken.
    store
        .apply(objs(&pod("lonely", "  serviceAccountName: nobody\n")))
        .unwrap();
    assert!(secrets("lonely").is_empty());
    // Applying the same pod again changes nothing.
    let again = store.apply(objs(&pod("plain", ""))).unwrap();
    assert_eq!(again[0].outcome, Outcome::Unchanged);
}

/// Every namespace keeps a `default` ServiceAccount: deleted on its own, a fresh one (a new
/// uid) takes its place in the same write; deleted with its namespace, it goes.
fn a_deleted_default_account_comes_back(backend: Backend) {
    let Some(t) = open(backend) else { return };
    let store = &t.store;
    store
        .apply(objs(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
        ))
        .unwrap();
    let uid = |ns: &str| {
        store
            .get(Kind::ServiceAccount, ns, "default")
            .unwrap()
            .map(|a| a.meta().uid.clone())
    };
    let before = uid("shop").expect("a new namespace's account");
    store
        .delete(Kind::ServiceAccount, "shop", "default", None)
        .unwrap();
    let after = uid("shop").expect("recreated");
    assert_ne!(before, after);
    // Another account stays deleted.
    store
        .apply(objs(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: cart, namespace: shop}\n",
        ))
        .unwrap();
    store
        .delete(Kind::ServiceAccount, "shop", "cart", None)
        .unwrap();
    assert!(store
        .get(Kind::ServiceAccount, "shop", "cart")
        .unwrap()
        .is_none());
    store.delete(Kind::Namespace, "", "shop", None).unwrap();
    assert!(uid("shop").is_none(), "gone with its namespace");
}

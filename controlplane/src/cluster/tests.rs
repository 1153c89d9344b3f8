//! Membership, election and node lifecycle against real stores: redb for one node, a real
//! etcd member for several.

use std::sync::Arc;
use std::time::Duration;

use pier_testkit::{wait_for, Etcd};

use super::*;
use crate::controllers::runner;
use crate::store::{EtcdConfig, Store, StoreConfig};
use pier_model::node::LEADER_ROLE;
use pier_model::{Kind, Object};

fn etcd() -> Option<Etcd> {
    if !Etcd::available() {
        pier_testkit::skip("etcd is not installed (apt-get install etcd-server)");
        return None;
    }
    Some(Etcd::start(1))
}

fn connect(etcd: &Etcd) -> Arc<Store> {
    Store::connect(
        EtcdConfig::from_url(&etcd.store_url()).unwrap(),
        StoreConfig::default(),
    )
    .unwrap()
}

fn config(name: &str) -> ClusterConfig {
    ClusterConfig {
        node_name: name.into(),
        node_ip: Some("192.0.2.1".parse().unwrap()),
        heartbeat: Duration::from_millis(200),
        node_grace: Duration::from_secs(1),
        leader_lease: Duration::from_secs(1),
        pod_eviction_timeout: Duration::from_secs(60),
        hpa_sync_period: Duration::from_secs(15),
        sole: false,
        annotations: std::collections::BTreeMap::new(),
    }
}

fn node(store: &Store, name: &str) -> Option<pier_model::Node> {
    match store.get(Kind::Node, "", name).unwrap() {
        Some(Object::Node(n)) => Some(n),
        _ => None,
    }
}

fn ready_status(store: &Store, name: &str) -> String {
    node(store, name)
        .and_then(|n| n.ready_condition().map(|c| c.status.clone()))
        .unwrap_or_default()
}

/// A running pod bound to `node`, Ready.
fn ready_pod(name: &str, node: &str) -> Object {
    Object::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    }))
    .unwrap()
    .object
}

/// The status and reason of a pod's Ready condition.
fn pod_ready(store: &Store, name: &str) -> (String, Option<String>) {
    match store.get(Kind::Pod, "default", name).unwrap() {
        Some(Object::Pod(p)) => p
            .status
            .conditions
            .iter()
            .find(|c| c.condition_type == "Ready")
            .map(|c| (c.status.clone(), c.reason.clone()))
            .unwrap_or_default(),
        _ => Default::default(),
    }
}

/// Two nodes: one leads; when its election stops (the process died), the other takes over
/// within the lease, and the leader role label moves with it.
#[test]
fn one_leader_and_a_takeover_when_it_dies() {
    let Some(etcd) = etcd() else { return };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (a, b) = (connect(&etcd), connect(&etcd));
    for (store, name) in [(&a, "a"), (&b, "b")] {
        let (s, c) = (Arc::clone(store), config(name));
        register(&s, &c, &NodeFacts::of_this_machine()).unwrap();
        runtime.spawn(async move { run_membership(s, c, NodeFacts::of_this_machine()).await });
    }
    let (lead_a, run_a) = elect(Arc::clone(&a), "a".into(), Duration::from_secs(1));
    let (lead_b, run_b) = elect(Arc::clone(&b), "b".into(), Duration::from_secs(1));
    let task_a = runtime.spawn(run_a);
    let task_b = runtime.spawn(run_b);
    wait_for("a leader", Duration::from_secs(10), || {
        lead_a.is_leader() || lead_b.is_leader()
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        lead_a.is_leader() != lead_b.is_leader(),
        "exactly one leads"
    );
    let (first, second, first_task, second_lead) = if lead_a.is_leader() {
        ("a", "b", task_a, lead_b.clone())
    } else {
        ("b", "a", task_b, lead_a.clone())
    };
    wait_for(
        "the leader's Node labelled",
        Duration::from_secs(10),
        || node(&a, first).is_some_and(|n| n.metadata.labels.contains_key(LEADER_ROLE)),
    );
    first_task.abort();
    let started = std::time::Instant::now();
    wait_for(
        "the other node to take over",
        Duration::from_secs(10),
        || second_lead.is_leader(),
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    wait_for("the label to move", Duration::from_secs(10), || {
        node(&a, second).is_some_and(|n| n.metadata.labels.contains_key(LEADER_ROLE))
            && node(&a, first).is_some_and(|n| !n.metadata.labels.contains_key(LEADER_ROLE))
    });
    let Some(Object::Lease(lease)) = a.get(Kind::Lease, LEASE_NAMESPACE, LEASE_NAME).unwrap()
    else {
        panic!("no leader lease");
    };
    assert_eq!(lease.spec.holder_identity.as_deref(), Some(second));
    assert_eq!(lease.spec.lease_transitions, Some(1));
}

/// A node that stops renewing its lease is marked Ready=Unknown after the grace, and its
/// pods not Ready; when it renews again it marks itself Ready.
#[test]
fn a_silent_node_goes_unknown_and_comes_back_ready() {
    let Some(etcd) = etcd() else { return };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (leader, worker) = (connect(&etcd), connect(&etcd));
    register(&worker, &config("worker"), &NodeFacts::of_this_machine()).unwrap();
    let w = Arc::clone(&worker);
    let heartbeat = runtime.spawn(async move {
        run_membership(w, config("worker"), NodeFacts::of_this_machine()).await
    });
    wait_for("worker registered", Duration::from_secs(10), || {
        ready_status(&leader, "worker") == "True"
    });
    let registered = node(&leader, "worker").unwrap();
    assert_eq!(registered.internal_ip(), Some("192.0.2.1"));
    assert!(registered.status.capacity.contains_key("cpu"));
    let l = Arc::clone(&leader);
    runtime.spawn(async move {
        runner::run(
            Arc::clone(&l),
            NodeLifecycle::new(l, Duration::from_secs(1), Duration::from_secs(60)),
        )
        .await
    });
    leader
        .apply(vec![
            ready_pod("on-worker", "worker"),
            ready_pod("elsewhere", "leader"),
        ])
        .unwrap();
    std::thread::sleep(Duration::from_millis(2000));
    assert_eq!(
        ready_status(&leader, "worker"),
        "True",
        "renewing: stays Ready"
    );
    assert_eq!(pod_ready(&leader, "on-worker"), ("True".into(), None));
    heartbeat.abort();
    wait_for("worker Unknown", Duration::from_secs(10), || {
        ready_status(&leader, "worker") == "Unknown"
    });
    let reason =
        node(&leader, "worker").and_then(|n| n.ready_condition().and_then(|c| c.reason.clone()));
    assert_eq!(reason.as_deref(), Some("NodeStatusUnknown"));
    // Its pods are marked not Ready, as Kubernetes' MarkPodsNotReady does; others are not.
    wait_for("the worker's pod not Ready", Duration::from_secs(5), || {
        pod_ready(&leader, "on-worker").0 == "False"
    });
    assert_eq!(
        pod_ready(&leader, "on-worker").1.as_deref(),
        Some("NodeNotReady")
    );
    assert_eq!(pod_ready(&leader, "elsewhere"), ("True".into(), None));
    // The node writes a fresh Ready (as registering does, before it renews its Lease): that
    // is a heartbeat, so it is not flipped back to Unknown while the Lease is on its way.
    let mut back = node(&worker, "worker").unwrap();
    back.status.conditions.retain(|c| c.type_ != "Ready");
    back.status
        .conditions
        .push(pier_model::node::NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            last_heartbeat_time: Some(micro_time()),
            ..Default::default()
        });
    worker.apply(vec![Object::Node(back)]).unwrap();
    let written = std::time::Instant::now();
    while written.elapsed() < Duration::from_millis(600) {
        assert_eq!(
            ready_status(&leader, "worker"),
            "True",
            "a fresh Ready is a heartbeat"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let w = Arc::clone(&worker);
    runtime.spawn(async move {
        run_membership(w, config("worker"), NodeFacts::of_this_machine()).await
    });
    let back = std::time::Instant::now();
    while back.elapsed() < Duration::from_millis(1500) {
        assert_eq!(
            ready_status(&leader, "worker"),
            "True",
            "Ready again, and stays"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// On the embedded store the one node leads from the start, carries the leader role, and
/// writes no heartbeat (nobody else would read it).
#[test]
fn the_sole_node_leads_without_an_election() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb"), StoreConfig::default()).unwrap();
    let config = ClusterConfig {
        sole: true,
        ..config("solo")
    };
    register(&store, &config, &NodeFacts::of_this_machine()).unwrap();
    assert!(Leadership::always().is_leader());
    let solo = node(&store, "solo").unwrap();
    assert!(solo.metadata.labels.contains_key(LEADER_ROLE));
    assert!(solo.is_ready());
    assert!(store
        .get(Kind::Lease, "kube-node-lease", "solo")
        .unwrap()
        .is_none());
}

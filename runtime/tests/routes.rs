//! Host-gw routes to other nodes' pods, programmed for real in a network namespace of the
//! test's own (a bridge stands for the LAN): a Node with a pod range and an address
//! gets a route, a changed address moves it, a deleted Node takes it away, and a stale pier
//! route found at start is removed. Needs root (network namespaces, routes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use pier_controlplane::controllers::runner;
use pier_controlplane::store::{Store, StoreConfig};
use pier_model::manifest::objects;
use pier_model::Kind;
use pier_runtime::routes::{PodRoutes, ROUTE_PROTOCOL};
use pier_testkit::{is_root, private_netns, skip};

fn ip(args: &str) {
    let status = Command::new("ip")
        .args(args.split_whitespace())
        .status()
        .unwrap();
    assert!(status.success(), "ip {args}");
}

fn pier_routes() -> Vec<String> {
    let out = Command::new("ip")
        .args(["-4", "route", "show", "proto", &ROUTE_PROTOCOL.to_string()])
        .output()
        .unwrap();
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .collect();
    lines.sort();
    lines
}

fn node(name: &str, cidr: &str, ip: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: {name}}}\nspec: {{podCIDR: {cidr}}}\nstatus:\n  addresses: [{{type: InternalIP, address: {ip}}}]\n  conditions: [{{type: Ready, status: \"True\"}}]\n"
    )
}

#[test]
fn other_nodes_pod_ranges_are_routed_via_their_addresses() {
    if !is_root() {
        skip("needs root (network namespaces and routes)");
        return;
    }
    private_netns();
    let forwarding = || std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    assert_eq!(forwarding().trim(), "0", "a new namespace does not forward");
    ip("link add lan0 type bridge");
    ip("addr add 192.0.2.1/24 dev lan0");
    ip("link set lan0 up");
    // Left by an earlier run for a node that no longer exists.
    ip(&format!(
        "route add 10.88.9.0/24 via 192.0.2.9 proto {ROUTE_PROTOCOL}"
    ));

    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        alloc: pier_controlplane::store::AllocConfig {
            pod_cidr: Some("10.88.0.0/16".parse().unwrap()),
            ..Default::default()
        },
        ..StoreConfig::default()
    };
    let store = Store::open(&dir.path().join("s.redb"), config).unwrap();
    let apply = |yaml: String| store.apply(objects("test", &yaml).unwrap()).unwrap();
    apply(node("me", "10.88.0.0/24", "192.0.2.1"));
    apply(node("b", "10.88.1.0/24", "192.0.2.2"));
    apply(node("c", "10.88.2.0/24", "192.0.2.3"));
    // Claims this node's own address: never a gateway.
    apply(node("d", "10.88.3.0/24", "192.0.2.1"));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = Arc::clone(&store);
    let task = runtime.spawn(async move {
        runner::run(s, PodRoutes::new("me", Some("192.0.2.1".parse().unwrap()))).await
    });
    let settle = |what: &str, want: &[&str]| {
        let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        runtime.block_on(async {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while pier_routes() != want {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{what}: {:?} != {want:?}",
                    pier_routes()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    };
    settle(
        "routes to b and c, none to itself, the stale one gone",
        &["10.88.1.0/24 via 192.0.2.2", "10.88.2.0/24 via 192.0.2.3"],
    );
    assert_eq!(
        forwarding().trim(),
        "1",
        "forwarding on, or other nodes' packets for this node's pods are dropped"
    );
    apply(node("c", "10.88.2.0/24", "192.0.2.33"));
    settle(
        "c moved",
        &["10.88.1.0/24 via 192.0.2.2", "10.88.2.0/24 via 192.0.2.33"],
    );
    store.delete(Kind::Node, "", "b", None).unwrap();
    settle("b gone", &["10.88.2.0/24 via 192.0.2.33"]);
    task.abort();
}

use std::collections::BTreeMap;

use super::*;
use pier_model::manifest::objects;
use pier_model::Object;

fn node(name: &str, cpu: &str, memory: &str, extra: &str) -> Node {
    let yaml = format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: {name}}}\n{extra}status:\n  allocatable: {{cpu: \"{cpu}\", memory: {memory}, pods: \"110\"}}\n  conditions: [{{type: Ready, status: \"True\"}}]\n"
    );
    match objects("test", &yaml).unwrap().remove(0) {
        Object::Node(n) => n,
        _ => unreachable!(),
    }
}

fn pod(name: &str, deployment: &str, cpu: &str, memory: &str) -> Pod {
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{pier.dev/deployment: {deployment}}}}}\nspec:\n  containers: [{{name: c, image: x, resources: {{requests: {{cpu: \"{cpu}\", memory: {memory}}}}}}}]\n"
    );
    match objects("test", &yaml).unwrap().remove(0) {
        Object::Pod(p) => p,
        _ => unreachable!(),
    }
}

/// Places `pods` one by one, accounting each, as the controller does.
fn place_all(nodes: &[Node], pods: &[Pod]) -> Vec<String> {
    let mut usage = BTreeMap::new();
    pods.iter()
        .map(|p| {
            let n = place(p, nodes.iter(), &usage).unwrap();
            account(&mut usage, &n, p, 1);
            n
        })
        .collect()
}

#[test]
fn replicas_spread_two_per_node() {
    let nodes = [
        node("a", "2", "4Gi", ""),
        node("b", "2", "4Gi", ""),
        node("c", "2", "4Gi", ""),
    ];
    let pods: Vec<Pod> = (0..6)
        .map(|i| pod(&format!("w{i}"), "web", "100m", "64Mi"))
        .collect();
    let mut placed = place_all(&nodes, &pods);
    placed.sort();
    assert_eq!(placed, ["a", "a", "b", "b", "c", "c"]);
}

#[test]
fn least_allocated_wins_when_owners_tie() {
    let nodes = [node("big", "8", "16Gi", ""), node("small", "2", "4Gi", "")];
    assert_eq!(
        place_all(&nodes, &[pod("p", "x", "500m", "512Mi")]),
        ["big"]
    );
}

#[test]
fn filters_name_their_reasons() {
    let nodes = [
        node("cordoned", "4", "8Gi", "spec: {unschedulable: true}\n"),
        node(
            "tainted",
            "4",
            "8Gi",
            "spec: {taints: [{key: k, effect: NoSchedule}]}\n",
        ),
        node("tiny", "100m", "64Mi", ""),
    ];
    let err = place(&pod("p", "x", "1", "1Gi"), nodes.iter(), &BTreeMap::new()).unwrap_err();
    assert!(err.starts_with("0/3 nodes are available: "), "{err}");
    for why in [
        "Insufficient cpu",
        "node(s) were unschedulable",
        "node(s) had untolerated taint(s)",
    ] {
        assert!(err.contains(why), "{err}");
    }
}

#[test]
fn full_nodes_refuse_and_freed_room_is_reused() {
    let nodes = [node("a", "1", "1Gi", "")];
    let big = pod("p1", "x", "800m", "128Mi");
    let mut usage = BTreeMap::new();
    account(&mut usage, "a", &big, 1);
    let next = pod("p2", "x", "300m", "128Mi");
    let err = place(&next, nodes.iter(), &usage).unwrap_err();
    assert!(err.contains("Insufficient cpu"), "{err}");
    account(&mut usage, "a", &big, -1);
    assert_eq!(place(&next, nodes.iter(), &usage).unwrap(), "a");
    assert!(usage["a"].owners.is_empty());
}

#[test]
fn not_ready_nodes_take_nothing() {
    let mut down = node("down", "4", "8Gi", "");
    down.status.conditions[0].status = "Unknown".into();
    let err = place(&pod("p", "x", "1", "1Gi"), [down].iter(), &BTreeMap::new()).unwrap_err();
    assert_eq!(err, "0/1 nodes are available: 1 node(s) were not ready.");
}

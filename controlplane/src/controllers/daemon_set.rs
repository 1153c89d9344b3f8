//! Planning a DaemonSet's pass as Kubernetes' DaemonSet controller does: one pod of the
//! current template bound to every node it may run on (a node with a `NoSchedule` or
//! `NoExecute` taint of its own is left out; the node conditions' taints a DaemonSet pod
//! tolerates by default are not), extras and pods on other nodes deleted, and pods of an
//! older template replaced `maxUnavailable` nodes at a time (`OnDelete`: only when deleted).
//! Pure functions; `daemon_set_controller.rs` applies them.

use std::collections::BTreeMap;

use pier_model::daemon_set::{DaemonSet, DaemonSetStatus, REVISION_HASH_LABEL};
use pier_model::meta::OwnerReference;
use pier_model::{Node, Pod};

use super::deployment::scaled;

/// Taints every DaemonSet pod tolerates (Kubernetes adds these tolerations itself).
const TOLERATED: &[&str] = &[
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
    "node.kubernetes.io/unschedulable",
    "node.kubernetes.io/disk-pressure",
    "node.kubernetes.io/memory-pressure",
    "node.kubernetes.io/pid-pressure",
    "node.kubernetes.io/network-unavailable",
];

/// What one pass does to a DaemonSet's pods.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DaemonPlan {
    /// Its status after this pass.
    pub status: DaemonSetStatus,
    /// Nodes that get a new pod.
    pub create: Vec<String>,
    /// Pods to terminate.
    pub terminate: Vec<String>,
}

/// Whether a DaemonSet pod may run on `node`.
pub fn runs_on(node: &Node) -> bool {
    !node.spec.taints.iter().any(|t| {
        (t.effect == "NoSchedule" || t.effect == "NoExecute")
            && !TOLERATED.contains(&t.key.as_str())
    })
}

/// Plans the pass for `ds` (template hash `hash`) over `nodes`, with its live `pods`.
pub fn plan(ds: &DaemonSet, hash: &str, nodes: &[&Node], pods: &[&Pod]) -> DaemonPlan {
    let mut out = DaemonPlan::default();
    let mut by_node: BTreeMap<&str, Vec<&Pod>> = BTreeMap::new();
    for pod in pods {
        match pod.spec.node_name.as_deref() {
            Some(node) if nodes.iter().any(|n| n.metadata.name == node) => {
                by_node.entry(node).or_default().push(pod);
            }
            // Bound to a node that is gone, or to none: not where it belongs.
            _ => out.terminate.push(pod.metadata.name.clone()),
        }
    }
    let current = |p: &Pod| {
        p.metadata
            .labels
            .get(REVISION_HASH_LABEL)
            .map(String::as_str)
            == Some(hash)
    };
    let mut kept: Vec<&Pod> = Vec::new();
    let status = &mut out.status;
    for node in nodes {
        let name = node.metadata.name.as_str();
        let mut here = by_node.remove(name).unwrap_or_default();
        if !runs_on(node) {
            if !here.is_empty() {
                status.number_misscheduled += 1;
            }
            out.terminate
                .extend(here.iter().map(|p| p.metadata.name.clone()));
            continue;
        }
        status.desired_number_scheduled += 1;
        if here.is_empty() {
            out.create.push(name.to_string());
            continue;
        }
        status.current_number_scheduled += 1;
        // One pod per node: the current, ready, oldest one stays.
        here.sort_by_key(|p| {
            (
                !current(p),
                !p.is_ready(),
                p.metadata.creation_timestamp.clone(),
            )
        });
        out.terminate
            .extend(here[1..].iter().map(|p| p.metadata.name.clone()));
        kept.push(here[0]);
    }
    let ready = kept.iter().filter(|p| p.is_ready()).count() as i64;
    status.number_ready = ready;
    status.number_available = Some(ready);
    status.number_unavailable = Some(status.desired_number_scheduled - ready);
    status.updated_number_scheduled = Some(kept.iter().filter(|p| current(p)).count() as i64);
    status.observed_generation = Some(ds.metadata.generation);
    roll(ds, &kept, &current, &mut out);
    out
}

/// Replaces pods of an older template: unready ones at once, ready ones while no more than
/// `maxUnavailable` nodes are without a ready pod.
fn roll(ds: &DaemonSet, kept: &[&Pod], current: &dyn Fn(&Pod) -> bool, out: &mut DaemonPlan) {
    let strategy = ds.spec.update_strategy.as_ref();
    if strategy.and_then(|s| s.strategy_type.as_deref()) == Some("OnDelete") {
        return;
    }
    let desired = out.status.desired_number_scheduled;
    let limit = strategy
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.max_unavailable.as_ref());
    let max_unavailable = match limit {
        None => 1,
        Some(v) => scaled(Some(v), desired, true).max(1),
    };
    let mut unavailable = out.status.number_unavailable.unwrap_or(0);
    for pod in kept.iter().filter(|p| !current(p)) {
        if !pod.is_ready() {
            out.terminate.push(pod.metadata.name.clone());
        } else if unavailable < max_unavailable {
            unavailable += 1;
            out.terminate.push(pod.metadata.name.clone());
        }
    }
}

/// A new pod of `ds` for `node`: `<name>-<5 random>`, bound to the node, labelled with the
/// template's hash, controlled by the DaemonSet.
pub fn new_pod(ds: &DaemonSet, hash: &str, node: &str) -> Pod {
    let template = &ds.spec.template;
    let mut pod = Pod {
        api_version: "v1".into(),
        kind: "Pod".into(),
        ..Default::default()
    };
    let meta = &ds.metadata;
    pod.metadata.name = format!("{}-{}", meta.name, super::owned_pods::generated_suffix());
    pod.metadata.namespace = meta.namespace().to_string();
    pod.metadata.labels = template.metadata.labels.clone();
    pod.metadata
        .labels
        .insert(REVISION_HASH_LABEL.into(), hash.into());
    pod.metadata.annotations = template.metadata.annotations.clone();
    pod.metadata.owner_references = vec![OwnerReference::controller("apps/v1", "DaemonSet", meta)];
    pod.spec = template.spec.clone();
    pod.spec.node_name = Some(node.to_string());
    pod
}

#[cfg(test)]
mod tests {
    use super::*;
    use pier_model::node::Taint;

    fn node(name: &str, taint: Option<&str>) -> Node {
        let mut n = Node::default();
        n.metadata.name = name.into();
        if let Some(key) = taint {
            n.spec.taints.push(Taint {
                key: key.into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            });
        }
        n
    }

    fn pod(name: &str, node: &str, hash: &str, ready: bool) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = name.into();
        p.metadata
            .labels
            .insert(REVISION_HASH_LABEL.into(), hash.into());
        p.spec.node_name = Some(node.into());
        if ready {
            p.status.conditions.push(pier_model::pod::PodCondition {
                condition_type: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            });
        }
        p
    }

    #[test]
    fn one_pod_per_node_it_may_run_on() {
        let ds = DaemonSet::default();
        let (a, b) = (
            node("a", None),
            node("b", Some("node.kubernetes.io/unschedulable")),
        );
        let c = node("c", Some("dedicated"));
        let on_c = pod("p-c", "c", "h", true);
        let (one, two) = (pod("p-a1", "a", "h", true), pod("p-a2", "a", "h", false));
        let step = plan(&ds, "h", &[&a, &b, &c], &[&one, &two, &on_c]);
        assert_eq!(
            step.create,
            ["b"],
            "cordoned nodes still run DaemonSet pods"
        );
        assert_eq!(step.terminate, ["p-a2", "p-c"]);
        let s = &step.status;
        assert_eq!(
            (
                s.desired_number_scheduled,
                s.current_number_scheduled,
                s.number_misscheduled
            ),
            (2, 1, 1)
        );
        assert_eq!(s.number_ready, 1);
    }

    #[test]
    fn a_new_template_rolls_one_node_at_a_time() {
        let ds = DaemonSet::default();
        let nodes = [node("a", None), node("b", None), node("c", None)];
        let refs: Vec<&Node> = nodes.iter().collect();
        let old: Vec<Pod> = ["a", "b", "c"]
            .iter()
            .map(|n| pod(&format!("p-{n}"), n, "old", true))
            .collect();
        let live: Vec<&Pod> = old.iter().collect();
        let step = plan(&ds, "new", &refs, &live);
        assert_eq!(step.terminate, ["p-a"], "maxUnavailable 1");
        assert_eq!(step.status.updated_number_scheduled, Some(0));

        // Node a runs the new pod, not yet ready: nothing else goes until it is.
        let fresh = pod("q-a", "a", "new", false);
        let live = [&fresh, &old[1], &old[2]];
        assert!(plan(&ds, "new", &refs, &live).terminate.is_empty());
        let fresh = pod("q-a", "a", "new", true);
        let live = [&fresh, &old[1], &old[2]];
        assert_eq!(plan(&ds, "new", &refs, &live).terminate, ["p-b"]);
    }
}

//! Where a pod goes, as kube-scheduler's default profile decides it in miniature: filter the
//! nodes (Ready, schedulable, no NoSchedule/NoExecute taint, room for the pod's requests
//! against allocatable), then score them: fewest pods of the same owner first (replicas
//! spread across nodes), then least allocated (the most free CPU and memory, as fractions,
//! after placing it), then name. Pure: the scheduler controller keeps the state.

use std::collections::BTreeMap;

use super::deployment::DEPLOYMENT_LABEL;
use pier_model::{quantity, Node, Pod};

/// What a node has to give, and what its pods already take.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    /// CPU requested by its pods, in millicores.
    pub cpu_millis: u64,
    /// Memory requested, in bytes.
    pub memory: u64,
    /// Pods bound to it.
    pub pods: u64,
    /// Pods per owner (see [`owner`]).
    pub owners: BTreeMap<String, u64>,
}

/// A pod's requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requests {
    /// Millicores.
    pub cpu_millis: u64,
    /// Bytes.
    pub memory: u64,
}

/// The sum of a pod's containers' requests (unparseable quantities count as zero; the
/// store's validation refuses them before they get here).
pub fn requests(pod: &Pod) -> Requests {
    let mut total = Requests::default();
    for c in &pod.spec.containers {
        let Some(r) = &c.resources else { continue };
        if let Some(cpu) = r.requests.get("cpu").and_then(|q| quantity::cores(q).ok()) {
            total.cpu_millis += (cpu * 1000.0).round() as u64;
        }
        if let Some(mem) = r
            .requests
            .get("memory")
            .and_then(|q| quantity::bytes(q).ok())
        {
            total.memory += mem;
        }
    }
    total
}

/// What spreads a pod's replicas: its controller owner, or the Deployment that made it.
pub fn owner(pod: &Pod) -> Option<String> {
    let ns = pod.metadata.namespace();
    if let Some(r) = pod
        .metadata
        .owner_references
        .iter()
        .find(|r| r.controller == Some(true))
    {
        return Some(format!("{}/{ns}/{}", r.kind, r.name));
    }
    pod.metadata
        .labels
        .get(DEPLOYMENT_LABEL)
        .map(|d| format!("Deployment/{ns}/{d}"))
}

/// What a node offers: allocatable CPU (millicores), memory (bytes) and pods.
fn allocatable(node: &Node) -> (u64, u64, u64) {
    let get = |k: &str| {
        node.status
            .allocatable
            .get(k)
            .or(node.status.capacity.get(k))
    };
    let cpu = get("cpu")
        .and_then(|q| quantity::cores(q).ok())
        .map_or(0, |c| (c * 1000.0).round() as u64);
    let memory = get("memory")
        .and_then(|q| quantity::bytes(q).ok())
        .unwrap_or(0);
    let pods = get("pods")
        .and_then(|q| match q {
            pier_model::meta::IntOrString::Int(n) => u64::try_from(*n).ok(),
            pier_model::meta::IntOrString::String(s) => s.parse().ok(),
        })
        .unwrap_or(110);
    (cpu, memory, pods)
}

/// Why a node was filtered out, in kube-scheduler's words.
fn unfit(node: &Node, usage: &Usage, want: Requests) -> Option<&'static str> {
    if !node.is_ready() {
        return Some("node(s) were not ready");
    }
    if node.spec.unschedulable {
        return Some("node(s) were unschedulable");
    }
    if node
        .spec
        .taints
        .iter()
        .any(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
    {
        return Some("node(s) had untolerated taint(s)");
    }
    let (cpu, memory, pods) = allocatable(node);
    if usage.pods + 1 > pods {
        return Some("node(s) had too many pods");
    }
    if usage.cpu_millis + want.cpu_millis > cpu {
        return Some("Insufficient cpu");
    }
    if usage.memory + want.memory > memory {
        return Some("Insufficient memory");
    }
    None
}

/// The fraction of a node left free after placing `want` (0..=1000, higher is freer).
fn free_score(node: &Node, usage: &Usage, want: Requests) -> u64 {
    let (cpu, memory, _) = allocatable(node);
    let free = |total: u64, used: u64| {
        (total.saturating_sub(used) * 1000)
            .checked_div(total)
            .unwrap_or(0)
    };
    (free(cpu, usage.cpu_millis + want.cpu_millis) + free(memory, usage.memory + want.memory)) / 2
}

/// The node for `pod`, or the reason none fits (`0/3 nodes are available: ...`).
pub fn place<'a>(
    pod: &Pod,
    nodes: impl Iterator<Item = &'a Node>,
    usage: &BTreeMap<String, Usage>,
) -> Result<String, String> {
    let want = requests(pod);
    let owner = owner(pod);
    let empty = Usage::default();
    let mut reasons: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut total = 0;
    let mut best: Option<((u64, std::cmp::Reverse<u64>), String)> = None;
    for node in nodes {
        total += 1;
        let name = &node.metadata.name;
        let used = usage.get(name).unwrap_or(&empty);
        if let Some(why) = unfit(node, used, want) {
            *reasons.entry(why).or_default() += 1;
            continue;
        }
        let siblings = owner
            .as_ref()
            .and_then(|o| used.owners.get(o))
            .copied()
            .unwrap_or(0);
        let rank = (siblings, std::cmp::Reverse(free_score(node, used, want)));
        if best.as_ref().is_none_or(|(b, bn)| (rank, name) < (*b, bn)) {
            best = Some((rank, name.clone()));
        }
    }
    match best {
        Some((_, name)) => Ok(name),
        None => {
            let why: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
            Err(format!(
                "0/{total} nodes are available{}{}.",
                if why.is_empty() { "" } else { ": " },
                why.join(", ")
            ))
        }
    }
}

/// Records `pod` on `node` in `usage`.
pub fn account(usage: &mut BTreeMap<String, Usage>, node: &str, pod: &Pod, sign: i64) {
    let want = requests(pod);
    let u = usage.entry(node.to_string()).or_default();
    let add = |v: u64, d: u64| {
        if sign >= 0 {
            v.saturating_add(d)
        } else {
            v.saturating_sub(d)
        }
    };
    u.cpu_millis = add(u.cpu_millis, want.cpu_millis);
    u.memory = add(u.memory, want.memory);
    u.pods = add(u.pods, 1);
    if let Some(o) = owner(pod) {
        let n = u.owners.entry(o.clone()).or_default();
        *n = add(*n, 1);
        if *n == 0 {
            u.owners.remove(&o);
        }
    }
}

#[cfg(test)]
mod tests;

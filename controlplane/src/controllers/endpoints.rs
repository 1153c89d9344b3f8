//! Services with selectors + Pods → EndpointSlices, as Kubernetes' EndpointSlice controller does.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};

use pier_model::endpointslice::{MANAGED_BY_LABEL, MANAGED_BY_PIER, SERVICE_NAME_LABEL};
use pier_model::meta::OwnerReference;
use pier_model::{
    Endpoint, EndpointConditions, EndpointPort, EndpointSlice, IntOrString, ObjectMeta,
    ObjectReference, Pod, Service,
};

/// Most endpoints one slice holds (Kubernetes' default `--max-endpoints-per-slice`).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// The slice writes that bring a Service's managed slices to the desired state.
#[derive(Debug, Default, PartialEq)]
pub struct SliceChanges {
    /// Slices to create or replace.
    pub put: Vec<EndpointSlice>,
    /// Names of slices to delete.
    pub delete: Vec<String>,
}

fn resolve_ports(svc: &Service, pod: &Pod) -> Vec<EndpointPort> {
    svc.spec
        .ports
        .iter()
        .filter_map(|p| {
            let port = match &p.target_port {
                None => p.port,
                Some(IntOrString::Int(n)) => *n,
                Some(IntOrString::String(name)) => pod.named_port(name, p.protocol())?,
            };
            Some(EndpointPort {
                name: Some(p.name.clone()),
                protocol: Some(p.protocol().to_string()),
                port: Some(port),
                app_protocol: p.app_protocol.clone(),
            })
        })
        .collect()
}

/// The endpoint `pod` gives `svc`; a pod on a node that is not Ready (`down`) serves nothing,
/// as Kubernetes marks such pods not ready.
fn endpoint_for(svc: &Service, pod: &Pod, down: &BTreeSet<String>) -> Option<Endpoint> {
    let ip = pod.status.pod_ip.as_ref().filter(|ip| !ip.is_empty())?;
    if matches!(pod.status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return None;
    }
    let terminating = pod.is_terminating();
    let node_down = pod
        .spec
        .node_name
        .as_ref()
        .is_some_and(|n| down.contains(n));
    let serving = (pod.is_ready() && !node_down) || svc.spec.publish_not_ready_addresses;
    let hostname = match (&pod.spec.hostname, &pod.spec.subdomain) {
        (Some(h), Some(sub)) if *sub == svc.metadata.name => Some(h.clone()),
        _ => None,
    };
    Some(Endpoint {
        addresses: vec![ip.clone()],
        conditions: EndpointConditions {
            ready: Some(serving && !terminating),
            serving: Some(serving),
            terminating: Some(terminating),
        },
        hostname,
        node_name: pod.spec.node_name.clone(),
        zone: None,
        target_ref: Some(ObjectReference {
            kind: "Pod".into(),
            namespace: pod.metadata.namespace().to_string(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..ObjectReference::default()
        }),
    })
}

fn endpoint_id(ep: &Endpoint) -> String {
    match &ep.target_ref {
        Some(r) => format!("pod/{}", r.name),
        None => format!(
            "addr/{}",
            ep.addresses.first().map(String::as_str).unwrap_or("")
        ),
    }
}

fn address_type(ep: &Endpoint) -> &'static str {
    match ep.addresses.first().map(|a| a.contains(':')) {
        Some(true) => "IPv6",
        _ => "IPv4",
    }
}

fn group_hash(ports: &[EndpointPort], address_type: &str) -> u32 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ports.hash(&mut h);
    address_type.hash(&mut h);
    (h.finish() & 0xffff_ffff) as u32
}

fn new_slice(
    svc: &Service,
    name: String,
    address_type: &str,
    ports: Vec<EndpointPort>,
) -> EndpointSlice {
    let mut labels = BTreeMap::new();
    labels.insert(SERVICE_NAME_LABEL.to_string(), svc.metadata.name.clone());
    labels.insert(MANAGED_BY_LABEL.to_string(), MANAGED_BY_PIER.to_string());
    EndpointSlice {
        api_version: "discovery.k8s.io/v1".into(),
        kind: "EndpointSlice".into(),
        metadata: ObjectMeta {
            name,
            namespace: svc.metadata.namespace().to_string(),
            labels,
            owner_references: vec![OwnerReference::controller("v1", "Service", &svc.metadata)],
            ..ObjectMeta::default()
        },
        address_type: address_type.into(),
        endpoints: Vec::new(),
        ports,
    }
}

/// Computes the slice changes for `svc` given the pods of its namespace, the nodes that are
/// not Ready, and its current managed slices.
///
/// Endpoints stay in the slice they are in; new ones fill slices with room before new slices
/// are made, so a pod change rewrites one slice, not all of them.
pub fn reconcile<'a>(
    svc: &Service,
    pods: impl Iterator<Item = &'a Pod>,
    down: &BTreeSet<String>,
    existing: &[EndpointSlice],
) -> SliceChanges {
    // Desired endpoints, grouped by (address type, resolved ports).
    let mut desired: BTreeMap<(String, Vec<EndpointPort>), BTreeMap<String, Endpoint>> =
        BTreeMap::new();
    if !svc.spec.selector.is_empty() {
        for pod in pods {
            if !pier_model::meta::map_selects(&svc.spec.selector, &pod.metadata.labels) {
                continue;
            }
            if let Some(ep) = endpoint_for(svc, pod, down) {
                let group = (address_type(&ep).to_string(), resolve_ports(svc, pod));
                desired
                    .entry(group)
                    .or_default()
                    .insert(endpoint_id(&ep), ep);
            }
        }
    }
    let mut changes = SliceChanges::default();
    let mut used_names: BTreeSet<String> =
        existing.iter().map(|s| s.metadata.name.clone()).collect();
    let mut by_group: HashMap<(String, Vec<EndpointPort>), Vec<&EndpointSlice>> = HashMap::new();
    for slice in existing {
        by_group
            .entry((slice.address_type.clone(), slice.ports.clone()))
            .or_default()
            .push(slice);
    }
    for (group, slices) in &by_group {
        if !desired.contains_key(group) {
            changes
                .delete
                .extend(slices.iter().map(|s| s.metadata.name.clone()));
        }
    }
    for (group, mut wanted) in desired {
        let current = by_group.remove(&group).unwrap_or_default();
        let mut updated: Vec<(EndpointSlice, bool)> = Vec::new();
        for slice in current {
            let mut next = slice.clone();
            next.endpoints = slice
                .endpoints
                .iter()
                .filter_map(|ep| wanted.remove(&endpoint_id(ep)))
                .collect();
            let changed =
                next.endpoints != slice.endpoints || next.metadata.labels != slice.metadata.labels;
            updated.push((next, changed));
        }
        // Fill existing slices with room, then make new ones.
        let mut rest = wanted.into_values();
        for (slice, changed) in &mut updated {
            while slice.endpoints.len() < MAX_ENDPOINTS_PER_SLICE {
                let Some(ep) = rest.next() else { break };
                slice.endpoints.push(ep);
                *changed = true;
            }
        }
        let rest: Vec<Endpoint> = rest.collect();
        let hash = group_hash(&group.1, &group.0);
        for chunk in rest.chunks(MAX_ENDPOINTS_PER_SLICE) {
            let name = (0u32..)
                .map(|k| format!("{}-{:08x}", svc.metadata.name, hash.wrapping_add(k)))
                .find(|n| !used_names.contains(n))
                .unwrap_or_default();
            used_names.insert(name.clone());
            let mut slice = new_slice(svc, name, &group.0, group.1.clone());
            slice.endpoints = chunk.to_vec();
            updated.push((slice, true));
        }
        for (mut slice, changed) in updated {
            if slice.endpoints.is_empty() {
                changes.delete.push(slice.metadata.name.clone());
            } else if changed {
                slice.metadata.resource_version.clear();
                changes.put.push(slice);
            }
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use pier_model::Object;
    use serde_json::json;

    fn svc(target: serde_json::Value) -> Service {
        match Object::from_value(json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": target}]}
        }))
        .unwrap()
        .object
        {
            Object::Service(s) => s,
            _ => unreachable!(),
        }
    }

    fn pod(name: &str, ip: &str, ready: bool, port_name: &str, port: i64) -> Pod {
        match Object::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "x", "ports": [{"name": port_name, "containerPort": port}]}]},
            "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        }))
        .unwrap()
        .object
        {
            Object::Pod(p) => p,
            _ => unreachable!(),
        }
    }

    #[test]
    fn pods_become_endpoints_with_named_ports() {
        let s = svc(json!("web"));
        let pods = [
            pod("a", "10.88.0.2", true, "web", 8080),
            pod("b", "10.88.0.3", false, "web", 8080),
            pod("c", "10.88.0.4", true, "web", 9090),
        ];
        let changes = reconcile(&s, pods.iter(), &BTreeSet::new(), &[]);
        assert!(changes.delete.is_empty());
        assert_eq!(changes.put.len(), 2, "two port groups: 8080 and 9090");
        let s8080 = changes
            .put
            .iter()
            .find(|s| s.ports[0].port == Some(8080))
            .unwrap();
        assert_eq!(s8080.endpoints.len(), 2);
        assert_eq!(s8080.endpoints[1].conditions.ready, Some(false));
        assert_eq!(s8080.service_name(), Some("web"));
    }

    #[test]
    fn chunks_at_100_and_keeps_placement() {
        let s = svc(json!(8080));
        let pods: Vec<Pod> = (0..250)
            .map(|i| {
                pod(
                    &format!("p{i:03}"),
                    &format!("10.88.{}.{}", i / 200, i % 200 + 1),
                    true,
                    "x",
                    1,
                )
            })
            .collect();
        let first = reconcile(&s, pods.iter(), &BTreeSet::new(), &[]);
        assert_eq!(first.put.len(), 3);
        assert!(first
            .put
            .iter()
            .all(|s| s.endpoints.len() <= MAX_ENDPOINTS_PER_SLICE));
        // Removing one pod rewrites only the slice that held it.
        let existing = first.put.clone();
        let fewer: Vec<&Pod> = pods.iter().filter(|p| p.metadata.name != "p005").collect();
        let second = reconcile(&s, fewer.into_iter(), &BTreeSet::new(), &existing);
        assert_eq!(second.put.len(), 1);
        assert!(second.delete.is_empty());
        // Adding it back fills the slice with room instead of creating one.
        let mut after = existing.clone();
        for put in &second.put {
            if let Some(slot) = after
                .iter_mut()
                .find(|s| s.metadata.name == put.metadata.name)
            {
                *slot = put.clone();
            }
        }
        let third = reconcile(&s, pods.iter(), &BTreeSet::new(), &after);
        assert_eq!(third.put.len(), 1);
        assert_eq!(
            reconcile(&s, pods.iter(), &BTreeSet::new(), &first.put),
            SliceChanges::default(),
            "steady state writes nothing"
        );
    }

    #[test]
    fn no_matching_pods_deletes_slices() {
        let s = svc(json!(8080));
        let pods = [pod("a", "10.88.0.2", true, "x", 1)];
        let first = reconcile(&s, pods.iter(), &BTreeSet::new(), &[]);
        let gone = reconcile(&s, std::iter::empty(), &BTreeSet::new(), &first.put);
        assert_eq!(gone.delete, vec![first.put[0].metadata.name.clone()]);
    }
}

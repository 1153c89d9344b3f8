//! What the Rollout controller keeps of EndpointSlices: for each Service, the pods its slices
//! list and whether each is ready; nothing of a slice that lists no pod.

use std::collections::{BTreeMap, HashMap};

use pier_model::EndpointSlice;

/// A slice's endpoints that are pods: name, and whether ready.
type PodEndpoints = Vec<(String, bool)>;

/// The pod endpoints of EndpointSlices, by namespace and Service, then by slice name.
#[derive(Debug, Default)]
pub(super) struct PodSlices(HashMap<(String, String), BTreeMap<String, PodEndpoints>>);

impl PodSlices {
    /// Takes a slice's change (or its removal).
    pub(super) fn observe(&mut self, deleted: bool, slice: &EndpointSlice) {
        let Some(service) = slice.service_name() else {
            return;
        };
        let key = (slice.metadata.namespace().to_string(), service.to_string());
        let pods: PodEndpoints = match deleted {
            true => Vec::new(),
            false => slice
                .endpoints
                .iter()
                .filter_map(|e| {
                    let t = e.target_ref.as_ref().filter(|t| t.kind == "Pod")?;
                    Some((t.name.clone(), e.conditions.is_ready()))
                })
                .collect(),
        };
        let name = &slice.metadata.name;
        if !pods.is_empty() {
            self.0.entry(key).or_default().insert(name.clone(), pods);
        } else if let Some(slices) = self.0.get_mut(&key) {
            slices.remove(name);
            if slices.is_empty() {
                self.0.remove(&key);
            }
        }
    }

    /// How many ready endpoints of `service` are pods `wanted` picks.
    pub(super) fn ready(&self, ns: &str, service: &str, wanted: impl Fn(&str) -> bool) -> usize {
        self.0
            .get(&(ns.to_string(), service.to_string()))
            .into_iter()
            .flat_map(BTreeMap::values)
            .flatten()
            .filter(|(pod, ready)| *ready && wanted(pod))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pier_model::Object;
    use serde_json::json;

    fn slice(name: &str, endpoints: serde_json::Value) -> EndpointSlice {
        let value = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": "shop",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "endpoints": endpoints});
        match Object::from_value(value).unwrap().object {
            Object::EndpointSlice(s) => s,
            _ => unreachable!(),
        }
    }

    fn pod(name: &str, ready: bool) -> serde_json::Value {
        json!({"addresses": ["10.0.0.1"], "conditions": {"ready": ready},
               "targetRef": {"kind": "Pod", "name": name}})
    }

    #[test]
    fn ready_pods_are_counted_across_slices_and_others_not_kept() {
        let mut s = PodSlices::default();
        s.observe(
            false,
            &slice("web-a", json!([pod("p1", true), pod("p2", false)])),
        );
        s.observe(false, &slice("web-b", json!([pod("p3", true)])));
        // Endpoints that are not pods (a slice written by hand) cost nothing here.
        s.observe(false, &slice("web-c", json!([{"addresses": ["10.0.0.9"]}])));
        assert_eq!(s.ready("shop", "web", |_| true), 2);
        assert_eq!(s.ready("shop", "web", |p| p == "p3"), 1);
        assert_eq!(s.ready("other", "web", |_| true), 0);
        assert_eq!(s.0.values().map(BTreeMap::len).sum::<usize>(), 2);
        s.observe(true, &slice("web-a", json!([])));
        s.observe(false, &slice("web-b", json!([])));
        assert_eq!(s.ready("shop", "web", |_| true), 0);
        assert!(s.0.is_empty());
    }
}

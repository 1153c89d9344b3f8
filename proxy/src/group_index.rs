//! Backend groups indexed by a Service (the one whose endpoints they balance, or the one
//! whose frontends use them): a Service has one group per port and backend, so each entry is
//! a short list grown exactly, not a hash set (a one-element hash set holds four buckets).

use std::collections::HashMap;

use pier_snapshot::ServiceKey;

use crate::balance::ClusterKey;

/// Groups by Service.
#[derive(Default)]
pub(crate) struct GroupIndex(HashMap<ServiceKey, Vec<ClusterKey>>);

impl GroupIndex {
    /// Files `group` under `svc` (once).
    pub(crate) fn add(&mut self, svc: &ServiceKey, group: &ClusterKey) {
        let groups = self.0.entry(svc.clone()).or_default();
        if !groups.contains(group) {
            // Exact growth: a first push would otherwise reserve room for four groups.
            groups.reserve_exact(1);
            groups.push(group.clone());
        }
    }

    /// Takes `group` out from under `svc`; a Service left with none leaves the index.
    pub(crate) fn remove(&mut self, svc: &ServiceKey, group: &ClusterKey) {
        if let Some(groups) = self.0.get_mut(svc) {
            groups.retain(|g| g != group);
            if groups.is_empty() {
                self.0.remove(svc);
            }
        }
    }

    /// The groups filed under `svc`.
    pub(crate) fn get(&self, svc: &ServiceKey) -> impl Iterator<Item = &ClusterKey> + '_ {
        self.0.get(svc).into_iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(port: u16) -> ClusterKey {
        ClusterKey {
            frontend: ServiceKey::new("default", "web"),
            backend: ServiceKey::new("default", "web"),
            port,
            node: None,
        }
    }

    #[test]
    fn adds_once_removes_and_forgets_empty_services() {
        let svc = ServiceKey::new("default", "web");
        let mut index = GroupIndex::default();
        index.add(&svc, &group(80));
        index.add(&svc, &group(80));
        index.add(&svc, &group(443));
        assert_eq!(index.get(&svc).count(), 2);
        assert_eq!(index.0[&svc].capacity(), 2, "grown exactly");
        index.remove(&svc, &group(80));
        assert_eq!(index.get(&svc).collect::<Vec<_>>(), [&group(443)]);
        index.remove(&svc, &group(443));
        assert!(index.0.is_empty());
        index.remove(&svc, &group(443));
        assert_eq!(index.get(&ServiceKey::new("default", "other")).count(), 0);
    }
}

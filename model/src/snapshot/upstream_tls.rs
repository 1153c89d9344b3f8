//! The snapshot's upstream TLS: which Service ports a BackendTLSPolicy covers, with the CA
//! certificates of the ConfigMaps it names. Of two policies on one port the oldest applies,
//! as Gateway API resolves policy conflicts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use pier_snapshot::{ServiceKey, ServiceView, UpstreamTls};

use crate::backend_tls::{BackendTlsPolicy, CA_KEY};
use crate::config_map::ConfigMap;

type Key = (String, String);

/// BackendTLSPolicies and the CA bundles of the ConfigMaps they name.
#[derive(Debug, Default, Clone)]
pub(super) struct UpstreamTlsSet {
    policies: BTreeMap<Key, Arc<BackendTlsPolicy>>,
    /// `ca.crt` of every ConfigMap a policy names, by namespace and name.
    bundles: BTreeMap<Key, Vec<u8>>,
}

fn targets<'a>(ns: &'a str, p: &'a BackendTlsPolicy) -> impl Iterator<Item = ServiceKey> + 'a {
    p.spec
        .target_refs
        .iter()
        .map(move |t| ServiceKey::new(ns, &t.name))
}

impl UpstreamTlsSet {
    /// Records a policy (or its removal); the Services whose views change.
    pub(super) fn policy(
        &mut self,
        ns: &str,
        name: &str,
        policy: Option<&BackendTlsPolicy>,
    ) -> BTreeSet<ServiceKey> {
        let key = (ns.to_string(), name.to_string());
        let old = match policy {
            Some(p) => self.policies.insert(key, Arc::new(p.clone())),
            None => self.policies.remove(&key),
        };
        let mut dirty: BTreeSet<ServiceKey> = old.iter().flat_map(|p| targets(ns, p)).collect();
        dirty.extend(policy.into_iter().flat_map(|p| targets(ns, p)));
        dirty
    }

    /// Records a ConfigMap (or its removal); the Services of the policies naming it, if its
    /// `ca.crt` changed.
    pub(super) fn config_map(
        &mut self,
        ns: &str,
        name: &str,
        map: Option<&ConfigMap>,
    ) -> BTreeSet<ServiceKey> {
        let key = (ns.to_string(), name.to_string());
        let bundle = map.and_then(|m| m.values().remove(CA_KEY));
        let changed = match bundle {
            Some(b) => self.bundles.insert(key, b.clone()).as_ref() != Some(&b),
            None => self.bundles.remove(&key).is_some(),
        };
        if !changed {
            return BTreeSet::new();
        }
        self.policies
            .iter()
            .filter(|((pns, _), p)| {
                pns == ns
                    && p.spec
                        .validation
                        .ca_certificate_refs
                        .iter()
                        .any(|c| c.name == name)
            })
            .flat_map(|((pns, _), p)| targets(pns, p))
            .collect()
    }

    /// Sets each port's upstream TLS from the oldest policy covering it.
    pub(super) fn apply(&self, view: &mut ServiceView) {
        let ns = &view.key.namespace;
        let mut covering: Vec<(&Key, &Arc<BackendTlsPolicy>)> = self
            .policies
            .iter()
            .filter(|((pns, _), _)| pns == ns)
            .collect();
        covering.sort_by_key(|(k, p)| (p.metadata.creation_timestamp.clone(), (*k).clone()));
        for port in &mut view.ports {
            port.upstream_tls = covering
                .iter()
                .find(|(_, p)| p.targets(&view.key.name, &port.name))
                .map(|((pns, pname), p)| Arc::new(self.upstream(pns, pname, p)));
        }
    }

    fn upstream(&self, ns: &str, name: &str, p: &BackendTlsPolicy) -> UpstreamTls {
        let v = &p.spec.validation;
        let ca_pem = (!v.ca_certificate_refs.is_empty()).then(|| {
            let mut pem = Vec::new();
            for c in &v.ca_certificate_refs {
                if let Some(b) = self.bundles.get(&(ns.to_string(), c.name.clone())) {
                    pem.extend_from_slice(b);
                    pem.push(b'\n');
                }
            }
            pem
        });
        UpstreamTls {
            source: format!("BackendTLSPolicy {ns}/{name}"),
            server_name: v.hostname.clone(),
            sni: true,
            verify: true,
            ca_pem,
            client: None,
        }
    }
}

//! The Ingress status controller (leader work): an Ingress pier serves gets the addresses of
//! the Ready nodes in `status.loadBalancer.ingress`, as every node serves it; one pier does
//! not serve gets none from pier.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use pier_model::ingress::{
    Ingress, IngressClass, IngressLoadBalancerIngress, IngressLoadBalancerStatus, IngressStatus,
};
use pier_model::{Kind, Node, Object};

use super::runner::{Reconciled, Reconciler};
use crate::store::{EventType, Op, Store};

type Key = (String, String);

/// Keeps served Ingresses' `status.loadBalancer` in step with the nodes.
pub struct IngressStatusController {
    store: Arc<Store>,
    ingresses: BTreeMap<Key, Ingress>,
    classes: BTreeMap<String, IngressClass>,
    nodes: BTreeMap<String, Node>,
}

impl IngressStatusController {
    /// A controller writing to `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            ingresses: BTreeMap::new(),
            classes: BTreeMap::new(),
            nodes: BTreeMap::new(),
        }
    }

    /// The status an Ingress should have: one entry per Ready node's InternalIP.
    fn wanted(&self) -> Vec<IngressLoadBalancerIngress> {
        let ips: BTreeSet<&str> = self
            .nodes
            .values()
            .filter(|n| n.is_ready())
            .filter_map(Node::internal_ip)
            .collect();
        ips.into_iter()
            .map(|ip| IngressLoadBalancerIngress {
                ip: Some(ip.to_string()),
                ..Default::default()
            })
            .collect()
    }

    /// A conditional status write for `key`, if pier serves it and its status is not what it
    /// should be (another controller's Ingress is left alone).
    fn op_for(&self, key: &Key) -> Option<Op> {
        let ingress = self
            .ingresses
            .get(key)
            .filter(|i| i.is_served_by_pier(self.classes.values()))?;
        let wanted = self.wanted();
        let current = ingress
            .status
            .as_ref()
            .map(|s| s.load_balancer.ingress.as_slice())
            .unwrap_or_default();
        if current == wanted.as_slice() {
            return None;
        }
        let mut updated = ingress.clone();
        updated.status = Some(IngressStatus {
            load_balancer: IngressLoadBalancerStatus { ingress: wanted },
        });
        Some(Op::PutStatus(Object::Ingress(updated)))
    }
}

impl Reconciler for IngressStatusController {
    type Key = Key;

    fn name(&self) -> &'static str {
        "ingress-status"
    }

    fn kinds(&self) -> &'static [Kind] {
        &[Kind::Ingress, Kind::IngressClass, Kind::Node]
    }

    fn observe(&mut self, event_type: EventType, object: &Object, dirty: &mut BTreeSet<Key>) {
        let gone = event_type == EventType::Deleted;
        match object {
            Object::Ingress(i) => {
                let key = (i.metadata.namespace().to_string(), i.metadata.name.clone());
                if gone {
                    self.ingresses.remove(&key);
                } else {
                    self.ingresses.insert(key.clone(), i.clone());
                    dirty.insert(key);
                }
                return;
            }
            Object::IngressClass(c) if gone => {
                self.classes.remove(&c.metadata.name);
            }
            Object::IngressClass(c) => {
                self.classes.insert(c.metadata.name.clone(), c.clone());
            }
            Object::Node(n) => {
                let was = self
                    .nodes
                    .get(&n.metadata.name)
                    .map(|n| (n.is_ready(), n.internal_ip().map(String::from)));
                let now = (!gone).then(|| (n.is_ready(), n.internal_ip().map(String::from)));
                if gone {
                    self.nodes.remove(&n.metadata.name);
                } else {
                    self.nodes.insert(n.metadata.name.clone(), n.clone());
                }
                // Heartbeats change nodes often; only readiness and addresses matter here.
                if was == now {
                    return;
                }
            }
            _ => return,
        }
        dirty.extend(self.ingresses.keys().cloned());
    }

    async fn reconcile(&mut self, keys: BTreeSet<Key>) -> Reconciled<Key> {
        let mut result = Reconciled::default();
        for key in keys {
            let Some(op) = self.op_for(&key) else {
                continue;
            };
            match self
                .store
                .blocking("writing an Ingress status", move |s| s.write(vec![op]))
                .await
            {
                Ok(written) => {
                    for w in written {
                        if let Some(Object::Ingress(i)) = w.object {
                            self.ingresses.insert(key.clone(), i);
                        }
                    }
                }
                Err(e) => result.failed.push((key, e.to_string())),
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Object {
        Object::from_value(v).unwrap().object
    }

    fn controller() -> IngressStatusController {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), StoreConfig::default()).unwrap();
        IngressStatusController::new(store)
    }

    #[test]
    fn served_ingresses_get_ready_nodes_addresses() {
        let mut c = controller();
        let node = |name: &str, ip: &str, ready: &str| {
            parse(
                json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                "status": {"addresses": [{"type": "InternalIP", "address": ip}],
                    "conditions": [{"type": "Ready", "status": ready}]}}),
            )
        };
        let mut dirty = BTreeSet::new();
        c.observe(EventType::Added, &node("a", "10.0.0.2", "True"), &mut dirty);
        c.observe(EventType::Added, &node("b", "10.0.0.1", "True"), &mut dirty);
        c.observe(
            EventType::Added,
            &node("c", "10.0.0.3", "Unknown"),
            &mut dirty,
        );
        let ingress = |class: &str| {
            parse(
                json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {"ingressClassName": class,
                    "defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}}}),
            )
        };
        c.observe(EventType::Added, &ingress("pier"), &mut dirty);
        let key = ("default".to_string(), "web".to_string());
        let Some(Op::PutStatus(Object::Ingress(i))) = c.op_for(&key) else {
            panic!("a status write");
        };
        let ips: Vec<_> = i
            .status
            .unwrap()
            .load_balancer
            .ingress
            .into_iter()
            .map(|a| a.ip.unwrap())
            .collect();
        assert_eq!(ips, ["10.0.0.1", "10.0.0.2"]);
        c.observe(EventType::Modified, &ingress("other"), &mut dirty);
        assert!(
            c.op_for(&key).is_none(),
            "another controller's Ingress is left alone"
        );
    }
}

//! The endpoints controller: Services with selectors and the Pods they select become
//! EndpointSlices (`endpoints.rs` plans the slices of one Service); pods on a node that is
//! not Ready are not ready endpoints. Runs on the controller runner, keyed by Service.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::endpoints;
use super::runner::{Reconciled, Reconciler};
use crate::store::{EventType, Op, Outcome, Store};
use pier_model::endpointslice::{MANAGED_BY_LABEL, MANAGED_BY_PIER};
use pier_model::{EndpointSlice, Kind, Object, Pod, Service};

type Key = (String, String);

/// What the endpoints controller knows of the store: services with selectors, pods and the
/// slices it manages.
#[derive(Default)]
pub(crate) struct Cache {
    services: HashMap<Key, Service>,
    pods: HashMap<String, BTreeMap<String, Pod>>,
    slices: HashMap<Key, BTreeMap<String, EndpointSlice>>,
    /// Nodes that exist and are not Ready: their pods serve nothing.
    down: BTreeSet<String>,
}

fn rv(o: &Object) -> u64 {
    o.meta().resource_version.parse().unwrap_or(0)
}

fn managed(slice: &EndpointSlice) -> Option<&str> {
    (slice
        .metadata
        .labels
        .get(MANAGED_BY_LABEL)
        .map(String::as_str)
        == Some(MANAGED_BY_PIER))
    .then(|| slice.service_name())
    .flatten()
}

impl Cache {
    fn stored_rv(&self, o: &Object) -> Option<u64> {
        let ns = o.meta().namespace().to_string();
        let name = &o.meta().name;
        let meta = match o {
            Object::Service(_) => self.services.get(&(ns, name.clone())).map(|s| &s.metadata),
            Object::Pod(_) => self
                .pods
                .get(&ns)
                .and_then(|m| m.get(name))
                .map(|p| &p.metadata),
            Object::EndpointSlice(s) => managed(s)
                .and_then(|svc| self.slices.get(&(ns, svc.to_string())))
                .and_then(|m| m.get(name))
                .map(|s| &s.metadata),
            _ => None,
        };
        meta.and_then(|m| m.resource_version.parse().ok())
    }

    fn services_selecting(&self, pod: &Pod, out: &mut BTreeSet<Key>) {
        let ns = pod.metadata.namespace();
        for ((sns, name), svc) in &self.services {
            if sns == ns
                && !svc.spec.selector.is_empty()
                && pier_model::meta::map_selects(&svc.spec.selector, &pod.metadata.labels)
            {
                out.insert((sns.clone(), name.clone()));
            }
        }
    }

    /// Records an object; adds the services whose slices may need to change to `dirty`.
    pub(crate) fn apply(
        &mut self,
        event_type: EventType,
        object: &Object,
        revision: u64,
        dirty: &mut BTreeSet<Key>,
    ) {
        if self
            .stored_rv(object)
            .is_some_and(|stored| stored > revision)
        {
            return;
        }
        let deleted = event_type == EventType::Deleted;
        let ns = object.meta().namespace().to_string();
        let name = object.meta().name.clone();
        match object {
            Object::Service(s) => {
                // A Service without a selector gets no slices from here (its own are kept
                // by whoever wrote them), so it is not kept either.
                // Being deleted (a foreground delete waits for its slices): treated as gone.
                if deleted || s.spec.selector.is_empty() || s.metadata.deletion_timestamp.is_some()
                {
                    self.services.remove(&(ns.clone(), name.clone()));
                } else {
                    self.services.insert((ns.clone(), name.clone()), s.clone());
                }
                dirty.insert((ns, name));
            }
            Object::Pod(p) => {
                let pods = self.pods.entry(ns).or_default();
                if let Some(old) = pods.get(&name).cloned() {
                    self.services_selecting(&old, dirty);
                }
                let pods = self
                    .pods
                    .entry(p.metadata.namespace().to_string())
                    .or_default();
                if deleted {
                    pods.remove(&name);
                } else {
                    pods.insert(name, p.clone());
                }
                self.services_selecting(p, dirty);
            }
            Object::Node(node) => {
                let is_down = !deleted && !node.is_ready();
                let changed = if is_down {
                    self.down.insert(name.clone())
                } else {
                    self.down.remove(&name)
                };
                if changed {
                    self.services_on_node(&name, dirty);
                }
            }
            Object::EndpointSlice(s) => {
                if let Some(svc) = managed(s) {
                    let key = (ns, svc.to_string());
                    let slices = self.slices.entry(key.clone()).or_default();
                    if deleted {
                        slices.remove(&name);
                    } else {
                        slices.insert(name, s.clone());
                    }
                    // Repairs a managed slice someone edited or deleted by hand.
                    dirty.insert(key);
                }
            }
            _ => {}
        }
    }

    /// Marks the services selecting any pod on `node`.
    fn services_on_node(&self, node: &str, dirty: &mut BTreeSet<Key>) {
        let on_node: Vec<&Pod> = self
            .pods
            .values()
            .flat_map(BTreeMap::values)
            .filter(|p| p.spec.node_name.as_deref() == Some(node))
            .collect();
        for pod in on_node {
            self.services_selecting(pod, dirty);
        }
    }

    fn ops_for(&self, key: &Key) -> Vec<Op> {
        let existing: Vec<EndpointSlice> = self
            .slices
            .get(key)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        let changes = match self.services.get(key) {
            Some(svc) => {
                let pods = self.pods.get(&key.0).into_iter().flat_map(|m| m.values());
                endpoints::reconcile(svc, pods, &self.down, &existing)
            }
            // Deleted service, or one without selector: its managed slices go.
            _ => endpoints::SliceChanges {
                put: Vec::new(),
                delete: existing.iter().map(|s| s.metadata.name.clone()).collect(),
            },
        };
        let mut ops: Vec<Op> = changes
            .put
            .into_iter()
            .map(|s| Op::Put(Object::EndpointSlice(s)))
            .collect();
        ops.extend(changes.delete.into_iter().map(|name| Op::Delete {
            kind: Kind::EndpointSlice,
            namespace: key.0.clone(),
            name,
            resource_version: None,
            must_exist: false,
        }));
        ops
    }
}

/// The endpoints controller.
pub struct EndpointsController {
    store: Arc<Store>,
    cache: Cache,
}

impl EndpointsController {
    /// A controller writing to `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            cache: Cache::default(),
        }
    }
}

impl Reconciler for EndpointsController {
    type Key = Key;

    fn name(&self) -> &'static str {
        "endpoints"
    }

    fn kinds(&self) -> &'static [Kind] {
        &[Kind::Service, Kind::Pod, Kind::EndpointSlice, Kind::Node]
    }

    fn observe(&mut self, event_type: EventType, object: &Object, dirty: &mut BTreeSet<Key>) {
        self.cache.apply(event_type, object, rv(object), dirty);
    }

    /// Slices of services that no longer exist are looked at too.
    fn resync_keys(&self) -> Vec<Key> {
        self.cache.slices.keys().cloned().collect()
    }

    /// Every touched Service's slices in one transaction (a pod change touches few, a first
    /// pass on a large store all); if it fails, all are retried.
    async fn reconcile(&mut self, keys: BTreeSet<Key>) -> Reconciled<Key> {
        let ops: Vec<Op> = keys.iter().flat_map(|k| self.cache.ops_for(k)).collect();
        if ops.is_empty() {
            return Reconciled::default();
        }
        let count = ops.len();
        let written = self
            .store
            .blocking("writing EndpointSlices", move |s| s.write(ops))
            .await;
        match written {
            Ok(written) => {
                for w in written {
                    if let Some(obj) = &w.object {
                        let ty = if w.outcome == Outcome::Deleted {
                            EventType::Deleted
                        } else {
                            EventType::Modified
                        };
                        self.cache.apply(ty, obj, rv(obj), &mut BTreeSet::new());
                    }
                }
                tracing::debug!(services = keys.len(), writes = count, "endpoints synced");
                Reconciled::default()
            }
            Err(e) => {
                let error = crate::error::chain(&e);
                Reconciled {
                    failed: keys.into_iter().map(|k| (k, error.clone())).collect(),
                    requeue: Vec::new(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::StoreConfig;

    use pier_model::manifest::objects;

    async fn slices(store: &Arc<Store>, want: usize) -> Vec<Object> {
        for _ in 0..200 {
            let (list, _) = store.list(Kind::EndpointSlice, None, None).unwrap();
            let eps: usize = list
                .iter()
                .map(|o| match o {
                    Object::EndpointSlice(s) => s.endpoints.len(),
                    _ => 0,
                })
                .sum();
            if eps == want {
                return list;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("endpoints never reached {want}");
    }

    #[tokio::test]
    async fn follows_services_and_pods() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), StoreConfig::default()).unwrap();
        store
            .apply(objects("test", 
                "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}\n",
            ).unwrap())
            .unwrap();
        let task = tokio::spawn(super::super::runner::run(
            Arc::clone(&store),
            EndpointsController::new(Arc::clone(&store)),
        ));
        let pod = |name: &str, ip: &str| {
            format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: web}}}}\nspec: {{containers: [{{name: c, image: x}}]}}\nstatus: {{podIP: {ip}, conditions: [{{type: Ready, status: 'True'}}]}}\n")
        };
        store
            .apply(objects("test", &pod("a", "10.88.0.2")).unwrap())
            .unwrap();
        store
            .apply(objects("test", &pod("b", "10.88.0.3")).unwrap())
            .unwrap();
        let list = slices(&store, 2).await;
        assert_eq!(list.len(), 1);
        store.delete(Kind::Pod, "default", "a", None).unwrap();
        slices(&store, 1).await;
        // A hand-deleted managed slice is repaired.
        let name = slices(&store, 1).await[0].meta().name.clone();
        store
            .delete(Kind::EndpointSlice, "default", &name, None)
            .unwrap();
        slices(&store, 1).await;
        // The selector removed: the controller's slices go; the Service is no longer its.
        store
            .apply(objects("test",
                "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80, targetPort: 8080}]}\n",
            ).unwrap())
            .unwrap();
        slices(&store, 0).await;
        // A hand-written slice of the selector-less Service stays.
        store
            .apply(objects("test",
                "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-manual, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nendpoints: [{addresses: [10.1.0.9]}]\nports: [{port: 8080}]\n",
            ).unwrap())
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let list = slices(&store, 1).await;
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!(list[0].meta().name, "web-manual");
        store
            .delete(Kind::EndpointSlice, "default", "web-manual", None)
            .unwrap();
        store.delete(Kind::Service, "default", "web", None).unwrap();
        slices(&store, 0).await;
        for _ in 0..100 {
            if store
                .list(Kind::EndpointSlice, None, None)
                .unwrap()
                .0
                .is_empty()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(store
            .list(Kind::EndpointSlice, None, None)
            .unwrap()
            .0
            .is_empty());
        task.abort();
    }
}

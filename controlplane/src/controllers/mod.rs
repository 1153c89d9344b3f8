//! Controllers: loops over store events that write derived objects back to the store.

pub mod endpoints;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::error::Result;
use crate::model::endpointslice::{MANAGED_BY_LABEL, MANAGED_BY_PIER};
use crate::model::{EndpointSlice, Kind, Object, Pod, Service};
use crate::store::{EventType, Op, Store};

type Key = (String, String);

const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// What the endpoints controller knows of the store: services, pods and the slices it manages.
#[derive(Default)]
struct Cache {
    services: HashMap<Key, Service>,
    pods: HashMap<String, BTreeMap<String, Pod>>,
    slices: HashMap<Key, BTreeMap<String, EndpointSlice>>,
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
                && crate::model::meta::map_selects(&svc.spec.selector, &pod.metadata.labels)
            {
                out.insert((sns.clone(), name.clone()));
            }
        }
    }

    /// Records an object; adds the services whose slices may need to change to `dirty`.
    fn apply(
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
                if deleted {
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

    fn ops_for(&self, key: &Key) -> Vec<Op> {
        let existing: Vec<EndpointSlice> = self
            .slices
            .get(key)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        let changes = match self.services.get(key) {
            Some(svc) if !svc.spec.selector.is_empty() => {
                let pods = self.pods.get(&key.0).into_iter().flat_map(|m| m.values());
                endpoints::reconcile(svc, pods, &existing)
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

async fn write(store: &Arc<Store>, ops: Vec<Op>) -> Result<Vec<crate::store::Written>> {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || store.write(ops))
        .await
        .map_err(|e| crate::Error::store_from("a blocking store task", e))?
}

async fn sync(store: &Arc<Store>, cache: &mut Cache, dirty: BTreeSet<Key>) -> Result<()> {
    let ops: Vec<Op> = dirty.iter().flat_map(|k| cache.ops_for(k)).collect();
    if ops.is_empty() {
        return Ok(());
    }
    let count = ops.len();
    let written = write(store, ops).await?;
    for w in written {
        if let Some(obj) = &w.object {
            let ty = if w.outcome == crate::store::Outcome::Deleted {
                EventType::Deleted
            } else {
                EventType::Modified
            };
            cache.apply(ty, obj, rv(obj), &mut BTreeSet::new());
        }
    }
    tracing::debug!(
        services = dirty.len(),
        writes = count,
        "endpoints controller synced"
    );
    Ok(())
}

/// Runs the endpoints controller until the store closes or fails.
pub async fn run_endpoints(store: Arc<Store>) -> Result<()> {
    let mut cache = Cache::default();
    let mut dirty = BTreeSet::new();
    let revision = store.revision();
    let listed = {
        let store = Arc::clone(&store);
        tokio::task::spawn_blocking(move || -> Result<Vec<Object>> {
            let mut all = Vec::new();
            for kind in [Kind::Service, Kind::Pod, Kind::EndpointSlice] {
                all.extend(store.list(kind, None, None)?.0);
            }
            Ok(all)
        })
        .await
        .map_err(|e| crate::Error::store_from("a blocking store task", e))??
    };
    for object in &listed {
        cache.apply(EventType::Added, object, rv(object), &mut dirty);
    }
    // Slices of services that no longer exist are dirty too.
    dirty.extend(cache.slices.keys().cloned());
    sync(&store, &mut cache, dirty).await?;
    let mut watch = store.watch(revision + 1)?;
    let mut pending: BTreeSet<Key> = BTreeSet::new();
    loop {
        let first = if pending.is_empty() {
            Some(watch.next().await?)
        } else {
            match tokio::time::timeout(RETRY_AFTER, watch.next()).await {
                Ok(event) => Some(event?),
                Err(_) => None,
            }
        };
        if let Some(e) = first {
            cache.apply(e.event_type, &e.object, e.revision, &mut pending);
        }
        while let Some(e) = watch.try_next()? {
            cache.apply(e.event_type, &e.object, e.revision, &mut pending);
        }
        match sync(&store, &mut cache, pending.clone()).await {
            Ok(()) => pending.clear(),
            Err(e) => {
                tracing::warn!(error = %e, services = pending.len(), "endpoints controller write failed; retrying")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::StoreConfig;

    fn objs(yaml: &str) -> Vec<Object> {
        crate::manifest::parse("t", yaml)
            .unwrap()
            .into_iter()
            .map(|m| m.parsed.object)
            .collect()
    }

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
            .apply(objs(
                "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}\n",
            ))
            .unwrap();
        let task = tokio::spawn(run_endpoints(Arc::clone(&store)));
        let pod = |name: &str, ip: &str| {
            format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: web}}}}\nspec: {{containers: [{{name: c, image: x}}]}}\nstatus: {{podIP: {ip}, conditions: [{{type: Ready, status: 'True'}}]}}\n")
        };
        store.apply(objs(&pod("a", "10.88.0.2"))).unwrap();
        store.apply(objs(&pod("b", "10.88.0.3"))).unwrap();
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

//! Incremental snapshot building: an object change recomputes only the Services it touches.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use imbl::OrdMap;

use pier_snapshot::{HttpRouteView, L4RouteView, NodeSnapshot, ServiceKey};

use super::views::{http_route_view, l4_route_view, service_view};
use crate::{Event, EventType};
use crate::{Kind, Object};

type ObjectId = (Kind, String, String);

#[derive(Debug, Clone)]
enum RouteEntry {
    Http(Arc<HttpRouteView>),
    L4(Arc<L4RouteView>),
}

impl RouteEntry {
    fn parents(&self) -> impl Iterator<Item = &ServiceKey> {
        let parents = match self {
            RouteEntry::Http(r) => &r.parents,
            RouteEntry::L4(r) => &r.parents,
        };
        parents.iter().map(|a| &a.service)
    }
}

/// Indexes of the objects a snapshot is made of, plus the last built service map.
#[derive(Debug, Default, Clone)]
pub struct SnapshotBuilder {
    // Objects are shared with the store events they came from, never copied.
    services: HashMap<ServiceKey, Arc<Object>>,
    slices: HashMap<ServiceKey, BTreeMap<String, Arc<Object>>>,
    slice_owner: HashMap<(String, String), ServiceKey>,
    routes: HashMap<ObjectId, RouteEntry>,
    routes_by_parent: HashMap<ServiceKey, BTreeSet<ObjectId>>,
    dirty: BTreeSet<ServiceKey>,
    revision: u64,
    views: OrdMap<ServiceKey, Arc<pier_snapshot::ServiceView>>,
}

impl SnapshotBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a snapshot from scratch from `objects` at `revision`.
    pub fn from_objects<'a>(
        objects: impl IntoIterator<Item = &'a Object>,
        revision: u64,
    ) -> NodeSnapshot {
        let mut b = Self::new();
        for o in objects {
            b.upsert(&Arc::new(o.clone()));
        }
        b.revision = revision;
        b.build()
    }

    /// Applies one store event.
    pub fn apply(&mut self, event: &Event) {
        match event.event_type {
            EventType::Deleted => self.remove(&event.object),
            EventType::Added | EventType::Modified => self.upsert(&event.object),
        }
        self.revision = self.revision.max(event.revision);
    }

    /// Records that the snapshot reflects `revision` even if nothing relevant changed.
    pub fn set_revision(&mut self, revision: u64) {
        self.revision = self.revision.max(revision);
    }

    /// Inserts or replaces an object.
    pub fn upsert(&mut self, object: &Arc<Object>) {
        let ns = object.meta().namespace().to_string();
        let name = object.meta().name.clone();
        match object.as_ref() {
            Object::Service(_) => {
                let key = ServiceKey::new(&ns, &name);
                self.services.insert(key.clone(), Arc::clone(object));
                self.dirty.insert(key);
            }
            Object::EndpointSlice(slice) => {
                self.remove_slice(&ns, &name);
                if let Some(svc) = slice.service_name() {
                    let key = ServiceKey::new(&ns, svc);
                    self.slices
                        .entry(key.clone())
                        .or_default()
                        .insert(name.clone(), Arc::clone(object));
                    self.slice_owner.insert((ns, name), key.clone());
                    self.dirty.insert(key);
                }
            }
            Object::HttpRoute(r) => {
                self.set_route(
                    (Kind::HttpRoute, ns, name),
                    Some(RouteEntry::Http(Arc::new(http_route_view(r)))),
                );
            }
            Object::TcpRoute(r) | Object::UdpRoute(r) => {
                self.set_route(
                    (object.kind(), ns, name),
                    Some(RouteEntry::L4(Arc::new(l4_route_view(r)))),
                );
            }
            Object::Pod(_)
            | Object::Deployment(_)
            | Object::Namespace(_)
            | Object::ServiceAccount(_)
            | Object::Node(_)
            | Object::Lease(_) => {}
        }
    }

    /// Removes an object.
    pub fn remove(&mut self, object: &Object) {
        let ns = object.meta().namespace().to_string();
        let name = object.meta().name.clone();
        match object.kind() {
            Kind::Service => {
                let key = ServiceKey::new(&ns, &name);
                self.services.remove(&key);
                self.dirty.insert(key);
            }
            Kind::EndpointSlice => self.remove_slice(&ns, &name),
            Kind::HttpRoute | Kind::TcpRoute | Kind::UdpRoute => {
                self.set_route((object.kind(), ns, name), None)
            }
            Kind::Pod
            | Kind::Deployment
            | Kind::Namespace
            | Kind::ServiceAccount
            | Kind::Node
            | Kind::Lease => {}
        }
    }

    fn remove_slice(&mut self, ns: &str, name: &str) {
        if let Some(key) = self.slice_owner.remove(&(ns.to_string(), name.to_string())) {
            if let Some(set) = self.slices.get_mut(&key) {
                set.remove(name);
                if set.is_empty() {
                    self.slices.remove(&key);
                }
            }
            self.dirty.insert(key);
        }
    }

    fn set_route(&mut self, id: ObjectId, entry: Option<RouteEntry>) {
        if let Some(old) = self.routes.remove(&id) {
            for parent in old.parents() {
                if let Some(set) = self.routes_by_parent.get_mut(parent) {
                    set.remove(&id);
                    if set.is_empty() {
                        self.routes_by_parent.remove(parent);
                    }
                }
                self.dirty.insert(parent.clone());
            }
        }
        if let Some(entry) = entry {
            for parent in entry.parents() {
                self.routes_by_parent
                    .entry(parent.clone())
                    .or_default()
                    .insert(id.clone());
                self.dirty.insert(parent.clone());
            }
            self.routes.insert(id, entry);
        }
    }

    /// Recomputes the dirty services and returns the new snapshot (sharing everything else).
    pub fn build(&mut self) -> NodeSnapshot {
        for key in std::mem::take(&mut self.dirty) {
            let Some(Object::Service(svc)) = self.services.get(&key).map(AsRef::as_ref) else {
                self.views.remove(&key);
                continue;
            };
            let mut http = Vec::new();
            let mut l4 = Vec::new();
            for id in self.routes_by_parent.get(&key).into_iter().flatten() {
                match self.routes.get(id) {
                    Some(RouteEntry::Http(r)) => http.push(Arc::clone(r)),
                    Some(RouteEntry::L4(r)) => l4.push(Arc::clone(r)),
                    None => {}
                }
            }
            let slices = self
                .slices
                .get(&key)
                .into_iter()
                .flat_map(|m| m.values())
                .filter_map(|o| match o.as_ref() {
                    Object::EndpointSlice(s) => Some(s),
                    _ => None,
                });
            let view = service_view(svc, slices, http, l4);
            self.views.insert(key, Arc::new(view));
        }
        NodeSnapshot {
            revision: self.revision,
            services: self.views.clone(),
        }
    }
}

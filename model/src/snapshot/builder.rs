//! Incremental snapshot building: an object change recomputes only the Services it touches.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use imbl::OrdMap;

use pier_snapshot::{
    EndpointView, Endpoints, HttpRouteView, L4RouteView, NodeSnapshot, ServiceKey, ServiceView,
};

use super::edge::EdgeBuilder;
use super::upstream_tls::UpstreamTlsSet;
use super::views::{endpoints_of, http_route_view, l4_route_view, refreshed, service_view};
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

/// What a snapshot is made of, kept as views rather than stored objects: the last built
/// service map, each slice's endpoints (shared with the views), the routes.
#[derive(Debug, Default, Clone)]
pub struct SnapshotBuilder {
    /// Services changed since the last build: the new object, or `None` once deleted. An
    /// unchanged Service is rebuilt from its last view.
    changed: HashMap<ServiceKey, Option<Arc<Object>>>,
    slices: HashMap<ServiceKey, BTreeMap<String, Arc<[EndpointView]>>>,
    slice_owner: HashMap<(String, String), ServiceKey>,
    routes: HashMap<ObjectId, RouteEntry>,
    routes_by_parent: HashMap<ServiceKey, BTreeSet<ObjectId>>,
    dirty: BTreeSet<ServiceKey>,
    revision: u64,
    views: OrdMap<ServiceKey, Arc<pier_snapshot::ServiceView>>,
    edge: EdgeBuilder,
    upstream_tls: UpstreamTlsSet,
}

impl SnapshotBuilder {
    /// The kinds a snapshot is built from: a first build lists these, then follows their events.
    pub const KINDS: [Kind; 14] = [
        Kind::Namespace,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::HttpRoute,
        Kind::TcpRoute,
        Kind::UdpRoute,
        Kind::TlsRoute,
        Kind::IngressClass,
        Kind::Ingress,
        Kind::GatewayClass,
        Kind::Gateway,
        Kind::Secret,
        Kind::ConfigMap,
        Kind::BackendTlsPolicy,
    ];

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
                self.changed.insert(key.clone(), Some(Arc::clone(object)));
                self.dirty.insert(key);
            }
            Object::EndpointSlice(slice) => {
                self.remove_slice(&ns, &name);
                if let Some(svc) = slice.service_name() {
                    let key = ServiceKey::new(&ns, svc);
                    let endpoints: Vec<EndpointView> = endpoints_of(slice).collect();
                    self.slices
                        .entry(key.clone())
                        .or_default()
                        .insert(name.clone(), Arc::from(endpoints));
                    self.slice_owner.insert((ns, name), key.clone());
                    self.dirty.insert(key);
                }
            }
            Object::HttpRoute(r) => {
                self.edge.http_route(&ns, &name, Some(r));
                self.set_route(
                    (Kind::HttpRoute, ns, name),
                    Some(RouteEntry::Http(Arc::new(http_route_view(r)))),
                );
            }
            Object::TlsRoute(r) => self.edge.tls_route(&ns, &name, Some(r)),
            Object::BackendTlsPolicy(p) => {
                let dirty = self.upstream_tls.policy(&ns, &name, Some(p));
                self.dirty.extend(dirty);
            }
            Object::ConfigMap(c) => {
                let dirty = self.upstream_tls.config_map(&ns, &name, Some(c));
                self.dirty.extend(dirty);
            }
            Object::TcpRoute(r) | Object::UdpRoute(r) => {
                self.set_route(
                    (object.kind(), ns, name),
                    Some(RouteEntry::L4(Arc::new(l4_route_view(r)))),
                );
            }
            Object::Ingress(i) => self.edge.ingress(&ns, &name, Some(i)),
            Object::IngressClass(c) => self.edge.class(&name, Some(c)),
            Object::Secret(s) => self.edge.secret(&ns, &name, Some(s)),
            Object::Gateway(g) => self.edge.gateway(&ns, &name, Some(g)),
            Object::GatewayClass(c) => self.edge.gateway_class(&name, Some(c)),
            Object::Namespace(n) => self.edge.namespace(&name, Some(&n.metadata.labels)),
            Object::Pod(_)
            | Object::Deployment(_)
            | Object::ReplicaSet(_)
            | Object::Job(_)
            | Object::CronJob(_)
            | Object::DaemonSet(_)
            | Object::HorizontalPodAutoscaler(_)
            | Object::Rollout(_)
            | Object::AnalysisTemplate(_)
            | Object::ClusterAnalysisTemplate(_)
            | Object::AnalysisRun(_)
            | Object::ServiceAccount(_)
            | Object::Node(_)
            | Object::Lease(_)
            | Object::Event(_) => {}
        }
    }

    /// Removes an object.
    pub fn remove(&mut self, object: &Object) {
        let ns = object.meta().namespace().to_string();
        let name = object.meta().name.clone();
        match object.kind() {
            Kind::Service => {
                let key = ServiceKey::new(&ns, &name);
                self.changed.insert(key.clone(), None);
                self.dirty.insert(key);
            }
            Kind::EndpointSlice => self.remove_slice(&ns, &name),
            Kind::HttpRoute => {
                self.edge.http_route(&ns, &name, None);
                self.set_route((object.kind(), ns, name), None)
            }
            Kind::TcpRoute | Kind::UdpRoute => self.set_route((object.kind(), ns, name), None),
            Kind::TlsRoute => self.edge.tls_route(&ns, &name, None),
            Kind::BackendTlsPolicy => {
                let dirty = self.upstream_tls.policy(&ns, &name, None);
                self.dirty.extend(dirty);
            }
            Kind::ConfigMap => {
                let dirty = self.upstream_tls.config_map(&ns, &name, None);
                self.dirty.extend(dirty);
            }
            Kind::Ingress => self.edge.ingress(&ns, &name, None),
            Kind::IngressClass => self.edge.class(&name, None),
            Kind::Secret => self.edge.secret(&ns, &name, None),
            Kind::Gateway => self.edge.gateway(&ns, &name, None),
            Kind::GatewayClass => self.edge.gateway_class(&name, None),
            Kind::Namespace => self.edge.namespace(&name, None),
            Kind::Pod
            | Kind::Deployment
            | Kind::ReplicaSet
            | Kind::Job
            | Kind::CronJob
            | Kind::DaemonSet
            | Kind::HorizontalPodAutoscaler
            | Kind::Rollout
            | Kind::AnalysisTemplate
            | Kind::ClusterAnalysisTemplate
            | Kind::AnalysisRun
            | Kind::ServiceAccount
            | Kind::Node
            | Kind::Lease
            | Kind::Event => {}
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
            match self.rebuild(&key) {
                Some(view) => self.views.insert(key, Arc::new(view)),
                None => self.views.remove(&key),
            };
        }
        NodeSnapshot {
            revision: self.revision,
            services: self.views.clone(),
            edge: self.edge.build(),
        }
    }

    /// The view of `key` from its latest Service (the new object, else its last view), its
    /// slices and its routes; `None` when there is no such Service.
    fn rebuild(&mut self, key: &ServiceKey) -> Option<ServiceView> {
        let (http, l4) = self.routes_of(key);
        let endpoints = Endpoints::from_chunks(
            self.slices
                .get(key)
                .into_iter()
                .flat_map(|m| m.values().cloned()),
        );
        let mut view = match self.changed.remove(key) {
            Some(Some(object)) => match object.as_ref() {
                Object::Service(svc) => service_view(svc, endpoints, http, l4),
                _ => return None,
            },
            Some(None) => return None,
            None => refreshed(self.views.get(key)?, endpoints, http, l4),
        };
        self.upstream_tls.apply(&mut view);
        Some(view)
    }

    fn routes_of(&self, key: &ServiceKey) -> (Vec<Arc<HttpRouteView>>, Vec<Arc<L4RouteView>>) {
        let mut http = Vec::new();
        let mut l4 = Vec::new();
        for id in self.routes_by_parent.get(key).into_iter().flatten() {
            match self.routes.get(id) {
                Some(RouteEntry::Http(r)) => http.push(Arc::clone(r)),
                Some(RouteEntry::L4(r)) => l4.push(Arc::clone(r)),
                None => {}
            }
        }
        (http, l4)
    }
}

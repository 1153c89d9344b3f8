//! The node snapshot: an immutable, versioned view of every Service, which the control plane
//! publishes and each dataplane part (proxy, DNS, eBPF) applies incrementally.
//!
//! This crate is the boundary between the two: it holds the views and the value types they
//! carry, the diff between two snapshots, and the loop that drives a dataplane part, and
//! nothing that reaches the store.

pub mod edge;
mod endpoints;
mod follow;
pub mod policy;
pub mod route;
mod view;
pub mod weights;

use std::sync::Arc;

use arc_swap::ArcSwap;
use edge::EdgeView;
use imbl::ordmap::DiffItem;
use imbl::OrdMap;
use serde::Serialize;
use tokio::sync::watch;

pub use endpoints::{Endpoints, EndpointsIter};
pub use follow::{follow, ApplyError, ConsumerObserver, SnapshotConsumer, RETRY_FIRST, RETRY_MAX};
pub use view::{
    Attachment, BackendView, ClientCertificate, EndpointPortView, EndpointView, HttpRouteView,
    HttpRuleView, L4RouteView, PortMode, PortView, Protocol, ServiceKey, ServiceView, TargetPort,
    UpstreamTls,
};

/// Every Service on the node as of a store revision. Cloning is cheap; unchanged services are shared.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeSnapshot {
    /// Store revision this snapshot reflects.
    pub revision: u64,
    /// Services by key.
    pub services: OrdMap<ServiceKey, Arc<ServiceView>>,
    /// What the edge listeners serve (Ingresses and their certificates).
    pub edge: Arc<EdgeView>,
}

impl NodeSnapshot {
    /// Looks a service up.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&Arc<ServiceView>> {
        self.services.get(&ServiceKey::new(namespace, name))
    }

    /// The snapshot as JSON (for `/snapshot`).
    pub fn to_json(&self) -> serde_json::Value {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Out<'a> {
            revision: u64,
            services: Vec<&'a ServiceView>,
            edge: &'a EdgeView,
        }
        serde_json::to_value(Out {
            revision: self.revision,
            services: self.services.values().map(AsRef::as_ref).collect(),
            edge: &self.edge,
        })
        .unwrap_or_default()
    }
}

/// A change to one service between two snapshots.
#[derive(Debug, Clone, PartialEq)]
pub enum ServiceChange {
    /// Added or changed: the new view.
    Upsert(Arc<ServiceView>),
    /// Gone.
    Remove(ServiceKey),
}

/// What changed between two snapshots, for a dataplane part to apply incrementally.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotDiff {
    /// Revision of the older snapshot.
    pub from_revision: u64,
    /// Revision of the newer snapshot.
    pub to_revision: u64,
    /// Changed services, in key order.
    pub changes: Vec<ServiceChange>,
    /// The new edge view, when it changed.
    pub edge: Option<Arc<EdgeView>>,
}

/// The changes that turn `old` into `new`; shared subtrees are skipped, so this is cheap after a small change.
pub fn diff(old: &NodeSnapshot, new: &NodeSnapshot) -> SnapshotDiff {
    let changes = old
        .services
        .diff(&new.services)
        .filter_map(|item| match item {
            DiffItem::Add(_, v) => Some(ServiceChange::Upsert(Arc::clone(v))),
            DiffItem::Update { old, new } => {
                (!Arc::ptr_eq(old.1, new.1)).then(|| ServiceChange::Upsert(Arc::clone(new.1)))
            }
            DiffItem::Remove(k, _) => Some(ServiceChange::Remove(k.clone())),
        })
        .collect();
    SnapshotDiff {
        from_revision: old.revision,
        to_revision: new.revision,
        changes,
        edge: (!Arc::ptr_eq(&old.edge, &new.edge) && old.edge != new.edge)
            .then(|| Arc::clone(&new.edge)),
    }
}

impl SnapshotDiff {
    /// Applies the changes to a copy of the older service map.
    pub fn apply_to(&self, services: &mut OrdMap<ServiceKey, Arc<ServiceView>>) {
        for change in &self.changes {
            match change {
                ServiceChange::Upsert(v) => {
                    services.insert(v.key.clone(), Arc::clone(v));
                }
                ServiceChange::Remove(k) => {
                    services.remove(k);
                }
            }
        }
    }
}

/// The published snapshot: readers `load()` it lock-free and `subscribe()` to changes.
pub struct SnapshotHandle {
    current: ArcSwap<NodeSnapshot>,
    notify: watch::Sender<u64>,
}

impl Default for SnapshotHandle {
    fn default() -> Self {
        let (notify, _) = watch::channel(0);
        Self {
            current: ArcSwap::from_pointee(NodeSnapshot::default()),
            notify,
        }
    }
}

impl SnapshotHandle {
    /// The current snapshot.
    pub fn load(&self) -> Arc<NodeSnapshot> {
        self.current.load_full()
    }

    /// A receiver that changes whenever a new snapshot is published (value: its revision).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.notify.subscribe()
    }

    /// Publishes a new snapshot.
    pub fn publish(&self, snapshot: NodeSnapshot) {
        let revision = snapshot.revision;
        self.current.store(Arc::new(snapshot));
        self.notify.send_replace(revision);
    }
}

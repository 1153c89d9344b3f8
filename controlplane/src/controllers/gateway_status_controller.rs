//! The gateway status controller (leader work): writes the statuses `gateway_status.rs`
//! computes to GatewayClasses, Gateways and HTTPRoutes, each only when it differs, as
//! conditional status writes.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::SystemTime;

use pier_model::secret::{TLS, TLS_CERT_KEY, TLS_PRIVATE_KEY_KEY};
use pier_model::{Kind, Object};

use super::gateway_status::{RouteInfo, World};
use super::runner::{Reconciled, Reconciler};
use crate::store::{EventType, Op, Store};

/// What a status write is for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// A GatewayClass by name.
    Class(String),
    /// A Gateway by namespace and name.
    Gateway(String, String),
    /// An HTTPRoute by namespace and name.
    Route(String, String),
    /// A TLSRoute by namespace and name.
    TlsRoute(String, String),
}

/// Keeps Gateway API statuses in step with the objects they describe.
pub struct GatewayStatusController {
    store: Arc<Store>,
    world: World,
}

impl GatewayStatusController {
    /// A controller writing to `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            world: World::default(),
        }
    }

    fn everything(&self) -> impl Iterator<Item = Target> + '_ {
        let classes = self.world.classes.keys().cloned().map(Target::Class);
        let gateways = self
            .world
            .gateways
            .keys()
            .map(|(ns, n)| Target::Gateway(ns.clone(), n.clone()));
        let routes = self
            .world
            .routes
            .keys()
            .map(|(ns, n)| Target::Route(ns.clone(), n.clone()));
        let tls_routes = self
            .world
            .tls_routes
            .keys()
            .map(|(ns, n)| Target::TlsRoute(ns.clone(), n.clone()));
        classes.chain(gateways).chain(routes).chain(tls_routes)
    }

    /// The status write `target` needs, if its status is not what it should be.
    fn op_for(&self, target: &Target, now: &str) -> Option<Op> {
        let w = &self.world;
        match target {
            Target::Class(name) => {
                let c = w.classes.get(name)?;
                let status = w.class_status(c, now)?;
                (c.status.as_ref() != Some(&status)).then(|| {
                    let mut c = c.clone();
                    c.status = Some(status);
                    Op::PutStatus(Object::GatewayClass(c))
                })
            }
            Target::Gateway(ns, name) => {
                let g = w.gateways.get(&(ns.clone(), name.clone()))?;
                let status = w.gateway_status(g, now)?;
                (g.status.as_ref() != Some(&status)).then(|| {
                    let mut g = g.clone();
                    g.status = Some(status);
                    Op::PutStatus(Object::Gateway(g))
                })
            }
            Target::Route(ns, name) => {
                let r = w.routes.get(&(ns.clone(), name.clone()))?;
                let status = w.route_status(&RouteInfo::http(r), now)?;
                (r.status.as_ref() != Some(&status)).then(|| {
                    let mut r = r.clone();
                    r.status = Some(status);
                    Op::PutStatus(Object::HttpRoute(r))
                })
            }
            Target::TlsRoute(ns, name) => {
                let r = w.tls_routes.get(&(ns.clone(), name.clone()))?;
                let status = w.route_status(&RouteInfo::tls(r), now)?;
                (r.status.as_ref() != Some(&status)).then(|| {
                    let mut r = r.clone();
                    r.status = Some(status);
                    Op::PutStatus(Object::TlsRoute(r))
                })
            }
        }
    }

    /// Takes a written object back into the cache, so the next comparison sees it.
    fn remember(&mut self, object: Object) {
        let key = (
            object.meta().namespace().to_string(),
            object.meta().name.clone(),
        );
        match object {
            Object::GatewayClass(c) => {
                self.world.classes.insert(key.1, c);
            }
            Object::Gateway(g) => {
                self.world.gateways.insert(key, g);
            }
            Object::HttpRoute(r) => {
                self.world.routes.insert(key, r);
            }
            Object::TlsRoute(r) => {
                self.world.tls_routes.insert(key, r);
            }
            _ => {}
        }
    }
}

impl Reconciler for GatewayStatusController {
    type Key = Target;

    fn name(&self) -> &'static str {
        "gateway-status"
    }

    fn kinds(&self) -> &'static [Kind] {
        &[
            Kind::GatewayClass,
            Kind::Gateway,
            Kind::HttpRoute,
            Kind::TlsRoute,
            Kind::Secret,
            Kind::Service,
            Kind::Namespace,
            Kind::Node,
        ]
    }

    fn observe(&mut self, event_type: EventType, object: &Object, dirty: &mut BTreeSet<Target>) {
        let gone = event_type == EventType::Deleted;
        let key = (
            object.meta().namespace().to_string(),
            object.meta().name.clone(),
        );
        let w = &mut self.world;
        let changed = match object {
            Object::GatewayClass(c) => {
                if gone {
                    w.classes.remove(&key.1);
                } else {
                    w.classes.insert(key.1.clone(), c.clone());
                }
                true
            }
            Object::Gateway(g) => {
                if gone {
                    w.gateways.remove(&key);
                } else {
                    w.gateways.insert(key.clone(), g.clone());
                }
                true
            }
            Object::HttpRoute(r) => {
                let names_gateway = r.spec.parent_refs.iter().any(|p| p.is_gateway());
                if gone || !names_gateway {
                    w.routes.remove(&key).is_some()
                } else {
                    w.routes.insert(key.clone(), r.clone());
                    true
                }
            }
            Object::TlsRoute(r) => {
                if gone {
                    w.tls_routes.remove(&key).is_some()
                } else {
                    w.tls_routes.insert(key.clone(), r.clone());
                    true
                }
            }
            Object::Secret(s) => {
                let usable = !gone
                    && s.secret_type() == TLS
                    && s.value(TLS_CERT_KEY).is_some()
                    && s.value(TLS_PRIVATE_KEY_KEY).is_some();
                if usable {
                    w.tls_secrets.insert(key)
                } else {
                    w.tls_secrets.remove(&key)
                }
            }
            Object::Service(_) if gone => w.services.remove(&key),
            Object::Service(_) => w.services.insert(key),
            Object::Namespace(_) if gone => w.namespaces.remove(&key.1).is_some(),
            Object::Namespace(n) => {
                w.namespaces
                    .insert(key.1.clone(), n.metadata.labels.clone())
                    != Some(n.metadata.labels.clone())
            }
            Object::Node(n) => {
                // Heartbeats change nodes often; only readiness and addresses matter here.
                let ip = (!gone && n.is_ready())
                    .then(|| n.internal_ip().map(String::from))
                    .flatten();
                let was = match &ip {
                    Some(ip) => w.ready_nodes.insert(key.1.clone(), ip.clone()),
                    None => w.ready_nodes.remove(&key.1),
                };
                was != ip
            }
            _ => false,
        };
        if changed {
            dirty.extend(self.everything());
        }
    }

    async fn reconcile(&mut self, keys: BTreeSet<Target>) -> Reconciled<Target> {
        let mut result = Reconciled::default();
        let now = pier_model::time::rfc3339(SystemTime::now());
        for key in keys {
            let Some(op) = self.op_for(&key, &now) else {
                continue;
            };
            match self
                .store
                .blocking("writing a Gateway API status", move |s| s.write(vec![op]))
                .await
            {
                Ok(written) => {
                    for w in written {
                        if let Some(o) = w.object {
                            self.remember(o);
                        }
                    }
                }
                Err(e) => result.failed.push((key, e.to_string())),
            }
        }
        result
    }
}

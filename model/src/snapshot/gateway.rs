//! The snapshot's Gateway listeners: the Gateways of pier's GatewayClasses, each HTTP and
//! HTTPS listener with the HTTPRoutes attached to it and each TLS passthrough listener with
//! its TLSRoutes (by `gateway_attach`), oldest first.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use pier_snapshot::edge::{AttachedRoute, AttachedTlsRoute, ListenerMode, ListenerView};

use super::views::{backends, http_route_view};
use crate::gateway::{Gateway, GatewayClass};
use crate::gateway_attach::{attach, Verdict};
use crate::meta::ObjectMeta;
use crate::route::{HttpRoute, L4Route};

type Key = (String, String);

/// Gateways, their classes, the HTTPRoutes naming a Gateway, and namespace labels.
#[derive(Debug, Default, Clone)]
pub(super) struct GatewaySet {
    gateways: BTreeMap<Key, Arc<Gateway>>,
    classes: BTreeMap<String, Arc<GatewayClass>>,
    routes: BTreeMap<Key, Arc<HttpRoute>>,
    tls_routes: BTreeMap<Key, Arc<L4Route>>,
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

/// Oldest first (RFC 3339 times in UTC sort as text), then by namespace and name.
fn age_order(meta: &ObjectMeta) -> (String, String, String) {
    (
        meta.creation_timestamp.clone().unwrap_or_default(),
        meta.namespace().to_string(),
        meta.name.clone(),
    )
}

impl GatewaySet {
    /// Records a Gateway (or its removal).
    pub(super) fn gateway(&mut self, ns: &str, name: &str, gw: Option<&Gateway>) -> bool {
        let key = (ns.to_string(), name.to_string());
        match gw {
            Some(g) => self.gateways.insert(key, Arc::new(g.clone())),
            None => self.gateways.remove(&key),
        };
        true
    }

    /// Records a GatewayClass (or its removal).
    pub(super) fn class(&mut self, name: &str, class: Option<&GatewayClass>) -> bool {
        match class {
            Some(c) => self.classes.insert(name.to_string(), Arc::new(c.clone())),
            None => self.classes.remove(name),
        };
        true
    }

    /// Records an HTTPRoute (or its removal); says whether the listeners may change.
    pub(super) fn route(&mut self, ns: &str, name: &str, route: Option<&HttpRoute>) -> bool {
        let key = (ns.to_string(), name.to_string());
        let names_gateway =
            route.is_some_and(|r| r.spec.parent_refs.iter().any(|p| p.is_gateway()));
        let was = match (route, names_gateway) {
            (Some(r), true) => self.routes.insert(key, Arc::new(r.clone())),
            _ => self.routes.remove(&key),
        };
        names_gateway || was.is_some()
    }

    /// Records a TLSRoute (or its removal); says whether the listeners may change.
    pub(super) fn tls_route(&mut self, ns: &str, name: &str, route: Option<&L4Route>) -> bool {
        let key = (ns.to_string(), name.to_string());
        match route {
            Some(r) => self.tls_routes.insert(key, Arc::new(r.clone())),
            None => self.tls_routes.remove(&key),
        };
        true
    }

    /// Records a namespace's labels (or its removal); says whether a listener selects by them.
    pub(super) fn namespace(
        &mut self,
        name: &str,
        labels: Option<&BTreeMap<String, String>>,
    ) -> bool {
        let changed = match labels {
            Some(l) => self.namespaces.insert(name.to_string(), l.clone()).as_ref() != Some(l),
            None => self.namespaces.remove(name).is_some(),
        };
        changed
            && self.gateways.values().any(|g| {
                g.spec.listeners.iter().any(|l| {
                    l.allowed_routes
                        .as_ref()
                        .and_then(|a| a.namespaces.as_ref())
                        .and_then(|n| n.from.as_deref())
                        == Some("Selector")
                })
            })
    }

    /// Whether a served Gateway's listener names Secret `ns/name`.
    pub(super) fn names_secret(&self, ns: &str, name: &str) -> bool {
        self.gateways.iter().any(|((gns, _), g)| {
            g.spec.listeners.iter().any(|l| {
                l.tls.as_ref().is_some_and(|t| {
                    t.certificate_refs
                        .iter()
                        .any(|c| c.name == name && c.namespace.as_deref().unwrap_or(gns) == ns)
                })
            })
        })
    }

    /// The Gateways pier serves: of a class whose controller is pier's, not being deleted.
    pub(super) fn served(&self) -> Vec<&Arc<Gateway>> {
        let mut served: Vec<&Arc<Gateway>> = self
            .gateways
            .values()
            .filter(|g| g.metadata.deletion_timestamp.is_none())
            .filter(|g| {
                self.classes
                    .get(&g.spec.gateway_class_name)
                    .is_some_and(|c| c.is_pier())
            })
            .collect();
        served.sort_by_key(|g| age_order(&g.metadata));
        served
    }

    /// The HTTP and HTTPS listeners of the served Gateways with their routes, and the
    /// certificate Secrets they name (same-namespace only: pier has no ReferenceGrant).
    pub(super) fn listeners(&self) -> (Vec<Arc<ListenerView>>, BTreeSet<String>) {
        let labels = |ns: &str| self.namespaces.get(ns).cloned();
        let mut routes: Vec<&Arc<HttpRoute>> = self
            .routes
            .values()
            .filter(|r| r.metadata.deletion_timestamp.is_none())
            .collect();
        routes.sort_by_key(|r| age_order(&r.metadata));
        let mut tls_routes: Vec<&Arc<L4Route>> = self
            .tls_routes
            .values()
            .filter(|r| r.metadata.deletion_timestamp.is_none())
            .collect();
        tls_routes.sort_by_key(|r| age_order(&r.metadata));
        let mut secrets = BTreeSet::new();
        let mut out = Vec::new();
        for gw in self.served() {
            let gw_ns = gw.metadata.namespace();
            let mut passthrough: Vec<Vec<AttachedTlsRoute>> =
                vec![Vec::new(); gw.spec.listeners.len()];
            for route in &tls_routes {
                let route_ns = route.metadata.namespace();
                let all: Vec<_> = route
                    .spec
                    .rules
                    .iter()
                    .flat_map(|r| backends(route_ns, &r.backend_refs))
                    .collect();
                let mut seen = BTreeSet::new();
                for parent in &route.spec.parent_refs {
                    let verdict = attach(
                        gw,
                        parent,
                        route_ns,
                        "TLSRoute",
                        &route.spec.hostnames,
                        &labels,
                    );
                    let Some(Verdict::Accepted(on)) = verdict else {
                        continue;
                    };
                    for (i, hosts) in on {
                        if seen.insert(i) {
                            passthrough[i].push(AttachedTlsRoute {
                                route: format!("{route_ns}/{}", route.metadata.name),
                                hosts,
                                backends: all.clone(),
                            });
                        }
                    }
                }
            }
            let mut attached: Vec<Vec<AttachedRoute>> = vec![Vec::new(); gw.spec.listeners.len()];
            for route in &routes {
                let route_ns = route.metadata.namespace();
                let view = Arc::new(http_route_view(route));
                for parent in &route.spec.parent_refs {
                    let verdict = attach(
                        gw,
                        parent,
                        route_ns,
                        "HTTPRoute",
                        &route.spec.hostnames,
                        &labels,
                    );
                    let Some(Verdict::Accepted(on)) = verdict else {
                        continue;
                    };
                    for (i, hosts) in on {
                        let list = &mut attached[i];
                        if !list.iter().any(|a| Arc::ptr_eq(&a.route, &view)) {
                            list.push(AttachedRoute {
                                hosts,
                                route: Arc::clone(&view),
                            });
                        }
                    }
                }
            }
            for ((l, routes), tls_routes) in gw.spec.listeners.iter().zip(attached).zip(passthrough)
            {
                let passes = l.tls.as_ref().is_some_and(|t| t.passthrough());
                let mode = match l.protocol.as_str() {
                    "HTTP" => ListenerMode::Http,
                    "HTTPS" => ListenerMode::Https,
                    "TLS" if passes => ListenerMode::Passthrough,
                    _ => continue,
                };
                let Ok(port) = u16::try_from(l.port) else {
                    continue;
                };
                let certificates: Vec<String> = l
                    .tls
                    .iter()
                    .flat_map(|t| &t.certificate_refs)
                    .filter(|c| c.is_secret() && c.namespace.as_deref().unwrap_or(gw_ns) == gw_ns)
                    .map(|c| format!("{gw_ns}/{}", c.name))
                    .collect();
                secrets.extend(certificates.iter().cloned());
                out.push(Arc::new(ListenerView {
                    gateway: format!("{gw_ns}/{}", gw.metadata.name),
                    name: l.name.clone(),
                    port,
                    mode,
                    hostname: l.hostname.as_ref().map(|h| h.to_ascii_lowercase()),
                    certificates,
                    routes,
                    tls_routes,
                }));
            }
        }
        (out, secrets)
    }
}

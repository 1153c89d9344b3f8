//! The statuses Gateway API asks of a controller, computed from what the gateway status
//! controller has seen: a GatewayClass of pier's is `Accepted`; a Gateway of such a class gets
//! the nodes' addresses, `Accepted` and `Programmed`, and per listener its route kinds, its
//! attached route count and `Accepted`, `ResolvedRefs`, `Programmed`, `Conflicted`; an
//! HTTPRoute or TLSRoute gets, per Gateway parent of pier's, `Accepted` (by `gateway_attach`)
//! and `ResolvedRefs`. Conditions keep their `lastTransitionTime` while their status holds.

use std::collections::{BTreeMap, BTreeSet};

use pier_model::gateway::{
    Condition, ConditionsStatus, Gateway, GatewayAddress, GatewayClass, GatewayStatus, Listener,
    ListenerStatus, RouteGroupKind, RouteParentStatus, RouteStatus, CONTROLLER, GROUP,
};
use pier_model::gateway_attach::{attach, listener_kinds, Verdict};
use pier_model::route::{BackendRef, L4Route, ParentReference};
use pier_model::{HttpRoute, ObjectMeta};

/// `(namespace, name)`.
pub(super) type Key = (String, String);

/// What the statuses depend on.
#[derive(Debug, Default)]
pub(super) struct World {
    pub classes: BTreeMap<String, GatewayClass>,
    pub gateways: BTreeMap<Key, Gateway>,
    pub routes: BTreeMap<Key, HttpRoute>,
    pub tls_routes: BTreeMap<Key, L4Route>,
    /// TLS Secrets holding a certificate and key.
    pub tls_secrets: BTreeSet<Key>,
    pub services: BTreeSet<Key>,
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// Ready nodes' InternalIPs, by node name.
    pub ready_nodes: BTreeMap<String, String>,
}

/// Builds conditions against the ones an object has.
struct Conditions<'a> {
    old: &'a [Condition],
    generation: i64,
    now: &'a str,
}

impl Conditions<'_> {
    fn make(&self, kind: &str, ok: bool, reason: &str, message: impl Into<String>) -> Condition {
        let status = if ok { "True" } else { "False" };
        let since = self
            .old
            .iter()
            .find(|c| c.condition_type == kind && c.status == status)
            .map_or_else(|| self.now.to_string(), |c| c.last_transition_time.clone());
        Condition {
            condition_type: kind.to_string(),
            status: status.to_string(),
            observed_generation: Some(self.generation),
            last_transition_time: since,
            reason: reason.to_string(),
            message: message.into(),
        }
    }
}

/// What a route's status depends on, whatever its kind.
pub(super) struct RouteInfo<'a> {
    kind: &'static str,
    meta: &'a ObjectMeta,
    parents: &'a [ParentReference],
    hostnames: &'a [String],
    backends: Vec<&'a BackendRef>,
    status: Option<&'a RouteStatus>,
}

impl<'a> RouteInfo<'a> {
    /// An HTTPRoute's.
    pub(super) fn http(r: &'a HttpRoute) -> Self {
        Self {
            kind: "HTTPRoute",
            meta: &r.metadata,
            parents: &r.spec.parent_refs,
            hostnames: &r.spec.hostnames,
            backends: r.spec.rules.iter().flat_map(|x| &x.backend_refs).collect(),
            status: r.status.as_ref(),
        }
    }

    /// A TLSRoute's.
    pub(super) fn tls(r: &'a L4Route) -> Self {
        Self {
            kind: "TLSRoute",
            meta: &r.metadata,
            parents: &r.spec.parent_refs,
            hostnames: &r.spec.hostnames,
            backends: r.spec.rules.iter().flat_map(|x| &x.backend_refs).collect(),
            status: r.status.as_ref(),
        }
    }
}

fn generation(meta: &ObjectMeta) -> i64 {
    i64::try_from(meta.generation).unwrap_or(i64::MAX)
}

impl World {
    /// Whether pier serves Gateways of class `name`.
    pub(super) fn is_pier_class(&self, name: &str) -> bool {
        self.classes.get(name).is_some_and(GatewayClass::is_pier)
    }

    fn labels(&self) -> impl Fn(&str) -> Option<BTreeMap<String, String>> + '_ {
        |ns| self.namespaces.get(ns).cloned()
    }

    /// The status of a GatewayClass of pier's (none for another controller's).
    pub(super) fn class_status(&self, c: &GatewayClass, now: &str) -> Option<ConditionsStatus> {
        if !c.is_pier() {
            return None;
        }
        let old = c
            .status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
        let conds = Conditions {
            old,
            generation: generation(&c.metadata),
            now,
        };
        Some(ConditionsStatus {
            conditions: vec![conds.make("Accepted", true, "Accepted", "pier serves this class")],
        })
    }

    /// How many routes are accepted on each listener of `gw`.
    fn attached_counts(&self, gw: &Gateway) -> Vec<i64> {
        let mut counts = vec![0; gw.spec.listeners.len()];
        let labels = self.labels();
        let routes = self.routes.values().map(RouteInfo::http);
        for route in routes.chain(self.tls_routes.values().map(RouteInfo::tls)) {
            let ns = route.meta.namespace();
            let mut on = BTreeSet::new();
            for p in route.parents {
                if let Some(Verdict::Accepted(ls)) =
                    attach(gw, p, ns, route.kind, route.hostnames, &labels)
                {
                    on.extend(ls.into_iter().map(|(i, _)| i));
                }
            }
            for i in on {
                counts[i] += 1;
            }
        }
        counts
    }

    /// `ResolvedRefs` of a listener: its certificates and route kinds.
    fn listener_refs(&self, gw_ns: &str, l: &Listener) -> (bool, &'static str, String) {
        for c in l.tls.iter().flat_map(|t| &t.certificate_refs) {
            let ns = c.namespace.as_deref().unwrap_or(gw_ns);
            if !c.is_secret() {
                return (
                    false,
                    "InvalidCertificateRef",
                    format!("{} is not a Secret", c.name),
                );
            }
            if ns != gw_ns {
                return (
                    false,
                    "RefNotPermitted",
                    format!(
                        "Secret {ns}/{}: pier does not follow ReferenceGrants",
                        c.name
                    ),
                );
            }
            if !self.tls_secrets.contains(&(ns.to_string(), c.name.clone())) {
                return (
                    false,
                    "InvalidCertificateRef",
                    format!(
                        "Secret {ns}/{} is missing or not a kubernetes.io/tls Secret",
                        c.name
                    ),
                );
            }
        }
        let asked = l
            .allowed_routes
            .as_ref()
            .map(|a| a.kinds.len())
            .unwrap_or(0);
        if asked > 0 && listener_kinds(l).len() < asked {
            return (
                false,
                "InvalidRouteKinds",
                "a route kind is not supported on this protocol".into(),
            );
        }
        (true, "ResolvedRefs", String::new())
    }

    /// The status of a Gateway of pier's class (none for another class's).
    pub(super) fn gateway_status(&self, gw: &Gateway, now: &str) -> Option<GatewayStatus> {
        if !self.is_pier_class(&gw.spec.gateway_class_name) {
            return None;
        }
        let old = gw.status.as_ref();
        let gen = generation(&gw.metadata);
        let counts = self.attached_counts(gw);
        let gw_ns = gw.metadata.namespace();
        let mut listeners = Vec::new();
        let mut programmed_any = false;
        let mut all_valid = true;
        for (l, attached) in gw.spec.listeners.iter().zip(counts) {
            let old_conds = old
                .and_then(|s| s.listeners.iter().find(|x| x.name == l.name))
                .map(|x| x.conditions.as_slice())
                .unwrap_or_default();
            let conds = Conditions {
                old: old_conds,
                generation: gen,
                now,
            };
            let passthrough = l.tls.as_ref().is_some_and(|t| t.passthrough());
            let supported = match l.protocol.as_str() {
                "HTTP" | "HTTPS" => true,
                "TLS" => passthrough,
                _ => false,
            };
            let conflict = gw
                .spec
                .listeners
                .iter()
                .any(|o| o.port == l.port && o.name != l.name && o.protocol != l.protocol);
            let (refs_ok, refs_reason, refs_message) = self.listener_refs(gw_ns, l);
            let ok = supported && !conflict && refs_ok;
            programmed_any |= ok;
            all_valid &= ok;
            listeners.push(ListenerStatus {
                name: l.name.clone(),
                supported_kinds: listener_kinds(l)
                    .into_iter()
                    .map(|k| RouteGroupKind {
                        group: Some(GROUP.to_string()),
                        kind: k.to_string(),
                    })
                    .collect(),
                attached_routes: attached,
                conditions: vec![
                    if supported {
                        conds.make("Accepted", true, "Accepted", "")
                    } else {
                        conds.make(
                            "Accepted",
                            false,
                            "UnsupportedProtocol",
                            format!(
                                "pier's Gateways serve HTTP, HTTPS and TLS passthrough, not {}{}",
                                l.protocol,
                                if l.protocol == "TLS" {
                                    " termination"
                                } else {
                                    ""
                                }
                            ),
                        )
                    },
                    if conflict {
                        conds.make(
                            "Conflicted",
                            true,
                            "ProtocolConflict",
                            "another listener on this port speaks another protocol",
                        )
                    } else {
                        conds.make("Conflicted", false, "NoConflicts", "")
                    },
                    conds.make("ResolvedRefs", refs_ok, refs_reason, refs_message),
                    conds.make(
                        "Programmed",
                        ok,
                        if ok { "Programmed" } else { "Invalid" },
                        "",
                    ),
                ],
            });
        }
        let conds = Conditions {
            old: old.map(|s| s.conditions.as_slice()).unwrap_or_default(),
            generation: gen,
            now,
        };
        let accepted_reason = if all_valid {
            "Accepted"
        } else {
            "ListenersNotValid"
        };
        Some(GatewayStatus {
            addresses: self
                .ready_nodes
                .values()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .map(|ip| GatewayAddress {
                    address_type: Some("IPAddress".into()),
                    value: ip.clone(),
                })
                .collect(),
            conditions: vec![
                conds.make("Accepted", true, accepted_reason, ""),
                conds.make(
                    "Programmed",
                    programmed_any,
                    if programmed_any {
                        "Programmed"
                    } else {
                        "Invalid"
                    },
                    "",
                ),
            ],
            listeners,
        })
    }

    /// `ResolvedRefs` of a route: every backend a Service that exists.
    fn route_refs(&self, route: &RouteInfo<'_>) -> (bool, &'static str, String) {
        let ns = route.meta.namespace();
        for b in &route.backends {
            if let Some(kind) = b.unsupported_kind() {
                return (
                    false,
                    "InvalidKind",
                    format!("backend kind {kind} is not supported"),
                );
            }
            let key = (
                b.namespace.as_deref().unwrap_or(ns).to_string(),
                b.name.clone(),
            );
            if !self.services.contains(&key) {
                return (
                    false,
                    "BackendNotFound",
                    format!("Service {}/{} not found", key.0, key.1),
                );
            }
        }
        (true, "ResolvedRefs", String::new())
    }

    /// The status of a route: pier's entry for each Gateway parent of pier's class, the
    /// other controllers' entries kept; none when there is nothing of pier's to say or remove.
    pub(super) fn route_status(&self, route: &RouteInfo<'_>, now: &str) -> Option<RouteStatus> {
        let ns = route.meta.namespace();
        let old = route
            .status
            .map(|s| s.parents.as_slice())
            .unwrap_or_default();
        let mut parents: Vec<RouteParentStatus> = old
            .iter()
            .filter(|p| p.controller_name != CONTROLLER)
            .cloned()
            .collect();
        let refs = self.route_refs(route);
        let labels = self.labels();
        let mut ours = 0;
        for p in route.parents.iter().filter(|p| p.is_gateway()) {
            let key = (
                p.namespace.as_deref().unwrap_or(ns).to_string(),
                p.name.clone(),
            );
            let Some(gw) = self.gateways.get(&key) else {
                continue;
            };
            if !self.is_pier_class(&gw.spec.gateway_class_name) {
                continue;
            }
            let Some(verdict) = attach(gw, p, ns, route.kind, route.hostnames, &labels) else {
                continue;
            };
            let prior = old
                .iter()
                .find(|o| o.controller_name == CONTROLLER && o.parent_ref == *p)
                .map(|o| o.conditions.as_slice())
                .unwrap_or_default();
            let conds = Conditions {
                old: prior,
                generation: generation(route.meta),
                now,
            };
            let (accepted, reason) = verdict.condition();
            ours += 1;
            parents.push(RouteParentStatus {
                parent_ref: p.clone(),
                controller_name: CONTROLLER.to_string(),
                conditions: vec![
                    conds.make("Accepted", accepted == "True", reason, ""),
                    conds.make("ResolvedRefs", refs.0, refs.1, refs.2.clone()),
                ],
            });
        }
        let had_ours = old.iter().any(|p| p.controller_name == CONTROLLER);
        (ours > 0 || had_ours).then_some(RouteStatus { parents })
    }
}

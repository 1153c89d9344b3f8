//! Where a rollout's plan meets the traffic: the stable and canary Services pinned to their
//! template hashes, and the weights (and header routes) of the routes the Gateway API
//! plugin's configuration names. Pure edits of cached objects; an unchanged object yields
//! nothing to write.

use pier_model::rollout::{
    GatewayApiConfig, StringMatch, MANAGED_BY_ANNOTATION, ROLLOUT_HASH_LABEL,
};
use pier_model::route::{HttpRouteMatch, HttpRouteRule, HttpValueMatch};
use pier_model::{BackendRef, HttpRoute, L4Route, Rollout, Service};

use super::rollout::{HeaderRoute, Plan};

/// The routes a rollout moves, by kind: HTTPRoutes, TCPRoutes, UDPRoutes (namespace, name).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RouteNames {
    /// HTTPRoutes.
    pub http: Vec<(String, String)>,
    /// TCPRoutes.
    pub tcp: Vec<(String, String)>,
    /// UDPRoutes.
    pub udp: Vec<(String, String)>,
    /// Whether header routes go on the HTTPRoutes.
    pub header_routes: bool,
}

/// The routes `ro` names through the Gateway API plugin (none when it names none).
pub fn route_names(ro: &Rollout) -> RouteNames {
    let Ok(Some(g)) = ro.gateway_api() else {
        return RouteNames::default();
    };
    names_of(&g, ro.metadata.namespace())
}

fn names_of(g: &GatewayApiConfig, rollout_ns: &str) -> RouteNames {
    let ns = g.namespace.as_deref().unwrap_or(rollout_ns).to_string();
    let pair = |n: &String| (ns.clone(), n.clone());
    let mut names = RouteNames {
        header_routes: g.use_header_routes == Some(true)
            || g.http_routes
                .iter()
                .any(|r| r.use_header_routes == Some(true)),
        ..RouteNames::default()
    };
    names.http.extend(g.http_route.iter().map(pair));
    names
        .http
        .extend(g.http_routes.iter().map(|r| pair(&r.name)));
    names.tcp.extend(g.tcp_route.iter().map(pair));
    names.tcp.extend(g.tcp_routes.iter().map(|r| pair(&r.name)));
    names.udp.extend(g.udp_route.iter().map(pair));
    names
}

/// `svc` with its selector pinned to `hash`, if that changes it.
pub fn pinned(svc: &Service, rollout: &str, hash: &str) -> Option<Service> {
    let mut out = svc.clone();
    out.spec
        .selector
        .insert(ROLLOUT_HASH_LABEL.into(), hash.to_string());
    out.metadata
        .annotations
        .insert(MANAGED_BY_ANNOTATION.into(), rollout.to_string());
    (out != *svc).then_some(out)
}

/// Sets `refs`' weights: the canary Service's to `weight`, the stable one's to the rest.
fn weigh(refs: &mut [BackendRef], stable: &str, canary: &str, weight: i64) {
    for b in refs.iter_mut().filter(|b| b.unsupported_kind().is_none()) {
        if b.name == canary {
            b.weight = Some(weight);
        } else if b.name == stable {
            b.weight = Some(100 - weight);
        }
    }
}

/// `route` with the plan's weights and header routes, if that changes it.
pub fn weighted_http(
    route: &HttpRoute,
    stable: &str,
    canary: &str,
    plan: &Plan,
    managed: &[String],
) -> Option<HttpRoute> {
    let mut out = route.clone();
    let is_managed = |r: &HttpRouteRule| r.name.as_ref().is_some_and(|n| managed.contains(n));
    out.spec.rules.retain(|r| !is_managed(r));
    for rule in &mut out.spec.rules {
        weigh(&mut rule.backend_refs, stable, canary, plan.weight);
    }
    let canary_ref = route
        .spec
        .rules
        .iter()
        .flat_map(|r| &r.backend_refs)
        .find(|b| b.name == canary)
        .cloned();
    if let Some(canary_ref) = canary_ref {
        for h in &plan.header_routes {
            out.spec.rules.push(header_rule(h, &canary_ref));
        }
    }
    (out != *route).then_some(out)
}

/// A rule sending requests that match `h` to the canary alone.
fn header_rule(h: &HeaderRoute, canary: &BackendRef) -> HttpRouteRule {
    let headers = h
        .matches
        .iter()
        .map(|m| {
            let (match_type, value) = value_match(&m.header_value);
            HttpValueMatch {
                match_type,
                name: m.header_name.clone(),
                value,
            }
        })
        .collect();
    HttpRouteRule {
        name: Some(h.name.clone()),
        matches: vec![HttpRouteMatch {
            headers,
            ..HttpRouteMatch::default()
        }],
        backend_refs: vec![BackendRef {
            weight: Some(1),
            ..canary.clone()
        }],
        filters: Vec::new(),
        timeouts: None,
    }
}

/// Argo's string match as a Gateway API value match (a prefix as an anchored expression).
fn value_match(m: &StringMatch) -> (Option<String>, String) {
    match (&m.exact, &m.prefix, &m.regex) {
        (Some(v), _, _) => (None, v.clone()),
        (None, Some(p), _) => (
            Some("RegularExpression".into()),
            format!("^{}.*", regex::escape(p)),
        ),
        (None, None, Some(r)) => (Some("RegularExpression".into()), r.clone()),
        (None, None, None) => (None, String::new()),
    }
}

/// `route` (TCP or UDP) with the plan's weights, if that changes it.
pub fn weighted_l4(route: &L4Route, stable: &str, canary: &str, weight: i64) -> Option<L4Route> {
    let mut out = route.clone();
    for rule in &mut out.spec.rules {
        weigh(&mut rule.backend_refs, stable, canary, weight);
    }
    (out != *route).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pier_model::rollout::HeaderRoutingMatch;
    use std::collections::BTreeMap;

    fn plan(weight: i64, header_routes: Vec<HeaderRoute>) -> Plan {
        Plan {
            status: Default::default(),
            desired: BTreeMap::new(),
            weight,
            stable: "s".into(),
            canary: "c".into(),
            header_routes,
            requeue: None,
            runs: Vec::new(),
            stale_runs: Vec::new(),
        }
    }

    fn route() -> HttpRoute {
        let yaml = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec:\n  parentRefs: [{group: core, kind: Service, name: front, port: 80}]\n  rules:\n  - backendRefs:\n    - {group: core, kind: Service, name: stable, port: 80}\n    - {group: core, kind: Service, name: canary, port: 80}\n";
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn weights_move_between_the_two_services_and_nothing_else() {
        let r = route();
        let moved = weighted_http(&r, "stable", "canary", &plan(20, vec![]), &[]).unwrap();
        let refs = &moved.spec.rules[0].backend_refs;
        assert_eq!((refs[0].weight, refs[1].weight), (Some(80), Some(20)));
        assert_eq!(
            weighted_http(&moved, "stable", "canary", &plan(20, vec![]), &[]),
            None
        );
    }

    #[test]
    fn header_routes_come_and_go_as_named_rules() {
        let r = route();
        let managed = vec!["hdr".to_string()];
        let h = HeaderRoute {
            name: "hdr".into(),
            matches: vec![HeaderRoutingMatch {
                header_name: "X-Test".into(),
                header_value: StringMatch {
                    prefix: Some("te.st".into()),
                    ..Default::default()
                },
            }],
        };
        let with = weighted_http(&r, "stable", "canary", &plan(0, vec![h]), &managed).unwrap();
        assert_eq!(with.spec.rules.len(), 2);
        let rule = &with.spec.rules[1];
        assert_eq!(rule.backend_refs.len(), 1);
        assert_eq!(rule.backend_refs[0].name, "canary");
        assert_eq!(rule.matches[0].headers[0].value, "^te\\.st.*");
        let without = weighted_http(&with, "stable", "canary", &plan(0, vec![]), &managed).unwrap();
        assert_eq!(without.spec.rules.len(), 1);
    }
}

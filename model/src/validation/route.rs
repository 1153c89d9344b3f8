//! Rules for Gateway API routes: parents, backends, HTTPRoute matches, TCPRoute/UDPRoute.

use crate::report::{FieldPath, Report};
use crate::route::{BackendRef, HttpRoute, L4Route, ParentReference};
use crate::syntax::{dns1035_label, dns1123_label, dns1123_subdomain, gateway_duration};

use super::metadata;

const HTTP_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

fn parent_refs(path: &FieldPath, refs: &[ParentReference], r: &mut Report) {
    if refs.is_empty() {
        // Gateway API allows it: the route exists but attaches to nothing.
        r.ignored.push(format!(
            "{path} (none: the route attaches to no parent and serves nothing)"
        ));
    }
    if refs.len() > 32 {
        r.error(path, "must have at most 32 items");
    }
    for (i, p) in refs.iter().enumerate() {
        let pp = path.index(i);
        if p.is_service() {
            r.check(&pp.field("name"), dns1035_label(&p.name));
        } else if p.is_gateway() {
            r.check(&pp.field("name"), dns1123_subdomain(&p.name));
        } else {
            let kind = p.kind.as_deref().unwrap_or("Gateway");
            r.ignored.push(format!(
                "{pp} ({kind} parent: pier serves Service and Gateway parents)"
            ));
        }
        if let Some(port) = p.port {
            r.port(&pp.field("port"), port);
        }
        if let Some(s) = &p.section_name {
            r.check(&pp.field("sectionName"), dns1123_label(s));
        }
    }
}

fn backend_refs(path: &FieldPath, refs: &[BackendRef], r: &mut Report) {
    for (i, b) in refs.iter().enumerate() {
        let p = path.index(i);
        if let Some(kind) = b.unsupported_kind() {
            // Gateway API keeps the route and marks the reference unresolved.
            r.ignored.push(format!(
                "{p} ({kind} backend: unresolved, ResolvedRefs=False; its share of requests gets \
                 500 and of connections is refused)"
            ));
            r.weight(&p.field("weight"), b.weight());
            continue;
        }
        r.check(&p.field("name"), dns1035_label(&b.name));
        match b.port {
            Some(port) => r.port(&p.field("port"), port),
            None => r.error(
                &p.field("port"),
                "required value: a Service backend must name a port",
            ),
        }
        r.weight(&p.field("weight"), b.weight());
    }
}

pub(crate) fn http_route(route: &HttpRoute, r: &mut Report) {
    metadata(&route.metadata, dns1123_subdomain, r);
    let spec = FieldPath::root().field("spec");
    parent_refs(&spec.field("parentRefs"), &route.spec.parent_refs, r);
    for (i, h) in route.spec.hostnames.iter().enumerate() {
        let name = h.strip_prefix("*.").unwrap_or(h);
        r.check(&spec.field("hostnames").index(i), dns1123_subdomain(name));
    }
    if route.spec.rules.len() > 16 {
        r.error(&spec.field("rules"), "must have at most 16 items");
    }
    for (i, rule) in route.spec.rules.iter().enumerate() {
        let rp = spec.field("rules").index(i);
        if rule.matches.len() > 64 {
            r.error(&rp.field("matches"), "must have at most 64 items");
        }
        for (j, m) in rule.matches.iter().enumerate() {
            let mp = rp.field("matches").index(j);
            if let Some(path) = &m.path {
                let pp = mp.field("path");
                let ty = path.match_type.as_deref().unwrap_or("PathPrefix");
                let value = path.value.as_deref().unwrap_or("/");
                r.one_of(
                    &pp.field("type"),
                    ty,
                    &["Exact", "PathPrefix", "RegularExpression"],
                );
                if ty == "RegularExpression" {
                    if let Err(e) = regex::Regex::new(value) {
                        r.error(
                            &pp.field("value"),
                            format!("invalid regular expression: {e}"),
                        );
                    }
                } else if !value.starts_with('/') {
                    r.error(
                        &pp.field("value"),
                        "must be an absolute path starting with '/'",
                    );
                }
            }
            for (field, list) in [("headers", &m.headers), ("queryParams", &m.query_params)] {
                for (k, h) in list.iter().enumerate() {
                    let hp = mp.field(field).index(k);
                    let ty = h.match_type.as_deref().unwrap_or("Exact");
                    r.one_of(&hp.field("type"), ty, &["Exact", "RegularExpression"]);
                    let token = !h.name.is_empty()
                        && h.name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                    if !token {
                        r.error(
                            &hp.field("name"),
                            format!("{:?} is not a valid name", h.name),
                        );
                    }
                    if ty == "RegularExpression" {
                        if let Err(e) = regex::Regex::new(&h.value) {
                            r.error(
                                &hp.field("value"),
                                format!("invalid regular expression: {e}"),
                            );
                        }
                    }
                }
            }
            if let Some(method) = &m.method {
                r.one_of(&mp.field("method"), method, HTTP_METHODS);
            }
        }
        let prefix_matches = rule.matches.iter().all(|m| {
            m.path
                .as_ref()
                .is_none_or(|p| p.match_type.as_deref().unwrap_or("PathPrefix") == "PathPrefix")
        });
        super::route_filters::filters(&rp.field("filters"), &rule.filters, prefix_matches, r);
        backend_refs(&rp.field("backendRefs"), &rule.backend_refs, r);
        if let Some(t) = &rule.timeouts {
            let tp = rp.field("timeouts");
            let request = t.request.as_deref().map(gateway_duration);
            let backend = t.backend_request.as_deref().map(gateway_duration);
            if let Some(Err(e)) = &request {
                r.error(&tp.field("request"), e.clone());
            }
            if let Some(Err(e)) = &backend {
                r.error(&tp.field("backendRequest"), e.clone());
            }
            if let (Some(Ok(req)), Some(Ok(be))) = (request, backend) {
                if !req.is_zero() && be > req {
                    r.error(
                        &tp.field("backendRequest"),
                        "must not be longer than timeouts.request",
                    );
                }
            }
        }
    }
}

pub(crate) fn l4_route(route: &L4Route, r: &mut Report) {
    metadata(&route.metadata, dns1123_subdomain, r);
    let spec = FieldPath::root().field("spec");
    if route.kind == "TLSRoute" {
        for (i, h) in route.spec.hostnames.iter().enumerate() {
            let name = h.strip_prefix("*.").unwrap_or(h);
            r.check(&spec.field("hostnames").index(i), dns1123_subdomain(name));
        }
    } else if !route.spec.hostnames.is_empty() {
        r.error(
            &spec.field("hostnames"),
            format!("unknown field: {} has no hostnames", route.kind),
        );
    }
    parent_refs(&spec.field("parentRefs"), &route.spec.parent_refs, r);
    if route.spec.rules.is_empty() || route.spec.rules.len() > 16 {
        r.error(&spec.field("rules"), "must have between 1 and 16 items");
    }
    for (i, rule) in route.spec.rules.iter().enumerate() {
        let p = spec.field("rules").index(i).field("backendRefs");
        if rule.backend_refs.is_empty() {
            r.error(&p, "required value");
        }
        backend_refs(&p, &rule.backend_refs, r);
    }
}

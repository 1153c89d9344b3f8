//! Per-kind validation rules, after Kubernetes' own.

use std::collections::HashSet;

use super::deployment::Deployment;
use super::endpointslice::EndpointSlice;
use super::meta::{IntOrString, LabelSelector, ObjectMeta};
use super::namespace::{Namespace, ServiceAccount};
use super::pod::{Container, Pod, PodSpec, Probe};
use super::route::{BackendRef, HttpRoute, L4Route, ParentReference};
use super::service::Service;
use super::traffic_policy::TrafficPolicy;
use super::validate::{
    dns1035_label, dns1123_label, dns1123_subdomain, gateway_duration, iana_svc_name, FieldPath,
    Report,
};

const HTTP_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

fn metadata(meta: &ObjectMeta, name_rule: fn(&str) -> Result<(), String>, r: &mut Report) {
    let p = FieldPath::root().field("metadata");
    if meta.name.is_empty() {
        r.error(&p.field("name"), "required value");
    } else {
        r.check(&p.field("name"), name_rule(&meta.name));
    }
    if !meta.namespace.is_empty() {
        r.check(&p.field("namespace"), dns1123_label(&meta.namespace));
    }
    r.labels(&p.field("labels"), &meta.labels);
    r.annotation_keys(&p.field("annotations"), &meta.annotations);
}

fn target_port(path: &FieldPath, port: &IntOrString, r: &mut Report) {
    match port {
        IntOrString::Int(n) => r.port(path, *n),
        IntOrString::String(s) => r.check(path, iana_svc_name(s)),
    }
}

pub(crate) fn service(svc: &Service, r: &mut Report) {
    metadata(&svc.metadata, dns1035_label, r);
    if let Err(errors) = TrafficPolicy::from_annotations(&svc.metadata.annotations) {
        let annotations = FieldPath::root().field("metadata").field("annotations");
        for (key, e) in errors {
            r.error(&annotations.key(&key), e);
        }
    }
    let spec = FieldPath::root().field("spec");
    let ty = svc.service_type();
    r.one_of(
        &spec.field("type"),
        ty,
        &["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"],
    );
    r.labels(&spec.field("selector"), &svc.spec.selector);
    match svc.spec.cluster_ip.as_str() {
        "" | "None" => {}
        ip => r.ip(&spec.field("clusterIP"), ip),
    }
    ip_families(svc, &spec, r);
    if svc.is_headless() && svc.wants_node_ports() {
        r.error(
            &spec.field("clusterIP"),
            format!("may not be \"None\" for type {ty}"),
        );
    }
    if ty == "ExternalName" {
        r.required(
            &spec.field("externalName"),
            !svc.spec.external_name.is_empty(),
        );
        if !svc.spec.external_name.is_empty() {
            let name = svc.spec.external_name.trim_end_matches('.');
            r.check(&spec.field("externalName"), dns1123_subdomain(name));
        }
    } else if svc.spec.ports.is_empty() && !svc.is_headless() {
        r.error(&spec.field("ports"), "required value");
    }
    match svc.spec.session_affinity.as_str() {
        "" | "None" | "ClientIP" => {}
        other => r.one_of(&spec.field("sessionAffinity"), other, &["None", "ClientIP"]),
    }
    let timeout = svc
        .spec
        .session_affinity_config
        .as_ref()
        .and_then(|c| c.client_ip.as_ref())
        .and_then(|c| c.timeout_seconds);
    if let Some(t) = timeout {
        let path = spec
            .field("sessionAffinityConfig")
            .field("clientIP")
            .field("timeoutSeconds");
        if svc.spec.session_affinity != "ClientIP" {
            r.error(
                &path,
                "must not be set when sessionAffinity is not ClientIP",
            );
        } else if !(1..=86400).contains(&t) {
            r.error(
                &path,
                format!("invalid value {t}: must be between 1 and 86400"),
            );
        }
    }
    let mut names = HashSet::new();
    let mut port_protos = HashSet::new();
    let multi = svc.spec.ports.len() > 1;
    for (i, port) in svc.spec.ports.iter().enumerate() {
        let p = spec.field("ports").index(i);
        if port.name.is_empty() {
            if multi {
                r.error(
                    &p.field("name"),
                    "required value: every port must be named when there is more than one",
                );
            }
        } else {
            r.check(&p.field("name"), dns1123_label(&port.name));
            if !names.insert(port.name.as_str()) {
                r.error(
                    &p.field("name"),
                    format!("duplicate port name {:?}", port.name),
                );
            }
        }
        r.protocol(&p.field("protocol"), &port.protocol);
        r.port(&p.field("port"), port.port);
        if !port_protos.insert((port.port, port.protocol())) {
            r.error(
                &p,
                format!("duplicate port {}/{}", port.port, port.protocol()),
            );
        }
        if let Some(tp) = &port.target_port {
            target_port(&p.field("targetPort"), tp, r);
        }
        if let Some(np) = port.node_port.filter(|n| *n != 0) {
            if !svc.wants_node_ports() {
                r.error(
                    &p.field("nodePort"),
                    format!("may not be used when type is {ty:?}"),
                );
            } else {
                r.port(&p.field("nodePort"), np);
            }
        }
    }
}

pub(crate) fn endpoint_slice(slice: &EndpointSlice, r: &mut Report) {
    metadata(&slice.metadata, dns1123_subdomain, r);
    let root = FieldPath::root();
    r.one_of(
        &root.field("addressType"),
        &slice.address_type,
        &["IPv4", "IPv6", "FQDN"],
    );
    if slice.endpoints.len() > 1000 {
        r.error(&root.field("endpoints"), "must have at most 1000 items");
    }
    for (i, ep) in slice.endpoints.iter().enumerate() {
        let p = root.field("endpoints").index(i);
        if ep.addresses.is_empty() || ep.addresses.len() > 100 {
            r.error(&p.field("addresses"), "must have between 1 and 100 items");
        }
        for (j, addr) in ep.addresses.iter().enumerate() {
            let ap = p.field("addresses").index(j);
            match (
                slice.address_type.as_str(),
                addr.parse::<std::net::IpAddr>(),
            ) {
                ("IPv4", Ok(ip)) if ip.is_ipv4() => {}
                ("IPv6", Ok(ip)) if ip.is_ipv6() => {}
                ("FQDN", _) => r.check(&ap, dns1123_subdomain(addr)),
                (t, _) => r.error(&ap, format!("{addr:?} is not a valid {t} address")),
            }
        }
        if let Some(h) = &ep.hostname {
            r.check(&p.field("hostname"), dns1123_label(h));
        }
    }
    let mut names = HashSet::new();
    for (i, port) in slice.ports.iter().enumerate() {
        let p = root.field("ports").index(i);
        let name = port.name.clone().unwrap_or_default();
        if !name.is_empty() {
            r.check(&p.field("name"), dns1123_label(&name));
        }
        if !names.insert(name.clone()) {
            r.error(&p.field("name"), format!("duplicate port name {name:?}"));
        }
        r.protocol(&p.field("protocol"), port.protocol.as_deref().unwrap_or(""));
        if let Some(n) = port.port {
            r.port(&p.field("port"), n);
        }
    }
}

fn probe(path: &FieldPath, probe: &Probe, r: &mut Report) {
    let actions = [
        probe.http_get.is_some(),
        probe.tcp_socket.is_some(),
        probe.exec.is_some(),
        probe.grpc.is_some(),
    ];
    if actions.iter().filter(|a| **a).count() != 1 {
        r.error(
            path,
            "exactly one of httpGet, tcpSocket, exec or grpc must be set",
        );
    }
    if let Some(g) = &probe.grpc {
        r.port(&path.field("grpc").field("port"), g.port);
    }
    if let Some(h) = &probe.http_get {
        target_port(&path.field("httpGet").field("port"), &h.port, r);
    }
    if let Some(t) = &probe.tcp_socket {
        target_port(&path.field("tcpSocket").field("port"), &t.port, r);
    }
    for (name, value, min) in [
        ("initialDelaySeconds", probe.initial_delay_seconds, 0),
        ("periodSeconds", probe.period_seconds, 1),
        ("timeoutSeconds", probe.timeout_seconds, 1),
        ("successThreshold", probe.success_threshold, 1),
        ("failureThreshold", probe.failure_threshold, 1),
    ] {
        if let Some(v) = value.filter(|v| *v < min) {
            r.error(
                &path.field(name),
                format!("invalid value {v}: must be at least {min}"),
            );
        }
    }
}

fn container(path: &FieldPath, c: &Container, r: &mut Report) {
    r.check(&path.field("name"), dns1123_label(&c.name));
    let mut names = HashSet::new();
    for (i, port) in c.ports.iter().enumerate() {
        let p = path.field("ports").index(i);
        r.port(&p.field("containerPort"), port.container_port);
        r.protocol(&p.field("protocol"), port.protocol.as_deref().unwrap_or(""));
        if let Some(n) = &port.name {
            r.check(&p.field("name"), iana_svc_name(n));
            if !names.insert(n.as_str()) {
                r.error(&p.field("name"), format!("duplicate port name {n:?}"));
            }
        }
    }
    for (i, e) in c.env.iter().enumerate() {
        if e.name.is_empty() || e.name.contains('=') {
            r.error(
                &path.field("env").index(i).field("name"),
                "must be non-empty and not contain '='",
            );
        }
    }
    if let Some(p) = &c.liveness_probe {
        probe(&path.field("livenessProbe"), p, r);
    }
    if let Some(p) = &c.readiness_probe {
        probe(&path.field("readinessProbe"), p, r);
    }
}

fn pod_spec(path: &FieldPath, spec: &PodSpec, r: &mut Report) {
    if spec.containers.is_empty() {
        r.error(
            &path.field("containers"),
            "required value: at least one container",
        );
    }
    let mut names = HashSet::new();
    for (i, c) in spec.containers.iter().enumerate() {
        let p = path.field("containers").index(i);
        if !names.insert(c.name.as_str()) {
            r.error(
                &p.field("name"),
                format!("duplicate container name {:?}", c.name),
            );
        }
        container(&p, c, r);
    }
    if let Some(h) = &spec.hostname {
        r.check(&path.field("hostname"), dns1123_label(h));
    }
    if let Some(s) = &spec.subdomain {
        r.check(&path.field("subdomain"), dns1123_label(s));
    }
    if let Some(policy) = &spec.restart_policy {
        r.one_of(
            &path.field("restartPolicy"),
            policy,
            &["Always", "OnFailure", "Never"],
        );
    }
}

pub(crate) fn pod(pod: &Pod, r: &mut Report) {
    metadata(&pod.metadata, dns1123_subdomain, r);
    pod_spec(&FieldPath::root().field("spec"), &pod.spec, r);
    if let Some(ip) = &pod.status.pod_ip {
        r.ip(&FieldPath::root().field("status").field("podIP"), ip);
    }
}

fn label_selector(path: &FieldPath, sel: &LabelSelector, r: &mut Report) {
    r.labels(&path.field("matchLabels"), &sel.match_labels);
    for (i, req) in sel.match_expressions.iter().enumerate() {
        let p = path.field("matchExpressions").index(i);
        r.check(&p.field("key"), super::validate::qualified_name(&req.key));
        r.one_of(
            &p.field("operator"),
            &req.operator,
            &["In", "NotIn", "Exists", "DoesNotExist"],
        );
        let needs_values = matches!(req.operator.as_str(), "In" | "NotIn");
        if needs_values == req.values.is_empty() {
            let msg = if needs_values {
                "must be non-empty for In and NotIn"
            } else {
                "must be empty for Exists and DoesNotExist"
            };
            r.error(&p.field("values"), msg);
        }
    }
}

pub(crate) fn deployment(d: &Deployment, r: &mut Report) {
    metadata(&d.metadata, dns1123_subdomain, r);
    let spec = FieldPath::root().field("spec");
    if let Some(n) = d.spec.replicas.filter(|n| *n < 0) {
        r.error(
            &spec.field("replicas"),
            format!("invalid value {n}: must be at least 0"),
        );
    }
    let sel = &d.spec.selector;
    if sel.match_labels.is_empty() && sel.match_expressions.is_empty() {
        r.error(
            &spec.field("selector"),
            "required value: an empty selector would select every pod",
        );
    } else {
        label_selector(&spec.field("selector"), sel, r);
        if !sel.matches(&d.spec.template.metadata.labels) {
            r.error(
                &spec.field("template").field("metadata").field("labels"),
                "`selector` does not match template `labels`",
            );
        }
    }
    let template = spec.field("template");
    r.labels(
        &template.field("metadata").field("labels"),
        &d.spec.template.metadata.labels,
    );
    pod_spec(&template.field("spec"), &d.spec.template.spec, r);
    if let Some(strategy) = &d.spec.strategy {
        let p = spec.field("strategy");
        if let Some(t) = &strategy.strategy_type {
            r.one_of(&p.field("type"), t, &["RollingUpdate", "Recreate"]);
        }
        if let Some(ru) = &strategy.rolling_update {
            for (name, v) in [
                ("maxSurge", &ru.max_surge),
                ("maxUnavailable", &ru.max_unavailable),
            ] {
                let path = p.field("rollingUpdate").field(name);
                match v {
                    Some(IntOrString::Int(n)) if *n < 0 => {
                        r.error(&path, format!("invalid value {n}: must be at least 0"))
                    }
                    Some(IntOrString::String(s)) => {
                        let pct = s.strip_suffix('%').and_then(|n| n.parse::<u32>().ok());
                        if pct.is_none_or(|p| p > 100) {
                            r.error(
                                &path,
                                format!("{s:?} must be a number or a percentage such as \"25%\""),
                            );
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

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
        let group = p.group.as_deref().unwrap_or("");
        let kind = p.kind.as_deref().unwrap_or("Gateway");
        if group.is_empty() && kind == "Service" {
            r.check(&pp.field("name"), dns1035_label(&p.name));
        } else {
            r.ignored.push(format!(
                "{pp} ({kind} parent: pier serves Service parents, GAMMA style)"
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

pub(crate) fn namespace(ns: &Namespace, r: &mut Report) {
    // A namespace's name is a DNS label, and it lives in no namespace itself.
    metadata(&ns.metadata, dns1123_label, r);
    if !ns.metadata.namespace.is_empty() {
        r.error(
            &FieldPath::root().field("metadata").field("namespace"),
            "must be empty: Namespace is cluster-scoped",
        );
    }
}

pub(crate) fn service_account(account: &ServiceAccount, r: &mut Report) {
    metadata(&account.metadata, dns1123_subdomain, r);
}

/// `clusterIPs`, `ipFamilies` and `ipFamilyPolicy`, as far as they can be checked without the
/// cluster's service ranges (the store checks the rest when it allocates).
fn ip_families(svc: &Service, spec: &FieldPath, r: &mut Report) {
    let s = &svc.spec;
    if let Some(policy) = &s.ip_family_policy {
        r.one_of(
            &spec.field("ipFamilyPolicy"),
            policy,
            &["SingleStack", "PreferDualStack", "RequireDualStack"],
        );
    }
    let families = spec.field("ipFamilies");
    if s.ip_families.len() > 2 {
        r.error(&families, "must have at most 2 items");
    }
    for (i, f) in s.ip_families.iter().enumerate() {
        r.one_of(&families.index(i), f, &["IPv4", "IPv6"]);
    }
    if s.ip_families.len() == 2 && s.ip_families[0] == s.ip_families[1] {
        r.error(
            &families.index(1),
            "duplicate family: dual-stack needs IPv4 and IPv6",
        );
    }
    let single = s.ip_family_policy.as_deref().unwrap_or("SingleStack") == "SingleStack";
    if single && s.ip_families.len() > 1 {
        r.error(
            &families,
            "may hold one family with ipFamilyPolicy SingleStack",
        );
    }
    let ips = spec.field("clusterIPs");
    if s.cluster_ips.len() > 2 {
        r.error(&ips, "must have at most 2 items");
    }
    for (i, ip) in s.cluster_ips.iter().enumerate() {
        if !(i == 0 && ip == "None") {
            r.ip(&ips.index(i), ip);
        }
    }
    if let (Some(first), false) = (s.cluster_ips.first(), s.cluster_ip.is_empty()) {
        if *first != s.cluster_ip {
            r.error(
                &ips.index(0),
                format!("must equal spec.clusterIP {:?}", s.cluster_ip),
            );
        }
    }
    let parsed: Vec<std::net::IpAddr> = s
        .cluster_ips
        .iter()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    if parsed.len() == 2 && parsed[0].is_ipv4() == parsed[1].is_ipv4() {
        r.error(
            &ips.index(1),
            "dual-stack clusterIPs need one IPv4 and one IPv6 address",
        );
    }
    if single && s.cluster_ips.len() > 1 {
        r.error(&ips, "may hold one address with ipFamilyPolicy SingleStack");
    }
}

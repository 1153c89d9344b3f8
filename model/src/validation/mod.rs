//! Per-kind validation rules, after Kubernetes' own.

use std::collections::HashSet;

use super::endpointslice::EndpointSlice;
use super::meta::{IntOrString, LabelSelector, ObjectMeta};
use super::namespace::{Namespace, ServiceAccount};
use super::report::{FieldPath, Report};
use super::service::Service;
use super::syntax::{
    dns1035_label, dns1123_label, dns1123_subdomain, iana_svc_name, qualified_name,
};
use super::traffic_policy;

mod analysis;
mod backend_tls;
mod cluster;
mod config;
mod gateway;
mod hpa;
mod ingress;
mod job;
mod pod_inputs;
mod rollout;
mod route;
mod route_filters;
mod secret;
mod workload;

pub(crate) use analysis::{analysis_run, analysis_template};
pub(crate) use backend_tls::backend_tls_policy;
pub(crate) use config::config_map;
pub(crate) use gateway::{gateway, gateway_class};
pub(crate) use hpa::hpa;
pub(crate) use ingress::{ingress, ingress_class};
pub(crate) use job::{cron_job, job};
pub(crate) use rollout::rollout;
pub(crate) use route::{http_route, l4_route};
pub(crate) use secret::secret;
pub(crate) use workload::{daemon_set, deployment, pod, replica_set};
pub(super) fn metadata(
    meta: &ObjectMeta,
    name_rule: fn(&str) -> Result<(), String>,
    r: &mut Report,
) {
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
    for (i, finalizer) in meta.finalizers.iter().enumerate() {
        r.check(&p.field("finalizers").index(i), qualified_name(finalizer));
    }
}

pub(super) fn target_port(path: &FieldPath, port: &IntOrString, r: &mut Report) {
    match port {
        IntOrString::Int(n) => r.port(path, *n),
        IntOrString::String(s) => r.check(path, iana_svc_name(s)),
    }
}

pub(crate) fn service(svc: &Service, r: &mut Report) {
    metadata(&svc.metadata, dns1035_label, r);
    if let Err(errors) = traffic_policy::parse(&svc.metadata.annotations) {
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
    traffic_policies(svc, &spec, r);
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

pub(super) fn label_selector(path: &FieldPath, sel: &LabelSelector, r: &mut Report) {
    r.labels(&path.field("matchLabels"), &sel.match_labels);
    for (i, req) in sel.match_expressions.iter().enumerate() {
        let p = path.field("matchExpressions").index(i);
        r.check(&p.field("key"), super::syntax::qualified_name(&req.key));
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

pub(crate) use cluster::{event, lease, node};

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

/// `internalTrafficPolicy` and `externalTrafficPolicy`: `Cluster` or `Local`, the external one
/// only on Services reachable from outside (NodePort, LoadBalancer), as Kubernetes has it.
fn traffic_policies(svc: &Service, spec: &FieldPath, r: &mut Report) {
    if let Some(p) = &svc.spec.internal_traffic_policy {
        r.one_of(
            &spec.field("internalTrafficPolicy"),
            p,
            &["Cluster", "Local"],
        );
    }
    if let Some(p) = &svc.spec.external_traffic_policy {
        let path = spec.field("externalTrafficPolicy");
        r.one_of(&path, p, &["Cluster", "Local"]);
        if !svc.wants_node_ports() {
            r.error(
                &path,
                format!(
                    "may only be set for externally-accessible services (type NodePort or \
                     LoadBalancer), not type {}",
                    svc.service_type()
                ),
            );
        }
    }
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

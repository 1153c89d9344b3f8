//! `Ingress` and `IngressClass` rows as kubectl prints them.

use serde_json::Value;

use super::{items, join_or_none, or, s};

/// NAME, CLASS, HOSTS, ADDRESS, PORTS, AGE.
pub(super) fn ingress_row(v: &Value, name: String, created: String) -> Vec<String> {
    let class = or(
        v.pointer("/spec/ingressClassName")
            .and_then(Value::as_str)
            .or_else(|| {
                v.pointer("/metadata/annotations/kubernetes.io~1ingress.class")
                    .and_then(Value::as_str)
            })
            .unwrap_or(""),
        "<none>",
    );
    let hosts: Vec<String> = items(v, "/spec/rules")
        .iter()
        .map(|r| or(s(r, "/host"), "*"))
        .collect();
    let hosts = if hosts.is_empty() {
        "*".to_string()
    } else {
        hosts.join(",")
    };
    let address: Vec<String> = items(v, "/status/loadBalancer/ingress")
        .iter()
        .map(|a| or(s(a, "/ip"), s(a, "/hostname")))
        .collect();
    let address = if address.is_empty() {
        String::new()
    } else {
        address.join(",")
    };
    let ports = if items(v, "/spec/tls").is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![name, class, hosts, address, ports.to_string(), created]
}

/// NAME, CONTROLLER, PARAMETERS, AGE.
pub(super) fn class_row(v: &Value, name: String, created: String) -> Vec<String> {
    let params = v.pointer("/spec/parameters").map(|p| {
        let kind = s(p, "/kind");
        let group = s(p, "/apiGroup");
        let resource = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        format!("{resource}/{}", s(p, "/name"))
    });
    vec![
        name,
        s(v, "/spec/controller").to_string(),
        join_or_none(params.into_iter().collect()),
        created,
    ]
}

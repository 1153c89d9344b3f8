//! Table columns per kind, as kubectl prints them.

use pier_model::Kind;
use serde_json::Value;

use super::output::{age, s};

fn items(v: &Value, pointer: &str) -> Vec<Value> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn join_or_none(parts: Vec<String>) -> String {
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

/// `80/TCP`, `80:30080/TCP`, comma-separated.
pub(crate) fn service_ports(v: &Value) -> String {
    let ports: Vec<String> = items(v, "/spec/ports")
        .iter()
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64() {
                Some(np) => format!("{}:{np}/{proto}", p["port"]),
                None => format!("{}/{proto}", p["port"]),
            }
        })
        .collect();
    join_or_none(ports)
}

/// `name:port (weight)` of every backendRef of a route.
pub(crate) fn backends(v: &Value) -> String {
    let parts: Vec<String> = items(v, "/spec/rules")
        .iter()
        .flat_map(|r| items(r, "/backendRefs"))
        .map(|b| {
            format!(
                "{}:{} ({})",
                s(&b, "/name"),
                b["port"],
                b["weight"].as_i64().unwrap_or(1)
            )
        })
        .collect();
    join_or_none(parts)
}

fn parents(v: &Value) -> String {
    let parts: Vec<String> = items(v, "/spec/parentRefs")
        .iter()
        .map(|p| match p["port"].as_i64() {
            Some(port) => format!("{}:{port}", s(p, "/name")),
            None => s(p, "/name").to_string(),
        })
        .collect();
    join_or_none(parts)
}

fn slice_endpoints(v: &Value) -> String {
    let addrs: Vec<String> = items(v, "/endpoints")
        .iter()
        .filter_map(|e| {
            e.pointer("/addresses/0")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect();
    if addrs.is_empty() {
        return "<unset>".into();
    }
    let shown = addrs.iter().take(3).cloned().collect::<Vec<_>>().join(",");
    if addrs.len() > 3 {
        format!("{shown} + {} more...", addrs.len() - 3)
    } else {
        shown
    }
}

fn pod_ready(v: &Value) -> bool {
    items(v, "/status/conditions")
        .iter()
        .any(|c| s(c, "/type") == "Ready" && s(c, "/status") == "True")
}

/// A string map at `pointer` as `k=v,k2=v2`, or `<none>`.
pub(crate) fn key_values(v: &Value, pointer: &str) -> String {
    let parts: Vec<String> = v
        .pointer(pointer)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, x)| format!("{k}={}", x.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    join_or_none(parts)
}

/// `Ready`, `NotReady` or `Unknown` (kubectl's words), `,SchedulingDisabled` when cordoned.
fn node_status(v: &Value) -> String {
    let ready = items(v, "/status/conditions")
        .into_iter()
        .find(|c| s(c, "/type") == "Ready");
    let mut status = match ready.as_ref().map(|c| s(c, "/status")) {
        Some("True") => "Ready",
        Some("False") => "NotReady",
        _ => "Unknown",
    }
    .to_string();
    if v.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    status
}

/// The roles a node's `node-role.kubernetes.io/<role>` labels give it.
fn node_roles(v: &Value) -> String {
    let roles: Vec<String> = v
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .keys()
                .filter_map(|k| k.strip_prefix(pier_model::node::ROLE_LABEL_PREFIX))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    join_or_none(roles)
}

/// A node's address of `kind`, or `<none>`.
fn node_address(v: &Value, kind: &str) -> String {
    items(v, "/status/addresses")
        .iter()
        .find(|a| s(a, "/type") == kind)
        .map(|a| s(a, "/address").to_string())
        .unwrap_or_else(|| "<none>".into())
}

/// Headers and one row per object for `kind`.
pub(crate) fn rows(
    kind: Kind,
    objects: &[Value],
    wide: bool,
) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let mut headers: Vec<&str> = match kind {
        Kind::Service => vec![
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE",
        ],
        Kind::EndpointSlice => vec!["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"],
        Kind::Pod => vec!["NAME", "READY", "STATUS", "IP", "AGE"],
        Kind::Deployment => vec!["NAME", "REPLICAS", "IMAGES", "AGE"],
        Kind::HttpRoute => vec!["NAME", "HOSTNAMES", "PARENTS", "BACKENDS", "AGE"],
        Kind::TcpRoute | Kind::UdpRoute => vec!["NAME", "PARENTS", "BACKENDS", "AGE"],
        Kind::Namespace => vec!["NAME", "STATUS", "AGE"],
        Kind::ServiceAccount => vec!["NAME", "SECRETS", "AGE"],
        Kind::Node => vec!["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP"],
        Kind::Lease => vec!["NAME", "HOLDER", "AGE"],
    };
    match kind {
        Kind::Service if wide => headers.push("SELECTOR"),
        Kind::Pod if wide => headers.push("NODE"),
        _ => {}
    }
    let rows = objects
        .iter()
        .map(|v| {
            let name = s(v, "/metadata/name").to_string();
            let created = age(v
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str));
            match kind {
                Kind::Service => {
                    let ty = v
                        .pointer("/spec/type")
                        .and_then(Value::as_str)
                        .unwrap_or("ClusterIP");
                    let ip = v
                        .pointer("/spec/clusterIP")
                        .and_then(Value::as_str)
                        .unwrap_or("<none>");
                    let external = match s(v, "/spec/externalName") {
                        "" => "<none>".to_string(),
                        n => n.to_string(),
                    };
                    let mut row = vec![
                        name,
                        ty.into(),
                        ip.into(),
                        external,
                        service_ports(v),
                        created,
                    ];
                    if wide {
                        row.push(key_values(v, "/spec/selector"));
                    }
                    row
                }
                Kind::EndpointSlice => {
                    let ports: Vec<String> = items(v, "/ports")
                        .iter()
                        .map(|p| p["port"].to_string())
                        .collect();
                    vec![
                        name,
                        s(v, "/addressType").into(),
                        join_or_none(ports),
                        slice_endpoints(v),
                        created,
                    ]
                }
                Kind::Pod => {
                    let status = if v.pointer("/metadata/deletionTimestamp").is_some() {
                        "Terminating"
                    } else {
                        v.pointer("/status/phase")
                            .and_then(Value::as_str)
                            .unwrap_or("Unknown")
                    };
                    let ready = if pod_ready(v) { "True" } else { "False" };
                    let ip = match s(v, "/status/podIP") {
                        "" => "<none>",
                        ip => ip,
                    };
                    let mut row = vec![name, ready.into(), status.into(), ip.into(), created];
                    if wide {
                        row.push(match s(v, "/spec/nodeName") {
                            "" => "<none>".into(),
                            node => node.into(),
                        });
                    }
                    row
                }
                Kind::Deployment => {
                    let images: Vec<String> = items(v, "/spec/template/spec/containers")
                        .iter()
                        .map(|c| s(c, "/image").to_string())
                        .collect();
                    let replicas = v
                        .pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(1);
                    vec![name, replicas.to_string(), join_or_none(images), created]
                }
                Kind::HttpRoute => {
                    let hosts: Vec<String> = items(v, "/spec/hostnames")
                        .iter()
                        .filter_map(|h| h.as_str().map(str::to_string))
                        .collect();
                    vec![name, join_or_none(hosts), parents(v), backends(v), created]
                }
                Kind::TcpRoute | Kind::UdpRoute => vec![name, parents(v), backends(v), created],
                Kind::Namespace => {
                    let phase = match s(v, "/status/phase") {
                        "" => "Active",
                        p => p,
                    };
                    vec![name, phase.into(), created]
                }
                Kind::ServiceAccount => {
                    let secrets = items(v, "/secrets").len();
                    vec![name, secrets.to_string(), created]
                }
                Kind::Node => vec![
                    name,
                    node_status(v),
                    node_roles(v),
                    created,
                    s(v, "/status/nodeInfo/kubeletVersion").to_string(),
                    node_address(v, "InternalIP"),
                ],
                Kind::Lease => vec![name, s(v, "/spec/holderIdentity").to_string(), created],
            }
        })
        .collect();
    (headers, rows)
}

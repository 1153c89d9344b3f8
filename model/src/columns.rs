//! The table columns of each kind, as kubectl prints them: one place for `pier get` and for
//! the Kubernetes API's `Table` responses (which kubectl prints). A column of priority 1
//! shows only with `-o wide`. Works on objects in their JSON form, as both callers hold them.

use std::time::SystemTime;

use serde_json::Value;

use crate::Kind;

mod event;
mod gateway;
mod hpa;
mod ingress;
mod job;
mod node;
mod rollout;

/// One column: its header as kubectl prints it, and whether only `-o wide` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Header, upper case (`CLUSTER-IP`).
    pub name: &'static str,
    /// 0: always shown; 1: `-o wide` only.
    pub priority: u8,
}

const fn col(name: &'static str) -> Column {
    Column { name, priority: 0 }
}

const fn wide(name: &'static str) -> Column {
    Column { name, priority: 1 }
}

/// The columns of `kind`, in order.
pub fn columns(kind: Kind) -> Vec<Column> {
    match kind {
        Kind::Service => vec![
            col("NAME"),
            col("TYPE"),
            col("CLUSTER-IP"),
            col("EXTERNAL-IP"),
            col("PORT(S)"),
            col("AGE"),
            wide("SELECTOR"),
        ],
        Kind::EndpointSlice => vec![
            col("NAME"),
            col("ADDRESSTYPE"),
            col("PORTS"),
            col("ENDPOINTS"),
            col("AGE"),
        ],
        Kind::Pod => vec![
            col("NAME"),
            col("READY"),
            col("STATUS"),
            col("RESTARTS"),
            col("AGE"),
            wide("IP"),
            wide("NODE"),
        ],
        Kind::Deployment => vec![
            col("NAME"),
            col("READY"),
            col("UP-TO-DATE"),
            col("AVAILABLE"),
            col("AGE"),
            wide("CONTAINERS"),
            wide("IMAGES"),
            wide("SELECTOR"),
        ],
        Kind::ReplicaSet => vec![
            col("NAME"),
            col("DESIRED"),
            col("CURRENT"),
            col("READY"),
            col("AGE"),
            wide("CONTAINERS"),
            wide("IMAGES"),
            wide("SELECTOR"),
        ],
        Kind::Job => vec![
            col("NAME"),
            col("STATUS"),
            col("COMPLETIONS"),
            col("DURATION"),
            col("AGE"),
            wide("CONTAINERS"),
            wide("IMAGES"),
            wide("SELECTOR"),
        ],
        Kind::DaemonSet => vec![
            col("NAME"),
            col("DESIRED"),
            col("CURRENT"),
            col("READY"),
            col("UP-TO-DATE"),
            col("AVAILABLE"),
            col("NODE SELECTOR"),
            col("AGE"),
            wide("CONTAINERS"),
            wide("IMAGES"),
            wide("SELECTOR"),
        ],
        Kind::CronJob => vec![
            col("NAME"),
            col("SCHEDULE"),
            col("TIMEZONE"),
            col("SUSPEND"),
            col("ACTIVE"),
            col("LAST SCHEDULE"),
            col("AGE"),
            wide("CONTAINERS"),
            wide("IMAGES"),
            wide("SELECTOR"),
        ],
        Kind::Rollout => vec![
            col("NAME"),
            col("DESIRED"),
            col("CURRENT"),
            col("UP-TO-DATE"),
            col("AVAILABLE"),
            col("AGE"),
            wide("STATUS"),
            wide("STEP"),
            wide("WEIGHT"),
        ],
        Kind::AnalysisTemplate | Kind::ClusterAnalysisTemplate => vec![col("NAME"), col("AGE")],
        Kind::AnalysisRun => vec![col("NAME"), col("STATUS"), col("AGE"), wide("MESSAGE")],
        Kind::HorizontalPodAutoscaler => vec![
            col("NAME"),
            col("REFERENCE"),
            col("TARGETS"),
            col("MINPODS"),
            col("MAXPODS"),
            col("REPLICAS"),
            col("AGE"),
        ],
        Kind::HttpRoute => vec![
            col("NAME"),
            col("HOSTNAMES"),
            col("AGE"),
            wide("PARENTS"),
            wide("BACKENDS"),
        ],
        Kind::TcpRoute | Kind::UdpRoute | Kind::TlsRoute => {
            vec![col("NAME"), col("AGE"), wide("PARENTS"), wide("BACKENDS")]
        }
        Kind::BackendTlsPolicy => vec![col("NAME"), col("AGE")],
        Kind::Namespace => vec![col("NAME"), col("STATUS"), col("AGE")],
        Kind::ServiceAccount => vec![col("NAME"), col("SECRETS"), col("AGE")],
        Kind::ConfigMap => vec![col("NAME"), col("DATA"), col("AGE")],
        Kind::Secret => vec![col("NAME"), col("TYPE"), col("DATA"), col("AGE")],
        Kind::Ingress => vec![
            col("NAME"),
            col("CLASS"),
            col("HOSTS"),
            col("ADDRESS"),
            col("PORTS"),
            col("AGE"),
        ],
        Kind::GatewayClass => vec![
            col("NAME"),
            col("CONTROLLER"),
            col("ACCEPTED"),
            col("AGE"),
            wide("DESCRIPTION"),
        ],
        Kind::Gateway => vec![
            col("NAME"),
            col("CLASS"),
            col("ADDRESS"),
            col("PROGRAMMED"),
            col("AGE"),
        ],
        Kind::IngressClass => vec![
            col("NAME"),
            col("CONTROLLER"),
            col("PARAMETERS"),
            col("AGE"),
        ],
        Kind::Node => vec![
            col("NAME"),
            col("STATUS"),
            col("ROLES"),
            col("AGE"),
            col("VERSION"),
            col("INTERNAL-IP"),
        ],
        Kind::Lease => vec![col("NAME"), col("HOLDER"), col("AGE")],
        Kind::Event => vec![
            col("LAST SEEN"),
            col("TYPE"),
            col("REASON"),
            col("OBJECT"),
            wide("SUBOBJECT"),
            wide("SOURCE"),
            col("MESSAGE"),
            wide("FIRST SEEN"),
            wide("COUNT"),
            wide("NAME"),
        ],
    }
}

/// One row of `kind`'s columns for object `v`, ages counted to `now`.
pub fn row(kind: Kind, v: &Value, now: SystemTime) -> Vec<String> {
    let name = s(v, "/metadata/name").to_string();
    let created = age(
        v.pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str),
        now,
    );
    match kind {
        Kind::Service => vec![
            name,
            or(s(v, "/spec/type"), "ClusterIP"),
            or(s(v, "/spec/clusterIP"), "<none>"),
            or(s(v, "/spec/externalName"), "<none>"),
            service_ports(v),
            created,
            key_values(v, "/spec/selector"),
        ],
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
            let containers = items(v, "/spec/containers").len().max(1);
            let ready = if pod_ready(v) { containers } else { 0 };
            vec![
                name,
                format!("{ready}/{containers}"),
                pod_status(v),
                or(s(v, &annotation(crate::pod::RESTARTS_ANNOTATION)), "0"),
                created,
                or(s(v, "/status/podIP"), "<none>"),
                or(s(v, "/spec/nodeName"), "<none>"),
            ]
        }
        Kind::Deployment | Kind::ReplicaSet => {
            let [names, images] = containers_and_images(v, "/spec/template/spec/containers");
            let desired = v
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let count = |field: &str| {
                v.pointer(&format!("/status/{field}"))
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
            };
            let counts = if kind == Kind::Deployment {
                vec![
                    format!("{}/{desired}", count("readyReplicas")),
                    count("updatedReplicas").to_string(),
                    count("availableReplicas").to_string(),
                ]
            } else {
                vec![
                    desired.to_string(),
                    count("replicas").to_string(),
                    count("readyReplicas").to_string(),
                ]
            };
            let mut row = vec![name];
            row.extend(counts);
            row.extend([
                created,
                names,
                images,
                key_values(v, "/spec/selector/matchLabels"),
            ]);
            row
        }
        Kind::HorizontalPodAutoscaler => hpa::row(v, name, created),
        Kind::Job => job::row(v, name, created, now),
        Kind::CronJob => job::cron_row(v, name, created, now),
        Kind::DaemonSet => daemon_set_row(v, name, created),
        Kind::Rollout => rollout::row(v, name, created),
        Kind::AnalysisTemplate | Kind::ClusterAnalysisTemplate => vec![name, created],
        Kind::AnalysisRun => vec![
            name,
            s(v, "/status/phase").to_string(),
            created,
            s(v, "/status/message").to_string(),
        ],
        Kind::HttpRoute => {
            let hosts: Vec<String> = items(v, "/spec/hostnames")
                .iter()
                .filter_map(|h| h.as_str().map(str::to_string))
                .collect();
            vec![name, join_or_none(hosts), created, parents(v), backends(v)]
        }
        Kind::TcpRoute | Kind::UdpRoute | Kind::TlsRoute => {
            vec![name, created, parents(v), backends(v)]
        }
        Kind::BackendTlsPolicy => vec![name, created],
        Kind::Namespace => vec![name, or(s(v, "/status/phase"), "Active"), created],
        Kind::ServiceAccount => vec![name, items(v, "/secrets").len().to_string(), created],
        Kind::ConfigMap => {
            let keys = |p: &str| {
                v.pointer(p)
                    .and_then(Value::as_object)
                    .map_or(0, |m| m.len())
            };
            let count = keys("/data") + keys("/binaryData");
            vec![name, count.to_string(), created]
        }
        Kind::Ingress => ingress::ingress_row(v, name, created),
        Kind::IngressClass => ingress::class_row(v, name, created),
        Kind::GatewayClass => gateway::class_row(v, name, created),
        Kind::Gateway => gateway::gateway_row(v, name, created),
        Kind::Secret => {
            let count = v
                .pointer("/data")
                .and_then(Value::as_object)
                .map_or(0, |m| m.len());
            let kind = or(s(v, "/type"), "Opaque");
            vec![name, kind, count.to_string(), created]
        }
        Kind::Node => vec![
            name,
            node::status(v),
            node::roles(v),
            created,
            s(v, "/status/nodeInfo/kubeletVersion").to_string(),
            node::address(v, "InternalIP"),
        ],
        Kind::Lease => vec![name, s(v, "/spec/holderIdentity").to_string(), created],
        Kind::Event => event::row(v, name, now),
    }
}

/// kubectl's age of an RFC 3339 timestamp at `now` (`45s`, `12m`, `3h`, `5d`).
pub fn age(timestamp: Option<&str>, now: SystemTime) -> String {
    let Some(created) = timestamp.and_then(parse_rfc3339) else {
        return "<unknown>".into();
    };
    let secs = now
        .duration_since(created)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(text).ok()
}

/// `80/TCP`, `80:30080/TCP`, comma-separated.
pub fn service_ports(v: &Value) -> String {
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
pub fn backends(v: &Value) -> String {
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

/// A string map at `pointer` as `k=v,k2=v2`, or `<none>`.
pub fn key_values(v: &Value, pointer: &str) -> String {
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

/// A string field or `""`.
pub fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn or(value: &str, default: &str) -> String {
    if value.is_empty() {
        default.to_string()
    } else {
        value.to_string()
    }
}

/// The JSON pointer of an annotation (`/` in its key escaped).
fn annotation(key: &str) -> String {
    format!(
        "/metadata/annotations/{}",
        key.replace('~', "~0").replace('/', "~1")
    )
}

fn items(v: &Value, pointer: &str) -> Vec<Value> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The CONTAINERS and IMAGES cells of a workload whose containers are at `pointer`.
pub(crate) fn containers_and_images(v: &Value, pointer: &str) -> [String; 2] {
    let containers = items(v, pointer);
    ["/name", "/image"]
        .map(|field| join_or_none(containers.iter().map(|c| s(c, field).to_string()).collect()))
}

fn join_or_none(parts: Vec<String>) -> String {
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
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

/// kubectl's STATUS of a pod: `Terminating` once deleted, else its reason or phase.
/// A DaemonSet's row as kubectl's `printDaemonSet`.
fn daemon_set_row(v: &Value, name: String, created: String) -> Vec<String> {
    let count = |field: &str| {
        v.pointer(&format!("/status/{field}"))
            .and_then(Value::as_i64)
            .unwrap_or(0)
            .to_string()
    };
    let [names, images] = containers_and_images(v, "/spec/template/spec/containers");
    vec![
        name,
        count("desiredNumberScheduled"),
        count("currentNumberScheduled"),
        count("numberReady"),
        count("updatedNumberScheduled"),
        count("numberAvailable"),
        key_values(v, "/spec/template/spec/nodeSelector"),
        created,
        names,
        images,
        key_values(v, "/spec/selector/matchLabels"),
    ]
}

fn pod_status(v: &Value) -> String {
    if v.pointer("/metadata/deletionTimestamp").is_some() {
        return "Terminating".into();
    }
    let reason = s(v, "/status/reason");
    if !reason.is_empty() {
        return reason.into();
    }
    // A finished pod reads as kubectl shows its container's end.
    match s(v, "/status/phase") {
        "Succeeded" => "Completed".into(),
        "Failed" => "Error".into(),
        phase => or(phase, "Unknown"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    #[test]
    fn rows_fit_their_columns_for_every_kind() {
        let empty = json!({"metadata": {"name": "x"}});
        for kind in Kind::ALL {
            assert_eq!(
                row(kind, &empty, SystemTime::now()).len(),
                columns(kind).len(),
                "{kind}"
            );
        }
    }

    #[test]
    fn pods_and_services_as_kubectl_prints_them() {
        let created = humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH).to_string();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(3 * 3600);
        let pod = json!({
            "metadata": {"name": "web-1", "creationTimestamp": created,
                         "annotations": {"pier.dev/restarts": "2"}},
            "spec": {"containers": [{"name": "app"}], "nodeName": "n1"},
            "status": {"phase": "Running", "podIP": "10.88.0.5",
                       "conditions": [{"type": "Ready", "status": "True"}]},
        });
        assert_eq!(
            row(Kind::Pod, &pod, now),
            ["web-1", "1/1", "Running", "2", "3h", "10.88.0.5", "n1"]
        );
        let svc = json!({"metadata": {"name": "db"}, "spec": {"type": "NodePort", "clusterIP": "10.96.0.9",
            "ports": [{"port": 5432, "nodePort": 30001}]}});
        assert_eq!(
            row(Kind::Service, &svc, now)[..5],
            ["db", "NodePort", "10.96.0.9", "<none>", "5432:30001/TCP"]
        );
        assert_eq!(
            age(Some("2026-01-01T00:00:00Z"), SystemTime::UNIX_EPOCH),
            "0s"
        );
        assert_eq!(age(None, now), "<unknown>");
    }
}

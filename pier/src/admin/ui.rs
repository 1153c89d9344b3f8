//! The live dashboard at `/ui`: one page (`ui.html`: HTML, CSS and a small script, nothing to
//! build) that asks `/ui/state` every second and redraws in place. The state is what this node
//! serves: its snapshot's Services (VIPs, ports, endpoints and their readiness), the routes in
//! front of them with each backend's share of the weight, and this node's cumulative traffic
//! counters per frontend Service and backend group (the page turns them into rates), and the
//! Rollouts with their phase, step and canary weight (from the `pier_rollout_*` gauges).

use std::collections::BTreeMap;

use prometheus::proto::MetricFamily;
use prometheus::Registry;
use serde_json::{json, Value};

/// The page.
pub(crate) const PAGE: &str = include_str!("ui.html");

/// Each Rollout's `status.message` (why it is degraded or paused), by namespace and name.
pub(crate) type Messages = BTreeMap<(String, String), String>;

/// The status messages of `rollouts`.
pub(crate) fn messages(rollouts: &[pier_model::Object]) -> Messages {
    rollouts
        .iter()
        .filter_map(|o| match o {
            pier_model::Object::Rollout(r) => {
                let message = r
                    .status
                    .as_ref()?
                    .message
                    .clone()
                    .filter(|m| !m.is_empty())?;
                Some((
                    (r.metadata.namespace().to_string(), r.metadata.name.clone()),
                    message,
                ))
            }
            _ => None,
        })
        .collect()
}

/// `GET /ui/state`: services, routes and traffic counters, from `snapshot` (the snapshot's
/// JSON) and `registry`, and the Rollouts' `messages`.
pub(crate) fn state(snapshot: &Value, registry: &Registry, messages: &Messages) -> Value {
    let families = registry.gather();
    json!({
        "revision": snapshot["revision"],
        "services": snapshot["services"]
            .as_array()
            .map(|s| s.iter().map(service).collect::<Vec<_>>())
            .unwrap_or_default(),
        "traffic": traffic(&families),
        "socketLb": socket_lb(&families),
        "rollouts": rollouts(&families)
            .into_iter()
            .map(|mut r| {
                let id = (
                    r["namespace"].as_str().unwrap_or_default().to_string(),
                    r["name"].as_str().unwrap_or_default().to_string(),
                );
                if let Some(message) = messages.get(&id) {
                    r["message"] = json!(message);
                }
                r
            })
            .collect::<Vec<_>>(),
        "autoscalers": autoscalers(&families),
    })
}

/// Each Rollout's phase, step, canary weight, pods and AnalysisRuns, from the
/// `pier_rollout_*` and `pier_analysis_run_info` gauges.
fn rollouts(families: &[MetricFamily]) -> Vec<Value> {
    let mut out: BTreeMap<(String, String), Value> = BTreeMap::new();
    let id = |m: &prometheus::proto::Metric| {
        (
            label(m, "namespace").to_string(),
            label(m, "rollout").to_string(),
        )
    };
    for (_, m) in samples(families, "pier_rollout_info") {
        let (namespace, name) = id(m);
        out.insert(
            (namespace.clone(), name.clone()),
            json!({"namespace": namespace, "name": name, "phase": label(m, "phase")}),
        );
    }
    for (family, field) in [
        ("pier_rollout_step", "step"),
        ("pier_rollout_steps", "steps"),
        ("pier_rollout_canary_weight", "weight"),
    ] {
        for (f, m) in samples(families, family) {
            if let Some(r) = out.get_mut(&id(m)) {
                r[field] = json!(value(f, m));
            }
        }
    }
    for (f, m) in samples(families, "pier_rollout_replicas") {
        if let Some(r) = out.get_mut(&id(m)) {
            r[label(m, "state")] = json!(value(f, m));
        }
    }
    // Each run's metrics' last values, for the page to chart over time.
    let mut values: BTreeMap<(String, String), serde_json::Map<String, Value>> = BTreeMap::new();
    for (f, m) in samples(families, "pier_analysis_metric_value") {
        let v = value(f, m);
        values
            .entry((
                label(m, "namespace").to_string(),
                label(m, "run").to_string(),
            ))
            .or_default()
            .insert(
                label(m, "metric").to_string(),
                if v.is_finite() { json!(v) } else { Value::Null },
            );
    }
    for (_, m) in samples(families, "pier_analysis_run_info") {
        if let Some(r) = out.get_mut(&id(m)) {
            let key = (
                label(m, "namespace").to_string(),
                label(m, "run").to_string(),
            );
            let metrics = values.remove(&key).unwrap_or_default();
            let run =
                json!({"run": label(m, "run"), "phase": label(m, "phase"), "metrics": metrics});
            match r["analysis"].as_array_mut() {
                Some(runs) => runs.push(run),
                None => r["analysis"] = json!([run]),
            }
        }
    }
    out.into_values().collect()
}

/// Each HorizontalPodAutoscaler's replicas (current, desired, min, max), its metrics' values
/// against their targets and its conditions, from the `pier_hpa_*` gauges.
fn autoscalers(families: &[MetricFamily]) -> Vec<Value> {
    let mut out: BTreeMap<(String, String), Value> = BTreeMap::new();
    for (f, m) in samples(families, "pier_hpa_replicas") {
        let (namespace, name) = (label(m, "namespace"), label(m, "hpa"));
        let a = out
            .entry((namespace.to_string(), name.to_string()))
            .or_insert_with(
                || json!({"namespace": namespace, "name": name, "metrics": {}, "conditions": {}}),
            );
        a[label(m, "kind")] = json!(value(f, m));
    }
    for (family, field) in [
        ("pier_hpa_metric_value", "current"),
        ("pier_hpa_metric_target", "target"),
    ] {
        for (f, m) in samples(families, family) {
            let key = (
                label(m, "namespace").to_string(),
                label(m, "hpa").to_string(),
            );
            if let Some(a) = out.get_mut(&key) {
                let metric = &mut a["metrics"][label(m, "metric")];
                metric[field] = json!(value(f, m));
                metric["type"] = json!(label(m, "target_type"));
            }
        }
    }
    for (_, m) in samples(families, "pier_hpa_condition") {
        let key = (
            label(m, "namespace").to_string(),
            label(m, "hpa").to_string(),
        );
        if let Some(a) = out.get_mut(&key) {
            a["conditions"][label(m, "condition")] = json!(label(m, "status"));
        }
    }
    out.into_values().collect()
}

/// What the page shows of one Service view.
fn service(s: &Value) -> Value {
    let ports: Vec<Value> = s["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            json!({"port": p["port"], "protocol": p["protocol"], "mode": p["mode"],
                   "nodePort": p["nodePort"]})
        })
        .collect();
    let endpoints: Vec<Value> = s["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            json!({"address": e["address"], "ready": e["ready"], "serving": e["serving"],
                   "terminating": e["terminating"], "node": e["nodeName"]})
        })
        .collect();
    let mut routes: Vec<Value> = s["httpRoutes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let rules: Vec<Value> = r["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|rule| json!({"matches": rule["matches"], "backends": backends(&rule["backends"])}))
                .collect();
            json!({"kind": "HTTPRoute", "namespace": r["namespace"], "name": r["name"], "rules": rules})
        })
        .collect();
    routes.extend(s["l4Routes"].as_array().into_iter().flatten().map(|r| {
        let kind = if r["protocol"] == "Udp" {
            "UDPRoute"
        } else {
            "TCPRoute"
        };
        json!({"kind": kind, "namespace": r["namespace"], "name": r["name"],
               "rules": [{"matches": [], "backends": backends(&r["backends"])}]})
    }));
    json!({
        "namespace": s["key"]["namespace"],
        "name": s["key"]["name"],
        "type": s["serviceType"],
        "clusterIp": s["clusterIp"],
        "headless": s["headless"],
        "ports": ports,
        "endpoints": endpoints,
        "routes": routes,
    })
}

/// A rule's backends with each one's share of the rule's weight, in percent.
fn backends(list: &Value) -> Vec<Value> {
    let items = list.as_array().map_or(&[][..], Vec::as_slice);
    let total: u64 = items.iter().filter_map(|b| b["weight"].as_u64()).sum();
    items
        .iter()
        .map(|b| {
            let weight = b["weight"].as_u64().unwrap_or(0);
            let share = if total == 0 { 0.0 } else { weight as f64 * 100.0 / total as f64 };
            json!({
                "service": format!("{}/{}", s(&b["service"]["namespace"]), s(&b["service"]["name"])),
                "port": b["port"],
                "weight": weight,
                "percent": share,
            })
        })
        .collect()
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// Requests, server errors (5xx and failed attempts) and connections, summed over endpoints,
/// per frontend Service and backend group, from the proxy's counters.
fn traffic(families: &[MetricFamily]) -> Vec<Value> {
    #[derive(Default)]
    struct Group {
        requests: f64,
        errors: f64,
        connections: f64,
    }
    let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
    for (family, metric) in samples(families, "pier_proxy_requests_total") {
        let code = label(metric, "code");
        let group = groups.entry(group_key(metric)).or_default();
        group.requests += value(family, metric);
        if code == "5xx" || code == "error" {
            group.errors += value(family, metric);
        }
    }
    for (family, metric) in samples(families, "pier_proxy_connections_total") {
        groups.entry(group_key(metric)).or_default().connections += value(family, metric);
    }
    groups
        .into_iter()
        .map(|((service, backend), g)| {
            json!({"service": service, "backend": backend, "requests": g.requests,
                   "errors": g.errors, "connections": g.connections})
        })
        .collect()
}

/// Connections and datagrams the socket-LB sent to each backend address.
fn socket_lb(families: &[MetricFamily]) -> Vec<Value> {
    samples(families, "pier_ebpf_backend_connections_total")
        .map(|(family, metric)| json!({"backend": label(metric, "backend"), "connections": value(family, metric)}))
        .collect()
}

/// The samples of the family named `name`.
fn samples<'a>(
    families: &'a [MetricFamily],
    name: &'a str,
) -> impl Iterator<Item = (&'a MetricFamily, &'a prometheus::proto::Metric)> {
    families
        .iter()
        .filter(move |f| f.name() == name)
        .flat_map(|f| f.get_metric().iter().map(move |m| (f, m)))
}

fn group_key(metric: &prometheus::proto::Metric) -> (String, String) {
    (
        label(metric, "service").to_string(),
        label(metric, "backend").to_string(),
    )
}

fn label<'a>(metric: &'a prometheus::proto::Metric, name: &str) -> &'a str {
    metric
        .get_label()
        .iter()
        .find(|l| l.name() == name)
        .map_or("", |l| l.value())
}

fn value(family: &MetricFamily, metric: &prometheus::proto::Metric) -> f64 {
    match family.get_field_type() {
        prometheus::proto::MetricType::GAUGE => metric.get_gauge().value(),
        _ => metric.get_counter().value(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{IntCounterVec, Opts};

    #[test]
    fn state_sums_traffic_per_group_and_shares_weights() {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("pier_proxy_requests_total", "h"),
            &["service", "backend", "endpoint", "code"],
        )
        .unwrap();
        registry.register(Box::new(requests.clone())).unwrap();
        requests
            .with_label_values(&["default/web", "default/web-v1", "a", "2xx"])
            .inc_by(7);
        requests
            .with_label_values(&["default/web", "default/web-v1", "b", "5xx"])
            .inc_by(2);
        requests
            .with_label_values(&["default/web", "default/web-v2", "c", "error"])
            .inc_by(1);
        let snapshot = json!({"revision": 4, "services": [{
            "key": {"namespace": "default", "name": "web"}, "serviceType": "ClusterIP",
            "clusterIp": "10.96.0.1", "headless": false,
            "ports": [{"port": 80, "protocol": "Tcp", "mode": "L7", "nodePort": null}],
            "endpoints": [{"address": "10.88.0.2", "ready": true, "serving": true, "terminating": false, "nodeName": null}],
            "httpRoutes": [{"namespace": "default", "name": "split", "rules": [{"matches": [], "backends": [
                {"service": {"namespace": "default", "name": "web-v1"}, "port": 80, "weight": 90},
                {"service": {"namespace": "default", "name": "web-v2"}, "port": 80, "weight": 10}]}]}],
            "l4Routes": [],
        }]});
        let state = state(&snapshot, &registry, &Messages::new());
        let web = &state["services"][0];
        assert_eq!(web["clusterIp"], "10.96.0.1");
        let shares = &web["routes"][0]["rules"][0]["backends"];
        assert_eq!(shares[0]["percent"], 90.0);
        assert_eq!(shares[1]["service"], "default/web-v2");
        let traffic = state["traffic"].as_array().unwrap();
        assert_eq!(traffic[0]["backend"], "default/web-v1");
        assert_eq!(
            (
                traffic[0]["requests"].as_f64(),
                traffic[0]["errors"].as_f64()
            ),
            (Some(9.0), Some(2.0))
        );
        assert_eq!(traffic[1]["errors"], 1.0);
    }

    #[test]
    fn state_lists_rollouts_from_their_gauges() {
        let registry = Registry::new();
        let gauge = |name: &str, labels: &[&str]| {
            let g = prometheus::IntGaugeVec::new(Opts::new(name, "h"), labels).unwrap();
            registry.register(Box::new(g.clone())).unwrap();
            g
        };
        let ids = ["namespace", "rollout"];
        gauge("pier_rollout_info", &["namespace", "rollout", "phase"])
            .with_label_values(&["default", "web", "Paused"])
            .set(1);
        gauge("pier_rollout_step", &ids)
            .with_label_values(&["default", "web"])
            .set(1);
        gauge("pier_rollout_steps", &ids)
            .with_label_values(&["default", "web"])
            .set(4);
        gauge("pier_rollout_canary_weight", &ids)
            .with_label_values(&["default", "web"])
            .set(20);
        gauge("pier_rollout_replicas", &["namespace", "rollout", "state"])
            .with_label_values(&["default", "web", "desired"])
            .set(5);
        gauge(
            "pier_analysis_run_info",
            &["namespace", "run", "rollout", "phase"],
        )
        .with_label_values(&["default", "web-abc-1", "web", "Running"])
        .set(1);
        let value = prometheus::GaugeVec::new(
            Opts::new("pier_analysis_metric_value", "h"),
            &["namespace", "run", "metric"],
        )
        .unwrap();
        registry.register(Box::new(value.clone())).unwrap();
        value
            .with_label_values(&["default", "web-abc-1", "success-rate"])
            .set(0.97);
        let messages = Messages::from([(
            ("default".to_string(), "web".to_string()),
            "RolloutAborted: Rollout aborted update to revision 2".to_string(),
        )]);
        let state = state(
            &json!({"revision": 1, "services": []}),
            &registry,
            &messages,
        );
        assert_eq!(
            state["rollouts"][0]["message"],
            "RolloutAborted: Rollout aborted update to revision 2"
        );
        assert_eq!(
            state["rollouts"][0]["analysis"],
            json!([{"run": "web-abc-1", "phase": "Running", "metrics": {"success-rate": 0.97}}])
        );
        let r = &state["rollouts"][0];
        assert_eq!(
            (
                &r["name"],
                &r["phase"],
                &r["step"],
                &r["steps"],
                &r["weight"],
                &r["desired"]
            ),
            (
                &json!("web"),
                &json!("Paused"),
                &json!(1.0),
                &json!(4.0),
                &json!(20.0),
                &json!(5.0)
            )
        );
    }

    #[test]
    fn state_lists_autoscalers_from_their_gauges() {
        let registry = Registry::new();
        let replicas = prometheus::IntGaugeVec::new(
            Opts::new("pier_hpa_replicas", "h"),
            &["namespace", "hpa", "kind"],
        )
        .unwrap();
        let value = prometheus::GaugeVec::new(
            Opts::new("pier_hpa_metric_value", "h"),
            &["namespace", "hpa", "metric", "target_type"],
        )
        .unwrap();
        let condition = prometheus::IntGaugeVec::new(
            Opts::new("pier_hpa_condition", "h"),
            &["namespace", "hpa", "condition", "status"],
        )
        .unwrap();
        registry.register(Box::new(replicas.clone())).unwrap();
        registry.register(Box::new(value.clone())).unwrap();
        registry.register(Box::new(condition.clone())).unwrap();
        for (kind, n) in [("current", 1), ("desired", 3), ("min", 1), ("max", 5)] {
            replicas.with_label_values(&["default", "web", kind]).set(n);
        }
        value
            .with_label_values(&["default", "web", "cpu", "Utilization"])
            .set(471.0);
        condition
            .with_label_values(&["default", "web", "ScalingLimited", "False"])
            .set(1);
        let state = state(
            &json!({"revision": 1, "services": []}),
            &registry,
            &Messages::new(),
        );
        let a = &state["autoscalers"][0];
        assert_eq!(
            (&a["name"], &a["current"], &a["desired"]),
            (&json!("web"), &json!(1.0), &json!(3.0))
        );
        assert_eq!(a["metrics"]["cpu"]["current"], 471.0);
        assert_eq!(a["metrics"]["cpu"]["type"], "Utilization");
        assert_eq!(a["conditions"]["ScalingLimited"], "False");
    }
}

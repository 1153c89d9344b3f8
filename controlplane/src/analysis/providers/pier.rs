//! pier's own metric provider (`plugin: {pier.dev/metrics: ...}`): what the proxies relayed to
//! a Service's endpoints as a backend group over a window, and how the socket-LBs' connections
//! to those endpoints ended (they send no traffic through the proxy), summed over every node:
//! this one's metrics read in process, the others' through their APIs (no Prometheus); and
//! its pods' readiness and restarts from the store.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use pier_model::analysis::{PierMeasure, PierMetric};
use pier_model::condition::Measured;
use pier_model::meta::map_selects;
use pier_model::pod::RESTARTS_ANNOTATION;
use pier_model::{Kind, Object};
use prometheus::proto::{MetricFamily, MetricType};

use crate::api::NodeMetricsPath;
use crate::cluster::NodeMetrics;
use crate::store::Store;

/// Quantile of `latency` when none is given.
const DEFAULT_QUANTILE: f64 = 0.99;

/// The counters of one backend group at one moment, summed over frontends and endpoints.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Sample {
    /// HTTP responses by class (`2xx`, `5xx`, `error` for none).
    requests: BTreeMap<String, f64>,
    /// L4 connections made.
    connections: f64,
    /// L4 connects that failed.
    connect_failures: f64,
    /// L4 connections the endpoints reset.
    resets: f64,
    /// Upstream latency histogram: (upper bound, cumulative count).
    buckets: Vec<(f64, f64)>,
}

/// The backend group a measure reads: its name as the proxy labels it (`namespace/name`) and
/// its endpoints' addresses as the socket-LB labels them (`ip:port`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Group {
    name: String,
    endpoints: BTreeSet<String>,
}

impl Sample {
    /// `group`'s counters in one node's `families`.
    pub(crate) fn from_families(families: &[MetricFamily], group: &Group) -> Sample {
        let mut s = Sample::default();
        for family in families {
            fold(&mut s, family, group);
        }
        s
    }

    /// What happened between `self` (earlier) and `later` on one node: all of `later` when a
    /// counter went down (the node restarted in between).
    fn growth(&self, later: &Sample) -> Sample {
        let went_down = later.connections < self.connections
            || later.connect_failures < self.connect_failures
            || later.resets < self.resets
            || self
                .requests
                .iter()
                .any(|(code, n)| later.requests.get(code).unwrap_or(&0.0) < n);
        if went_down {
            later.clone()
        } else {
            self.delta(later)
        }
    }

    /// Adds `other`'s counts (another node's) to these.
    fn add(&mut self, other: &Sample) {
        for (code, n) in &other.requests {
            *self.requests.entry(code.clone()).or_default() += n;
        }
        self.connections += other.connections;
        self.connect_failures += other.connect_failures;
        self.resets += other.resets;
        for &(le, n) in &other.buckets {
            match self.buckets.iter_mut().find(|(b, _)| *b == le) {
                Some(bucket) => bucket.1 += n,
                None => self.buckets.push((le, n)),
            }
        }
        self.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }

    /// What happened between `self` (earlier) and `later`.
    fn delta(&self, later: &Sample) -> Sample {
        let requests = later
            .requests
            .iter()
            .map(|(code, n)| (code.clone(), n - self.requests.get(code).unwrap_or(&0.0)))
            .collect();
        let buckets = later
            .buckets
            .iter()
            .map(|(le, n)| {
                let before = self
                    .buckets
                    .iter()
                    .find(|(b, _)| b == le)
                    .map_or(0.0, |(_, c)| *c);
                (*le, n - before)
            })
            .collect();
        Sample {
            requests,
            connections: later.connections - self.connections,
            connect_failures: later.connect_failures - self.connect_failures,
            resets: later.resets - self.resets,
            buckets,
        }
    }

    fn total_requests(&self) -> f64 {
        self.requests.values().sum()
    }

    fn failed_requests(&self) -> f64 {
        ["5xx", "error"]
            .iter()
            .map(|c| self.requests.get(*c).unwrap_or(&0.0))
            .sum()
    }

    /// The latency at quantile `q`, interpolated in its bucket as `histogram_quantile` does.
    fn quantile(&self, q: f64) -> f64 {
        let Some(&(_, total)) = self.buckets.last() else {
            return f64::NAN;
        };
        if total <= 0.0 {
            return f64::NAN;
        }
        let rank = q * total;
        let mut lower = (0.0, 0.0);
        for &(le, count) in &self.buckets {
            if count >= rank {
                if le.is_infinite() {
                    return lower.0;
                }
                let share = if count > lower.1 {
                    (rank - lower.1) / (count - lower.1)
                } else {
                    1.0
                };
                return lower.0 + (le - lower.0) * share;
            }
            lower = (le, count);
        }
        lower.0
    }
}

/// Adds `family`'s series of `group` to `s`.
fn fold(s: &mut Sample, family: &MetricFamily, group: &Group) {
    // The socket-LB labels its series by endpoint address (`backend="ip:port"`).
    let by_endpoint = || -> f64 {
        family
            .get_metric()
            .iter()
            .filter(|m| group.endpoints.contains(label(m, "backend")))
            .map(|m| m.get_counter().value())
            .sum()
    };
    match family.name() {
        "pier_ebpf_backend_connections_total" => s.connections += by_endpoint(),
        "pier_ebpf_backend_connect_failures_total" => s.connect_failures += by_endpoint(),
        "pier_ebpf_backend_resets_total" => s.resets += by_endpoint(),
        _ => fold_proxy(s, family, &group.name),
    }
}

/// Adds `family`'s proxy series of the backend group `backend` to `s`.
fn fold_proxy(s: &mut Sample, family: &MetricFamily, backend: &str) {
    let series = family
        .get_metric()
        .iter()
        .filter(|m| label(m, "backend") == backend);
    match family.name() {
        "pier_proxy_requests_total" => {
            for m in series {
                *s.requests.entry(label(m, "code").to_string()).or_default() +=
                    m.get_counter().value();
            }
        }
        "pier_proxy_connections_total" => {
            s.connections += series.map(|m| m.get_counter().value()).sum::<f64>();
        }
        "pier_proxy_connect_failures_total" => {
            s.connect_failures += series.map(|m| m.get_counter().value()).sum::<f64>();
        }
        "pier_proxy_upstream_resets_total" => {
            s.resets += series.map(|m| m.get_counter().value()).sum::<f64>();
        }
        "pier_proxy_upstream_duration_seconds"
            if family.get_field_type() == MetricType::HISTOGRAM =>
        {
            let mut sums: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
            for m in series {
                let h = m.get_histogram();
                for b in h.get_bucket() {
                    let e = sums
                        .entry(b.upper_bound().to_bits())
                        .or_insert((b.upper_bound(), 0.0));
                    e.1 += b.cumulative_count() as f64;
                }
                let e = sums
                    .entry(f64::INFINITY.to_bits())
                    .or_insert((f64::INFINITY, 0.0));
                e.1 += h.get_sample_count() as f64;
            }
            let mut buckets: Vec<(f64, f64)> = sums.into_values().collect();
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            s.buckets = buckets;
        }
        _ => {}
    }
}

fn label<'a>(m: &'a prometheus::proto::Metric, name: &str) -> &'a str {
    m.get_label()
        .iter()
        .find(|l| l.name() == name)
        .map_or("", |l| l.value())
}

/// Takes the measure `cfg` names over `window`.
pub(super) async fn measure(
    store: &Arc<Store>,
    nodes: &NodeMetrics,
    namespace: &str,
    cfg: &PierMetric,
    window: Duration,
) -> Result<Measured, String> {
    let namespace = cfg.namespace.as_deref().unwrap_or(namespace).to_string();
    let backend = format!("{namespace}/{}", cfg.service);
    match cfg.measure {
        PierMeasure::NotReady => {
            tokio::time::sleep(window).await;
            let pods = pods(store, &namespace, &cfg.service).await?;
            return Ok(Measured::Number(
                pods.iter().filter(|p| !p.ready).count() as f64
            ));
        }
        PierMeasure::Restarts => {
            let before = pods(store, &namespace, &cfg.service).await?;
            tokio::time::sleep(window).await;
            let after = pods(store, &namespace, &cfg.service).await?;
            return Ok(Measured::Number(restarts_between(&before, &after)));
        }
        _ => {}
    }
    let mut group = Group {
        name: backend,
        endpoints: endpoints(store, &namespace, &cfg.service).await?,
    };
    let before = read(nodes, &group).await?;
    tokio::time::sleep(window).await;
    // Endpoints that came during the window count too (their counters started after `before`).
    group
        .endpoints
        .extend(endpoints(store, &namespace, &cfg.service).await?);
    let after = read(nodes, &group).await?;
    Ok(Measured::Number(value(cfg, &across(&before, &after))))
}

/// `group`'s counters on every node now; an error naming the node when one that should answer
/// does not (a measurement missing a node's traffic could pass a failing canary).
async fn read(nodes: &NodeMetrics, group: &Group) -> Result<BTreeMap<String, Sample>, String> {
    let gathered = nodes.gather(NodeMetricsPath::Metrics).await;
    if let Some((node, why)) = gathered.failed.first() {
        return Err(format!("reading node {node}'s metrics: {why}"));
    }
    Ok(gathered
        .nodes
        .iter()
        .map(|(node, families)| (node.clone(), Sample::from_families(families, group)))
        .collect())
}

/// What happened on every node between two readings: the growth on each node read both times.
fn across(before: &BTreeMap<String, Sample>, after: &BTreeMap<String, Sample>) -> Sample {
    let mut sum = Sample::default();
    for (node, later) in after {
        if let Some(earlier) = before.get(node) {
            sum.add(&earlier.growth(later));
        }
    }
    sum
}

/// The addresses (`ip:port`) of a Service's endpoints, from its EndpointSlices.
async fn endpoints(
    store: &Arc<Store>,
    namespace: &str,
    service: &str,
) -> Result<BTreeSet<String>, String> {
    let (ns, name) = (namespace.to_string(), service.to_string());
    store
        .blocking("reading a Service's endpoints", move |s| {
            let slices = s.list(Kind::EndpointSlice, Some(&ns), None)?.0;
            let addresses = slices
                .iter()
                .filter_map(|o| match o {
                    Object::EndpointSlice(e) if e.service_name() == Some(name.as_str()) => Some(e),
                    _ => None,
                })
                .flat_map(|slice| {
                    let ports: Vec<u16> = slice
                        .ports
                        .iter()
                        .filter_map(|p| p.port.and_then(|n| u16::try_from(n).ok()))
                        .collect();
                    slice
                        .endpoints
                        .iter()
                        .flat_map(|e| e.addresses.iter())
                        .filter_map(|a| a.parse::<IpAddr>().ok())
                        .flat_map(move |ip| {
                            ports
                                .clone()
                                .into_iter()
                                .map(move |port| SocketAddr::new(ip, port).to_string())
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            Ok(addresses)
        })
        .await
        .map_err(|e| crate::error::chain(&e))
}

/// The measure over a window's counters (NaN for a share of nothing).
fn value(cfg: &PierMetric, d: &Sample) -> f64 {
    let share = |part: f64, whole: f64| if whole > 0.0 { part / whole } else { f64::NAN };
    let attempts = d.connections + d.connect_failures;
    match cfg.measure {
        PierMeasure::SuccessRate => {
            share(d.total_requests() - d.failed_requests(), d.total_requests())
        }
        PierMeasure::ErrorRate => share(d.failed_requests(), d.total_requests()),
        PierMeasure::Requests => d.total_requests(),
        PierMeasure::Latency => d.quantile(cfg.quantile.unwrap_or(DEFAULT_QUANTILE)),
        PierMeasure::Connections => d.connections,
        PierMeasure::ConnectFailures => d.connect_failures,
        PierMeasure::ConnectFailureRate => share(d.connect_failures, attempts),
        PierMeasure::Resets => d.resets,
        PierMeasure::ResetRate => share(d.resets, d.connections),
        PierMeasure::NotReady | PierMeasure::Restarts => f64::NAN,
    }
}

/// What the pod measures read of one pod.
#[derive(Debug, Clone, PartialEq)]
struct PodState {
    uid: String,
    ready: bool,
    restarts: u64,
}

/// Restarts between two readings of a Service's pods: each pod's growth, all of a new pod's.
fn restarts_between(before: &[PodState], after: &[PodState]) -> f64 {
    after
        .iter()
        .map(|p| {
            let earlier = before
                .iter()
                .find(|b| b.uid == p.uid)
                .map_or(0, |b| b.restarts);
            p.restarts.saturating_sub(earlier) as f64
        })
        .sum()
}

/// The pods the Service selects (not on their way out): readiness and restarts.
async fn pods(store: &Arc<Store>, namespace: &str, service: &str) -> Result<Vec<PodState>, String> {
    let (ns, name) = (namespace.to_string(), service.to_string());
    let pods = store
        .blocking("reading a Service's pods", move |s| {
            let Some(Object::Service(svc)) = s.get(Kind::Service, &ns, &name)? else {
                return Ok(None);
            };
            let pods = s.list(Kind::Pod, Some(&ns), None)?.0;
            let states = pods
                .iter()
                .filter_map(|o| match o {
                    Object::Pod(p) => Some(p),
                    _ => None,
                })
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter(|p| map_selects(&svc.spec.selector, &p.metadata.labels))
                .map(|p| PodState {
                    uid: p.metadata.uid.clone(),
                    ready: p.is_ready(),
                    restarts: p
                        .metadata
                        .annotations
                        .get(RESTARTS_ANNOTATION)
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0),
                })
                .collect::<Vec<_>>();
            Ok(Some(states))
        })
        .await
        .map_err(|e| crate::error::chain(&e))?;
    pods.ok_or_else(|| format!("Service {namespace}/{service} not found"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

    #[test]
    fn a_window_of_traffic_gives_rates_and_quantiles() {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("pier_proxy_requests_total", "r"),
            &["service", "backend", "endpoint", "code"],
        )
        .unwrap();
        let latency = HistogramVec::new(
            HistogramOpts::new("pier_proxy_upstream_duration_seconds", "l")
                .buckets(vec![0.01, 0.1, 1.0]),
            &["service", "backend"],
        )
        .unwrap();
        registry.register(Box::new(requests.clone())).unwrap();
        registry.register(Box::new(latency.clone())).unwrap();
        let ok = requests.with_label_values(&["d/web", "d/canary", "a", "2xx"]);
        let bad = requests.with_label_values(&["d/web", "d/canary", "a", "5xx"]);
        let other = requests.with_label_values(&["d/web", "d/stable", "b", "5xx"]);
        ok.inc_by(100);
        let canary = Group {
            name: "d/canary".into(),
            endpoints: BTreeSet::new(),
        };
        let before = Sample::from_families(&registry.gather(), &canary);
        ok.inc_by(70);
        bad.inc_by(30);
        other.inc_by(1000);
        for _ in 0..90 {
            latency
                .with_label_values(&["d/web", "d/canary"])
                .observe(0.005);
        }
        for _ in 0..10 {
            latency
                .with_label_values(&["d/web", "d/canary"])
                .observe(0.5);
        }
        let d = before.delta(&Sample::from_families(&registry.gather(), &canary));
        let cfg = |measure, quantile| PierMetric {
            service: "canary".into(),
            namespace: None,
            measure,
            quantile,
            window: None,
        };
        assert_eq!(value(&cfg(PierMeasure::SuccessRate, None), &d), 0.7);
        assert_eq!(value(&cfg(PierMeasure::Requests, None), &d), 100.0);
        let p50 = value(&cfg(PierMeasure::Latency, Some(0.5)), &d);
        assert!(p50 > 0.0 && p50 <= 0.01, "{p50}");
        let p95 = value(&cfg(PierMeasure::Latency, Some(0.95)), &d);
        assert!(p95 > 0.1 && p95 <= 1.0, "{p95}");
        let none = Sample::default().delta(&Sample::default());
        assert!(value(&cfg(PierMeasure::SuccessRate, None), &none).is_nan());
    }

    /// Connections the socket-LB made straight to the group's endpoints count with the
    /// proxy's, by endpoint address; other endpoints' do not.
    #[test]
    fn socket_lb_connections_count_by_endpoint_address() {
        let registry = Registry::new();
        let counter = |name: &str| {
            let c = IntCounterVec::new(Opts::new(name, "c"), &["backend"]).unwrap();
            registry.register(Box::new(c.clone())).unwrap();
            c
        };
        let connections = counter("pier_ebpf_backend_connections_total");
        let resets = counter("pier_ebpf_backend_resets_total");
        let failures = counter("pier_ebpf_backend_connect_failures_total");
        let proxied = IntCounterVec::new(
            Opts::new("pier_proxy_connections_total", "c"),
            &["service", "backend", "endpoint"],
        )
        .unwrap();
        registry.register(Box::new(proxied.clone())).unwrap();
        let canary = Group {
            name: "d/canary".into(),
            endpoints: ["10.0.0.1:80".to_string(), "[fd00::1]:80".to_string()].into(),
        };
        let before = Sample::from_families(&registry.gather(), &canary);
        connections.with_label_values(&["10.0.0.1:80"]).inc_by(60);
        connections.with_label_values(&["[fd00::1]:80"]).inc_by(20);
        resets.with_label_values(&["10.0.0.1:80"]).inc_by(24);
        failures.with_label_values(&["[fd00::1]:80"]).inc_by(5);
        connections.with_label_values(&["10.0.0.2:80"]).inc_by(1000);
        resets.with_label_values(&["10.0.0.2:80"]).inc_by(1000);
        proxied
            .with_label_values(&["d/web", "d/canary", "10.0.0.1:80"])
            .inc_by(20);
        let d = before.delta(&Sample::from_families(&registry.gather(), &canary));
        let cfg = |measure| PierMetric {
            service: "canary".into(),
            namespace: None,
            measure,
            quantile: None,
            window: None,
        };
        assert_eq!(value(&cfg(PierMeasure::ResetRate), &d), 0.24);
        assert_eq!(value(&cfg(PierMeasure::Resets), &d), 24.0);
        assert_eq!(value(&cfg(PierMeasure::ConnectFailures), &d), 5.0);
        assert_eq!(
            value(&cfg(PierMeasure::ConnectFailureRate), &d),
            5.0 / 105.0
        );
    }

    /// Nodes' counters add up; a node that restarted in the window counts what it has, and one
    /// read only at the end (it joined) counts nothing.
    #[test]
    fn every_nodes_traffic_adds_up() {
        let sample = |ok: f64, bad: f64, connections: f64, fast: f64| Sample {
            requests: [("2xx".to_string(), ok), ("5xx".to_string(), bad)].into(),
            connections,
            buckets: vec![(0.01, fast), (f64::INFINITY, ok + bad)],
            ..Sample::default()
        };
        let before = BTreeMap::from([
            ("n1".to_string(), sample(100.0, 0.0, 10.0, 100.0)),
            ("n2".to_string(), sample(500.0, 5.0, 50.0, 505.0)),
        ]);
        let after = BTreeMap::from([
            ("n1".to_string(), sample(160.0, 20.0, 30.0, 180.0)),
            ("n2".to_string(), sample(20.0, 20.0, 4.0, 30.0)),
            ("n3".to_string(), sample(900.0, 900.0, 90.0, 0.0)),
        ]);
        let d = across(&before, &after);
        let cfg = |measure| PierMetric {
            service: "canary".into(),
            namespace: None,
            measure,
            quantile: Some(0.5),
            window: None,
        };
        // n1 grew by 60 + 20 requests and 20 connections; n2 restarted: all of its 20 + 20
        // and 4.
        assert_eq!(value(&cfg(PierMeasure::Requests), &d), 120.0);
        assert_eq!(value(&cfg(PierMeasure::ErrorRate), &d), 40.0 / 120.0);
        assert_eq!(value(&cfg(PierMeasure::Connections), &d), 24.0);
        assert_eq!(d.buckets, vec![(0.01, 110.0), (f64::INFINITY, 120.0)]);
    }

    #[test]
    fn restarts_count_growth_and_new_pods() {
        let pod = |uid: &str, restarts| PodState {
            uid: uid.into(),
            ready: true,
            restarts,
        };
        let before = [pod("a", 2), pod("b", 0)];
        let after = [pod("a", 3), pod("c", 1)];
        assert_eq!(restarts_between(&before, &after), 2.0);
        assert_eq!(restarts_between(&after, &after), 0.0);
    }
}

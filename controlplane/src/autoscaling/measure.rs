//! What an autoscaler measures of each pod, read from every node of the cluster once per pass:
//! CPU (cores, a rate between two readings of the container's cgroup counter) and memory
//! (working-set bytes) from the kubelet-style resource metrics each node serves for its pods,
//! and the requests or connections per second each node's proxy (and, for connections, its
//! socket-LB) sent to the pod (a rate between two readings of that node's counters, summed over
//! every Service that reaches the pod, then over nodes). A pod's first reading gives no rate,
//! as metrics-server gives none before its second scrape.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use pier_model::hpa::{CONNECTIONS_PER_SECOND, REQUESTS_PER_SECOND};
use pier_model::Pod;
use prometheus::proto::MetricFamily;

use crate::api::NodeMetricsPath;
use crate::cluster::{pod_usage, NodeMetrics};

/// One container's resource use, as its cgroup counts it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContainerUsage {
    /// CPU time used since the container started, in seconds.
    pub cpu_seconds: f64,
    /// Working set: memory in use less reclaimable page cache, in bytes.
    pub memory_bytes: f64,
}

/// The container engine's reading of its containers' resource use.
pub trait UsageSource: Send + Sync {
    /// The use of container `id`, or `None` when it does not run on this node.
    fn usage(&self, id: &str) -> Option<ContainerUsage>;
}

/// Which rate a reading belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Series {
    Cpu,
    Requests,
    Connections,
}

/// Requests and connections one node sent to each endpoint address, summed: its proxy's, and
/// its socket-LB's connections (which bypass the proxy).
#[derive(Debug, Default)]
pub(crate) struct TrafficCounts {
    by_ip: HashMap<IpAddr, (f64, f64)>,
}

impl TrafficCounts {
    /// Reads the counters in one node's `families`.
    pub(crate) fn from_families(families: &[MetricFamily]) -> TrafficCounts {
        let mut counts = TrafficCounts::default();
        for family in families {
            counts.fold(family);
        }
        counts
    }

    fn fold(&mut self, family: &MetricFamily) {
        let (requests, address) = match family.name() {
            "pier_proxy_requests_total" => (true, "endpoint"),
            "pier_proxy_connections_total" => (false, "endpoint"),
            "pier_ebpf_backend_connections_total" => (false, "backend"),
            _ => return,
        };
        for m in family.get_metric() {
            let endpoint = m
                .get_label()
                .iter()
                .find(|l| l.name() == address)
                .and_then(|l| l.value().parse::<SocketAddr>().ok());
            let Some(addr) = endpoint else { continue };
            let entry = self.by_ip.entry(addr.ip()).or_default();
            let value = m.get_counter().value();
            if requests {
                entry.0 += value;
            } else {
                entry.1 += value;
            }
        }
    }
}

/// What one pass read of every node: each node's traffic counters and every pod's resource use
/// (by namespace and name).
#[derive(Debug, Default)]
pub(crate) struct Readings {
    pub(crate) traffic: BTreeMap<String, TrafficCounts>,
    pub(crate) usage: HashMap<(String, String), ContainerUsage>,
}

impl Readings {
    /// Reads every node `nodes` reaches; a node that does not answer is left out of this pass
    /// (its pods are unmeasured, as metrics-server leaves a kubelet it cannot scrape), logged.
    pub(crate) async fn read(nodes: &NodeMetrics) -> Readings {
        let (metrics, resource) = tokio::join!(
            nodes.gather(NodeMetricsPath::Metrics),
            nodes.gather(NodeMetricsPath::Resource)
        );
        for (node, why) in metrics.failed.iter().chain(&resource.failed) {
            tracing::warn!(%node, error = %why, "autoscaling: a node's metrics could not be read; its share is left out of this pass");
        }
        Readings {
            traffic: metrics
                .nodes
                .iter()
                .map(|(node, families)| (node.clone(), TrafficCounts::from_families(families)))
                .collect(),
            usage: resource
                .nodes
                .iter()
                .flat_map(|(_, families)| pod_usage(families))
                .collect(),
        }
    }

    fn container(&self, pod: &Pod) -> Option<ContainerUsage> {
        let key = (
            pod.metadata.namespace().to_string(),
            pod.metadata.name.clone(),
        );
        self.usage.get(&key).copied()
    }
}

/// Readings kept between passes, to turn counters into rates.
#[derive(Default)]
pub(crate) struct Sampler {
    last: HashMap<(String, Series, String), (Instant, f64)>,
}

impl Sampler {
    /// Cores the pod's container uses, a rate since the last reading (under `owner`, the
    /// autoscaler asking).
    pub(crate) fn cpu(
        &mut self,
        owner: &str,
        pod: &Pod,
        readings: &Readings,
        now: Instant,
    ) -> Option<f64> {
        let total = readings.container(pod)?.cpu_seconds;
        self.rate(owner, pod, (Series::Cpu, ""), total, now)
    }

    /// Working-set bytes of the pod's container.
    pub(crate) fn memory(&self, pod: &Pod, readings: &Readings) -> Option<f64> {
        Some(readings.container(pod)?.memory_bytes)
    }

    /// Per second of the Pods metric `name` for `pod`, summed over the nodes read; `None` for
    /// a name pier does not measure, a pod without an address, or no node read twice yet.
    pub(crate) fn pod_metric(
        &mut self,
        owner: &str,
        pod: &Pod,
        name: &str,
        readings: &Readings,
        now: Instant,
    ) -> Option<f64> {
        let series = match name {
            REQUESTS_PER_SECOND => Series::Requests,
            CONNECTIONS_PER_SECOND => Series::Connections,
            _ => return None,
        };
        let ip: IpAddr = pod.status.pod_ip.as_deref()?.parse().ok()?;
        let mut sum = None;
        for (node, counts) in &readings.traffic {
            let (requests, connections) = counts.by_ip.get(&ip).copied().unwrap_or_default();
            let total = if series == Series::Requests {
                requests
            } else {
                connections
            };
            if let Some(rate) = self.rate(owner, pod, (series, node), total, now) {
                *sum.get_or_insert(0.0) += rate;
            }
        }
        sum
    }

    fn rate(
        &mut self,
        owner: &str,
        pod: &Pod,
        (series, node): (Series, &str),
        total: f64,
        now: Instant,
    ) -> Option<f64> {
        let key = (
            format!("{owner}/{}", pod.metadata.uid),
            series,
            node.to_string(),
        );
        let before = self.last.insert(key, (now, total))?;
        let seconds = now.saturating_duration_since(before.0).as_secs_f64();
        if seconds <= 0.0 {
            return None;
        }
        // A counter that went down was reset (a restarted container, a re-added endpoint, a
        // restarted node): all of it is new.
        let delta = if total >= before.1 {
            total - before.1
        } else {
            total
        };
        Some(delta / seconds)
    }

    /// Drops readings of pods `keep` says are gone.
    pub(crate) fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.last.retain(|(key, _, _), _| keep(key));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prometheus::{IntCounterVec, Opts, Registry};

    use super::*;

    /// What a pass reads when `registry` is node n1's.
    fn readings(registry: &Registry) -> Readings {
        Readings {
            traffic: [(
                "n1".to_string(),
                TrafficCounts::from_families(&registry.gather()),
            )]
            .into(),
            usage: HashMap::new(),
        }
    }

    fn pod(uid: &str, ip: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.uid = uid.into();
        p.status.pod_ip = Some(ip.into());
        p
    }

    #[test]
    fn request_rate_per_pod_from_the_proxy_counters() {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("pier_proxy_requests_total", "requests"),
            &["service", "backend", "endpoint", "code"],
        )
        .unwrap();
        registry.register(Box::new(requests.clone())).unwrap();
        let mut sampler = Sampler::default();
        let (a, b) = (pod("a", "10.0.0.1"), pod("b", "10.0.0.2"));
        let t0 = Instant::now();
        let counts = readings(&registry);
        assert_eq!(
            sampler.pod_metric("h", &a, REQUESTS_PER_SECOND, &counts, t0),
            None
        );
        assert_eq!(
            sampler.pod_metric("h", &b, REQUESTS_PER_SECOND, &counts, t0),
            None
        );
        for (svc, code) in [("web", "2xx"), ("web", "5xx"), ("api", "2xx")] {
            requests
                .with_label_values(&[svc, svc, "10.0.0.1:80", code])
                .inc_by(10);
        }
        let counts = readings(&registry);
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(
            sampler.pod_metric("h", &a, REQUESTS_PER_SECOND, &counts, t1),
            Some(15.0)
        );
        assert_eq!(
            sampler.pod_metric("h", &b, REQUESTS_PER_SECOND, &counts, t1),
            Some(0.0)
        );
        assert_eq!(
            sampler.pod_metric("h", &a, "queue-depth", &counts, t1),
            None
        );
    }

    #[test]
    fn connection_rate_per_pod_counts_the_socket_lbs_connections() {
        let registry = Registry::new();
        let proxied = IntCounterVec::new(
            Opts::new("pier_proxy_connections_total", "c"),
            &["service", "backend", "endpoint"],
        )
        .unwrap();
        let direct = IntCounterVec::new(
            Opts::new("pier_ebpf_backend_connections_total", "c"),
            &["backend"],
        )
        .unwrap();
        registry.register(Box::new(proxied.clone())).unwrap();
        registry.register(Box::new(direct.clone())).unwrap();
        let mut sampler = Sampler::default();
        let a = pod("a", "10.0.0.1");
        let t0 = Instant::now();
        let counts = readings(&registry);
        assert_eq!(
            sampler.pod_metric("h", &a, CONNECTIONS_PER_SECOND, &counts, t0),
            None
        );
        proxied
            .with_label_values(&["web", "web", "10.0.0.1:80"])
            .inc_by(4);
        direct.with_label_values(&["10.0.0.1:80"]).inc_by(16);
        direct.with_label_values(&["10.0.0.2:80"]).inc_by(100);
        let counts = readings(&registry);
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(
            sampler.pod_metric("h", &a, CONNECTIONS_PER_SECOND, &counts, t1),
            Some(10.0)
        );
    }

    /// Two nodes' traffic to one pod adds up; a node first read in this pass adds nothing yet.
    #[test]
    fn rates_from_every_node_add_up() {
        let node = |requests: f64| {
            let mut c = TrafficCounts::default();
            c.by_ip.insert("10.0.0.1".parse().unwrap(), (requests, 0.0));
            c
        };
        let pass = |nodes: Vec<(&str, f64)>| Readings {
            traffic: nodes
                .into_iter()
                .map(|(n, r)| (n.to_string(), node(r)))
                .collect(),
            usage: HashMap::new(),
        };
        let mut sampler = Sampler::default();
        let a = pod("a", "10.0.0.1");
        let t0 = Instant::now();
        let first = pass(vec![("n1", 100.0), ("n2", 50.0)]);
        assert_eq!(
            sampler.pod_metric("h", &a, REQUESTS_PER_SECOND, &first, t0),
            None
        );
        let t1 = t0 + Duration::from_secs(10);
        let second = pass(vec![("n1", 200.0), ("n2", 150.0), ("n3", 999.0)]);
        assert_eq!(
            sampler.pod_metric("h", &a, REQUESTS_PER_SECOND, &second, t1),
            Some(20.0)
        );
    }

    /// CPU comes from the resource readings of whichever node runs the pod.
    #[test]
    fn cpu_rate_from_the_pods_resource_reading() {
        let mut a = pod("a", "10.0.0.1");
        a.metadata.name = "web-1".into();
        a.metadata.namespace = "shop".into();
        let pass = |cpu_seconds: f64| Readings {
            traffic: BTreeMap::new(),
            usage: [(
                ("shop".to_string(), "web-1".to_string()),
                ContainerUsage {
                    cpu_seconds,
                    memory_bytes: 1e6,
                },
            )]
            .into(),
        };
        let mut sampler = Sampler::default();
        let t0 = Instant::now();
        assert_eq!(sampler.cpu("h", &a, &pass(10.0), t0), None);
        let t1 = t0 + Duration::from_secs(4);
        assert_eq!(sampler.cpu("h", &a, &pass(12.0), t1), Some(0.5));
        assert_eq!(sampler.memory(&a, &pass(12.0)), Some(1e6));
        assert_eq!(sampler.memory(&pod("b", "10.0.0.2"), &pass(12.0)), None);
    }
}

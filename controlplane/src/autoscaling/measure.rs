//! What an autoscaler measures of each pod: CPU (cores, a rate between two readings of the
//! container's cgroup counter) and memory (working-set bytes) from the container engine, and
//! the requests or connections per second this node's proxy sent to the pod (a rate between
//! two readings of the proxy's counters, summed over every Service that reaches it). A pod's
//! first reading gives no rate, as metrics-server gives none before its second scrape.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use pier_model::hpa::{CONNECTIONS_PER_SECOND, REQUESTS_PER_SECOND};
use pier_model::pod::CONTAINER_ANNOTATION;
use pier_model::Pod;
use prometheus::proto::MetricFamily;
use prometheus::Registry;

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

/// Requests and connections sent to each endpoint address, summed: the proxy's, and the
/// socket-LB's connections (which bypass the proxy).
#[derive(Debug, Default)]
pub(crate) struct TrafficCounts {
    by_ip: HashMap<IpAddr, (f64, f64)>,
}

impl TrafficCounts {
    /// Reads the proxy's counters from `registry`.
    pub(crate) fn read(registry: &Registry) -> TrafficCounts {
        let mut counts = TrafficCounts::default();
        for family in registry.gather() {
            counts.fold(&family);
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
            let value = m.get_counter().get_value();
            if requests {
                entry.0 += value;
            } else {
                entry.1 += value;
            }
        }
    }
}

/// Readings kept between passes, to turn counters into rates.
pub(crate) struct Sampler {
    usage: Option<Arc<dyn UsageSource>>,
    registry: Registry,
    last: HashMap<(String, Series), (Instant, f64)>,
}

impl Sampler {
    /// Reads containers through `usage` (none when this node runs no engine) and the proxy's
    /// counters from `registry`.
    pub(crate) fn new(usage: Option<Arc<dyn UsageSource>>, registry: Registry) -> Self {
        Self {
            usage,
            registry,
            last: HashMap::new(),
        }
    }

    /// The proxy's and the socket-LB's counters now.
    pub(crate) fn traffic(&self) -> TrafficCounts {
        TrafficCounts::read(&self.registry)
    }

    fn container(&self, pod: &Pod) -> Option<ContainerUsage> {
        let id = pod.metadata.annotations.get(CONTAINER_ANNOTATION)?;
        self.usage.as_ref()?.usage(id)
    }

    /// Cores the pod's container uses, a rate since the last reading (under `owner`, the
    /// autoscaler asking).
    pub(crate) fn cpu(&mut self, owner: &str, pod: &Pod, now: Instant) -> Option<f64> {
        let total = self.container(pod)?.cpu_seconds;
        self.rate(owner, pod, Series::Cpu, total, now)
    }

    /// Working-set bytes of the pod's container.
    pub(crate) fn memory(&self, pod: &Pod) -> Option<f64> {
        Some(self.container(pod)?.memory_bytes)
    }

    /// Per second of the Pods metric `name` for `pod`, from `counts`; `None` for a name pier
    /// does not measure or a pod without an address or a first reading.
    pub(crate) fn pod_metric(
        &mut self,
        owner: &str,
        pod: &Pod,
        name: &str,
        counts: &TrafficCounts,
        now: Instant,
    ) -> Option<f64> {
        let series = match name {
            REQUESTS_PER_SECOND => Series::Requests,
            CONNECTIONS_PER_SECOND => Series::Connections,
            _ => return None,
        };
        let ip: IpAddr = pod.status.pod_ip.as_deref()?.parse().ok()?;
        let (requests, connections) = counts.by_ip.get(&ip).copied().unwrap_or_default();
        let total = if series == Series::Requests {
            requests
        } else {
            connections
        };
        self.rate(owner, pod, series, total, now)
    }

    fn rate(
        &mut self,
        owner: &str,
        pod: &Pod,
        series: Series,
        total: f64,
        now: Instant,
    ) -> Option<f64> {
        let key = (format!("{owner}/{}", pod.metadata.uid), series);
        let before = self.last.insert(key, (now, total))?;
        let seconds = now.saturating_duration_since(before.0).as_secs_f64();
        if seconds <= 0.0 {
            return None;
        }
        // A counter that went down was reset (a restarted container, a re-added endpoint):
        // all of it is new.
        let delta = if total >= before.1 {
            total - before.1
        } else {
            total
        };
        Some(delta / seconds)
    }

    /// Drops readings of pods `keep` says are gone.
    pub(crate) fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.last.retain(|(key, _), _| keep(key));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prometheus::{IntCounterVec, Opts};

    use super::*;

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
        let mut sampler = Sampler::new(None, registry);
        let (a, b) = (pod("a", "10.0.0.1"), pod("b", "10.0.0.2"));
        let t0 = Instant::now();
        let counts = sampler.traffic();
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
        let counts = sampler.traffic();
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
        let mut sampler = Sampler::new(None, registry);
        let a = pod("a", "10.0.0.1");
        let t0 = Instant::now();
        let counts = sampler.traffic();
        assert_eq!(
            sampler.pod_metric("h", &a, CONNECTIONS_PER_SECOND, &counts, t0),
            None
        );
        proxied
            .with_label_values(&["web", "web", "10.0.0.1:80"])
            .inc_by(4);
        direct.with_label_values(&["10.0.0.1:80"]).inc_by(16);
        direct.with_label_values(&["10.0.0.2:80"]).inc_by(100);
        let counts = sampler.traffic();
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(
            sampler.pod_metric("h", &a, CONNECTIONS_PER_SECOND, &counts, t1),
            Some(10.0)
        );
    }
}

//! `pier_proxy_*` Prometheus metrics, with label handles resolved once per endpoint, not per request.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Label handles resolved on first use: a node with 10k services and 100k endpoints only
/// pays for the series that carry traffic.
pub struct Lazy<T> {
    cell: OnceLock<T>,
    make: Box<dyn Fn() -> T + Send + Sync>,
}

impl<T> Lazy<T> {
    /// Handles `make` resolves when first needed.
    pub fn new(make: impl Fn() -> T + Send + Sync + 'static) -> Self {
        Self {
            cell: OnceLock::new(),
            make: Box::new(make),
        }
    }
}

impl<T> Deref for Lazy<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.cell.get_or_init(|| (self.make)())
    }
}

/// Every proxy metric.
#[derive(Clone)]
pub struct ProxyMetrics {
    requests: IntCounterVec,
    connections: IntCounterVec,
    connect_failures: IntCounterVec,
    resets: IntCounterVec,
    bytes: IntCounterVec,
    upstream_duration: HistogramVec,
    active_connections: IntGaugeVec,
    ejections: IntCounterVec,
    endpoint_healthy: IntGaugeVec,
    retries: IntCounterVec,
    no_endpoint: IntCounterVec,
    /// Listening sockets.
    pub listeners: IntGauge,
    /// UDP datagrams dropped because the flow table was full.
    pub udp_flows_dropped: IntCounter,
    /// Client connections refused because `max_connections` was reached.
    pub connections_refused: IntCounter,
}

/// Codes of `pier_proxy_requests_total`: response classes, plus `error` when no response came.
const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "error"];

/// Handles of one endpoint as seen from one frontend service and backend group.
#[derive(Clone)]
pub struct EndpointMetrics {
    requests: [IntCounter; 6],
    /// L4 connections (or UDP flows) opened to the endpoint.
    pub connections: IntCounter,
    /// L4 connections to the endpoint that failed (refused, reset or timed out).
    pub connect_failures: IntCounter,
    /// L4 connections the endpoint reset (or aborted) once connected.
    pub resets: IntCounter,
    /// Ejections of the endpoint.
    pub ejections: IntCounter,
    /// 1 while the active health check passes.
    pub healthy: IntGauge,
}

impl EndpointMetrics {
    /// Counts a response with `status`, or a failure without one.
    pub fn request(&self, status: Option<u16>) {
        let i = match status {
            Some(s @ 100..=599) => usize::from(s / 100 - 1),
            _ => 5,
        };
        if let Some(c) = self.requests.get(i) {
            c.inc();
        }
    }
}

/// Handles of one frontend service / backend group pair.
#[derive(Clone)]
pub struct GroupMetrics {
    /// Upstream time to response headers (L7) or to connect (L4).
    pub upstream_duration: Histogram,
}

/// Handles of one frontend service.
#[derive(Clone)]
pub struct FrontendMetrics {
    /// Bytes from clients.
    pub bytes_in: IntCounter,
    /// Bytes to clients.
    pub bytes_out: IntCounter,
    /// Open client connections.
    pub active: IntGauge,
    /// Retries made.
    pub retries: IntCounter,
    /// Requests or connections that found no endpoint.
    pub no_endpoint: IntCounter,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntCounterVec> {
    IntCounterVec::new(Opts::new(name, help), labels)
}

impl ProxyMetrics {
    /// Creates and registers the metrics.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            requests: counter(
                "pier_proxy_requests_total",
                "HTTP requests by frontend service, backend group, endpoint and response class",
                &["service", "backend", "endpoint", "code"],
            )?,
            connections: counter(
                "pier_proxy_connections_total",
                "L4 connections and UDP flows by frontend service, backend group and endpoint",
                &["service", "backend", "endpoint"],
            )?,
            connect_failures: counter(
                "pier_proxy_connect_failures_total",
                "L4 connects that failed (refused, reset or timed out) by frontend service, backend group and endpoint",
                &["service", "backend", "endpoint"],
            )?,
            resets: counter(
                "pier_proxy_upstream_resets_total",
                "L4 connections the endpoint reset once connected, by frontend service, backend group and endpoint",
                &["service", "backend", "endpoint"],
            )?,
            bytes: counter(
                "pier_proxy_bytes_total",
                "Bytes relayed by frontend service and direction (in = from clients)",
                &["service", "direction"],
            )?,
            upstream_duration: HistogramVec::new(
                HistogramOpts::new(
                    "pier_proxy_upstream_duration_seconds",
                    "Upstream latency: to response headers (HTTP) or to connect (TCP)",
                )
                .buckets(vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
                &["service", "backend"],
            )?,
            active_connections: IntGaugeVec::new(
                Opts::new(
                    "pier_proxy_active_connections",
                    "Open client connections by frontend service",
                ),
                &["service"],
            )?,
            ejections: counter(
                "pier_proxy_ejections_total",
                "Outlier ejections by frontend service, backend group and endpoint",
                &["service", "backend", "endpoint"],
            )?,
            endpoint_healthy: IntGaugeVec::new(
                Opts::new(
                    "pier_proxy_endpoint_healthy",
                    "1 while an endpoint passes its active health check and is not ejected",
                ),
                &["service", "backend", "endpoint"],
            )?,
            retries: counter(
                "pier_proxy_retries_total",
                "Retried upstream attempts by frontend service",
                &["service"],
            )?,
            no_endpoint: counter(
                "pier_proxy_no_endpoint_total",
                "Requests or connections with no endpoint to serve them, by frontend service",
                &["service"],
            )?,
            listeners: IntGauge::new("pier_proxy_listeners", "Listening proxy sockets")?,
            udp_flows_dropped: IntCounter::new(
                "pier_proxy_udp_flows_dropped_total",
                "UDP datagrams dropped because the flow table was full",
            )?,
            connections_refused: IntCounter::new(
                "pier_proxy_connections_refused_total",
                "Client connections closed at once because the connection limit was reached",
            )?,
        };
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.connections.clone()))?;
        registry.register(Box::new(m.connect_failures.clone()))?;
        registry.register(Box::new(m.resets.clone()))?;
        registry.register(Box::new(m.bytes.clone()))?;
        registry.register(Box::new(m.upstream_duration.clone()))?;
        registry.register(Box::new(m.active_connections.clone()))?;
        registry.register(Box::new(m.ejections.clone()))?;
        registry.register(Box::new(m.endpoint_healthy.clone()))?;
        registry.register(Box::new(m.retries.clone()))?;
        registry.register(Box::new(m.no_endpoint.clone()))?;
        registry.register(Box::new(m.listeners.clone()))?;
        registry.register(Box::new(m.udp_flows_dropped.clone()))?;
        registry.register(Box::new(m.connections_refused.clone()))?;
        Ok(m)
    }

    /// Lazily resolved handles for a frontend service / backend group pair.
    pub fn lazy_group(
        self: &Arc<Self>,
        service: Arc<str>,
        backend: Arc<str>,
    ) -> Lazy<GroupMetrics> {
        let m = Arc::clone(self);
        Lazy::new(move || m.group(&service, &backend))
    }

    /// Lazily resolved handles for a frontend service.
    pub fn lazy_frontend(self: &Arc<Self>, service: Arc<str>) -> Lazy<FrontendMetrics> {
        let m = Arc::clone(self);
        Lazy::new(move || m.frontend(&service))
    }

    /// Handles for `endpoint` behind `backend`, reached through `service`.
    pub fn endpoint(&self, service: &str, backend: &str, endpoint: SocketAddr) -> EndpointMetrics {
        let ep = endpoint.to_string();
        let labels = [service, backend, ep.as_str()];
        let healthy = self.endpoint_healthy.with_label_values(&labels);
        healthy.set(1);
        EndpointMetrics {
            requests: CLASSES.map(|c| {
                self.requests
                    .with_label_values(&[service, backend, ep.as_str(), c])
            }),
            connections: self.connections.with_label_values(&labels),
            connect_failures: self.connect_failures.with_label_values(&labels),
            resets: self.resets.with_label_values(&labels),
            ejections: self.ejections.with_label_values(&labels),
            healthy,
        }
    }

    /// Drops the series of an endpoint that left a group.
    pub fn forget_endpoint(&self, service: &str, backend: &str, endpoint: SocketAddr) {
        let ep = endpoint.to_string();
        // A series that was never created (no request of that class, say) is not there to
        // remove: the only error remove_label_values gives.
        let mut absent = 0;
        for c in CLASSES {
            absent += usize::from(
                self.requests
                    .remove_label_values(&[service, backend, ep.as_str(), c])
                    .is_err(),
            );
        }
        let labels = [service, backend, ep.as_str()];
        absent += usize::from(self.connections.remove_label_values(&labels).is_err());
        absent += usize::from(self.ejections.remove_label_values(&labels).is_err());
        absent += usize::from(self.endpoint_healthy.remove_label_values(&labels).is_err());
        tracing::trace!(%endpoint, absent, "endpoint series removed");
    }

    /// Handles for a frontend service / backend group pair.
    pub fn group(&self, service: &str, backend: &str) -> GroupMetrics {
        GroupMetrics {
            upstream_duration: self
                .upstream_duration
                .with_label_values(&[service, backend]),
        }
    }

    /// Handles for a frontend service.
    pub fn frontend(&self, service: &str) -> FrontendMetrics {
        FrontendMetrics {
            bytes_in: self.bytes.with_label_values(&[service, "in"]),
            bytes_out: self.bytes.with_label_values(&[service, "out"]),
            active: self.active_connections.with_label_values(&[service]),
            retries: self.retries.with_label_values(&[service]),
            no_endpoint: self.no_endpoint.with_label_values(&[service]),
        }
    }
}

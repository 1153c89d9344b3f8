//! `pier_dns_` metrics, after CoreDNS's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

use crate::forward::UpstreamObserver;

/// DNS metrics.
pub struct DnsMetrics {
    /// `pier_dns_requests_total{proto,type,zone}`.
    pub requests: IntCounterVec,
    /// `pier_dns_responses_total{rcode}`.
    pub responses: IntCounterVec,
    /// `pier_dns_request_duration_seconds{proto}`.
    pub duration: HistogramVec,
    /// `pier_dns_cache_hits_total`.
    pub cache_hits: IntCounter,
    /// `pier_dns_cache_misses_total`.
    pub cache_misses: IntCounter,
    /// `pier_dns_cache_stale_total`: answers served stale.
    pub cache_stale: IntCounter,
    /// `pier_dns_cache_entries`.
    pub cache_entries: IntGauge,
    /// `pier_dns_cache_evictions_total` (set from the cache's count).
    pub cache_evictions: IntGauge,
    /// `pier_dns_rate_limited_total`: UDP queries refused by the per-client limit.
    pub rate_limited: IntCounter,
    upstream_duration: Histogram,
    upstream_failures: IntCounterVec,
}

impl DnsMetrics {
    /// Creates and registers the metrics.
    pub fn register(registry: &Registry) -> prometheus::Result<Arc<DnsMetrics>> {
        let buckets = prometheus::exponential_buckets(0.00001, 2.5, 14)?;
        let m = DnsMetrics {
            requests: IntCounterVec::new(
                Opts::new(
                    "pier_dns_requests_total",
                    "DNS requests by transport, query type and zone.",
                ),
                &["proto", "type", "zone"],
            )?,
            responses: IntCounterVec::new(
                Opts::new("pier_dns_responses_total", "DNS responses by rcode."),
                &["rcode"],
            )?,
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "pier_dns_request_duration_seconds",
                    "Time to answer a DNS request.",
                )
                .buckets(buckets.clone()),
                &["proto"],
            )?,
            cache_hits: IntCounter::new(
                "pier_dns_cache_hits_total",
                "Forwarded queries answered from the cache.",
            )?,
            cache_misses: IntCounter::new(
                "pier_dns_cache_misses_total",
                "Forwarded queries not in the cache.",
            )?,
            cache_stale: IntCounter::new(
                "pier_dns_cache_stale_total",
                "Answers served from expired cache entries because upstreams failed.",
            )?,
            cache_entries: IntGauge::new(
                "pier_dns_cache_entries",
                "Entries in the forwarding cache.",
            )?,
            cache_evictions: IntGauge::new(
                "pier_dns_cache_evictions_total",
                "Cache entries evicted to stay within capacity.",
            )?,
            rate_limited: IntCounter::new(
                "pier_dns_rate_limited_total",
                "UDP queries over the per-client rate limit (slipped as truncated or dropped).",
            )?,
            upstream_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "pier_dns_upstream_duration_seconds",
                    "Upstream exchange time.",
                )
                .buckets(buckets),
            )?,
            upstream_failures: IntCounterVec::new(
                Opts::new(
                    "pier_dns_upstream_failures_total",
                    "Failed upstream exchanges.",
                ),
                &["upstream"],
            )?,
        };
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.responses.clone()))?;
        registry.register(Box::new(m.duration.clone()))?;
        registry.register(Box::new(m.cache_hits.clone()))?;
        registry.register(Box::new(m.cache_misses.clone()))?;
        registry.register(Box::new(m.cache_stale.clone()))?;
        registry.register(Box::new(m.cache_entries.clone()))?;
        registry.register(Box::new(m.cache_evictions.clone()))?;
        registry.register(Box::new(m.rate_limited.clone()))?;
        registry.register(Box::new(m.upstream_duration.clone()))?;
        registry.register(Box::new(m.upstream_failures.clone()))?;
        Ok(Arc::new(m))
    }
}

impl UpstreamObserver for DnsMetrics {
    fn exchange(&self, upstream: SocketAddr, elapsed: Duration, ok: bool) {
        self.upstream_duration.observe(elapsed.as_secs_f64());
        if !ok {
            self.upstream_failures
                .with_label_values(&[&upstream.to_string()])
                .inc();
        }
    }
}

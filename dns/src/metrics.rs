//! `pier_dns_` metrics, after CoreDNS's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

use crate::forward::UpstreamObserver;

const PROTOS: [&str; 2] = ["udp", "tcp"];
const ZONES: [&str; 2] = ["cluster", "forward"];
const TYPES: [RecordType; 11] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::SRV,
    RecordType::PTR,
    RecordType::CNAME,
    RecordType::TXT,
    RecordType::SOA,
    RecordType::NS,
    RecordType::MX,
    RecordType::ANY,
    RecordType::HTTPS,
];
const RCODES: [(ResponseCode, &str); 6] = [
    (ResponseCode::NoError, "NOERROR"),
    (ResponseCode::FormErr, "FORMERR"),
    (ResponseCode::ServFail, "SERVFAIL"),
    (ResponseCode::NXDomain, "NXDOMAIN"),
    (ResponseCode::NotImp, "NOTIMP"),
    (ResponseCode::Refused, "REFUSED"),
];

/// DNS metrics. Per-query label handles are resolved once, so answering a query does no
/// label hashing or locking.
pub struct DnsMetrics {
    /// `pier_dns_requests_total{proto,type,zone}`, by `(proto, zone, type)` index; the last type is "other".
    requests: Vec<IntCounter>,
    /// `pier_dns_responses_total{rcode}`, one per `RCODES` entry, then "other".
    responses: Vec<IntCounter>,
    /// `pier_dns_request_duration_seconds{proto}`, one per `PROTOS` entry.
    duration: Vec<Histogram>,
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
    /// `pier_dns_services_skipped`: services whose records DNS cannot carry, left out.
    pub services_skipped: IntGauge,
    upstream_duration: Histogram,
    upstream_failures: IntCounterVec,
}

impl DnsMetrics {
    /// Creates and registers the metrics.
    pub fn register(registry: &Registry) -> prometheus::Result<Arc<DnsMetrics>> {
        let buckets = prometheus::exponential_buckets(0.00001, 2.5, 14)?;
        let requests = IntCounterVec::new(
            Opts::new(
                "pier_dns_requests_total",
                "DNS requests by transport, query type and zone.",
            ),
            &["proto", "type", "zone"],
        )?;
        let responses = IntCounterVec::new(
            Opts::new("pier_dns_responses_total", "DNS responses by rcode."),
            &["rcode"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "pier_dns_request_duration_seconds",
                "Time to answer a DNS request.",
            )
            .buckets(buckets.clone()),
            &["proto"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(responses.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        let mut request_handles = Vec::new();
        for proto in PROTOS {
            for zone in ZONES {
                for t in TYPES
                    .iter()
                    .map(ToString::to_string)
                    .chain(["other".to_string()])
                {
                    request_handles
                        .push(requests.get_metric_with_label_values(&[proto, &t, zone])?);
                }
            }
        }
        let m = DnsMetrics {
            requests: request_handles,
            responses: RCODES
                .iter()
                .map(|(_, l)| *l)
                .chain(["other"])
                .map(|l| responses.get_metric_with_label_values(&[l]))
                .collect::<prometheus::Result<_>>()?,
            duration: PROTOS
                .iter()
                .map(|p| duration.get_metric_with_label_values(&[p]))
                .collect::<prometheus::Result<_>>()?,
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
            services_skipped: IntGauge::new(
                "pier_dns_services_skipped",
                "Services left out of the cluster zone because DNS cannot carry their records (see the log).",
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
        registry.register(Box::new(m.cache_hits.clone()))?;
        registry.register(Box::new(m.cache_misses.clone()))?;
        registry.register(Box::new(m.cache_stale.clone()))?;
        registry.register(Box::new(m.cache_entries.clone()))?;
        registry.register(Box::new(m.cache_evictions.clone()))?;
        registry.register(Box::new(m.rate_limited.clone()))?;
        registry.register(Box::new(m.services_skipped.clone()))?;
        registry.register(Box::new(m.upstream_duration.clone()))?;
        registry.register(Box::new(m.upstream_failures.clone()))?;
        Ok(Arc::new(m))
    }

    /// Counts a request.
    pub fn request(&self, tcp: bool, qtype: RecordType, forwarded: bool) {
        let t = TYPES
            .iter()
            .position(|x| *x == qtype)
            .unwrap_or(TYPES.len());
        let i = (usize::from(tcp) * ZONES.len() + usize::from(forwarded)) * (TYPES.len() + 1) + t;
        if let Some(c) = self.requests.get(i) {
            c.inc();
        }
    }

    /// Counts a response and how long it took.
    pub fn response(&self, tcp: bool, rcode: ResponseCode, seconds: f64) {
        let r = RCODES
            .iter()
            .position(|(c, _)| *c == rcode)
            .unwrap_or(RCODES.len());
        if let Some(c) = self.responses.get(r) {
            c.inc();
        }
        if let Some(h) = self.duration.get(usize::from(tcp)) {
            h.observe(seconds);
        }
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

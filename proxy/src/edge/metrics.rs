//! `pier_ingress_*` and `pier_tls_*` metrics of the edge listeners.

use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use crate::tls::accept::{Failure, Handshake};

/// Metrics of the edge listeners.
#[derive(Clone)]
pub(crate) struct EdgeMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    handshakes: IntCounterVec,
    handshake_failures: IntCounterVec,
}

impl EdgeMetrics {
    /// Registers the metrics in `registry`.
    pub(crate) fn register(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "pier_ingress_requests_total",
                "Requests through the edge, by Ingress, host rule, backend and status code",
            ),
            &["ingress", "host", "backend", "code"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "pier_ingress_request_duration_seconds",
                "Time from a request to its response head, by Ingress",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["ingress"],
        )?;
        let handshakes = IntCounterVec::new(
            Opts::new(
                "pier_tls_handshakes_total",
                "TLS handshakes completed by the edge, by protocol version and resumption",
            ),
            &["version", "resumed"],
        )?;
        let handshake_failures = IntCounterVec::new(
            Opts::new(
                "pier_tls_handshake_failures_total",
                "TLS handshakes the edge gave up on, by reason (timeout, closed, unknown_sni, protocol)",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(handshakes.clone()))?;
        registry.register(Box::new(handshake_failures.clone()))?;
        Ok(Self {
            requests,
            duration,
            handshakes,
            handshake_failures,
        })
    }

    /// Counts one answered request.
    pub(crate) fn request(
        &self,
        ingress: &str,
        host: &str,
        backend: &str,
        code: u16,
        took: Duration,
    ) {
        self.requests
            .with_label_values(&[ingress, host, backend, &code.to_string()])
            .inc();
        self.duration
            .with_label_values(&[ingress])
            .observe(took.as_secs_f64());
    }

    /// Counts a completed handshake.
    pub(crate) fn handshake(&self, h: &Handshake) {
        let resumed = if h.resumed { "true" } else { "false" };
        self.handshakes
            .with_label_values(&[h.version, resumed])
            .inc();
    }

    /// Counts a failed handshake.
    pub(crate) fn handshake_failed(&self, f: &Failure) {
        self.handshake_failures
            .with_label_values(&[f.reason()])
            .inc();
    }
}

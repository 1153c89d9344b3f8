//! `pier_ingress_*` and `pier_tls_*` metrics of the edge listeners.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};

use crate::tls::accept::{Failure, Handshake};

/// Metrics of the edge listeners.
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

    /// The handles of one backend of an Ingress under one host rule, resolved once.
    pub(crate) fn backend(&self, ingress: &str, host: &str, backend: &str) -> BackendCounters {
        BackendCounters {
            labels: [ingress.to_string(), host.to_string(), backend.to_string()],
            requests: self.requests.clone(),
            codes: Mutex::new(Vec::new()),
            duration: self.duration.with_label_values(&[ingress]),
        }
    }

    /// Removes an Ingress's latency series (it serves no more).
    pub(crate) fn forget_ingress(&self, ingress: &str) {
        // Absent when it never answered a request.
        self.duration
            .remove_label_values(&[ingress])
            .unwrap_or_default();
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

/// One backend's request counters (by status code, resolved on first use) and latency.
pub(crate) struct BackendCounters {
    labels: [String; 3],
    requests: IntCounterVec,
    codes: Mutex<Vec<(u16, IntCounter)>>,
    duration: Histogram,
}

impl BackendCounters {
    /// The Ingress, host rule and backend it counts for.
    pub(crate) fn labels(&self) -> &[String; 3] {
        &self.labels
    }

    /// Removes its series (the backend serves no more under this Ingress and host).
    pub(crate) fn forget(&self) {
        let codes = self.codes.lock().unwrap_or_else(PoisonError::into_inner);
        let [ingress, host, backend] = &self.labels;
        for (code, _) in codes.iter() {
            let code = code.to_string();
            // Absent only if a newer table removed it already.
            self.requests
                .remove_label_values(&[ingress, host, backend, &code])
                .unwrap_or_default();
        }
    }

    /// Counts one answered request.
    pub(crate) fn observe(&self, code: u16, took: Duration) {
        self.duration.observe(took.as_secs_f64());
        let mut codes = self.codes.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, c)) = codes.iter().find(|(k, _)| *k == code) {
            c.inc();
            return;
        }
        let [ingress, host, backend] = &self.labels;
        let c = self
            .requests
            .with_label_values(&[ingress, host, backend, &code.to_string()]);
        c.inc();
        codes.push((code, c));
    }
}

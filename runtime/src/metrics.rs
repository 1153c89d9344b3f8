//! `pier_runtime_` metrics: containers by state, starts, restarts, OOM kills, probe failures,
//! image pulls, container start latency, and the failures the engine handled and carried on
//! after (each also logged with what it was doing, see [`failed`]).

use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::{OnceLock, Weak};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

use crate::container::{Engine, State};

/// The engine's counters and histograms; set once by [`register`].
pub(crate) struct RuntimeMetrics {
    /// Containers started (first starts and restarts).
    pub(crate) starts: IntCounter,
    /// Containers restarted by their restart policy or a failed liveness probe.
    pub(crate) restarts: IntCounter,
    /// Containers the kernel's OOM killer ended.
    pub(crate) oom_kills: IntCounter,
    /// Failed probes by probe (`liveness`, `readiness`) and handler (`httpGet`, `tcpSocket`,
    /// `grpc`, `exec`).
    pub(crate) probe_failures: IntCounterVec,
    /// Bytes of image blobs fetched from registries.
    pub(crate) pull_bytes: IntCounter,
    /// Time to pull an image, manifest to last blob.
    pub(crate) pull_seconds: Histogram,
    /// Time from asking the shim to start a container to its process running.
    pub(crate) start_seconds: Histogram,
    /// Failures handled without stopping, by operation.
    failures: IntCounterVec,
}

static METRICS: OnceLock<RuntimeMetrics> = OnceLock::new();

/// The metrics, once registered (not in unit tests that never register them).
pub(crate) fn get() -> Option<&'static RuntimeMetrics> {
    METRICS.get()
}

impl RuntimeMetrics {
    fn new() -> prometheus::Result<Self> {
        let counter = |name: &str, help: &str| IntCounter::with_opts(Opts::new(name, help));
        let seconds = |name: &str, help: &str, buckets: Vec<f64>| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        };
        Ok(Self {
            starts: counter(
                "pier_runtime_container_starts_total",
                "Containers started, first starts and restarts",
            )?,
            restarts: counter(
                "pier_runtime_container_restarts_total",
                "Containers restarted by their restart policy or a failed liveness probe",
            )?,
            oom_kills: counter(
                "pier_runtime_container_oom_kills_total",
                "Containers the kernel's OOM killer ended",
            )?,
            probe_failures: IntCounterVec::new(
                Opts::new(
                    "pier_runtime_probe_failures_total",
                    "Failed container probes by probe and handler",
                ),
                &["probe", "handler"],
            )?,
            pull_bytes: counter(
                "pier_runtime_image_pull_bytes_total",
                "Bytes of image blobs fetched from registries",
            )?,
            pull_seconds: seconds(
                "pier_runtime_image_pull_seconds",
                "Time to pull an image, manifest to last blob",
                prometheus::exponential_buckets(0.05, 2.0, 14)?,
            )?,
            start_seconds: seconds(
                "pier_runtime_container_start_seconds",
                "Time from asking the shim to start a container until its process runs",
                prometheus::exponential_buckets(0.001, 2.0, 14)?,
            )?,
            failures: IntCounterVec::new(
                Opts::new(
                    "pier_runtime_failures_total",
                    "Failures the engine handled and carried on after, by operation",
                ),
                &["operation"],
            )?,
        })
    }

    fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.starts.clone()),
            Box::new(self.restarts.clone()),
            Box::new(self.oom_kills.clone()),
            Box::new(self.probe_failures.clone()),
            Box::new(self.pull_bytes.clone()),
            Box::new(self.pull_seconds.clone()),
            Box::new(self.start_seconds.clone()),
            Box::new(self.failures.clone()),
        ]
    }
}

/// Registers the runtime's metrics in `registry`, with the containers of `engine` by state
/// counted at each scrape. One engine per process registers them.
pub fn register(registry: &Registry, engine: Weak<Engine>) -> prometheus::Result<()> {
    if METRICS.get().is_some() {
        return Err(prometheus::Error::AlreadyReg);
    }
    let metrics = RuntimeMetrics::new()?;
    for c in metrics.collectors() {
        registry.register(c)?;
    }
    registry.register(Box::new(ContainerStates::new(engine)?))?;
    METRICS
        .set(metrics)
        .map_err(|_| prometheus::Error::AlreadyReg)
}

/// Logs a failure the engine carries on after, with the operation and its subject, and
/// counts it in `pier_runtime_failures_total{operation}`.
pub(crate) fn failed(operation: &'static str, subject: &str, error: &dyn Display) {
    tracing::warn!(operation, subject, %error, "runtime operation failed; carrying on");
    if let Some(m) = get() {
        m.failures.with_label_values(&[operation]).inc();
    }
}

/// Reports the error of a result the caller carries on after (see [`failed`]).
pub(crate) trait Report {
    /// Logs and counts the error, if any.
    fn report(self, operation: &'static str, subject: &str);
}

impl<T, E: Display> Report for Result<T, E> {
    fn report(self, operation: &'static str, subject: &str) {
        if let Err(e) = self {
            failed(operation, subject, &e);
        }
    }
}

/// Reports a failed cleanup step; what is already gone is not a failure.
pub(crate) fn cleanup(
    result: std::io::Result<()>,
    operation: &'static str,
    path: &std::path::Path,
) {
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            failed(operation, &path.display().to_string(), &e);
        }
        _ => {}
    }
}

/// `pier_runtime_containers{state}`, read from the engine at scrape time.
struct ContainerStates {
    engine: Weak<Engine>,
    desc: Desc,
}

impl ContainerStates {
    fn new(engine: Weak<Engine>) -> prometheus::Result<Self> {
        let desc = Desc::new(
            "pier_runtime_containers".into(),
            "Containers by state".into(),
            vec!["state".into()],
            Default::default(),
        )?;
        Ok(Self { engine, desc })
    }
}

impl Collector for ContainerStates {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut by_state: BTreeMap<&'static str, i64> =
            [("created", 0), ("running", 0), ("exited", 0)].into();
        if let Some(engine) = self.engine.upgrade() {
            for record in engine.list() {
                let state = match record.state {
                    State::Created => "created",
                    State::Running => "running",
                    State::Exited => "exited",
                };
                *by_state.entry(state).or_default() += 1;
            }
        }
        let gauge = IntGaugeVec::new(
            Opts::new("pier_runtime_containers", "Containers by state"),
            &["state"],
        );
        let Ok(gauge) = gauge else {
            return Vec::new();
        };
        for (state, n) in by_state {
            gauge.with_label_values(&[state]).set(n);
        }
        gauge.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(registry: &Registry, operation: &str) -> f64 {
        registry
            .gather()
            .iter()
            .filter(|f| f.name() == "pier_runtime_failures_total")
            .flat_map(|f| f.get_metric())
            .filter(|m| m.get_label().iter().any(|l| l.value() == operation))
            .map(|m| m.get_counter().value())
            .sum()
    }

    #[test]
    fn failures_are_counted_by_operation_and_what_is_gone_is_not_a_failure() {
        let registry = Registry::new();
        register(&registry, Weak::new()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        cleanup(std::fs::remove_file(&missing), "remove-test-file", &missing);
        assert_eq!(counted(&registry, "remove-test-file"), 0.0);
        // A directory is not a file: a real failure.
        cleanup(
            std::fs::remove_file(dir.path()),
            "remove-test-file",
            dir.path(),
        );
        std::fs::create_dir(dir.path().join("state.json")).unwrap();
        std::fs::write(dir.path().join("state.json").join("x"), b"").unwrap();
        crate::image::write_atomic(&dir.path().join("state.json"), b"{}")
            .report("save-state", "test");
        assert_eq!(counted(&registry, "remove-test-file"), 1.0);
        assert_eq!(counted(&registry, "save-state"), 1.0);
        let states: Vec<_> = registry
            .gather()
            .into_iter()
            .filter(|f| f.name() == "pier_runtime_containers")
            .flat_map(|f| f.get_metric().to_vec())
            .collect();
        assert_eq!(
            states.len(),
            3,
            "created, running and exited, at zero without an engine"
        );
    }
}

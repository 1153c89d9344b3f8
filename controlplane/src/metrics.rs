//! Control-plane Prometheus metrics (`pier_` prefix).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Gauge, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use pier_snapshot::ConsumerObserver;

use crate::snapshot::BuildObserver;
use crate::store::Store;

/// How many recent snapshot build durations are kept for exact percentiles.
const RECENT_BUILDS: usize = 8192;

/// Metrics of the store, snapshot builder and API.
pub struct Metrics {
    /// `pier_api_requests_total{verb,code}`.
    pub api_requests: IntCounterVec,
    /// `pier_api_portforward_connections_total{transport}`: pod port-forward connections.
    pub portforward_connections: IntCounterVec,
    /// `pier_api_pod_relays_total{subresource,code}`: pod subresource requests relayed to the
    /// pod's node, by what that node answered.
    pub pod_relays: IntCounterVec,
    /// `pier_config_apply_seconds`: apply requests, validate to commit.
    pub apply_seconds: Histogram,
    snapshot_build: Histogram,
    snapshot_revision: IntGauge,
    snapshot_services: IntGauge,
    dataplane_revision: IntGaugeVec,
    dataplane_rejected: IntCounterVec,
    dataplane_apply: HistogramVec,
    recent_builds: Mutex<VecDeque<f64>>,
    applied: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    /// Creates the metrics and registers them, plus store gauges read at scrape time.
    pub fn register(registry: &Registry, store: Arc<Store>) -> prometheus::Result<Arc<Metrics>> {
        let fine_buckets = vec![
            0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
            0.05, 0.1, 0.25, 0.5, 1.0,
        ];
        let m = Metrics {
            api_requests: IntCounterVec::new(
                Opts::new(
                    "pier_api_requests_total",
                    "Control API requests by verb and HTTP status code.",
                ),
                &["verb", "code"],
            )?,
            portforward_connections: IntCounterVec::new(
                Opts::new(
                    "pier_api_portforward_connections_total",
                    "Connections forwarded to pod ports, by transport (websocket, spdy).",
                ),
                &["transport"],
            )?,
            pod_relays: IntCounterVec::new(
                Opts::new(
                    "pier_api_pod_relays_total",
                    "Pod log, exec, attach and portforward requests relayed to the node that runs the pod, by subresource and the status code it answered (0: unreachable).",
                ),
                &["subresource", "code"],
            )?,
            apply_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "pier_config_apply_seconds",
                    "Time to validate and commit an apply request.",
                )
                .buckets(prometheus::exponential_buckets(0.0005, 2.0, 16)?),
            )?,
            snapshot_build: Histogram::with_opts(
                HistogramOpts::new(
                    "pier_snapshot_build_seconds",
                    "Time to apply store events and build a node snapshot.",
                )
                .buckets(fine_buckets),
            )?,
            snapshot_revision: IntGauge::new(
                "pier_snapshot_revision",
                "Store revision of the published snapshot.",
            )?,
            snapshot_services: IntGauge::new(
                "pier_snapshot_services",
                "Services in the published snapshot.",
            )?,
            dataplane_revision: IntGaugeVec::new(
                Opts::new("pier_dataplane_snapshot_revision", "Snapshot revision each dataplane part serves."),
                &["part"],
            )?,
            dataplane_rejected: IntCounterVec::new(
                Opts::new(
                    "pier_dataplane_snapshot_rejected_total",
                    "Snapshots a dataplane part refused to apply (it kept serving the previous one).",
                ),
                &["part"],
            )?,
            dataplane_apply: HistogramVec::new(
                HistogramOpts::new("pier_dataplane_apply_seconds", "Time a dataplane part took to apply a snapshot.")
                    .buckets(prometheus::exponential_buckets(0.00001, 4.0, 10)?),
                &["part"],
            )?,
            recent_builds: Mutex::new(VecDeque::with_capacity(RECENT_BUILDS)),
            applied: Mutex::new(BTreeMap::new()),
        };
        registry.register(Box::new(m.api_requests.clone()))?;
        registry.register(Box::new(m.portforward_connections.clone()))?;
        registry.register(Box::new(m.pod_relays.clone()))?;
        registry.register(Box::new(m.apply_seconds.clone()))?;
        registry.register(Box::new(m.snapshot_build.clone()))?;
        registry.register(Box::new(m.snapshot_revision.clone()))?;
        registry.register(Box::new(m.snapshot_services.clone()))?;
        registry.register(Box::new(m.dataplane_revision.clone()))?;
        registry.register(Box::new(m.dataplane_rejected.clone()))?;
        registry.register(Box::new(m.dataplane_apply.clone()))?;
        registry.register(Box::new(StoreCollector::new(store)?))?;
        Ok(Arc::new(m))
    }

    /// The snapshot revision each dataplane part serves now, by part name.
    pub fn applied_revisions(&self) -> BTreeMap<&'static str, u64> {
        self.applied.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// Durations (seconds) of the most recent snapshot builds, oldest first.
    pub fn recent_builds(&self) -> Vec<f64> {
        self.recent_builds
            .lock()
            .map(|r| r.iter().copied().collect())
            .unwrap_or_default()
    }
}

impl BuildObserver for Metrics {
    fn built(&self, revision: u64, duration: Duration, services: usize) {
        let secs = duration.as_secs_f64();
        self.snapshot_build.observe(secs);
        self.snapshot_revision
            .set(i64::try_from(revision).unwrap_or(i64::MAX));
        self.snapshot_services
            .set(i64::try_from(services).unwrap_or(i64::MAX));
        if let Ok(mut recent) = self.recent_builds.lock() {
            if recent.len() == RECENT_BUILDS {
                recent.pop_front();
            }
            recent.push_back(secs);
        }
    }
}

impl ConsumerObserver for Metrics {
    fn applied(&self, part: &'static str, revision: u64, seconds: f64) {
        self.dataplane_revision
            .with_label_values(&[part])
            .set(i64::try_from(revision).unwrap_or(i64::MAX));
        self.dataplane_apply
            .with_label_values(&[part])
            .observe(seconds);
        if let Ok(mut applied) = self.applied.lock() {
            applied.insert(part, revision);
        }
    }

    fn rejected(&self, part: &'static str, _revision: u64, _kept: u64) {
        self.dataplane_rejected.with_label_values(&[part]).inc();
    }
}

/// Reads store revision and object counts when scraped.
struct StoreCollector {
    store: Arc<Store>,
    revision: Gauge,
    objects: IntGaugeVec,
    descs: Vec<Desc>,
}

impl StoreCollector {
    fn new(store: Arc<Store>) -> prometheus::Result<Self> {
        let revision = Gauge::new(
            "pier_store_revision",
            "Revision of the last committed store write.",
        )?;
        let objects = IntGaugeVec::new(
            Opts::new("pier_store_objects", "Stored objects by kind."),
            &["kind"],
        )?;
        let descs = revision
            .desc()
            .into_iter()
            .chain(objects.desc())
            .cloned()
            .collect();
        Ok(Self {
            store,
            revision,
            objects,
            descs,
        })
    }
}

impl Collector for StoreCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.revision.set(self.store.revision() as f64);
        for (kind, n) in self.store.counts() {
            self.objects
                .with_label_values(&[kind.as_str()])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let mut out = self.revision.collect();
        out.extend(self.objects.collect());
        out
    }
}

/// Removes the series of `vec` with `labels`; one that was never set is nothing to remove.
pub(crate) fn remove_series<T: prometheus::core::MetricVecBuilder>(
    vec: &prometheus::core::MetricVec<T>,
    labels: &[&str],
) {
    if let Err(e) = vec.remove_label_values(labels) {
        tracing::trace!(?labels, error = %e, "no series to remove");
    }
}

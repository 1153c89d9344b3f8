//! Argo Rollouts' analysis objects (`argoproj.io/v1alpha1`): `AnalysisTemplate` and
//! `ClusterAnalysisTemplate` (metrics to measure, with arguments) and `AnalysisRun` (one run
//! of them, with its measurements), under Argo's field names so its manifests apply unchanged.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::meta::{IntOrString, ObjectMeta};
use super::rollout::AnalysisArgument;

/// The metric plugin pier plays itself: measures read from its own proxy and pods.
pub const PIER_METRICS_PLUGIN: &str = "pier.dev/metrics";

/// Phases of a run, a metric and a measurement, as Argo names them.
pub mod phase {
    /// Not started.
    pub const PENDING: &str = "Pending";
    /// Measuring.
    pub const RUNNING: &str = "Running";
    /// Passed.
    pub const SUCCESSFUL: &str = "Successful";
    /// Failed its condition more often than allowed.
    pub const FAILED: &str = "Failed";
    /// Could not measure, more often than allowed.
    pub const ERROR: &str = "Error";
    /// Neither passed nor failed, more often than allowed.
    pub const INCONCLUSIVE: &str = "Inconclusive";

    /// Whether a phase is final.
    pub fn is_done(phase: &str) -> bool {
        matches!(phase, SUCCESSFUL | FAILED | ERROR | INCONCLUSIVE)
    }
}

/// Metrics to measure and their arguments (`AnalysisTemplate`, `ClusterAnalysisTemplate`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplate {
    /// `argoproj.io/v1alpha1`.
    pub api_version: String,
    /// `AnalysisTemplate` or `ClusterAnalysisTemplate`.
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The metrics and arguments.
    #[serde(default)]
    pub spec: AnalysisSpec,
}

/// `AnalysisTemplate.spec`, also the metrics and arguments of an `AnalysisRun`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisSpec {
    /// Arguments the metrics use as `{{args.NAME}}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<AnalysisArgument>,
    /// What to measure.
    #[serde(default)]
    pub metrics: Vec<Metric>,
    /// (AnalysisRun only) Stop measuring: the run ends with what it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminate: Option<bool>,
}

/// One run of an analysis (`AnalysisRun`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRun {
    /// `argoproj.io/v1alpha1`.
    pub api_version: String,
    /// `AnalysisRun`.
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The metrics, with arguments resolved.
    #[serde(default)]
    pub spec: AnalysisSpec,
    /// Measurements and verdicts so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<AnalysisRunStatus>,
}

/// A metric: how to measure it, how often, and what a good or bad value is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    /// Metric name, unique in the run.
    pub name: String,
    /// Time between measurements (`30s`, `5m`); without it, one measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Wait before the first measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay: Option<String>,
    /// Measurements to take; without it (and with an interval) until the run is terminated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<IntOrString>,
    /// Expression over `result` that makes a measurement Successful.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_condition: Option<String>,
    /// Expression over `result` that makes a measurement Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_condition: Option<String>,
    /// Failed measurements allowed before the metric fails (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_limit: Option<IntOrString>,
    /// Inconclusive measurements allowed before the metric is inconclusive (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inconclusive_limit: Option<IntOrString>,
    /// Errors in a row allowed before the metric errs (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_error_limit: Option<IntOrString>,
    /// Where the value comes from.
    #[serde(default)]
    pub provider: MetricProvider,
}

/// `metric.provider`: exactly one source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricProvider {
    /// A PromQL query against a Prometheus server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusMetric>,
    /// An HTTP request whose (JSON) response is the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web: Option<WebMetric>,
    /// Metric plugins by name; pier plays `pier.dev/metrics`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub plugin: BTreeMap<String, serde_json::Value>,
}

/// `provider.prometheus`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusMetric {
    /// Server URL (`http://prometheus:9090`).
    pub address: String,
    /// PromQL; the result is a number (scalar) or an array of numbers (vector).
    pub query: String,
    /// Query timeout in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    /// Headers sent with the query.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<WebHeader>,
}

/// `provider.web`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebMetric {
    /// The URL (`http://` or `https://`).
    pub url: String,
    /// `GET` (default), `POST` or `PUT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Request headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<WebHeader>,
    /// Request body as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Request body as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_body: Option<serde_json::Value>,
    /// Request timeout in seconds (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i64>,
    /// The part of the JSON response that is the result (`{$.data.ok}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_path: Option<String>,
    /// Skip verifying the server's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
}

/// A header of a web or Prometheus request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebHeader {
    /// Header name.
    pub key: String,
    /// Header value.
    pub value: String,
}

/// What pier's own metric plugin measures (`plugin: {pier.dev/metrics: {...}}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PierMetric {
    /// The Service whose traffic or pods are measured (as a backend of routes and Services).
    pub service: String,
    /// Its namespace (default: the run's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Which measure.
    pub measure: PierMeasure,
    /// For `latency`: the quantile (0 < q ≤ 1; default 0.99).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantile: Option<f64>,
    /// How much traffic a measurement looks at (default: the metric's interval, else 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
}

/// The measures of pier's metric plugin; traffic is what every node's proxy relayed to the
/// Service's endpoints as a backend, and the connections every node's socket-LB made to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PierMeasure {
    /// Share of HTTP requests answered without a 5xx or a failure (NaN with no requests).
    SuccessRate,
    /// Share of HTTP requests answered with a 5xx or not at all.
    ErrorRate,
    /// HTTP requests in the window.
    Requests,
    /// Upstream latency at the quantile, in seconds (NaN with no requests).
    Latency,
    /// TCP connections made to the Service's endpoints in the window.
    Connections,
    /// TCP connections that failed to connect (refused, reset or timed out).
    ConnectFailures,
    /// Share of TCP connection attempts that failed (NaN with none).
    ConnectFailureRate,
    /// TCP connections the Service's endpoints reset once connected.
    Resets,
    /// Share of TCP connections the endpoints reset (NaN with none).
    ResetRate,
    /// Pods selected by the Service that are not ready, at the window's end.
    NotReady,
    /// Container restarts of the pods the Service selects, within the window (a pod that
    /// appeared in it counts all its restarts).
    Restarts,
}

impl PierMetric {
    /// Reads the plugin's configuration.
    pub fn from_value(value: &serde_json::Value) -> Result<PierMetric, String> {
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                e.into_inner().to_string()
            } else {
                format!("{path}: {}", e.into_inner())
            }
        })
    }
}

/// `AnalysisRun.status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunStatus {
    /// `Pending`, `Running`, `Successful`, `Failed`, `Error` or `Inconclusive`.
    #[serde(default)]
    pub phase: String,
    /// Why the run ended as it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Per metric, its measurements and counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metric_results: Vec<MetricResult>,
    /// When the run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// The metrics' phases counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_summary: Option<RunSummary>,
}

/// One metric's results.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricResult {
    /// The metric's name.
    pub name: String,
    /// Its phase.
    pub phase: String,
    /// The latest measurements, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurements: Vec<Measurement>,
    /// Why it ended as it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Measurements taken.
    #[serde(default)]
    pub count: i64,
    /// Successful measurements.
    #[serde(default)]
    pub successful: i64,
    /// Failed measurements.
    #[serde(default)]
    pub failed: i64,
    /// Inconclusive measurements.
    #[serde(default)]
    pub inconclusive: i64,
    /// Measurements that could not be taken.
    #[serde(default)]
    pub error: i64,
    /// Errors in a row, up to the latest measurement.
    #[serde(default)]
    pub consecutive_error: i64,
}

/// One measurement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Measurement {
    /// `Successful`, `Failed`, `Inconclusive` or `Error`.
    pub phase: String,
    /// The measured value, as text (a number, or JSON for arrays and objects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Why it could not be taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

/// `status.runSummary`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// Metrics.
    pub count: i64,
    /// Metrics that passed.
    pub successful: i64,
    /// Metrics that failed.
    pub failed: i64,
    /// Metrics that were inconclusive.
    pub inconclusive: i64,
    /// Metrics that erred.
    pub error: i64,
}

/// Parses a duration as Argo writes them (Go's `time.ParseDuration`: `30s`, `5m`, `1m30s`,
/// `500ms`, `1.5h`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration such as 30s, 5m, 1m30s or 500ms");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (number, tail) = rest.split_at(digits);
        let n: f64 = number.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += n * scale;
        rest = tail;
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// A count or limit written as a number or a string of digits (`{{args.x}}` once resolved).
pub fn parse_count(value: &IntOrString) -> Result<i64, String> {
    match value {
        IntOrString::Int(n) if *n >= 0 => Ok(*n),
        IntOrString::Int(n) => Err(format!("{n} is negative")),
        IntOrString::String(s) => s
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| format!("{s:?} is not a whole number of at least 0")),
    }
}

impl Metric {
    /// Time between measurements; `None` for a single measurement.
    pub fn interval(&self) -> Result<Option<Duration>, String> {
        self.interval.as_deref().map(parse_duration).transpose()
    }

    /// Wait before the first measurement.
    pub fn initial_delay(&self) -> Result<Duration, String> {
        Ok(self
            .initial_delay
            .as_deref()
            .map(parse_duration)
            .transpose()?
            .unwrap_or_default())
    }

    /// Measurements to take: `count`; one without an interval; unbounded (`None`) with an
    /// interval and no count.
    pub fn count(&self) -> Result<Option<i64>, String> {
        match &self.count {
            Some(c) => parse_count(c).map(Some),
            None if self.interval.is_none() => Ok(Some(1)),
            None => Ok(None),
        }
    }

    /// Failed measurements allowed (Argo's default 0).
    pub fn failure_limit(&self) -> Result<i64, String> {
        self.failure_limit.as_ref().map_or(Ok(0), parse_count)
    }

    /// Inconclusive measurements allowed (Argo's default 0).
    pub fn inconclusive_limit(&self) -> Result<i64, String> {
        self.inconclusive_limit.as_ref().map_or(Ok(0), parse_count)
    }

    /// Errors in a row allowed (Argo's default 4).
    pub fn consecutive_error_limit(&self) -> Result<i64, String> {
        self.consecutive_error_limit
            .as_ref()
            .map_or(Ok(4), parse_count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_go_writes_them() {
        for (text, secs) in [
            ("30s", 30.0),
            ("5m", 300.0),
            ("1m30s", 90.0),
            ("500ms", 0.5),
            ("1.5h", 5400.0),
        ] {
            assert_eq!(parse_duration(text), Ok(Duration::from_secs_f64(secs)));
        }
        for bad in ["", "30", "5x", "m", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn counts_default_as_argo_does() {
        let mut m = Metric::default();
        assert_eq!(m.count(), Ok(Some(1)));
        m.interval = Some("10s".into());
        assert_eq!(m.count(), Ok(None));
        m.count = Some(IntOrString::String("3".into()));
        assert_eq!(m.count(), Ok(Some(3)));
        assert_eq!(m.consecutive_error_limit(), Ok(4));
        assert_eq!(m.failure_limit(), Ok(0));
    }
}

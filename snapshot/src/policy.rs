//! Per-Service proxy settings as the dataplane applies them (parsed from `pier.dev/*`
//! annotations by the control plane).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Serialize;

/// How a backend group picks an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadBalancer {
    /// In turn.
    RoundRobin,
    /// The less loaded of two random endpoints.
    LeastRequest,
    /// Uniformly at random.
    Random,
    /// Consistent hashing of the client address (Maglev).
    Maglev,
}

/// What an active health check does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum HealthProbe {
    /// A TCP connect succeeds.
    Tcp,
    /// `GET <path>` answers 2xx or 3xx.
    Http {
        /// Request path.
        path: String,
    },
}

/// Active health checking of a Service's endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// The probe.
    pub probe: HealthProbe,
    /// Time between probes of one endpoint.
    pub interval: Duration,
    /// Probe timeout.
    pub timeout: Duration,
    /// Consecutive successes that mark an endpoint healthy again.
    pub healthy_threshold: u32,
    /// Consecutive failures that mark an endpoint unhealthy.
    pub unhealthy_threshold: u32,
}

/// Passive outlier ejection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutlierDetection {
    /// Consecutive 5xx responses or connect failures that eject an endpoint (0 turns ejection off).
    pub consecutive_failures: u32,
    /// First ejection time; the n-th ejection lasts n times this (capped at 10 minutes).
    pub base_ejection_time: Duration,
    /// At most this percentage of a group's endpoints is ejected at once (one always may be).
    pub max_ejection_percent: u32,
}

/// What keeps a user on one backend group of a canary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Sticky {
    /// The hash of this cookie's value.
    Cookie(String),
    /// The hash of this header's value.
    Header(String),
}

/// Proxy settings of one Service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicy {
    /// Endpoint picking; default least-request for L7, round-robin for L4, Maglev with ClientIP affinity.
    pub load_balancer: Option<LoadBalancer>,
    /// Active health checks, if configured.
    pub health_check: Option<HealthCheck>,
    /// Passive ejection.
    pub outlier: OutlierDetection,
    /// Sticky canary key (L7).
    pub sticky: Option<Sticky>,
    /// Upstream connect timeout.
    pub connect_timeout: Duration,
    /// Idle timeout of TCP connections and UDP flows.
    pub idle_timeout: Duration,
    /// Extra attempts after a failed one (connect failure, or 5xx for idempotent requests).
    pub retries: u32,
}

impl TrafficPolicy {
    /// The default policy, one allocation shared by every Service that sets none.
    pub fn shared_default() -> Arc<TrafficPolicy> {
        static DEFAULT: OnceLock<Arc<TrafficPolicy>> = OnceLock::new();
        Arc::clone(DEFAULT.get_or_init(Default::default))
    }

    /// `self` in an `Arc`, the shared one when it is the default.
    pub fn shared(self) -> Arc<TrafficPolicy> {
        let default = Self::shared_default();
        if *default == self {
            default
        } else {
            Arc::new(self)
        }
    }
}

impl Default for TrafficPolicy {
    fn default() -> Self {
        Self {
            load_balancer: None,
            health_check: None,
            outlier: OutlierDetection {
                consecutive_failures: 5,
                base_ejection_time: Duration::from_secs(30),
                max_ejection_percent: 50,
            },
            sticky: None,
            connect_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(3600),
            retries: 2,
        }
    }
}

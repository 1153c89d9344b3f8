//! Per-Service proxy settings read from `pier.dev/*` annotations: balancing, health checks,
//! outlier ejection, sticky canaries, timeouts and retries.
//!
//! Annotations keep Service manifests Kubernetes-compatible (kubectl applies them unchanged);
//! every value is checked at apply time so a typo is an error naming the annotation.

use std::collections::BTreeMap;
use std::time::Duration;

pub use pier_snapshot::policy::{
    HealthCheck, HealthProbe, LoadBalancer, OutlierDetection, Sticky, TrafficPolicy,
};

use super::syntax::gateway_duration;

/// Annotation prefix of every proxy setting.
pub const PREFIX: &str = "pier.dev/";

/// Every annotation this module reads, for documentation and unknown-key checks.
pub const ANNOTATIONS: &[&str] = &[
    "load-balancer",
    "health-check",
    "health-check-interval",
    "health-check-timeout",
    "health-check-healthy-threshold",
    "health-check-unhealthy-threshold",
    "outlier-consecutive-failures",
    "outlier-base-ejection-time",
    "outlier-max-ejection-percent",
    "sticky",
    "connect-timeout",
    "idle-timeout",
    "retries",
];

fn duration(v: &str) -> Result<Duration, String> {
    let d = gateway_duration(v)?;
    if d.is_zero() {
        return Err(format!("{v:?} must be longer than zero"));
    }
    Ok(d)
}

fn number(v: &str, max: u32) -> Result<u32, String> {
    match v.parse::<u32>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(format!("{v:?} must be a whole number from 0 to {max}")),
    }
}

fn positive(v: &str, max: u32) -> Result<u32, String> {
    match number(v, max)? {
        0 => Err(format!("{v:?} must be at least 1")),
        n => Ok(n),
    }
}

/// Reads the policy from a Service's annotations; each error names its annotation key.
pub fn parse(
    annotations: &BTreeMap<String, String>,
) -> Result<TrafficPolicy, Vec<(String, String)>> {
    let mut policy = TrafficPolicy::default();
    let mut errors = Vec::new();
    let mut check = default_health_check();
    let mut wants_check = false;
    for (key, value) in annotations {
        let Some(name) = key.strip_prefix(PREFIX) else {
            continue;
        };
        let value = value.trim();
        let result: Result<(), String> = match name {
            "load-balancer" => load_balancer(value).map(|lb| policy.load_balancer = Some(lb)),
            "health-check" => {
                wants_check = true;
                health_probe(value).map(|p| check.probe = p)
            }
            "health-check-interval" => duration(value).map(|d| check.interval = d),
            "health-check-timeout" => duration(value).map(|d| check.timeout = d),
            "health-check-healthy-threshold" => {
                positive(value, 100).map(|n| check.healthy_threshold = n)
            }
            "health-check-unhealthy-threshold" => {
                positive(value, 100).map(|n| check.unhealthy_threshold = n)
            }
            "outlier-consecutive-failures" => {
                number(value, 1000).map(|n| policy.outlier.consecutive_failures = n)
            }
            "outlier-base-ejection-time" => {
                duration(value).map(|d| policy.outlier.base_ejection_time = d)
            }
            "outlier-max-ejection-percent" => {
                number(value, 100).map(|n| policy.outlier.max_ejection_percent = n)
            }
            "sticky" => {
                let parsed = if let Some(name) = value.strip_prefix("cookie:") {
                    Some(Sticky::Cookie(name.to_string()))
                } else {
                    value
                        .strip_prefix("header:")
                        .map(|name| Sticky::Header(name.to_ascii_lowercase()))
                };
                match parsed {
                    Some(Sticky::Cookie(n) | Sticky::Header(n)) if n.is_empty() => {
                        Err(format!("{value:?}: name the cookie or header"))
                    }
                    Some(s) => {
                        policy.sticky = Some(s);
                        Ok(())
                    }
                    None => Err(format!(
                        "unsupported value {value:?}: \"cookie:<name>\" or \"header:<name>\""
                    )),
                }
            }
            "connect-timeout" => duration(value).map(|d| policy.connect_timeout = d),
            "idle-timeout" => duration(value).map(|d| policy.idle_timeout = d),
            "retries" => number(value, 10).map(|n| policy.retries = n),
            _ => Err(format!(
                "unknown pier annotation; known: {}",
                ANNOTATIONS
                    .iter()
                    .map(|a| format!("{PREFIX}{a}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        };
        if let Err(e) = result {
            errors.push((key.clone(), e));
        }
    }
    if !wants_check
        && annotations
            .keys()
            .any(|k| k.starts_with("pier.dev/health-check-"))
    {
        errors.push((
            format!("{PREFIX}health-check"),
            "required when other health-check annotations are set".to_string(),
        ));
    }
    if wants_check {
        policy.health_check = Some(check);
    }
    if errors.is_empty() {
        Ok(policy)
    } else {
        Err(errors)
    }
}

fn default_health_check() -> HealthCheck {
    HealthCheck {
        probe: HealthProbe::Tcp,
        interval: Duration::from_secs(5),
        timeout: Duration::from_secs(1),
        healthy_threshold: 2,
        unhealthy_threshold: 3,
    }
}

fn load_balancer(v: &str) -> Result<LoadBalancer, String> {
    match v {
        "round-robin" => Ok(LoadBalancer::RoundRobin),
        "least-request" => Ok(LoadBalancer::LeastRequest),
        "random" => Ok(LoadBalancer::Random),
        "maglev" => Ok(LoadBalancer::Maglev),
        other => Err(format!(
            "unsupported value {other:?}: one of \"round-robin\", \"least-request\", \"random\", \"maglev\""
        )),
    }
}

fn health_probe(v: &str) -> Result<HealthProbe, String> {
    if v == "tcp" {
        return Ok(HealthProbe::Tcp);
    }
    match v.strip_prefix("http:") {
        Some(path) if path.starts_with('/') && !path.contains(char::is_whitespace) => {
            Ok(HealthProbe::Http {
                path: path.to_string(),
            })
        }
        Some(_) => Err(format!(
            "{v:?}: the path after \"http:\" must start with / and have no spaces"
        )),
        None => Err(format!(
            "unsupported value {v:?}: \"tcp\" or \"http:/path\""
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_pairs(pairs: &[(&str, &str)]) -> Result<TrafficPolicy, Vec<(String, String)>> {
        let map = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse(&map)
    }

    #[test]
    fn defaults_without_annotations() {
        assert_eq!(
            parse_pairs(&[("other/x", "y")]),
            Ok(TrafficPolicy::default())
        );
    }

    #[test]
    fn reads_every_setting() {
        let p = parse_pairs(&[
            ("pier.dev/load-balancer", "maglev"),
            ("pier.dev/health-check", "http:/healthz"),
            ("pier.dev/health-check-interval", "500ms"),
            ("pier.dev/health-check-unhealthy-threshold", "1"),
            ("pier.dev/outlier-consecutive-failures", "3"),
            ("pier.dev/sticky", "header:X-User"),
            ("pier.dev/idle-timeout", "1m"),
            ("pier.dev/retries", "0"),
        ])
        .unwrap();
        assert_eq!(p.load_balancer, Some(LoadBalancer::Maglev));
        let hc = p.health_check.unwrap();
        assert_eq!(
            hc.probe,
            HealthProbe::Http {
                path: "/healthz".into()
            }
        );
        assert_eq!(hc.interval, Duration::from_millis(500));
        assert_eq!(hc.unhealthy_threshold, 1);
        assert_eq!(p.outlier.consecutive_failures, 3);
        assert_eq!(p.sticky, Some(Sticky::Header("x-user".into())));
        assert_eq!(p.idle_timeout, Duration::from_secs(60));
        assert_eq!(p.retries, 0);
    }

    #[test]
    fn errors_name_the_annotation() {
        let errs = parse_pairs(&[
            ("pier.dev/load-balancer", "fastest"),
            ("pier.dev/health-check-interval", "5s"),
            ("pier.dev/retires", "2"),
        ])
        .unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|(k, _)| k.as_str()).collect();
        assert!(keys.contains(&"pier.dev/load-balancer"), "{errs:?}");
        assert!(keys.contains(&"pier.dev/retires"), "{errs:?}");
        assert!(keys.contains(&"pier.dev/health-check"), "{errs:?}");
    }
}

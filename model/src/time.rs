//! Timestamps as Kubernetes writes them (RFC 3339, whole seconds, UTC).

use std::time::SystemTime;

/// `t` as `2026-12-03T14:00:00Z`.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Reads an RFC 3339 timestamp (fractions and offsets accepted).
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text).ok()
}

//! ingress-nginx's `nginx.ingress.kubernetes.io/*` annotations on an Ingress: the ones pier
//! acts on, read as ingress-nginx documents them, and the rest named so they can be warned about.

use std::collections::BTreeMap;
use std::time::Duration;

pub use pier_snapshot::edge::{BackendProtocol, Canary, IngressSettings};

/// Prefix of every ingress-nginx annotation.
pub const PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// The annotations pier acts on (after the prefix).
pub const ANNOTATIONS: &[&str] = &[
    "canary",
    "canary-weight",
    "canary-weight-total",
    "canary-by-header",
    "canary-by-header-value",
    "canary-by-header-pattern",
    "canary-by-cookie",
    "ssl-redirect",
    "force-ssl-redirect",
    "rewrite-target",
    "use-regex",
    "backend-protocol",
    "proxy-body-size",
    "proxy-read-timeout",
];

/// What the annotations say, and the ingress-nginx annotations pier does not implement.
#[derive(Debug, Clone, Default)]
pub struct Read {
    /// The settings.
    pub settings: IngressSettings,
    /// Full keys of ingress-nginx annotations pier ignores.
    pub unknown: Vec<String>,
}

fn flag(v: &str) -> Result<bool, String> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("{v:?} must be \"true\" or \"false\"")),
    }
}

fn whole(v: &str) -> Result<u32, String> {
    v.parse::<u32>()
        .map_err(|_| format!("{v:?} must be a whole number"))
}

/// nginx's size syntax: bytes, or a number with `k`, `m` or `g` (either case).
fn size(v: &str) -> Result<u64, String> {
    let (digits, unit) = match v.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&v[..i], c.to_ascii_lowercase()),
        _ => (v, 'b'),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{v:?} must be a size such as 8m, 512k or 1048576"))?;
    let scale: u64 = match unit {
        'b' => 1,
        'k' => 1 << 10,
        'm' => 1 << 20,
        'g' => 1 << 30,
        _ => return Err(format!("{v:?}: unit must be k, m or g")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("{v:?} is too large"))
}

/// ingress-nginx reads timeouts as whole seconds.
fn seconds(v: &str) -> Result<Duration, String> {
    match v.parse::<u64>() {
        Ok(s) if s > 0 => Ok(Duration::from_secs(s)),
        _ => Err(format!("{v:?} must be a whole number of seconds above 0")),
    }
}

fn protocol(v: &str) -> Result<BackendProtocol, String> {
    match v.to_ascii_uppercase().as_str() {
        "HTTP" => Ok(BackendProtocol::Http),
        "GRPC" => Ok(BackendProtocol::Grpc),
        "HTTPS" | "GRPCS" => Err(format!(
            "{v:?}: pier does not speak unverified TLS to backends; use HTTP or GRPC and a \
             BackendTLSPolicy on the Service, which makes pier verify the endpoints' certificates"
        )),
        _ => Err(format!("{v:?} must be HTTP, HTTPS, GRPC or GRPCS")),
    }
}

/// Reads the annotations; each error names its annotation key.
pub fn read(annotations: &BTreeMap<String, String>) -> Result<Read, Vec<(String, String)>> {
    let mut out = Read::default();
    let mut errors = Vec::new();
    let mut canary = Canary {
        by_header: None,
        by_header_value: None,
        by_header_pattern: None,
        by_cookie: None,
        weight: 0,
        weight_total: 100,
    };
    let mut is_canary = false;
    for (key, value) in annotations {
        let Some(name) = key.strip_prefix(PREFIX) else {
            continue;
        };
        let s = &mut out.settings;
        let result: Result<(), String> = match name {
            "canary" => flag(value).map(|b| is_canary = b),
            "canary-weight" => whole(value).map(|n| canary.weight = n),
            "canary-weight-total" => whole(value).and_then(|n| match n {
                0 => Err(format!("{value:?} must be at least 1")),
                n => {
                    canary.weight_total = n;
                    Ok(())
                }
            }),
            "canary-by-header" => {
                canary.by_header = Some(value.clone());
                Ok(())
            }
            "canary-by-header-value" => {
                canary.by_header_value = Some(value.clone());
                Ok(())
            }
            "canary-by-header-pattern" => regex::Regex::new(value)
                .map(|_| canary.by_header_pattern = Some(value.clone()))
                .map_err(|e| format!("bad regular expression: {e}")),
            "canary-by-cookie" => {
                canary.by_cookie = Some(value.clone());
                Ok(())
            }
            "ssl-redirect" => flag(value).map(|b| s.ssl_redirect = b),
            "force-ssl-redirect" => flag(value).map(|b| s.force_ssl_redirect = b),
            "rewrite-target" => {
                s.rewrite_target = Some(value.clone());
                Ok(())
            }
            "use-regex" => flag(value).map(|b| s.use_regex = b),
            "backend-protocol" => protocol(value).map(|p| s.backend_protocol = p),
            "proxy-body-size" => size(value).map(|n| s.max_body = n),
            "proxy-read-timeout" => seconds(value).map(|d| s.read_timeout = d),
            _ => {
                out.unknown.push(key.clone());
                Ok(())
            }
        };
        if let Err(e) = result {
            errors.push((key.clone(), e));
        }
    }
    if canary.weight > canary.weight_total {
        errors.push((
            format!("{PREFIX}canary-weight"),
            format!(
                "{} is above canary-weight-total ({})",
                canary.weight, canary.weight_total
            ),
        ));
    }
    if is_canary {
        out.settings.canary = Some(canary);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string()))
            .collect()
    }

    #[test]
    fn canary_settings_read_as_documented() {
        let r = read(&annotations(&[
            ("canary", "true"),
            ("canary-weight", "20"),
            ("canary-by-header", "X-Canary"),
            ("canary-by-cookie", "canary"),
            ("proxy-body-size", "8m"),
            ("proxy-read-timeout", "5"),
            ("ssl-redirect", "false"),
            ("enable-cors", "true"),
        ]))
        .unwrap();
        let c = r.settings.canary.unwrap();
        assert_eq!((c.weight, c.weight_total), (20, 100));
        assert_eq!(c.by_header.as_deref(), Some("X-Canary"));
        assert_eq!(r.settings.max_body, 8 << 20);
        assert_eq!(r.settings.read_timeout, Duration::from_secs(5));
        assert!(!r.settings.ssl_redirect);
        assert_eq!(r.unknown, vec![format!("{PREFIX}enable-cors")]);
    }

    #[test]
    fn weights_without_canary_flag_make_no_canary() {
        let r = read(&annotations(&[("canary-weight", "20")])).unwrap();
        assert!(r.settings.canary.is_none());
    }

    #[test]
    fn bad_values_name_the_annotation() {
        let e = read(&annotations(&[
            ("canary", "yes"),
            ("canary-weight", "120"),
            ("proxy-body-size", "8x"),
            ("backend-protocol", "FTP"),
        ]))
        .unwrap_err();
        let keys: Vec<&str> = e.iter().map(|(k, _)| k.as_str()).collect();
        assert!(keys.contains(&"nginx.ingress.kubernetes.io/canary"));
        assert!(keys.contains(&"nginx.ingress.kubernetes.io/canary-weight"));
        assert!(keys.contains(&"nginx.ingress.kubernetes.io/proxy-body-size"));
        assert!(keys.contains(&"nginx.ingress.kubernetes.io/backend-protocol"));
    }

    #[test]
    fn sizes_follow_nginx() {
        assert_eq!(size("0"), Ok(0));
        assert_eq!(size("512k"), Ok(512 << 10));
        assert_eq!(size("1G"), Ok(1 << 30));
        assert!(size("m").is_err());
    }
}

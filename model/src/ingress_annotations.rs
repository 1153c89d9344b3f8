//! ingress-nginx's `nginx.ingress.kubernetes.io/*` annotations on an Ingress: the ones pier
//! acts on, read as ingress-nginx documents them, and the rest named so they can be warned about.

use std::collections::BTreeMap;
use std::time::Duration;

pub use pier_snapshot::edge::{BackendProtocol, Canary, IngressSettings};

use crate::syntax::{dns1123_label, dns1123_subdomain};

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
    "proxy-ssl-verify",
    "proxy-ssl-secret",
    "proxy-ssl-name",
    "proxy-ssl-server-name",
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

/// nginx's `on`/`off` switches.
fn switch(v: &str) -> Result<bool, String> {
    match v {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("{v:?} must be \"on\" or \"off\"")),
    }
}

/// `namespace/name`, as ingress-nginx reads a Secret reference.
fn secret_ref(v: &str) -> Result<String, String> {
    match v.split_once('/') {
        Some((ns, name)) if dns1123_label(ns).is_ok() && dns1123_subdomain(name).is_ok() => {
            Ok(v.to_string())
        }
        _ => Err(format!("{v:?} must be namespace/name of a Secret")),
    }
}

/// A host name (any case) or an IP address, as TLS names a server.
fn server_name(v: &str) -> Result<String, String> {
    let lower = v.to_ascii_lowercase();
    match v.parse::<std::net::IpAddr>() {
        Ok(_) => Ok(lower),
        Err(_) => dns1123_subdomain(&lower).map(|()| lower),
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
        "HTTPS" => Ok(BackendProtocol::Https),
        "GRPCS" => Ok(BackendProtocol::Grpcs),
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
            "proxy-ssl-verify" => switch(value).map(|b| s.proxy_ssl.verify = b),
            "proxy-ssl-server-name" => switch(value).map(|b| s.proxy_ssl.server_name = b),
            "proxy-ssl-secret" => secret_ref(value).map(|r| s.proxy_ssl.secret = Some(r)),
            "proxy-ssl-name" => server_name(value).map(|n| s.proxy_ssl.name = Some(n)),
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
            ("proxy-ssl-verify", "true"),
            ("proxy-ssl-secret", "ca-secret"),
            ("proxy-ssl-name", "not a name"),
        ]))
        .unwrap_err();
        assert_eq!(e.len(), 7, "{e:?}");
        let keys: Vec<&str> = e.iter().map(|(k, _)| k.as_str()).collect();
        assert!(keys.contains(&"nginx.ingress.kubernetes.io/canary"));
        assert!(keys.contains(&"nginx.ingress.kubernetes.io/canary-weight"));
        assert!(keys.contains(&"nginx.ingress.kubernetes.io/proxy-body-size"));
        assert!(keys.contains(&"nginx.ingress.kubernetes.io/backend-protocol"));
    }

    #[test]
    fn backend_tls_reads_as_ingress_nginx_documents_it() {
        let r = read(&annotations(&[("backend-protocol", "https")])).unwrap();
        let s = r.settings;
        assert_eq!(s.backend_protocol, BackendProtocol::Https);
        assert!(s.backend_protocol.tls() && !s.backend_protocol.h2());
        // ingress-nginx's defaults: no verification, no SNI, no Secret.
        assert_eq!(s.proxy_ssl, Default::default());
        let r = read(&annotations(&[
            ("backend-protocol", "GRPCS"),
            ("proxy-ssl-verify", "on"),
            ("proxy-ssl-secret", "shop/backend-ca"),
            ("proxy-ssl-name", "API.shop.svc"),
            ("proxy-ssl-server-name", "on"),
            ("proxy-ssl-verify-depth", "2"),
        ]))
        .unwrap();
        let s = r.settings;
        assert!(s.backend_protocol.tls() && s.backend_protocol.h2());
        assert!(s.proxy_ssl.verify && s.proxy_ssl.server_name);
        assert_eq!(s.proxy_ssl.secret.as_deref(), Some("shop/backend-ca"));
        assert_eq!(s.proxy_ssl.name.as_deref(), Some("api.shop.svc"));
        assert_eq!(r.unknown, vec![format!("{PREFIX}proxy-ssl-verify-depth")]);
    }

    #[test]
    fn sizes_follow_nginx() {
        assert_eq!(size("0"), Ok(0));
        assert_eq!(size("512k"), Ok(512 << 10));
        assert_eq!(size("1G"), Ok(1 << 30));
        assert!(size("m").is_err());
    }
}

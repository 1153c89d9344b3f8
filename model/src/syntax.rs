//! The syntax of Kubernetes names, labels and Gateway API durations: one checker per rule,
//! each saying what is wrong.

use std::time::Duration;

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// RFC 1123 label: lowercase alphanumerics and `-`, at most 63, alphanumeric at both ends.
pub fn dns1123_label(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 63 {
        return Err(format!("{s:?} must be 1-63 characters (a DNS-1123 label)"));
    }
    let ok_chars = s.chars().all(|c| is_lower_alnum(c) || c == '-');
    let ok_ends = s.starts_with(is_lower_alnum) && s.ends_with(is_lower_alnum);
    if ok_chars && ok_ends {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit"
        ))
    }
}

/// RFC 1035 label: a DNS-1123 label that starts with a letter (Service names).
pub fn dns1035_label(s: &str) -> Result<(), String> {
    dns1123_label(s).map_err(|e| e.replace("DNS-1123", "DNS-1035"))?;
    if s.starts_with(|c: char| c.is_ascii_lowercase()) {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a DNS-1035 label: it must start with a lowercase letter"
        ))
    }
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub fn dns1123_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 253 {
        return Err(format!(
            "{s:?} must be 1-253 characters (a DNS-1123 subdomain)"
        ));
    }
    for label in s.split('.') {
        dns1123_label(label).map_err(|_| {
            format!("{s:?} is not a DNS-1123 subdomain: dot-separated lowercase labels of letters, digits and '-'")
        })?;
    }
    Ok(())
}

/// IANA service name (port names): at most 15 characters, lowercase alphanumerics and `-`, a letter somewhere, no `--`.
pub fn iana_svc_name(s: &str) -> Result<(), String> {
    let valid = !s.is_empty()
        && s.len() <= 15
        && s.chars().all(|c| is_lower_alnum(c) || c == '-')
        && s.chars().any(|c| c.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--");
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a valid port name: at most 15 lowercase letters, digits and '-', with at least one letter"
        ))
    }
}

/// Label or annotation key: `[prefix/]name`, name at most 63 of `[A-Za-z0-9._-]`.
pub fn qualified_name(s: &str) -> Result<(), String> {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(p) = prefix {
        dns1123_subdomain(p).map_err(|e| format!("key prefix: {e}"))?;
    }
    let alnum_ends = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    let chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if name.is_empty() || name.len() > 63 || !alnum_ends || !chars {
        return Err(format!(
            "{s:?} is not a qualified name: at most 63 of letters, digits, '-', '_', '.', alphanumeric at both ends, with an optional DNS subdomain prefix and '/'"
        ));
    }
    Ok(())
}

/// Label value: empty, or at most 63 of `[A-Za-z0-9._-]` alphanumeric at both ends.
pub fn label_value(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Ok(());
    }
    let ok = s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!("label value {s:?} must be at most 63 of letters, digits, '-', '_', '.', alphanumeric at both ends"))
    }
}

/// Parses a Gateway API duration (`1h`, `10s`, `500ms`, `1m30s`).
pub fn gateway_duration(s: &str) -> Result<Duration, String> {
    let err =
        || format!("{s:?} is not a Gateway API duration (e.g. \"10s\", \"500ms\", \"1m30s\")");
    let mut total = Duration::ZERO;
    let mut rest = s;
    let mut parts = 0;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 || digits > 5 {
            return Err(err());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else if rest.starts_with('h') {
            (Duration::from_secs(3600), 1)
        } else if rest.starts_with('m') {
            (Duration::from_secs(60), 1)
        } else if rest.starts_with('s') {
            (Duration::from_secs(1), 1)
        } else {
            return Err(err());
        };
        rest = &rest[len..];
        total += unit * u32::try_from(n).map_err(|_| err())?;
        parts += 1;
    }
    if parts == 0 || parts > 4 {
        return Err(err());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names() {
        assert!(dns1123_label("web-v1").is_ok());
        assert!(dns1123_label("Web").is_err());
        assert!(dns1123_label("-web").is_err());
        assert!(dns1123_label(&"a".repeat(64)).is_err());
        assert!(dns1035_label("1web").is_err());
        assert!(dns1123_subdomain("a.b-c.d").is_ok());
        assert!(dns1123_subdomain("a..b").is_err());
        assert!(iana_svc_name("http").is_ok());
        assert!(iana_svc_name("8080").is_err());
        assert!(iana_svc_name("a--b").is_err());
        assert!(qualified_name("app.kubernetes.io/name").is_ok());
        assert!(qualified_name("app/").is_err());
        assert!(label_value("v1.2_3").is_ok());
        assert!(label_value("-x").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(gateway_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(gateway_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(gateway_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(gateway_duration("10").is_err());
        assert!(gateway_duration("1.5s").is_err());
        assert!(gateway_duration("").is_err());
    }

    proptest! {
        #[test]
        fn duration_roundtrip(h in 0u64..100, m in 0u64..60, s in 0u64..60, ms in 0u64..1000) {
            let text = format!("{h}h{m}m{s}s{ms}ms");
            let d = gateway_duration(&text).unwrap();
            prop_assert_eq!(d, Duration::from_millis(((h * 60 + m) * 60 + s) * 1000 + ms));
        }

        #[test]
        fn duration_never_panics(s in "\\PC{0,20}") {
            let _ = gateway_duration(&s);
        }

        #[test]
        fn label_accepts_generated(s in "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?") {
            prop_assert!(dns1123_label(&s).is_ok());
        }
    }
}

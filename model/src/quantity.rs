//! Kubernetes resource quantities: `128Mi`, `1G`, `500m`, `0.5`.

use crate::meta::IntOrString;

/// The number and suffix of a quantity (`1.5`, `Gi`).
fn split(s: &str) -> (&str, &str) {
    let at = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    s.split_at(at)
}

/// What a quantity suffix multiplies by: decimal SI (`m`, `k`, `M`, …) and binary (`Ki`, …).
fn multiplier(unit: &str) -> Option<f64> {
    Some(match unit {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "Ki" => 1024.0,
        "Mi" => 1024.0f64.powi(2),
        "Gi" => 1024.0f64.powi(3),
        "Ti" => 1024.0f64.powi(4),
        "Pi" => 1024.0f64.powi(5),
        _ => return None,
    })
}

/// Bytes in a memory quantity (`64Mi`, `1G`, `1048576`).
pub fn bytes(q: &IntOrString) -> Result<u64, String> {
    let s = match q {
        IntOrString::Int(n) => {
            return u64::try_from(*n).map_err(|_| format!("memory {n} is negative"))
        }
        IntOrString::String(s) => s.trim(),
    };
    decimal(s)
        .map(|n| n.round() as u64)
        .map_err(|e| format!("memory {e} (use Ki, Mi, Gi, k, M, G)"))
}

/// Cores in a CPU quantity (`500m`, `1`, `0.25`).
pub fn cores(q: &IntOrString) -> Result<f64, String> {
    let v = match q {
        IntOrString::Int(n) => *n as f64,
        IntOrString::String(s) => decimal(s).map_err(|e| format!("cpu {e}"))?,
    };
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!("cpu {v} must be above 0"))
    }
}

/// The number in a decimal quantity (`10`, `500m`, `1.5k`, `2Mi`), as a metric target is
/// written.
pub fn decimal(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let (num, unit) = split(s);
    let mult = multiplier(unit).ok_or_else(|| format!("{s:?}: unknown unit {unit:?}"))?;
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a quantity"))?;
    if n.is_finite() && n >= 0.0 {
        Ok(n * mult)
    } else {
        Err(format!("{s:?} is not a quantity"))
    }
}

/// `v` as Kubernetes writes a measured quantity: whole numbers bare, others in thousandths
/// (`3`, `2500m`).
pub fn format_decimal(v: f64) -> String {
    let milli = (v * 1000.0).round();
    if milli % 1000.0 == 0.0 {
        format!("{}", milli / 1000.0)
    } else {
        format!("{milli}m")
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn s(v: &str) -> IntOrString {
        IntOrString::String(v.into())
    }

    #[test]
    fn units() {
        assert_eq!(bytes(&s("64Mi")).unwrap(), 64 << 20);
        assert_eq!(bytes(&s("1G")).unwrap(), 1_000_000_000);
        assert_eq!(bytes(&IntOrString::Int(4096)).unwrap(), 4096);
        assert!(bytes(&s("12Q")).is_err());
        assert_eq!(cores(&s("500m")).unwrap(), 0.5);
        assert_eq!(cores(&s("2")).unwrap(), 2.0);
        assert!(cores(&s("0")).is_err());
        assert_eq!(decimal("10").unwrap(), 10.0);
        assert_eq!(decimal("1500m").unwrap(), 1.5);
        assert_eq!(decimal("2k").unwrap(), 2000.0);
        assert!(decimal("-1").is_err());
        assert!(decimal("1x").is_err());
        assert_eq!(format_decimal(3.0), "3");
        assert_eq!(format_decimal(2.5), "2500m");
    }

    proptest! {
        #[test]
        fn mebibytes_round_trip(n in 0u64..1_000_000) {
            prop_assert_eq!(bytes(&s(&format!("{n}Mi"))).unwrap(), n << 20);
        }

        #[test]
        fn never_panics(v in "\\PC{0,20}") {
            let _ = bytes(&s(&v));
            let _ = cores(&s(&v));
            let _ = decimal(&v);
        }

        #[test]
        fn formatted_decimals_read_back(milli in 0u64..10_000_000) {
            let v = milli as f64 / 1000.0;
            prop_assert!((decimal(&format_decimal(v)).unwrap() - v).abs() < 1e-9);
        }
    }
}

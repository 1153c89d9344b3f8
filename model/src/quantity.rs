//! Kubernetes resource quantities: `128Mi`, `1G`, `500m`, `0.5`.

use crate::meta::IntOrString;

/// Bytes in a memory quantity (`64Mi`, `1G`, `1048576`).
pub fn bytes(q: &IntOrString) -> Result<u64, String> {
    let s = match q {
        IntOrString::Int(n) => {
            return u64::try_from(*n).map_err(|_| format!("memory {n} is negative"))
        }
        IntOrString::String(s) => s.trim(),
    };
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0f64.powi(4),
        _ => {
            return Err(format!(
                "memory {s:?}: unknown unit {unit:?} (use Ki, Mi, Gi, k, M, G)"
            ))
        }
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("memory {s:?} is not a quantity"))?;
    if !(n.is_finite() && n >= 0.0) {
        return Err(format!("memory {s:?} is not a quantity"));
    }
    Ok((n * mult).round() as u64)
}

/// Cores in a CPU quantity (`500m`, `1`, `0.25`).
pub fn cores(q: &IntOrString) -> Result<f64, String> {
    let v = match q {
        IntOrString::Int(n) => *n as f64,
        IntOrString::String(s) => {
            let s = s.trim();
            match s.strip_suffix('m') {
                Some(m) => {
                    m.parse::<f64>()
                        .map_err(|_| format!("cpu {s:?} is not a quantity"))?
                        / 1000.0
                }
                None => s
                    .parse::<f64>()
                    .map_err(|_| format!("cpu {s:?} is not a quantity"))?,
            }
        }
    };
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!("cpu {v} must be above 0"))
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
        }
    }
}

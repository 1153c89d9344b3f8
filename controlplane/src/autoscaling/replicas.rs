//! How many replicas one metric asks for, as Kubernetes' replica calculator decides: the
//! ratio of the measured average to the target times the pods measured, within a 10%
//! tolerance of no change; pods without a measurement count as on target when scaling down
//! and as idle when scaling up, and not-ready pods count as idle on a CPU scale-up, so a
//! missing reading never makes the change larger.

/// Ratios this close to 1 change nothing (Kubernetes' `--horizontal-pod-autoscaler-tolerance`).
pub const TOLERANCE: f64 = 0.1;

/// One pod as the calculator sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PodReading {
    /// Counted for a CPU scale-up only when ready.
    pub ready: bool,
    /// The measured value, if any (usage, or the metric's value).
    pub value: Option<f64>,
    /// The pod's request of the resource, for utilisation (`None` for plain values).
    pub request: Option<f64>,
}

/// What the target is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// Percent of the pods' requests (`Utilization`).
    Utilization(f64),
    /// A value per pod (`AverageValue`).
    AverageValue(f64),
}

/// One metric's proposal.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    /// Replicas asked for.
    pub replicas: i64,
    /// The measured utilisation (percent) or average, over the pods measured.
    pub current: f64,
}

/// Replicas for `pods` against `target`, from `current` replicas. `cpu` makes not-ready pods
/// count as idle on a scale-up, as Kubernetes does for CPU only.
pub fn propose(
    current: i64,
    pods: &[PodReading],
    target: Target,
    cpu: bool,
) -> Result<Proposal, String> {
    if let Target::Utilization(_) = target {
        if pods.iter().any(|p| p.request.is_none_or(|r| r <= 0.0)) {
            return Err("missing request for the resource on some pods".into());
        }
    }
    let counted = |p: &PodReading| p.ready || !cpu;
    let measured: Vec<&PodReading> = pods
        .iter()
        .filter(|p| p.value.is_some() && counted(p))
        .collect();
    if measured.is_empty() {
        return Err("did not receive metrics for any ready pods".into());
    }
    let missing: Vec<&PodReading> = pods.iter().filter(|p| p.value.is_none()).collect();
    let unready = pods
        .iter()
        .filter(|p| !counted(p) && p.value.is_some())
        .count();
    let readings: Vec<(f64, f64)> = measured.iter().map(|p| reading(p, 0.0, target)).collect();
    let (ratio, level) = usage_ratio(&readings, target);
    let scale_up_with_unready = unready > 0 && ratio > 1.0;
    if !scale_up_with_unready && missing.is_empty() {
        let replicas = if (ratio - 1.0).abs() <= TOLERANCE {
            current
        } else {
            (ratio * readings.len() as f64).ceil() as i64
        };
        return Ok(Proposal {
            replicas,
            current: level,
        });
    }
    // The pods without a reading: at the target when going down, idle when going up.
    let mut all = readings;
    for p in &missing {
        let assumed = if ratio < 1.0 {
            match target {
                Target::Utilization(_) => p.request.unwrap_or(0.0),
                Target::AverageValue(v) => v,
            }
        } else {
            0.0
        };
        all.push(reading(p, assumed, target));
    }
    if scale_up_with_unready {
        // Their readings are not trusted (a starting pod's CPU burst): idle.
        for p in pods.iter().filter(|p| !counted(p) && p.value.is_some()) {
            let idle = PodReading {
                value: None,
                ..p.clone()
            };
            all.push(reading(&idle, 0.0, target));
        }
    }
    let (new_ratio, _) = usage_ratio(&all, target);
    let flipped = (ratio < 1.0 && new_ratio > 1.0) || (ratio > 1.0 && new_ratio < 1.0);
    if (new_ratio - 1.0).abs() <= TOLERANCE || flipped {
        return Ok(Proposal {
            replicas: current,
            current: level,
        });
    }
    let replicas = (new_ratio * all.len() as f64).ceil() as i64;
    let against =
        (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current);
    Ok(Proposal {
        replicas: if against { current } else { replicas },
        current: level,
    })
}

/// `(value, request)` of a pod, its value taken as `assumed` when it has none.
fn reading(p: &PodReading, assumed: f64, target: Target) -> (f64, f64) {
    let value = p.value.unwrap_or(assumed);
    match target {
        Target::Utilization(_) => (value, p.request.unwrap_or(0.0)),
        Target::AverageValue(_) => (value, 0.0),
    }
}

/// The ratio of the measured level to the target, and the level (percent or average).
fn usage_ratio(readings: &[(f64, f64)], target: Target) -> (f64, f64) {
    let used: f64 = readings.iter().map(|r| r.0).sum();
    match target {
        Target::Utilization(want) => {
            let requested: f64 = readings.iter().map(|r| r.1).sum();
            let level = if requested > 0.0 {
                used * 100.0 / requested
            } else {
                0.0
            };
            (level / want, level)
        }
        Target::AverageValue(want) => {
            let level = used / readings.len().max(1) as f64;
            (level / want, level)
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn cpu_pod(usage: Option<f64>, ready: bool) -> PodReading {
        PodReading {
            ready,
            value: usage,
            request: Some(0.1),
        }
    }

    #[test]
    fn scales_by_the_ratio_of_use_to_target() {
        // Two pods at 100% of a 50% target: four.
        let pods = [cpu_pod(Some(0.1), true), cpu_pod(Some(0.1), true)];
        let p = propose(2, &pods, Target::Utilization(50.0), true).unwrap();
        assert_eq!(p.replicas, 4);
        assert!((p.current - 100.0).abs() < 1e-9);
    }

    #[test]
    fn within_tolerance_nothing_changes() {
        let pods = [cpu_pod(Some(0.053), true), cpu_pod(Some(0.052), true)];
        let p = propose(2, &pods, Target::Utilization(50.0), true).unwrap();
        assert_eq!(p.replicas, 2);
    }

    #[test]
    fn missing_pods_damp_a_scale_down() {
        // One pod idle, one unmeasured: the unmeasured one counts as at its request (100%),
        // so the average is 50% against a 50% target, and nothing changes.
        let pods = [cpu_pod(Some(0.0), true), cpu_pod(None, true)];
        let p = propose(2, &pods, Target::Utilization(50.0), true).unwrap();
        assert_eq!(p.replicas, 2);
    }

    #[test]
    fn unready_pods_count_idle_on_a_cpu_scale_up() {
        // One ready pod at 200%, one unready (its reading set to 0): average 100% → 4.
        let pods = [cpu_pod(Some(0.2), true), cpu_pod(Some(0.2), false)];
        let p = propose(2, &pods, Target::Utilization(50.0), true).unwrap();
        assert_eq!(p.replicas, 4);
        // For other metrics readiness does not matter.
        let plain = [
            PodReading {
                ready: false,
                value: Some(20.0),
                request: None,
            },
            PodReading {
                ready: true,
                value: Some(20.0),
                request: None,
            },
        ];
        let p = propose(2, &plain, Target::AverageValue(10.0), false).unwrap();
        assert_eq!(p.replicas, 4);
        assert!((p.current - 20.0).abs() < 1e-9);
    }

    #[test]
    fn no_request_or_no_reading_is_an_error() {
        let pods = [PodReading {
            ready: true,
            value: Some(1.0),
            request: None,
        }];
        assert!(propose(1, &pods, Target::Utilization(50.0), true).is_err());
        assert!(propose(1, &[cpu_pod(None, true)], Target::Utilization(50.0), true).is_err());
    }

    proptest! {
        #[test]
        fn never_moves_against_the_measurement(
            values in proptest::collection::vec(proptest::option::of(0.0f64..1.0), 1..12),
            want in 10.0f64..100.0,
        ) {
            // As in a cluster at rest: one pod per replica.
            let current = values.len() as i64;
            let pods: Vec<PodReading> = values.iter().map(|v| cpu_pod(*v, true)).collect();
            if let Ok(p) = propose(current, &pods, Target::Utilization(want), true) {
                prop_assert!(p.replicas >= 0);
                if p.current > want * (1.0 + TOLERANCE) {
                    prop_assert!(p.replicas >= current || pods.iter().any(|p| p.value.is_none()));
                }
                if p.current < want * (1.0 - TOLERANCE) {
                    prop_assert!(p.replicas <= current);
                }
            }
        }
    }
}

//! The v2 `behavior`: recommendations stabilised over each direction's window, then the change
//! limited by the direction's policies over their periods, then bounded by `minReplicas` and
//! `maxReplicas` — Kubernetes' `normalizeDesiredReplicasWithBehaviors`, with its defaults.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use pier_model::hpa::{HpaBehavior, ScalingPolicy, ScalingRules};

/// One direction's rules with Kubernetes' defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// Past recommendations considered.
    pub window: Duration,
    /// `Max`, `Min` or `Disabled`.
    pub select: String,
    /// `(type, value, period)`.
    pub policies: Vec<(String, i64, Duration)>,
}

/// Both directions' rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Behavior {
    /// Adding replicas.
    pub up: Rules,
    /// Removing replicas.
    pub down: Rules,
}

impl Behavior {
    /// `spec.behavior` with Kubernetes' defaults: up at once by 100% or 4 pods per 15 s
    /// (whichever is more), down after a 300 s window by up to 100% per 15 s.
    pub fn from_spec(spec: Option<&HpaBehavior>) -> Behavior {
        let up_default = [("Pods", 4), ("Percent", 100)];
        let down_default = [("Percent", 100)];
        Behavior {
            up: rules(spec.and_then(|b| b.scale_up.as_ref()), 0, &up_default),
            down: rules(spec.and_then(|b| b.scale_down.as_ref()), 300, &down_default),
        }
    }
}

fn rules(spec: Option<&ScalingRules>, window: i64, default: &[(&str, i64)]) -> Rules {
    let policies: Vec<(String, i64, Duration)> = match spec.map(|s| &s.policies) {
        Some(p) if !p.is_empty() => p.iter().map(policy).collect(),
        _ => default
            .iter()
            .map(|(t, v)| (t.to_string(), *v, Duration::from_secs(15)))
            .collect(),
    };
    Rules {
        window: seconds(
            spec.and_then(|s| s.stabilization_window_seconds)
                .unwrap_or(window),
        ),
        select: spec
            .and_then(|s| s.select_policy.clone())
            .unwrap_or_else(|| "Max".into()),
        policies,
    }
}

fn policy(p: &ScalingPolicy) -> (String, i64, Duration) {
    (p.type_.clone(), p.value, seconds(p.period_seconds))
}

fn seconds(n: i64) -> Duration {
    Duration::from_secs(u64::try_from(n).unwrap_or(0))
}

/// Why the outcome differs from the recommendation (`ScalingLimited`'s reason), if it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Above `maxReplicas`.
    TooManyReplicas,
    /// Below `minReplicas`.
    TooFewReplicas,
    /// A scale-up policy held it back.
    ScaleUpLimit,
    /// A scale-down policy held it back.
    ScaleDownLimit,
}

impl Limit {
    /// The condition's reason and message.
    pub fn describe(self) -> (&'static str, &'static str) {
        match self {
            Limit::TooManyReplicas => (
                "TooManyReplicas",
                "the desired replica count is more than the maximum replica count",
            ),
            Limit::TooFewReplicas => (
                "TooFewReplicas",
                "the desired replica count is less than the minimum replica count",
            ),
            Limit::ScaleUpLimit => (
                "ScaleUpLimit",
                "the desired replica count is increasing faster than the maximum scale rate",
            ),
            Limit::ScaleDownLimit => (
                "ScaleDownLimit",
                "the desired replica count is decreasing faster than the maximum scale rate",
            ),
        }
    }
}

/// One autoscaler's memory: past recommendations and past changes.
#[derive(Debug, Default)]
pub struct History {
    recommendations: VecDeque<(Instant, i64)>,
    /// `(when, change)`: positive for replicas added.
    changes: VecDeque<(Instant, i64)>,
}

impl History {
    /// Remembers that the autoscaler moved the replicas by `change` at `now`.
    pub fn record_change(&mut self, now: Instant, change: i64) {
        if change != 0 {
            self.changes.push_back((now, change));
        }
    }

    /// The replicas to set: `recommended` stabilised, rate-limited and bounded.
    pub fn decide(
        &mut self,
        behavior: &Behavior,
        now: Instant,
        current: i64,
        recommended: i64,
        (min, max): (i64, i64),
    ) -> (i64, Option<Limit>) {
        let stable = self.stabilise(behavior, now, current, recommended);
        self.forget(behavior, now);
        if stable > current {
            let limit = self.up_limit(&behavior.up, now, current).max(current);
            if max > limit {
                cap(stable, limit, Limit::ScaleUpLimit)
            } else {
                cap(stable, max, Limit::TooManyReplicas)
            }
        } else if stable < current {
            let limit = self.down_limit(&behavior.down, now, current).min(current);
            if min < limit {
                floor(stable, limit, Limit::ScaleDownLimit)
            } else {
                floor(stable, min, Limit::TooFewReplicas)
            }
        } else if stable > max {
            (max, Some(Limit::TooManyReplicas))
        } else if stable < min {
            (min, Some(Limit::TooFewReplicas))
        } else {
            (stable, None)
        }
    }

    /// The recommendation held between the lowest of the scale-up window and the highest of
    /// the scale-down window, and `recommended` remembered.
    fn stabilise(&mut self, b: &Behavior, now: Instant, current: i64, recommended: i64) -> i64 {
        let (mut up, mut down) = (recommended, recommended);
        for (at, r) in &self.recommendations {
            let age = now.saturating_duration_since(*at);
            if age <= b.up.window {
                up = up.min(*r);
            }
            if age <= b.down.window {
                down = down.max(*r);
            }
        }
        self.recommendations.push_back((now, recommended));
        current.max(up).min(down)
    }

    /// Drops what no window or period reaches any more.
    fn forget(&mut self, b: &Behavior, now: Instant) {
        let window = b.up.window.max(b.down.window);
        while self
            .recommendations
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > window)
        {
            self.recommendations.pop_front();
        }
        let period =
            b.up.policies
                .iter()
                .chain(&b.down.policies)
                .map(|p| p.2)
                .max()
                .unwrap_or_default();
        while self
            .changes
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > period)
        {
            self.changes.pop_front();
        }
    }

    /// Replicas `(added, removed)` within `period` of `now`.
    fn changed_within(&self, now: Instant, period: Duration) -> (i64, i64) {
        self.changes
            .iter()
            .filter(|(at, _)| now.saturating_duration_since(*at) <= period)
            .fold(
                (0, 0),
                |(a, r), (_, c)| {
                    if *c > 0 {
                        (a + c, r)
                    } else {
                        (a, r - c)
                    }
                },
            )
    }

    fn up_limit(&self, rules: &Rules, now: Instant, current: i64) -> i64 {
        let proposals = rules.policies.iter().map(|(kind, value, period)| {
            let (added, removed) = self.changed_within(now, *period);
            let start = current - added + removed;
            if kind == "Pods" {
                start + value
            } else {
                (start as f64 * (1.0 + *value as f64 / 100.0)).ceil() as i64
            }
        });
        select(&rules.select, proposals, current, true)
    }

    fn down_limit(&self, rules: &Rules, now: Instant, current: i64) -> i64 {
        let proposals = rules.policies.iter().map(|(kind, value, period)| {
            let (added, removed) = self.changed_within(now, *period);
            let start = current + removed - added;
            if kind == "Pods" {
                start - value
            } else {
                (start as f64 * (1.0 - *value as f64 / 100.0)) as i64
            }
        });
        select(&rules.select, proposals, current, false)
    }
}

/// The policy outcome `select` picks: the largest change for `Max`, the smallest for `Min`,
/// none for `Disabled`.
fn select(select: &str, proposals: impl Iterator<Item = i64>, current: i64, up: bool) -> i64 {
    let proposals: Vec<i64> = proposals.collect();
    let (lo, hi) = (
        proposals.iter().copied().min().unwrap_or(current),
        proposals.iter().copied().max().unwrap_or(current),
    );
    match (select, up) {
        ("Disabled", _) => current,
        ("Min", true) | ("Max", false) => lo,
        _ => hi,
    }
}

fn cap(value: i64, limit: i64, why: Limit) -> (i64, Option<Limit>) {
    if value > limit {
        (limit, Some(why))
    } else {
        (value, None)
    }
}

fn floor(value: i64, limit: i64, why: Limit) -> (i64, Option<Limit>) {
    if value < limit {
        (limit, Some(why))
    } else {
        (value, None)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn behavior(up_window: u64, down_window: u64) -> Behavior {
        let mut b = Behavior::from_spec(None);
        b.up.window = Duration::from_secs(up_window);
        b.down.window = Duration::from_secs(down_window);
        b
    }

    #[test]
    fn defaults_are_kubernetes() {
        let b = Behavior::from_spec(None);
        assert_eq!(b.up.window, Duration::ZERO);
        assert_eq!(b.down.window, Duration::from_secs(300));
        assert_eq!(b.up.policies.len(), 2);
        assert_eq!(b.down.policies[0].1, 100);
    }

    #[test]
    fn scale_down_waits_out_the_window() {
        let b = behavior(0, 10);
        let mut h = History::default();
        let t0 = Instant::now();
        assert_eq!(h.decide(&b, t0, 4, 4, (1, 10)).0, 4);
        // Load gone: the window still holds the earlier recommendation of 4.
        assert_eq!(
            h.decide(&b, t0 + Duration::from_secs(5), 4, 1, (1, 10)).0,
            4
        );
        assert_eq!(
            h.decide(&b, t0 + Duration::from_secs(11), 4, 1, (1, 10)).0,
            1
        );
    }

    #[test]
    fn scale_up_is_limited_by_policy() {
        let mut b = behavior(0, 0);
        b.up.policies = vec![("Pods".into(), 1, Duration::from_secs(60))];
        let mut h = History::default();
        let t0 = Instant::now();
        let (n, why) = h.decide(&b, t0, 1, 5, (1, 10));
        assert_eq!((n, why), (2, Some(Limit::ScaleUpLimit)));
        h.record_change(t0, 1);
        // Within the period the one pod allowed is used up.
        let (n, _) = h.decide(&b, t0 + Duration::from_secs(1), 2, 5, (1, 10));
        assert_eq!(n, 2);
        // After it another.
        let (n, _) = h.decide(&b, t0 + Duration::from_secs(61), 2, 5, (1, 10));
        assert_eq!(n, 3);
    }

    #[test]
    fn bounds_hold_and_say_why() {
        let b = behavior(0, 0);
        let mut h = History::default();
        let t0 = Instant::now();
        assert_eq!(
            h.decide(&b, t0, 3, 50, (1, 5)),
            (5, Some(Limit::TooManyReplicas))
        );
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(
            h.decide(&b, t1, 3, 0, (2, 5)),
            (2, Some(Limit::TooFewReplicas))
        );
        let mut off = behavior(0, 0);
        off.up.select = "Disabled".into();
        assert_eq!(h.decide(&off, t0, 3, 5, (1, 9)).0, 3);
    }

    proptest! {
        #[test]
        fn always_within_bounds_and_policy(
            steps in proptest::collection::vec((0i64..40, 0u64..20), 1..30),
            min in 1i64..4,
            span in 0i64..10,
        ) {
            let max = min + span;
            let b = behavior(0, 5);
            let mut h = History::default();
            let t0 = Instant::now();
            let mut current = min;
            let mut at = t0;
            for (recommended, gap) in steps {
                at += Duration::from_secs(gap);
                let (n, _) = h.decide(&b, at, current, recommended, (min, max));
                prop_assert!(n >= min && n <= max, "{n} outside {min}..={max}");
                // Never past the recommendation, never away from it.
                let clamp = |v: i64| v.clamp(min, max);
                prop_assert!(n >= clamp(current.min(recommended)) && n <= clamp(current.max(recommended)));
                h.record_change(at, n - current);
                current = n;
            }
        }
    }
}

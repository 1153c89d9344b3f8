//! Retry budget (Linkerd's and Finagle's idea): retries may add at most 20% to the request
//! load, plus a floor of 10 per second, so retries cannot turn an outage into a storm.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::balance::now_ms;

/// Share of requests that may be retried, in thousandths.
const RATIO_MILLI: i64 = 200;
/// Retries per second always allowed, in thousandths.
const FLOOR_MILLI_PER_SEC: i64 = 10_000;
/// Most tokens saved up, in thousandths.
const CAP_MILLI: i64 = 100_000;

/// Tokens (in thousandths of a retry) shared by one frontend's requests.
pub(crate) struct RetryBudget {
    milli: AtomicI64,
    refilled_ms: AtomicU64,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            milli: AtomicI64::new(FLOOR_MILLI_PER_SEC),
            refilled_ms: AtomicU64::new(now_ms()),
        }
    }
}

impl RetryBudget {
    /// A request arrived: earns a fifth of a retry.
    pub(crate) fn deposit(&self) {
        self.add(RATIO_MILLI);
    }

    fn add(&self, n: i64) {
        // The update never refuses, so this cannot fail; the previous value is not needed.
        let _previous = self
            .milli
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some((v + n).min(CAP_MILLI))
            });
    }

    /// Takes one retry if the budget allows it.
    pub(crate) fn withdraw(&self) -> bool {
        let now = now_ms();
        let last = self.refilled_ms.swap(now, Ordering::Relaxed);
        let elapsed = i64::try_from(now.saturating_sub(last)).unwrap_or(i64::MAX / 2);
        self.add(elapsed.saturating_mul(FLOOR_MILLI_PER_SEC) / 1000);
        self.milli
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                (v >= 1000).then_some(v - 1000)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_bounded_by_requests() {
        let b = RetryBudget {
            milli: AtomicI64::new(0),
            refilled_ms: AtomicU64::new(now_ms()),
        };
        for _ in 0..100 {
            b.deposit();
        }
        let granted = (0..100).filter(|_| b.withdraw()).count();
        // 20 from the ratio, and at most a few from the per-second floor during the test.
        assert!((20..=25).contains(&granted), "{granted}");
    }
}

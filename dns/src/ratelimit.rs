//! Per-client rate limiting for UDP: a token bucket per source address, with "slip"
//! (every second refused query gets an empty truncated answer so real clients retry over TCP).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Most clients tracked; beyond it, idle buckets are dropped.
const MAX_CLIENTS: usize = 100_000;

/// What to do with a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit.
    Allow,
    /// Over the limit: answer with an empty truncated response.
    Slip,
    /// Over the limit: drop.
    Drop,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
    refused: u64,
}

/// Token buckets per client address.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl RateLimiter {
    /// `rate` queries per second per client, bursts up to `burst`.
    pub fn new(rate: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            rate: f64::from(rate.max(1)),
            burst: f64::from(burst.max(rate).max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `client` at `now`.
    pub fn check(&self, client: IpAddr, now: Instant) -> Verdict {
        let Ok(mut buckets) = self.buckets.lock() else {
            return Verdict::Allow;
        };
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(&client) {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * rate < burst
            });
        }
        let bucket = buckets.entry(client).or_insert(Bucket {
            tokens: self.burst,
            last: now,
            refused: 0,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Verdict::Allow
        } else {
            bucket.refused += 1;
            if bucket.refused % 2 == 1 {
                Verdict::Slip
            } else {
                Verdict::Drop
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bursts_then_limits_then_refills() {
        let rl = RateLimiter::new(10, 20);
        let ip: IpAddr = "10.88.0.2".parse().unwrap();
        let other: IpAddr = "10.88.0.3".parse().unwrap();
        let t0 = Instant::now();
        assert!((0..20).all(|_| rl.check(ip, t0) == Verdict::Allow));
        assert_eq!(rl.check(ip, t0), Verdict::Slip);
        assert_eq!(rl.check(ip, t0), Verdict::Drop);
        assert_eq!(rl.check(other, t0), Verdict::Allow, "per client");
        let later = t0 + Duration::from_millis(500);
        let allowed = (0..10)
            .filter(|_| rl.check(ip, later) == Verdict::Allow)
            .count();
        assert_eq!(allowed, 5, "10 per second refill");
    }
}

//! Per-key request rate limits: a token bucket per API key (`limits.requests_per_second`, `limits.burst`).
//! The concurrent-task limit lives with the task store, which knows what is active.

use std::time::Instant;

use crate::HotMap;
use crate::auth::KeyId;

pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: HotMap<KeyId, (f64, Instant)>,
}

impl RateLimiter {
    /// `rate` requests per second sustained, `burst` at once; a rate of 0 disables the limit.
    pub fn new(rate: f64, burst: u32) -> Self {
        let burst = if burst == 0 { rate.ceil().max(1.0) } else { burst as f64 };
        Self { rate, burst, buckets: HotMap::default() }
    }

    /// Takes one request from `key`'s bucket, or says how many seconds until one is available.
    pub fn check(&self, key: &KeyId) -> Result<(), u64> {
        self.check_with(key, None)
    }

    /// The (rate, burst) that applies to a key with `own_rate`; `None` = no limit.
    pub fn rate_for(&self, own_rate: Option<f64>) -> Option<(f64, f64)> {
        match own_rate {
            Some(r) if r > 0.0 => Some((r, r.ceil().max(1.0))),
            _ => (self.rate > 0.0).then_some((self.rate, self.burst)),
        }
    }

    /// `check` at the key's own rate (a console key's `requests_per_second`, burst = one second's
    /// worth) instead of the configured one.
    pub fn check_with(&self, key: &KeyId, own_rate: Option<f64>) -> Result<(), u64> {
        let Some((rate, burst)) = self.rate_for(own_rate) else { return Ok(()) };
        let now = Instant::now();
        let mut entry = self.buckets.entry(key.clone()).or_insert((burst, now));
        let (tokens, last) = *entry;
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * rate).min(burst);
        if tokens >= 1.0 {
            *entry = (tokens - 1.0, now);
            Ok(())
        } else {
            *entry = (tokens, now);
            Err(((1.0 - tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn bucket_allows_burst_then_refuses_with_wait() {
        let l = RateLimiter::new(2.0, 3);
        let k = KeyId(Arc::from("k"));
        for _ in 0..3 {
            assert!(l.check(&k).is_ok());
        }
        assert_eq!(l.check(&k), Err(1));
        assert!(l.check(&KeyId(Arc::from("other"))).is_ok(), "buckets are per key");
        assert!(RateLimiter::new(0.0, 0).check(&k).is_ok());
        let own = KeyId(Arc::from("console"));
        let open = RateLimiter::new(0.0, 0);
        assert!(open.check_with(&own, Some(1.0)).is_ok());
        assert_eq!(open.check_with(&own, Some(1.0)), Err(1), "a key's own rate applies without a global one");
    }
}

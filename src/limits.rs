//! Per-key request rate limits: a token bucket per API key (`limits.requests_per_second`, `limits.burst`).
//! The concurrent-task limit lives with the task store, which knows what is active.

use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::HotMap;
use crate::owner::KeyId;

pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: HotMap<KeyId, Bucket>,
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
        let mut bucket = self.buckets.entry(key.clone()).or_insert_with(|| Bucket::full(burst, now));
        bucket.refill(rate, burst, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(bucket.wait(rate))
        }
    }
}

/// A token bucket: `burst` at once, refilled at `rate` per second.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Self { tokens: burst, last: now }
    }

    fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * rate).min(burst);
        self.last = now;
    }

    /// Seconds until one token is there.
    fn wait(&self, rate: f64) -> u64 {
        ((1.0 - self.tokens) / rate).ceil().max(1.0) as u64
    }
}

/// How many wrong keys a client address (and everyone together) may present: guessing a key stays
/// slow whatever the key's strength. Only failures spend; a client out of failures is refused before
/// its key is even checked, so a right guess cannot be told from a wrong one while it waits. When
/// everyone together is out (a guess spread over many addresses), only addresses that presented a
/// right key recently are still checked.
pub struct GuessLimiter {
    client: (f64, f64),
    global: (f64, f64),
    clients: HotMap<IpAddr, Bucket>,
    everyone: Mutex<Bucket>,
    /// Until when (ms after `epoch`) everyone together is out of failures: read without a lock on
    /// every request, written only when a key is wrong.
    everyone_out_until: AtomicU64,
    epoch: Instant,
    /// Addresses that presented a right key, and when.
    known: HotMap<IpAddr, Instant>,
}

/// How long a right key vouches for its address while everyone together is out of failures.
const KNOWN_FOR: Duration = Duration::from_secs(600);
/// Past this many addresses, the maps drop what no longer matters (full buckets, old vouchers).
const MAX_TRACKED: usize = 50_000;

impl GuessLimiter {
    /// `burst` failures at once per address, refilled at `rate` per second; ten times both for all
    /// addresses together.
    pub fn per_address(burst: u32, rate: f64) -> Self {
        let (burst, rate) = (f64::from(burst.max(1)), if rate > 0.0 { rate } else { 0.001 });
        Self::new(burst, rate, burst * 10.0, rate * 10.0)
    }

    /// `client_burst` failures at once per address, refilled at `client_rate` per second; for all
    /// addresses together `global_burst` at once, refilled at `global_rate`.
    pub fn new(client_burst: f64, client_rate: f64, global_burst: f64, global_rate: f64) -> Self {
        Self {
            client: (client_rate, client_burst),
            global: (global_rate, global_burst),
            clients: HotMap::default(),
            everyone: Mutex::new(Bucket::full(global_burst, Instant::now())),
            everyone_out_until: AtomicU64::new(0),
            epoch: Instant::now(),
            known: HotMap::default(),
        }
    }

    /// Whether `client` may have a key checked now; else the seconds to wait.
    pub fn admit(&self, client: IpAddr) -> Result<(), u64> {
        let now = Instant::now();
        let (rate, burst) = self.client;
        // A read lock only: every authenticated request passes here, failures are rare.
        if let Some(b) = self.clients.get(&client) {
            let mut b = *b;
            b.refill(rate, burst, now);
            if b.tokens < 1.0 {
                return Err(b.wait(rate));
            }
        }
        let now_ms = now.duration_since(self.epoch).as_millis() as u64;
        let out_until = self.everyone_out_until.load(Ordering::Relaxed);
        if now_ms < out_until && self.known.get(&client).is_none_or(|t| now.duration_since(*t) >= KNOWN_FOR) {
            return Err((out_until - now_ms).div_ceil(1000).max(1));
        }
        Ok(())
    }

    /// `client` presented a wrong key.
    pub fn failed(&self, client: IpAddr) {
        let now = Instant::now();
        let (rate, burst) = self.client;
        if self.clients.len() >= MAX_TRACKED {
            self.clients.retain(|_, b| {
                b.refill(rate, burst, now);
                b.tokens < burst
            });
        }
        let mut b = self.clients.entry(client).or_insert_with(|| Bucket::full(burst, now));
        b.refill(rate, burst, now);
        b.tokens = (b.tokens - 1.0).max(0.0);
        drop(b);
        let (grate, gburst) = self.global;
        let mut everyone = self.everyone.lock().unwrap_or_else(|p| p.into_inner());
        everyone.refill(grate, gburst, now);
        everyone.tokens = (everyone.tokens - 1.0).max(0.0);
        // Out of failures until one token has come back.
        let until =
            if everyone.tokens < 1.0 { now + Duration::from_secs_f64((1.0 - everyone.tokens) / grate) } else { now };
        self.everyone_out_until.store(until.duration_since(self.epoch).as_millis() as u64, Ordering::Relaxed);
    }

    /// `client` presented a right key.
    pub fn succeeded(&self, client: IpAddr) {
        let now = Instant::now();
        if self.known.len() >= MAX_TRACKED {
            self.known.retain(|_, t| now.duration_since(*t) < KNOWN_FOR);
        }
        // Written at most once a minute per address: this runs on every authenticated request.
        if self.known.get(&client).is_none_or(|t| now.duration_since(*t) > Duration::from_secs(60)) {
            self.known.insert(client, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn guesses_are_limited_per_address_and_in_all() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let g = GuessLimiter::new(3.0, 0.001, 5.0, 0.001);
        for _ in 0..3 {
            assert!(g.admit(ip("192.0.2.1")).is_ok());
            g.failed(ip("192.0.2.1"));
        }
        assert!(g.admit(ip("192.0.2.1")).is_err(), "out of failures: refused before the check");
        assert!(g.admit(ip("192.0.2.2")).is_ok(), "another address is not punished");
        g.succeeded(ip("192.0.2.3"));
        g.failed(ip("192.0.2.2"));
        g.failed(ip("192.0.2.4"));
        assert!(g.admit(ip("192.0.2.5")).is_err(), "everyone together is out of failures");
        assert!(g.admit(ip("192.0.2.3")).is_ok(), "an address with a right key recently still gets in");
    }

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

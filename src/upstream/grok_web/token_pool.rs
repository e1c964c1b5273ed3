//! The sso token pool: which account serves the next request. Picks the healthy token with the most
//! remaining quota (fewest in flight on ties), caps concurrency per token, cools tokens down after a
//! rate limit and expires them after repeated auth failures.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::super::UpstreamError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenStatus {
    Active,
    Cooling { until: Instant },
    Expired,
}

#[derive(Debug)]
struct TokenState {
    token: String,
    status: TokenStatus,
    in_flight: u32,
    fail_count: u32,
    /// Remaining upstream quota as last estimated; `None` = unknown (treated as plenty).
    remaining: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_concurrency: u32,
    pub default_cooldown: Duration,
    pub fail_threshold: u32,
}

pub struct TokenPool {
    settings: PoolSettings,
    shared: Arc<Shared>,
}

struct Shared {
    tokens: Mutex<Vec<TokenState>>,
    /// Signalled whenever a lease is returned, for requests waiting on a full pool.
    released: tokio::sync::Notify,
}

/// Why no token could be handed out.
#[derive(Debug, PartialEq, Eq)]
pub enum NoToken {
    /// Nothing configured, or every token expired.
    NoneUsable,
    /// Every usable token is rate limited; the first cools down after this long.
    Cooling(Duration),
    /// Every usable token is at its concurrency cap.
    Busy,
}

impl From<NoToken> for UpstreamError {
    fn from(e: NoToken) -> Self {
        match e {
            NoToken::NoneUsable => {
                UpstreamError::Auth("no usable upstream token (none configured, or all expired)".into())
            }
            NoToken::Cooling(d) => UpstreamError::RateLimited {
                retry_after: Some(d),
                message: "every upstream token is rate limited; retry later".into(),
            },
            NoToken::Busy => UpstreamError::RateLimited {
                retry_after: Some(Duration::from_secs(1)),
                message: "every upstream token is busy; retry later".into(),
            },
        }
    }
}

/// A token checked out for one upstream request; dropping it frees the concurrency slot.
pub struct TokenLease {
    pub index: usize,
    pub token: String,
    shared: Arc<Shared>,
}

impl Drop for TokenLease {
    fn drop(&mut self) {
        {
            let mut tokens = lock(&self.shared.tokens);
            if let Some(t) = tokens.get_mut(self.index) {
                t.in_flight = t.in_flight.saturating_sub(1);
            }
        }
        self.shared.released.notify_waiters();
    }
}

fn lock(m: &Mutex<Vec<TokenState>>) -> std::sync::MutexGuard<'_, Vec<TokenState>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Strip what people paste around a token: `sso=` prefix, trailing cookie attributes, whitespace, non-ASCII.
pub fn normalize_token(raw: &str) -> String {
    let raw = raw.trim();
    let raw = raw.strip_prefix("sso=").unwrap_or(raw);
    let raw = raw.split(';').next().unwrap_or("");
    raw.chars().filter(|c| c.is_ascii() && !c.is_ascii_whitespace() && !c.is_ascii_control()).collect()
}

impl TokenPool {
    pub fn new(raw_tokens: &[String], settings: PoolSettings) -> Self {
        let mut seen = std::collections::HashSet::new();
        let tokens = raw_tokens
            .iter()
            .map(|t| normalize_token(t))
            .filter(|t| !t.is_empty() && seen.insert(t.clone()))
            .map(|token| TokenState {
                token,
                status: TokenStatus::Active,
                in_flight: 0,
                fail_count: 0,
                remaining: None,
            })
            .collect();
        Self { settings, shared: Arc::new(Shared { tokens: Mutex::new(tokens), released: tokio::sync::Notify::new() }) }
    }

    /// Like `acquire`, but when every usable token is merely at its concurrency cap, waits (until
    /// `deadline`) for a slot instead of failing: a burst queues briefly rather than bouncing.
    pub async fn acquire_wait(&self, exclude: &[usize], deadline: tokio::time::Instant) -> Result<TokenLease, NoToken> {
        loop {
            let released = self.shared.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            match self.acquire(exclude) {
                Err(NoToken::Busy) => {
                    if tokio::time::timeout_at(deadline, released).await.is_err() {
                        return Err(NoToken::Busy);
                    }
                }
                other => return other,
            }
        }
    }

    /// Checks out the best token not in `exclude`.
    pub fn acquire(&self, exclude: &[usize]) -> Result<TokenLease, NoToken> {
        let now = Instant::now();
        let mut tokens = lock(&self.shared.tokens);
        let mut best: Option<(usize, (u32, std::cmp::Reverse<u32>))> = None;
        let mut cooling: Option<Duration> = None;
        let mut busy = false;
        for (i, t) in tokens.iter_mut().enumerate() {
            if let TokenStatus::Cooling { until } = t.status {
                if until > now {
                    cooling = Some(cooling.map_or(until - now, |w| w.min(until - now)));
                    continue;
                }
                t.status = TokenStatus::Active;
            }
            if t.status == TokenStatus::Expired || exclude.contains(&i) {
                continue;
            }
            if t.in_flight >= self.settings.max_concurrency {
                busy = true;
                continue;
            }
            let rank = (t.remaining.unwrap_or(u32::MAX), std::cmp::Reverse(t.in_flight));
            if best.is_none_or(|(_, r)| rank > r) {
                best = Some((i, rank));
            }
        }
        match best {
            Some((i, _)) => {
                tokens[i].in_flight += 1;
                Ok(TokenLease { index: i, token: tokens[i].token.clone(), shared: self.shared.clone() })
            }
            None if busy => Err(NoToken::Busy),
            None => Err(cooling.map_or(NoToken::NoneUsable, NoToken::Cooling)),
        }
    }

    /// Records how a request with `lease` ended, so the next pick knows.
    pub fn report(&self, lease: &TokenLease, outcome: Result<(), &UpstreamError>) {
        let mut tokens = lock(&self.shared.tokens);
        let Some(t) = tokens.get_mut(lease.index) else { return };
        match outcome {
            Ok(()) => {
                t.fail_count = 0;
                t.remaining = t.remaining.map(|r| r.saturating_sub(1));
            }
            Err(UpstreamError::RateLimited { retry_after, .. }) => {
                let cool = retry_after.unwrap_or(self.settings.default_cooldown);
                t.status = TokenStatus::Cooling { until: Instant::now() + cool };
                t.remaining = Some(0);
                tracing::warn!(token = %mask(&t.token), cooldown_secs = cool.as_secs(), "upstream token rate limited");
            }
            Err(UpstreamError::Auth(_)) => {
                t.fail_count += 1;
                if t.fail_count >= self.settings.fail_threshold {
                    t.status = TokenStatus::Expired;
                    tracing::error!(token = %mask(&t.token), "upstream token marked expired after repeated auth failures");
                }
            }
            Err(_) => {}
        }
    }

    /// (usable now, configured).
    pub fn capacity(&self) -> (usize, usize) {
        let now = Instant::now();
        let tokens = lock(&self.shared.tokens);
        let usable = tokens
            .iter()
            .filter(|t| match t.status {
                TokenStatus::Active => true,
                TokenStatus::Cooling { until } => until <= now,
                TokenStatus::Expired => false,
            })
            .count();
        (usable, tokens.len())
    }

    pub fn len(&self) -> usize {
        lock(&self.shared.tokens).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[cfg(test)]
    fn status(&self, i: usize) -> TokenStatus {
        lock(&self.shared.tokens)[i].status
    }
}

/// Enough of a token to tell tokens apart in logs, never enough to use it.
pub fn mask(token: &str) -> String {
    if token.len() <= 10 {
        return "***".into();
    }
    format!("{}…{}", &token[..4], &token[token.len() - 4..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(tokens: &[&str], cap: u32) -> TokenPool {
        let tokens: Vec<String> = tokens.iter().map(|s| s.to_string()).collect();
        TokenPool::new(
            &tokens,
            PoolSettings { max_concurrency: cap, default_cooldown: Duration::from_secs(60), fail_threshold: 2 },
        )
    }

    #[test]
    fn normalizes_pasted_tokens() {
        assert_eq!(normalize_token(" sso=abc.def; Path=/ "), "abc.def");
        assert_eq!(normalize_token("a b\u{e9}c"), "abc");
    }

    #[test]
    fn spreads_by_in_flight_and_caps_concurrency() {
        let p = pool(&["a", "b"], 1);
        let l1 = p.acquire(&[]).unwrap();
        let l2 = p.acquire(&[]).unwrap();
        assert_ne!(l1.index, l2.index);
        assert_eq!(p.acquire(&[]).err(), Some(NoToken::Busy));
        drop(l1);
        assert!(p.acquire(&[]).is_ok());
    }

    #[tokio::test]
    async fn waiting_acquire_gets_the_next_free_slot() {
        let p = std::sync::Arc::new(pool(&["a"], 1));
        let held = p.acquire(&[]).unwrap();
        let soon = tokio::time::Instant::now() + Duration::from_millis(50);
        assert_eq!(p.acquire_wait(&[], soon).await.err(), Some(NoToken::Busy));
        let waiter = {
            let p = p.clone();
            tokio::spawn(async move {
                p.acquire_wait(&[], tokio::time::Instant::now() + Duration::from_secs(5)).await.map(|l| l.index)
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        assert_eq!(waiter.await.unwrap(), Ok(0));
    }

    #[test]
    fn rate_limit_cools_and_auth_failures_expire() {
        let p = pool(&["a", "b"], 4);
        let l = p.acquire(&[]).unwrap();
        let limited = UpstreamError::RateLimited { retry_after: Some(Duration::from_secs(30)), message: String::new() };
        p.report(&l, Err(&limited));
        assert!(matches!(p.status(l.index), TokenStatus::Cooling { .. }));
        let other = p.acquire(&[]).unwrap();
        assert_ne!(other.index, l.index);
        let auth = UpstreamError::Auth(String::new());
        p.report(&other, Err(&auth));
        p.report(&other, Err(&auth));
        assert_eq!(p.status(other.index), TokenStatus::Expired);
        match p.acquire(&[]) {
            Err(NoToken::Cooling(d)) => assert!(d <= Duration::from_secs(30) && d > Duration::from_secs(28)),
            other => panic!("expected Cooling, got {:?}", other.map(|l| l.index)),
        }
        assert_eq!(p.capacity(), (0, 2));
    }

    #[test]
    fn excluded_tokens_are_skipped() {
        let p = pool(&["a", "b"], 4);
        let first = p.acquire(&[]).unwrap();
        let second = p.acquire(&[first.index]).unwrap();
        assert_ne!(first.index, second.index);
        assert_eq!(p.acquire(&[0, 1]).err(), Some(NoToken::NoneUsable));
    }
}

//! Handing out tokens, and learning from how their requests ended.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::secret::mask;
use crate::upstream::error::UpstreamError;
use crate::upstream::grok_web::token_pool::news::until_ms;
use crate::upstream::grok_web::token_pool::{
    FREE_VIDEO_SECONDS, Plan, PoolState, Product, SsoPool, TokenState, TokenStatus, lock,
};
use crate::upstream::tokens::TokenEvent;

/// How a token ranks for a pick; higher is better.
type Rank = (bool, u32, std::cmp::Reverse<u32>);

/// Which accounts a video may go to (`SsoPool::video_fit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoFit {
    Any,
    /// Not free accounts (the video is longer than they make): `Allow::NotPlan(Basic)`.
    NotFree,
    /// Every account that serves is free, and the video is longer than free accounts make.
    None,
}

/// Which accounts a request may be served by, judged per account at each pick (a token added while
/// the request runs is judged like the others).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allow<'a> {
    Any,
    /// Only the account this `token_id` names (grok.com extends a post only with its maker).
    Only(&'a str),
    /// Not accounts known to have this plan.
    NotPlan(Plan),
}

impl Allow<'_> {
    fn admits(self, t: &TokenState) -> bool {
        match self {
            Allow::Any => true,
            Allow::Only(id) => t.id == id,
            Allow::NotPlan(p) => t.plan != Some(p),
        }
    }
}

/// Why no token could be handed out.
#[derive(Debug, PartialEq, Eq)]
pub enum NoToken {
    /// Nothing configured, or every token expired.
    NoneUsable,
    /// Every usable token is cooling down; the first is back after this long. When that token cools
    /// because its proxy failed, the proxy failure is the better answer than "rate limited".
    Cooling(Duration, Option<String>),
    /// Every usable token is at its concurrency cap.
    Busy,
}

impl From<NoToken> for UpstreamError {
    fn from(e: NoToken) -> Self {
        match e {
            NoToken::NoneUsable => UpstreamError::Auth(
                "no usable upstream token (none configured, or all expired, flagged or disabled)".into(),
            ),
            NoToken::Cooling(d, Some(proxy_error)) => {
                UpstreamError::ProxyFailed(format!("{proxy_error} (token cooling down for {}s)", d.as_secs().max(1)))
            }
            NoToken::Cooling(d, None) => UpstreamError::RateLimited {
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
    pub proxy: Option<String>,
    pub product: Product,
    state: Arc<PoolState>,
}

impl Drop for TokenLease {
    fn drop(&mut self) {
        {
            let mut tokens = lock(&self.state.tokens);
            if let Some(t) = tokens.get_mut(self.index) {
                t.in_flight = t.in_flight.saturating_sub(1);
            }
        }
        self.state.released.notify_waiters();
    }
}

impl SsoPool {
    /// Like `acquire`, but when every usable token is merely at its concurrency cap, waits (until
    /// `deadline`) for a slot instead of failing: a burst queues briefly rather than bouncing.
    /// `prefer` (a `token_id`) names the account that already holds the job's inputs: it is taken
    /// whenever it is usable, whatever the others' standing.
    pub async fn acquire_wait(
        &self,
        product: Product,
        exclude: &[usize],
        prefer: Option<&str>,
        allow: Allow<'_>,
        deadline: tokio::time::Instant,
    ) -> Result<TokenLease, NoToken> {
        loop {
            let released = self.state.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            match self.pick(product, exclude, prefer, allow) {
                Err(NoToken::Busy) => {
                    if tokio::time::timeout_at(deadline, released).await.is_err() {
                        return Err(NoToken::Busy);
                    }
                }
                other => return other,
            }
        }
    }

    /// Checks out the best token for `product` not in `exclude`.
    pub fn acquire(&self, product: Product, exclude: &[usize]) -> Result<TokenLease, NoToken> {
        self.pick(product, exclude, None, Allow::Any)
    }

    /// The preferred token first, then the most remaining quota, then the fewest requests in flight.
    fn pick(
        &self,
        product: Product,
        exclude: &[usize],
        prefer: Option<&str>,
        allow: Allow<'_>,
    ) -> Result<TokenLease, NoToken> {
        let now = Instant::now();
        let mut tokens = lock(&self.state.tokens);
        let mut best: Option<(usize, Rank)> = None;
        let mut cooling: Option<(Duration, Option<String>)> = None;
        let mut busy = false;
        for (i, t) in tokens.iter_mut().enumerate() {
            // Not this request's to take: neither a candidate nor a reason to wait.
            if !allow.admits(t) {
                continue;
            }
            if let TokenStatus::Cooling { until } = t.status {
                if until > now {
                    if cooling.as_ref().is_none_or(|(w, _)| until - now < *w) {
                        cooling = Some((until - now, t.proxy_error.clone()));
                    }
                    continue;
                }
                t.status = TokenStatus::Active;
            }
            if matches!(t.status, TokenStatus::Expired | TokenStatus::Flagged | TokenStatus::Removed) || !t.enabled {
                continue;
            }
            let p = t.products[product.idx()];
            if let Some(wait) = p.cooling(now) {
                if cooling.as_ref().is_none_or(|(w, _)| wait < *w) {
                    cooling = Some((wait, None));
                }
                continue;
            }
            if exclude.contains(&i) {
                continue;
            }
            if t.in_flight + t.remote_in_flight >= self.settings.max_concurrency {
                busy = true;
                continue;
            }
            let preferred = prefer.is_some_and(|id| t.id == id);
            let rank =
                (preferred, p.remaining.unwrap_or(u32::MAX), std::cmp::Reverse(t.in_flight + t.remote_in_flight));
            if best.is_none_or(|(_, r)| rank > r) {
                best = Some((i, rank));
            }
        }
        match best {
            Some((i, _)) => {
                tokens[i].in_flight += 1;
                Ok(TokenLease {
                    index: i,
                    token: tokens[i].token.clone(),
                    proxy: tokens[i].proxy.clone(),
                    product,
                    state: self.state.clone(),
                })
            }
            None if busy => Err(NoToken::Busy),
            None => Err(cooling.map_or(NoToken::NoneUsable, |(d, why)| NoToken::Cooling(d, why))),
        }
    }

    /// Records how a request with `lease` ended, so the next pick knows.
    pub fn report(&self, lease: &TokenLease, outcome: Result<(), &UpstreamError>) {
        self.report_index(lease.index, lease.product, outcome);
    }

    pub fn report_index(&self, index: usize, product: Product, outcome: Result<(), &UpstreamError>) {
        let event = self.record(index, product, outcome);
        self.emit(event);
    }

    fn record(&self, index: usize, product: Product, outcome: Result<(), &UpstreamError>) -> Option<TokenEvent> {
        let mut tokens = lock(&self.state.tokens);
        let t = tokens.get_mut(index)?;
        if let Err(e) = outcome {
            t.last_error = Some((e.to_string(), crate::clock::now_secs()));
        }
        match outcome {
            Ok(()) => {
                t.fail_count = 0;
                t.proxy_error = None;
                let p = &mut t.products[product.idx()];
                p.remaining = p.remaining.map(|r| r.saturating_sub(1));
            }
            Err(UpstreamError::RateLimited { retry_after, .. }) => {
                // grok.com meters each product on its own: this one rests, the others keep serving.
                t.proxy_error = None;
                let cool = self.rest_after_429(*retry_after);
                let p = &mut t.products[product.idx()];
                p.cooling_until = Some(Instant::now() + cool);
                p.remaining = Some(0);
                tracing::warn!(token = %mask(&t.token), product = product.key(), cooldown_secs = cool.as_secs(), "upstream token rate limited for a product");
                return Some(TokenEvent::Product {
                    token: t.id.clone(),
                    product: product.key().into(),
                    remaining: Some(0),
                    until_ms: p.cooling_until.map(until_ms),
                });
            }
            Err(UpstreamError::ProxyFailed(why)) => {
                // Only this token leaves through that proxy; the others keep serving.
                let cool = self.settings.default_cooldown.min(Duration::from_secs(60));
                t.status = TokenStatus::Cooling { until: Instant::now() + cool };
                t.proxy_error = Some(why.clone());
                tracing::warn!(token = %mask(&t.token), cooldown_secs = cool.as_secs(), "upstream token's proxy failed");
                return Some(TokenEvent::Cooling {
                    token: t.id.clone(),
                    until_ms: until_ms(Instant::now() + cool),
                    why: Some(why.clone()),
                });
            }
            Err(UpstreamError::Auth(_)) => {
                t.fail_count += 1;
                if t.fail_count >= self.settings.fail_threshold {
                    t.status = TokenStatus::Expired;
                    tracing::error!(token = %mask(&t.token), "upstream token marked expired after repeated auth failures");
                    return Some(TokenEvent::Expired { token: t.id.clone() });
                }
            }
            Err(UpstreamError::CannedOutput(why)) => return flag(t, why),
            Err(_) => {}
        }
        None
    }

    /// Flags the account `id` names, which answered another request with the bytes `why` speaks of.
    pub fn flag(&self, id: &str, why: &str) {
        let event = {
            let mut tokens = lock(&self.state.tokens);
            match tokens.iter_mut().find(|t| t.id == id && t.status != TokenStatus::Removed) {
                Some(t) if t.status != TokenStatus::Flagged => {
                    t.last_error = Some((format!("canned output: {why}"), crate::clock::now_secs()));
                    flag(t, why)
                }
                _ => None,
            }
        };
        self.emit(event);
    }

    /// Applies the upstream's answer for one product: `remaining` (`None` = not said), and until when it
    /// is unavailable (`None` = available now).
    pub fn set_product_quota(&self, index: usize, product: Product, remaining: Option<u32>, until: Option<Instant>) {
        let mut tokens = lock(&self.state.tokens);
        let Some(t) = tokens.get_mut(index) else { return };
        let p = &mut t.products[product.idx()];
        p.remaining = remaining;
        p.cooling_until = until;
        t.checked_at = Some(crate::clock::now_secs());
        let event = TokenEvent::Product {
            token: t.id.clone(),
            product: product.key().into(),
            remaining,
            until_ms: until.map(until_ms),
        };
        drop(tokens);
        self.state.released.notify_waiters();
        self.emit(Some(event));
    }

    /// Remembers an error seen with a token outside a generation (a failed quota check), for the console.
    pub fn note_error(&self, index: usize, e: &UpstreamError) {
        if let Some(t) = lock(&self.state.tokens).get_mut(index) {
            t.last_error = Some((e.to_string(), crate::clock::now_secs()));
        }
    }

    /// (usable now, configured).
    pub fn capacity(&self) -> (usize, usize) {
        let now = Instant::now();
        let tokens = lock(&self.state.tokens);
        let usable = tokens.iter().filter(|t| t.label_and_cooldown(now).0 == "active").count();
        (usable, tokens.iter().filter(|t| t.status != TokenStatus::Removed).count())
    }

    /// Sets what grok.com said of an account's plan.
    pub fn set_plan(&self, index: usize, plan: Plan) {
        if let Some(t) = lock(&self.state.tokens).get_mut(index) {
            t.plan = Some(plan);
        }
    }

    pub fn plan(&self, index: usize) -> Option<Plan> {
        lock(&self.state.tokens).get(index).and_then(|t| t.plan)
    }

    /// Which accounts can make a video of `seconds`: free accounts stop at `FREE_VIDEO_SECONDS`, so a
    /// longer one skips them (their indexes), and when only free accounts are left to serve it the
    /// request cannot be served at all. An account whose plan is not known yet is tried.
    pub fn video_fit(&self, seconds: u32) -> VideoFit {
        if seconds <= FREE_VIDEO_SECONDS {
            return VideoFit::Any;
        }
        let tokens = lock(&self.state.tokens);
        let serving = |t: &&TokenState| {
            t.enabled && !matches!(t.status, TokenStatus::Expired | TokenStatus::Flagged | TokenStatus::Removed)
        };
        let free = tokens.iter().filter(serving).filter(|t| t.plan == Some(Plan::Basic)).count();
        let others = tokens.iter().filter(serving).count() - free;
        match (free, others) {
            (0, _) => VideoFit::Any,
            (_, 0) => VideoFit::None,
            _ => VideoFit::NotFree,
        }
    }

    /// Default rest for an exhausted product whose next availability the upstream did not say.
    pub fn default_cooldown(&self) -> Duration {
        self.settings.default_cooldown
    }

    /// How long an account rests after a 429: what the upstream said (else the default), at most
    /// `max_cooldown`.
    pub fn rest_after_429(&self, retry_after: Option<Duration>) -> Duration {
        retry_after.unwrap_or(self.settings.default_cooldown).min(self.settings.max_cooldown)
    }
}

/// A flagged account serves nothing until the operator adds its token again: grok.com does not say
/// when (or whether) it lifts the flag.
fn flag(t: &mut TokenState, why: &str) -> Option<TokenEvent> {
    t.status = TokenStatus::Flagged;
    tracing::error!(token = %mask(&t.token), %why, "upstream account flagged: it answers with canned media");
    Some(TokenEvent::Flagged { token: t.id.clone() })
}

#[cfg(test)]
mod tests {
    use crate::upstream::grok_web::token_pool::pick::*;
    use crate::upstream::grok_web::token_pool::{test_pool as pool, token_id};

    #[tokio::test]
    async fn the_account_holding_the_inputs_is_preferred_while_usable() {
        let p = pool(&["tok-a", "tok-b"], 1);
        let soon = || tokio::time::Instant::now() + Duration::from_millis(50);
        let b = token_id("tok-b");
        let lease = p.acquire_wait(Product::Video, &[], Some(&b), Allow::Any, soon()).await.unwrap();
        assert_eq!(lease.token, "tok-b");
        // At its cap, another account serves rather than the request waiting for it.
        let other = p.acquire_wait(Product::Video, &[], Some(&b), Allow::Any, soon()).await.unwrap();
        assert_eq!(other.token, "tok-a");
        assert_eq!(p.find(&b), Some(("tok-b".to_string(), None)));
        assert_eq!(p.find("000000000000"), None);
    }

    #[test]
    fn spreads_by_in_flight_and_caps_concurrency() {
        let p = pool(&["a", "b"], 1);
        let l1 = p.acquire(Product::Image, &[]).unwrap();
        let l2 = p.acquire(Product::Image, &[]).unwrap();
        assert_ne!(l1.index, l2.index);
        assert_eq!(p.acquire(Product::Image, &[]).err(), Some(NoToken::Busy));
        drop(l1);
        assert!(p.acquire(Product::Image, &[]).is_ok());
    }

    #[tokio::test]
    async fn waiting_acquire_gets_the_next_free_slot() {
        let p = std::sync::Arc::new(pool(&["a"], 1));
        let held = p.acquire(Product::Image, &[]).unwrap();
        let soon = tokio::time::Instant::now() + Duration::from_millis(50);
        assert_eq!(p.acquire_wait(Product::Image, &[], None, Allow::Any, soon).await.err(), Some(NoToken::Busy));
        let waiter = {
            let p = p.clone();
            tokio::spawn(async move {
                p.acquire_wait(
                    Product::Image,
                    &[],
                    None,
                    Allow::Any,
                    tokio::time::Instant::now() + Duration::from_secs(5),
                )
                .await
                .map(|l| l.index)
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        assert_eq!(waiter.await.unwrap(), Ok(0));
    }

    #[test]
    fn rate_limit_cools_that_product_only_and_auth_failures_expire() {
        let p = pool(&["a", "b"], 4);
        let l = p.acquire(Product::Image, &[]).unwrap();
        let limited = UpstreamError::RateLimited { retry_after: Some(Duration::from_secs(30)), message: String::new() };
        p.report(&l, Err(&limited));
        // The token rests for images; it still makes videos.
        assert_eq!(p.status(l.index), TokenStatus::Active);
        assert_eq!(p.acquire(Product::Video, &[1]).map(|v| v.index).ok(), Some(l.index));
        let other = p.acquire(Product::Image, &[]).unwrap();
        assert_ne!(other.index, l.index);
        let auth = UpstreamError::Auth(String::new());
        p.report(&other, Err(&auth));
        p.report(&other, Err(&auth));
        assert_eq!(p.status(other.index), TokenStatus::Expired);
        match p.acquire(Product::Image, &[]) {
            Err(NoToken::Cooling(d, None)) => assert!(d <= Duration::from_secs(30) && d > Duration::from_secs(28)),
            other => panic!("expected Cooling, got {:?}", other.map(|l| l.index)),
        }
        // `a` still serves videos, so it counts as usable.
        assert_eq!(p.capacity(), (1, 2));
    }

    /// chenyme/grok2api #986 and #1036: a long upstream `Retry-After` (a 24 h hint on a 429) parked
    /// an account until an operator cleared it. The rest is capped at `max_cooldown` (120 s here).
    #[test]
    fn a_long_retry_after_rests_an_account_no_longer_than_the_cap() {
        let p = pool(&["a"], 4);
        let l = p.acquire(Product::Image, &[]).unwrap();
        let day = UpstreamError::RateLimited { retry_after: Some(Duration::from_secs(86_400)), message: String::new() };
        p.report(&l, Err(&day));
        drop(l);
        match p.acquire(Product::Image, &[]) {
            Err(NoToken::Cooling(d, None)) => assert!(d <= Duration::from_secs(120) && d > Duration::from_secs(118)),
            other => panic!("expected Cooling, got {:?}", other.map(|l| l.index)),
        }
        // A short hint is kept as it is; no hint means the default rest.
        assert_eq!(p.rest_after_429(Some(Duration::from_secs(7))), Duration::from_secs(7));
        assert_eq!(p.rest_after_429(None), Duration::from_secs(60));
    }

    /// A request limited to one account (an extension: grok.com extends a post only with its maker)
    /// or away from a plan (a long video: not free accounts) is judged per account at each pick, so
    /// a token added meanwhile is held to the same rule.
    #[test]
    fn allow_is_judged_per_account_at_each_pick() {
        let p = pool(&["token-aaaa-1111", "token-bbbb-2222"], 4);
        let b = token_id("token-bbbb-2222");
        assert_eq!(p.pick(Product::Video, &[], None, Allow::Only(&b)).map(|l| l.index).ok(), Some(1));
        p.set_plan(0, Plan::Basic);
        p.set_plan(1, Plan::Basic);
        assert_eq!(p.pick(Product::Video, &[], None, Allow::NotPlan(Plan::Basic)).err(), Some(NoToken::NoneUsable));
        p.add(&["token-cccc-3333".to_string()]);
        assert_eq!(p.pick(Product::Video, &[], None, Allow::NotPlan(Plan::Basic)).map(|l| l.index).ok(), Some(2));
        assert!(p.pick(Product::Video, &[], None, Allow::Only(&b)).is_ok_and(|l| l.index == 1), "never the newcomer");
        assert_eq!(p.video_fit(10), VideoFit::NotFree);
        assert_eq!(p.video_fit(6), VideoFit::Any);
    }

    #[test]
    fn excluded_tokens_are_skipped() {
        let p = pool(&["a", "b"], 4);
        let first = p.acquire(Product::Image, &[]).unwrap();
        let second = p.acquire(Product::Image, &[first.index]).unwrap();
        assert_ne!(first.index, second.index);
        assert_eq!(p.acquire(Product::Image, &[0, 1]).err(), Some(NoToken::NoneUsable));
    }
}

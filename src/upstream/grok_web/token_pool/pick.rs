//! Handing out tokens, and learning from how their requests ended.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::secret::mask;
use crate::upstream::error::UpstreamError;
use crate::upstream::grok_web::token_pool::news::until_ms;
use crate::upstream::grok_web::token_pool::{
    FREE_VIDEO_SECONDS, Plan, PoolState, Product, SHARDS, SsoPool, TokenState, TokenStatus, lock,
};
use crate::upstream::tokens::TokenEvent;

/// How a token ranks for a pick; higher is better: remaining quota, fewest in flight, lowest index.
type Rank = (u32, std::cmp::Reverse<u32>, std::cmp::Reverse<usize>);

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
        if let Some(t) = self.state.shard(self.index).get_mut(self.index / SHARDS) {
            t.in_flight = t.in_flight.saturating_sub(1);
        }
        self.state.released.notify_waiters();
    }
}

/// Pools up to this size are searched whole at every pick, so the best token always wins. Larger
/// ones are searched in `PROBES` shards chosen at random (the best of those wins: the ranking is
/// exact within them, approximate across the pool), and whole only when those have nothing to give.
pub(super) const EXACT_UP_TO: usize = 1024;
const PROBES: usize = 2;

/// One pick's search: the best candidate so far, and why others were passed over.
struct Search<'a> {
    product: Product,
    exclude: &'a [usize],
    allow: Allow<'a>,
    cap: u32,
    now: Instant,
    /// (which guard, position in its shard, rank).
    best: Option<(usize, usize, Rank)>,
    cooling: Option<(Duration, Option<String>)>,
    busy: bool,
}

impl Search<'_> {
    /// Weighs token `i` (at `pos` of guard `g`); a cooldown that ran out is lifted on the way.
    fn weigh(&mut self, state: &PoolState, g: usize, pos: usize, i: usize, t: &mut TokenState) {
        // Not this request's to take: neither a candidate nor a reason to wait.
        if !self.allow.admits(t) {
            return;
        }
        if let TokenStatus::Cooling { until } = t.status {
            if until > self.now {
                if self.cooling.as_ref().is_none_or(|(w, _)| until - self.now < *w) {
                    self.cooling = Some((until - self.now, t.proxy_error.clone()));
                }
                return;
            }
            let before = t.class();
            t.status = TokenStatus::Active;
            state.recount(i, before, t);
        }
        if matches!(t.status, TokenStatus::Expired | TokenStatus::Flagged | TokenStatus::Removed) || !t.enabled {
            return;
        }
        let p = t.products[self.product.idx()];
        if let Some(wait) = p.cooling(self.now) {
            if self.cooling.as_ref().is_none_or(|(w, _)| wait < *w) {
                self.cooling = Some((wait, None));
            }
            return;
        }
        if self.exclude.contains(&i) {
            return;
        }
        let busy = t.in_flight + t.remote_in_flight;
        if busy >= self.cap {
            self.busy = true;
            return;
        }
        // Equal ranks go to the lowest index, whichever shard is searched first.
        let rank = (p.remaining.unwrap_or(u32::MAX), std::cmp::Reverse(busy), std::cmp::Reverse(i));
        if self.best.is_none_or(|(_, _, r)| rank > r) {
            self.best = Some((g, pos, rank));
        }
    }

    /// Weighs every token of the locked `shards` (by shard number), or only index `only`.
    fn weigh_all(&mut self, state: &PoolState, shards: &mut [(usize, ShardGuard<'_>)], only: Option<usize>) {
        for (g, (s, guard)) in shards.iter_mut().enumerate() {
            match only {
                Some(i) => {
                    if let Some(t) = guard.get_mut(i / SHARDS) {
                        self.weigh(state, g, i / SHARDS, i, t);
                    }
                }
                None => {
                    for (pos, t) in guard.iter_mut().enumerate() {
                        self.weigh(state, g, pos, pos * SHARDS + *s, t);
                    }
                }
            }
        }
    }

    /// Takes the best candidate found in `shards`, if any.
    fn take(&mut self, state: &Arc<PoolState>, shards: &mut [(usize, ShardGuard<'_>)]) -> Option<TokenLease> {
        let (g, pos, _) = self.best.take()?;
        let (s, guard) = &mut shards[g];
        let t = guard.get_mut(pos)?;
        t.in_flight += 1;
        Some(TokenLease {
            index: pos * SHARDS + *s,
            token: t.token.clone(),
            proxy: t.proxy.clone(),
            product: self.product,
            state: state.clone(),
        })
    }

    fn fail(self) -> NoToken {
        match (self.busy, self.cooling) {
            (true, _) => NoToken::Busy,
            (false, Some((d, why))) => NoToken::Cooling(d, why),
            (false, None) => NoToken::NoneUsable,
        }
    }
}

type ShardGuard<'a> = std::sync::MutexGuard<'a, Vec<TokenState>>;

/// Weighs the account at index `i` alone (one shard, one token) and takes it if it can serve.
fn one(state: &Arc<PoolState>, search: &mut Search<'_>, i: usize) -> Option<TokenLease> {
    let mut shards = [(i % SHARDS, state.shard(i))];
    search.weigh_all(state, &mut shards, Some(i));
    search.take(state, &mut shards)
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

    /// The preferred token first, then the most remaining quota, then the fewest requests in flight
    /// (see `EXACT_UP_TO` for how large pools are searched).
    fn pick(
        &self,
        product: Product,
        exclude: &[usize],
        prefer: Option<&str>,
        allow: Allow<'_>,
    ) -> Result<TokenLease, NoToken> {
        let state = &self.state;
        let mut search = Search {
            product,
            exclude,
            allow,
            cap: self.settings.max_concurrency,
            now: Instant::now(),
            best: None,
            cooling: None,
            busy: false,
        };
        if let Some(i) = prefer.and_then(|id| state.index_of(id)) {
            let mut first = Search { best: None, cooling: None, busy: false, ..search };
            if let Some(lease) = one(state, &mut first, i) {
                return Ok(lease);
            }
        }
        if let Allow::Only(id) = allow {
            let found = state.index_of(id).and_then(|i| one(state, &mut search, i));
            return found.ok_or_else(|| search.fail());
        }
        let len = state.len();
        if len <= EXACT_UP_TO {
            let mut shards: Vec<_> = (0..len.min(SHARDS)).map(|s| (s, lock(&state.shards[s]))).collect();
            search.weigh_all(state, &mut shards, None);
            return search.take(state, &mut shards).ok_or_else(|| search.fail());
        }
        let first = rand::random_range(0..SHARDS);
        let mut probed = [first; PROBES];
        for k in 1..PROBES {
            probed[k] = (first + k + rand::random_range(0..SHARDS - PROBES)) % SHARDS;
            while probed[..k].contains(&probed[k]) {
                probed[k] = (probed[k] + 1) % SHARDS;
            }
        }
        probed.sort_unstable();
        {
            // Ascending shard order whenever more than one lock is held: no two picks deadlock.
            let mut shards: Vec<_> = probed.iter().map(|&s| (s, lock(&state.shards[s]))).collect();
            search.weigh_all(state, &mut shards, None);
            if let Some(lease) = search.take(state, &mut shards) {
                return Ok(lease);
            }
        }
        // Nothing in the probes: the others, one shard at a time; the first with a candidate serves.
        for s in (0..SHARDS).map(|k| (first + k) % SHARDS).filter(|s| !probed.contains(s)) {
            let mut shards = [(s, lock(&state.shards[s]))];
            search.weigh_all(state, &mut shards, None);
            if let Some(lease) = search.take(state, &mut shards) {
                return Ok(lease);
            }
        }
        Err(search.fail())
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
        self.state.with(index, |t| self.learn(t, product, outcome)).flatten()
    }

    fn learn(&self, t: &mut TokenState, product: Product, outcome: Result<(), &UpstreamError>) -> Option<TokenEvent> {
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
        let event = self
            .state
            .with_id(id, |t| {
                (t.status != TokenStatus::Flagged).then(|| {
                    t.last_error = Some((format!("canned output: {why}"), crate::clock::now_secs()));
                    flag(t, why)
                })
            })
            .flatten()
            .flatten();
        self.emit(event);
    }

    /// Applies the upstream's answer for one product: `remaining` (`None` = not said), and until when it
    /// is unavailable (`None` = available now).
    pub fn set_product_quota(&self, index: usize, product: Product, remaining: Option<u32>, until: Option<Instant>) {
        let Some(event) = self.state.with(index, |t| {
            let p = &mut t.products[product.idx()];
            p.remaining = remaining;
            p.cooling_until = until;
            t.checked_at = Some(crate::clock::now_secs());
            TokenEvent::Product {
                token: t.id.clone(),
                product: product.key().into(),
                remaining,
                until_ms: until.map(until_ms),
            }
        }) else {
            return;
        };
        self.state.released.notify_waiters();
        self.emit(Some(event));
    }

    /// Remembers an error seen with a token outside a generation (a failed quota check), for the console.
    pub fn note_error(&self, index: usize, e: &UpstreamError) {
        self.state.with(index, |t| t.last_error = Some((e.to_string(), crate::clock::now_secs())));
    }

    /// (usable now, configured), from the census: no token is looked at.
    pub fn capacity(&self) -> (usize, usize) {
        let mut census = lock(&self.state.census);
        let usable = census.live - census.cooling(Instant::now()).min(census.live);
        (usable, census.live + census.disabled + census.expired + census.flagged)
    }

    /// Sets what grok.com said of an account's plan.
    pub fn set_plan(&self, index: usize, plan: Plan) {
        let event = self.state.with(index, |t| {
            t.plan = Some(plan);
            TokenEvent::Plan { token: t.id.clone(), plan: plan.key().into() }
        });
        self.emit(event);
    }

    pub fn plan(&self, index: usize) -> Option<Plan> {
        self.state.read(index, |t| t.plan).flatten()
    }

    /// Which accounts can make a video of `seconds`: free accounts stop at `FREE_VIDEO_SECONDS`, so a
    /// longer one skips them (their indexes), and when only free accounts are left to serve it the
    /// request cannot be served at all. An account whose plan is not known yet is tried.
    pub fn video_fit(&self, seconds: u32) -> VideoFit {
        if seconds <= FREE_VIDEO_SECONDS {
            return VideoFit::Any;
        }
        // Serving = live (enabled, not expired, flagged or removed), resting or not.
        let (free, others) = {
            let census = lock(&self.state.census);
            (census.free, census.live.saturating_sub(census.free))
        };
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
    fn big_pool(n: usize, cap: u32) -> crate::upstream::grok_web::token_pool::SsoPool {
        let names: Vec<String> = (0..n).map(|i| format!("token-{i:05}-big-pool")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        pool(&refs, cap)
    }

    /// Up to `EXACT_UP_TO` tokens every pick weighs the whole pool: the token with the most quota
    /// wins wherever it sits, and equal ranks go to the lowest index.
    #[test]
    fn a_pool_up_to_the_exact_size_ranks_every_token() {
        let p = big_pool(EXACT_UP_TO, 4);
        for i in 0..EXACT_UP_TO {
            p.set_product_quota(i, Product::Image, Some(10), None);
        }
        p.set_product_quota(777, Product::Image, Some(11), None);
        assert_eq!(p.acquire(Product::Image, &[]).map(|l| l.index).ok(), Some(777));
        let held = p.acquire(Product::Image, &[777]).unwrap();
        assert_eq!(held.index, 0);
        assert_eq!(p.acquire(Product::Image, &[777]).map(|l| l.index).ok(), Some(1), "index 0 has one in flight");
    }

    /// In a large pool the account named by `prefer` or `Allow::Only` is found by its id, and one
    /// usable token among 10,000 is found whichever shards a pick probes first.
    #[test]
    fn a_large_pool_finds_named_and_lone_accounts() {
        let n = 10_000;
        let p = big_pool(n, 1);
        let id = token_id("token-09876-big-pool");
        let lease = p.pick(Product::Video, &[], Some(&id), Allow::Any).unwrap();
        assert_eq!(lease.index, 9876);
        assert_eq!(p.pick(Product::Video, &[], None, Allow::Only(&id)).err(), Some(NoToken::Busy));
        drop(lease);
        assert_eq!(p.pick(Product::Video, &[], None, Allow::Only(&id)).map(|l| l.index).ok(), Some(9876));
        assert_eq!(p.pick(Product::Video, &[], None, Allow::Only("000000000000")).err(), Some(NoToken::NoneUsable));
        // Every account but two free ones is switched off: long videos find neither, others find both.
        for i in 0..n {
            let id = token_id(&format!("token-{i:05}-big-pool"));
            if i == 4242 || i == 8080 {
                p.set_plan(i, Plan::Basic);
            } else {
                p.update(&id, &crate::upstream::tokens::TokenPatch { enabled: Some(false), ..Default::default() })
                    .unwrap();
            }
        }
        assert_eq!(p.video_fit(10), VideoFit::None);
        assert_eq!(p.pick(Product::Video, &[], None, Allow::NotPlan(Plan::Basic)).err(), Some(NoToken::NoneUsable));
        let a = p.acquire(Product::Image, &[]).unwrap();
        let b = p.acquire(Product::Image, &[]).unwrap();
        let mut got = [a.index, b.index];
        got.sort_unstable();
        assert_eq!(got, [4242, 8080]);
        assert_eq!(p.acquire(Product::Image, &[]).err(), Some(NoToken::Busy));
        let limited = UpstreamError::RateLimited { retry_after: Some(Duration::from_secs(30)), message: String::new() };
        p.report(&a, Err(&limited));
        let other = b.index;
        drop(b);
        drop(a);
        assert_eq!(p.acquire(Product::Image, &[]).map(|l| l.index).ok(), Some(other));
        assert_eq!(p.acquire(Product::Image, &[other]).err().map(|e| matches!(e, NoToken::Cooling(..))), Some(true));
    }

    /// 64 threads pick from 10,000 tokens capped at one request each: no token is ever handed out
    /// twice at once, and every slot is back when the leases are gone.
    #[test]
    fn the_cap_holds_under_concurrency_in_a_large_pool() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let n = 10_000;
        let p = std::sync::Arc::new(big_pool(n, 1));
        let held: std::sync::Arc<Vec<AtomicBool>> =
            std::sync::Arc::new((0..n).map(|_| AtomicBool::new(false)).collect());
        let threads: Vec<_> = (0..64)
            .map(|k| {
                let (p, held) = (p.clone(), held.clone());
                std::thread::spawn(move || {
                    let mut mine = Vec::new();
                    for round in 0..300 {
                        let product = if k % 3 == 0 { Product::Video } else { Product::Image };
                        let lease = p.acquire(product, &[]).unwrap();
                        assert!(
                            !held[lease.index].swap(true, Ordering::SeqCst),
                            "token {} handed out twice",
                            lease.index
                        );
                        mine.push(lease);
                        if round % 3 == 2 {
                            for lease in mine.drain(..) {
                                held[lease.index].store(false, Ordering::SeqCst);
                            }
                        }
                    }
                    for lease in mine.drain(..) {
                        held[lease.index].store(false, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(p.snapshot().iter().all(|t| t.in_flight == 0));
        assert_eq!(p.capacity(), (n, n));
    }
}

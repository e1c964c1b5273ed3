//! The sso token pool: which account serves the next request. Picks the healthy token with the most
//! remaining quota (fewest in flight on ties), caps concurrency per token, cools tokens down after a
//! rate limit and expires them after repeated auth failures. This file holds what is known of each
//! token; `pick.rs` hands tokens out and learns from how their requests ended, `news.rs` is what
//! replicas tell each other, `admin.rs` what the operators see and change.

mod admin;
mod news;
mod pick;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::upstream::tokens::{InFlightCounts, Observer};

pub use self::admin::PatchError;
pub use self::pick::{Allow, NoToken, TokenLease, VideoFit};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenStatus {
    Active,
    Cooling {
        until: Instant,
    },
    Expired,
    /// Answered with canned media (`quality.rs`): never picked until the operator adds the token again.
    Flagged,
    /// Taken out through the admin API; kept so in-flight leases keep valid indexes.
    Removed,
}

impl TokenStatus {
    pub fn label(self, now: Instant) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Cooling { until } if until <= now => "active",
            Self::Cooling { .. } => "cooling",
            Self::Expired => "expired",
            Self::Flagged => "flagged",
            Self::Removed => "removed",
        }
    }
}

/// grok.com meters media per product (`/rest/media/imagine/quota_info`): a token out of video may
/// still make images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Product {
    Image,
    Edit,
    Video,
    Video720p,
    /// Images in quality mode (`enable_pro`), metered apart from `Image` (chenyme/grok2api d8d5c24d:
    /// "Image 2.0 as Quality Mode with a separate imagePro quota"; quota_info's `imagePro`).
    ImagePro,
}

impl Product {
    pub const ALL: [Product; 5] =
        [Product::Image, Product::Edit, Product::Video, Product::Video720p, Product::ImagePro];

    fn idx(self) -> usize {
        self as usize
    }

    /// The product's key in quota_info.
    pub fn key(self) -> &'static str {
        match self {
            Product::Image => "image",
            Product::Edit => "imageEdit",
            Product::Video => "video",
            Product::Video720p => "video720p",
            Product::ImagePro => "imagePro",
        }
    }
}

/// An account's grok.com plan, as `/rest/rate-limits` tells it (`wire::parse_plan`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Free: videos of at most `FREE_VIDEO_SECONDS`.
    Basic,
    SuperGrok,
    Heavy,
}

impl Plan {
    pub fn key(self) -> &'static str {
        match self {
            Plan::Basic => "basic",
            Plan::SuperGrok => "supergrok",
            Plan::Heavy => "heavy",
        }
    }
}

/// The longest video a free (Basic) account makes: longer ones are refused with 429 (chenyme/grok2api
/// #969, bisected: 5 and 6 s answered, 7, 8 and 15 s refused; #1030 caps free accounts at 6 s).
pub const FREE_VIDEO_SECONDS: u32 = 6;

#[derive(Debug, Clone, Copy, Default)]
struct ProductState {
    /// `None` = unknown (treated as plenty).
    remaining: Option<u32>,
    cooling_until: Option<Instant>,
}

impl ProductState {
    fn cooling(&self, now: Instant) -> Option<Duration> {
        self.cooling_until.filter(|u| *u > now).map(|u| u - now)
    }
}

pub use crate::upstream::tokens::token_id;

#[derive(Debug)]
struct TokenState {
    token: String,
    /// `token_id(token)`, worked out once: picks that prefer an account compare it under the lock.
    id: String,
    proxy: Option<String>,
    /// `config` (config, environment, tokens file) or `admin` (added at run time, kept in the state dir).
    source: &'static str,
    /// Why the current cooldown started, when it was the token's proxy.
    proxy_error: Option<String>,
    status: TokenStatus,
    /// Switched off in the console: kept, never picked.
    enabled: bool,
    note: Option<String>,
    last_error: Option<(String, u64)>,
    checked_at: Option<u64>,
    in_flight: u32,
    /// Requests other replicas have in flight with this token (their latest word, while it lasts).
    remote_in_flight: u32,
    fail_count: u32,
    products: [ProductState; Product::ALL.len()],
    /// `None` until grok.com told it.
    plan: Option<Plan>,
}

impl TokenState {
    fn new(token: String, proxy: Option<String>, source: &'static str) -> Self {
        Self {
            id: token_id(&token),
            token,
            proxy,
            source,
            proxy_error: None,
            status: TokenStatus::Active,
            enabled: true,
            note: None,
            last_error: None,
            checked_at: None,
            in_flight: 0,
            remote_in_flight: 0,
            fail_count: 0,
            products: [ProductState::default(); Product::ALL.len()],
            plan: None,
        }
    }

    /// The most any product has left (what "remaining" meant before products were told apart).
    fn remaining(&self) -> Option<u32> {
        if self.products.iter().any(|p| p.remaining.is_none()) {
            return None;
        }
        self.products.iter().filter_map(|p| p.remaining).max()
    }

    fn class(&self) -> Class {
        match self.status {
            TokenStatus::Removed => Class::Removed,
            _ if !self.enabled => Class::Disabled,
            TokenStatus::Expired => Class::Expired,
            TokenStatus::Flagged => Class::Flagged,
            status => {
                let own = match status {
                    TokenStatus::Cooling { until } => Some(until),
                    _ => None,
                };
                // Resting as a whole while every product rests: until the first is back.
                let every = self
                    .products
                    .iter()
                    .try_fold(None::<Instant>, |first, p| p.cooling_until.map(|u| Some(first.map_or(u, |f| f.min(u)))));
                Class::Live { until: own.max(every.flatten()), free: self.plan == Some(Plan::Basic) }
            }
        }
    }

    /// A token whose every product cools is, as a whole, cooling: until the first comes back.
    fn label_and_cooldown(&self, now: Instant) -> (&'static str, Option<Duration>) {
        match self.status {
            TokenStatus::Removed => ("removed", None),
            _ if !self.enabled => ("disabled", None),
            TokenStatus::Cooling { until } if until > now => ("cooling", Some(until - now)),
            TokenStatus::Expired => ("expired", None),
            TokenStatus::Flagged => ("flagged", None),
            _ => {
                let cooling: Vec<Duration> = self.products.iter().filter_map(|p| p.cooling(now)).collect();
                if cooling.len() == self.products.len() {
                    ("cooling", cooling.into_iter().min())
                } else {
                    ("active", None)
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_concurrency: u32,
    pub default_cooldown: Duration,
    /// The cap on a 429's rest (`grok.cooldown_max_secs`).
    pub max_cooldown: Duration,
    pub fail_threshold: u32,
}

/// grok.com's sso tokens and what is known of each (the upstream-neutral view of it is
/// `upstream::TokenPool`).
pub struct SsoPool {
    settings: PoolSettings,
    /// Shared with every lease handed out, which gives its slot back when dropped.
    state: Arc<PoolState>,
    /// Other replicas' in-flight counts per token: replica → (when said, token id → count). An entry
    /// lapses when its replica stops saying it (it died), so its requests stop counting.
    remote: Mutex<std::collections::HashMap<String, (Instant, InFlightCounts)>>,
    /// Told of every change an upstream answer makes to a token, so other replicas can apply it.
    observer: std::sync::OnceLock<Observer>,
}

/// How many locks the tokens are spread over. Token `i` lives in shard `i % SHARDS` at `i / SHARDS`,
/// so indexes stay stable (leases, `exclude` lists and refreshes hold them) while picks on different
/// shards do not wait for each other.
pub(super) const SHARDS: usize = 64;

/// The tokens under their shard locks, what is counted of them, and the signal that a slot came free.
struct PoolState {
    shards: Box<[Mutex<Vec<TokenState>>]>,
    /// `token_id` → index, for the picks and admin calls that name one account. Never shrinks: a
    /// removed token keeps its index (leases may hold it) and comes back there when added again.
    ids: RwLock<std::collections::HashMap<String, usize>>,
    /// Tokens ever added (removed ones included); indexes below it exist.
    len: AtomicUsize,
    /// Kept up to date by every change, so `/readyz` and `/metrics` never walk the tokens.
    census: Mutex<Census>,
    /// Signalled whenever a lease is returned, for requests waiting on a full pool.
    released: tokio::sync::Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PoolState {
    fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Vec::new())).collect(),
            ids: RwLock::new(std::collections::HashMap::new()),
            len: AtomicUsize::new(0),
            census: Mutex::new(Census::default()),
            released: tokio::sync::Notify::new(),
        }
    }

    fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    fn shard(&self, i: usize) -> std::sync::MutexGuard<'_, Vec<TokenState>> {
        lock(&self.shards[i % SHARDS])
    }

    /// The index of the token `id` names, removed or not.
    fn index_of(&self, id: &str) -> Option<usize> {
        self.ids.read().unwrap_or_else(|p| p.into_inner()).get(id).copied()
    }

    /// Appends a token; the caller holds the `ids` write lock, which keeps appends in index order.
    fn push(&self, ids: &mut std::collections::HashMap<String, usize>, t: TokenState) -> usize {
        let i = self.len();
        ids.entry(t.id.clone()).or_insert(i);
        let class = t.class();
        self.shard(i).push(t);
        lock(&self.census).count(i, class, true);
        self.len.store(i + 1, Ordering::Release);
        i
    }

    /// Runs `change` on token `i` and keeps the census right; `None` when there is no such token.
    fn with<R>(&self, i: usize, change: impl FnOnce(&mut TokenState) -> R) -> Option<R> {
        let mut shard = self.shard(i);
        let t = shard.get_mut(i / SHARDS)?;
        let before = t.class();
        let r = change(t);
        self.recount(i, before, t);
        Some(r)
    }

    /// Runs `change` on the token `id` names, unless it was removed.
    fn with_id<R>(&self, id: &str, change: impl FnOnce(&mut TokenState) -> R) -> Option<R> {
        let i = self.index_of(id)?;
        self.with(i, |t| (t.status != TokenStatus::Removed).then(|| change(t))).flatten()
    }

    /// Reads token `i`.
    fn read<R>(&self, i: usize, look: impl FnOnce(&TokenState) -> R) -> Option<R> {
        self.shard(i).get(i / SHARDS).map(look)
    }

    fn recount(&self, i: usize, before: Class, t: &TokenState) {
        let after = t.class();
        if after != before {
            lock(&self.census).moved(i, before, after);
        }
    }

    /// What `look` makes of every token, in index order. One shard is locked at a time, so picks go
    /// on meanwhile.
    fn collect<R>(&self, mut look: impl FnMut(usize, &TokenState) -> Option<R>) -> Vec<R> {
        let mut out: Vec<(usize, R)> = Vec::with_capacity(self.len());
        for (s, shard) in self.shards.iter().enumerate() {
            for (pos, t) in lock(shard).iter().enumerate() {
                let i = pos * SHARDS + s;
                if let Some(r) = look(i, t) {
                    out.push((i, r));
                }
            }
        }
        out.sort_unstable_by_key(|(i, _)| *i);
        out.into_iter().map(|(_, r)| r).collect()
    }

    /// Changes every token, one shard at a time.
    fn each(&self, mut change: impl FnMut(&mut TokenState)) {
        for (s, shard) in self.shards.iter().enumerate() {
            for (pos, t) in lock(shard).iter_mut().enumerate() {
                let before = t.class();
                change(t);
                self.recount(pos * SHARDS + s, before, t);
            }
        }
    }
}

/// Where a token stands for the counts `/readyz` and `/metrics` give, worked out from its fields
/// alone (no clock): a resting token is `Live` with the instant it is back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Removed,
    Disabled,
    Expired,
    Flagged,
    Live {
        /// Until when the token as a whole rests (its own cooldown, or every product's).
        until: Option<Instant>,
        /// A free (Basic) account, for `video_fit`.
        free: bool,
    },
}

/// The pool's counts, changed with each token's `Class`. Resting tokens are kept by the instant they
/// are back; the ones whose instant passed are dropped when counted, so a count costs the tokens
/// that came back since the last one, not the pool's size.
#[derive(Debug, Default)]
struct Census {
    removed: usize,
    disabled: usize,
    expired: usize,
    flagged: usize,
    live: usize,
    free: usize,
    resting: std::collections::BTreeSet<(Instant, usize)>,
}

impl Census {
    fn count(&mut self, i: usize, class: Class, add: bool) {
        let n = match class {
            Class::Removed => &mut self.removed,
            Class::Disabled => &mut self.disabled,
            Class::Expired => &mut self.expired,
            Class::Flagged => &mut self.flagged,
            Class::Live { until, free } => {
                if free {
                    self.free = if add { self.free + 1 } else { self.free.saturating_sub(1) };
                }
                if let Some(until) = until {
                    if add {
                        self.resting.insert((until, i));
                    } else {
                        self.resting.remove(&(until, i));
                    }
                }
                &mut self.live
            }
        };
        *n = if add { *n + 1 } else { n.saturating_sub(1) };
    }

    fn moved(&mut self, i: usize, before: Class, after: Class) {
        self.count(i, before, false);
        self.count(i, after, true);
    }

    /// Live tokens resting at `now`.
    fn cooling(&mut self, now: Instant) -> usize {
        while self.resting.first().is_some_and(|(until, _)| *until <= now) {
            self.resting.pop_first();
        }
        self.resting.len()
    }
}

/// Splits a token entry `TOKEN` or `TOKEN|PROXY_URL` into its normalized token and proxy.
pub fn parse_entry(raw: &str) -> (String, Option<String>) {
    let (token, proxy) = match raw.split_once('|') {
        Some((t, p)) => (t, Some(p.trim()).filter(|p| !p.is_empty()).map(str::to_owned)),
        None => (raw, None),
    };
    (normalize_token(token), proxy)
}

/// Strip what people paste around a token: `sso=` prefix, trailing cookie attributes, whitespace, non-ASCII.
pub fn normalize_token(raw: &str) -> String {
    let raw = raw.trim();
    let raw = raw.strip_prefix("sso=").unwrap_or(raw);
    let raw = raw.split(';').next().unwrap_or("");
    raw.chars().filter(|c| c.is_ascii() && !c.is_ascii_whitespace() && !c.is_ascii_control()).collect()
}

impl SsoPool {
    pub fn new(raw_tokens: &[String], settings: PoolSettings) -> Self {
        let state = PoolState::new();
        {
            let mut ids = state.ids.write().unwrap_or_else(|p| p.into_inner());
            let mut seen = std::collections::HashSet::new();
            for (token, proxy) in raw_tokens.iter().map(|t| parse_entry(t)) {
                if !token.is_empty() && seen.insert(token.clone()) {
                    state.push(&mut ids, TokenState::new(token, proxy, "config"));
                }
            }
        }
        Self {
            settings,
            state: Arc::new(state),
            observer: std::sync::OnceLock::new(),
            remote: Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Tokens ever added, removed ones included.
    pub fn len(&self) -> usize {
        self.state.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[cfg(test)]
    fn status(&self, i: usize) -> TokenStatus {
        self.state.read(i, |t| t.status).unwrap_or(TokenStatus::Removed)
    }
}

/// A pool of `tokens` (`TOKEN` or `TOKEN|PROXY`) for the tests of this folder: a cap of `cap` requests per
/// token, 60 s rests, expired after 2 auth failures.
#[cfg(test)]
fn test_pool(tokens: &[&str], cap: u32) -> SsoPool {
    let tokens: Vec<String> = tokens.iter().map(|s| s.to_string()).collect();
    SsoPool::new(
        &tokens,
        PoolSettings {
            max_concurrency: cap,
            default_cooldown: Duration::from_secs(60),
            max_cooldown: Duration::from_secs(120),
            fail_threshold: 2,
        },
    )
}

#[cfg(test)]
mod tests {
    use crate::upstream::grok_web::token_pool::*;

    #[test]
    fn normalizes_pasted_tokens() {
        assert_eq!(normalize_token(" sso=abc.def; Path=/ "), "abc.def");
        assert_eq!(normalize_token("a b\u{e9}c"), "abc");
    }
}

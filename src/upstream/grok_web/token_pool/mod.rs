//! The sso token pool: which account serves the next request. Picks the healthy token with the most
//! remaining quota (fewest in flight on ties), caps concurrency per token, cools tokens down after a
//! rate limit and expires them after repeated auth failures. This file holds what is known of each
//! token; `pick.rs` hands tokens out and learns from how their requests ended, `news.rs` is what
//! replicas tell each other, `admin.rs` what the operators see and change.

mod admin;
mod news;
mod pick;

use std::sync::{Arc, Mutex};
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

/// The tokens under their lock, and the signal that a slot came free.
struct PoolState {
    tokens: Mutex<Vec<TokenState>>,
    /// Signalled whenever a lease is returned, for requests waiting on a full pool.
    released: tokio::sync::Notify,
}

fn lock(m: &Mutex<Vec<TokenState>>) -> std::sync::MutexGuard<'_, Vec<TokenState>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
        let mut seen = std::collections::HashSet::new();
        let tokens = raw_tokens
            .iter()
            .map(|t| parse_entry(t))
            .filter(|(t, _)| !t.is_empty() && seen.insert(t.clone()))
            .map(|(token, proxy)| TokenState::new(token, proxy, "config"))
            .collect();
        Self {
            settings,
            state: Arc::new(PoolState { tokens: Mutex::new(tokens), released: tokio::sync::Notify::new() }),
            observer: std::sync::OnceLock::new(),
            remote: Mutex::new(std::collections::HashMap::new()),
        }
    }

    pub fn len(&self) -> usize {
        lock(&self.state.tokens).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[cfg(test)]
    fn status(&self, i: usize) -> TokenStatus {
        lock(&self.state.tokens)[i].status
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

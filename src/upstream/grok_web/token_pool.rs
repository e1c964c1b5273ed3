//! The sso token pool: which account serves the next request. Picks the healthy token with the most
//! remaining quota (fewest in flight on ties), caps concurrency per token, cools tokens down after a
//! rate limit and expires them after repeated auth failures.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::secret::mask;
use crate::upstream::error::UpstreamError;
use crate::upstream::tokens::{
    ExportedToken, InFlightCounts, Observer, ProductInfo, TokenEvent, TokenInfo, TokenPatch,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenStatus {
    Active,
    Cooling {
        until: Instant,
    },
    Expired,
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
}

impl Product {
    pub const ALL: [Product; 4] = [Product::Image, Product::Edit, Product::Video, Product::Video720p];

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
        }
    }
}

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

#[derive(Debug, PartialEq, Eq)]
pub enum PatchError {
    NotFound,
}

/// How a token ranks for a pick; higher is better.
type Rank = (bool, u32, std::cmp::Reverse<u32>);

/// A stable, non-secret name for a token: the first 12 hex digits of its SHA-256.
pub fn token_id(token: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(token.as_bytes())[..6])
}

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
    products: [ProductState; 4],
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
            products: [ProductState::default(); 4],
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
    pub fail_threshold: u32,
}

pub struct TokenPool {
    settings: PoolSettings,
    shared: Arc<Shared>,
    /// Other replicas' in-flight counts per token: replica → (when said, token id → count). An entry
    /// lapses when its replica stops saying it (it died), so its requests stop counting.
    remote: Mutex<std::collections::HashMap<String, (Instant, InFlightCounts)>>,
    /// Told of every change an upstream answer makes to a token, so other replicas can apply it.
    observer: std::sync::OnceLock<Observer>,
}

fn until_ms(at: Instant) -> u64 {
    crate::clock::now_ms() + at.saturating_duration_since(Instant::now()).as_millis() as u64
}

fn instant_at(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms.saturating_sub(crate::clock::now_ms()))
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
    /// Every usable token is cooling down; the first is back after this long. When that token cools
    /// because its proxy failed, the proxy failure is the better answer than "rate limited".
    Cooling(Duration, Option<String>),
    /// Every usable token is at its concurrency cap.
    Busy,
}

impl From<NoToken> for UpstreamError {
    fn from(e: NoToken) -> Self {
        match e {
            NoToken::NoneUsable => {
                UpstreamError::Auth("no usable upstream token (none configured, or all expired)".into())
            }
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

impl TokenPool {
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
            shared: Arc::new(Shared { tokens: Mutex::new(tokens), released: tokio::sync::Notify::new() }),
            observer: std::sync::OnceLock::new(),
            remote: Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Like `acquire`, but when every usable token is merely at its concurrency cap, waits (until
    /// `deadline`) for a slot instead of failing: a burst queues briefly rather than bouncing.
    /// `prefer` (a `token_id`) names the account that already holds the job's inputs: it is taken
    /// whenever it is usable, whatever the others' standing.
    pub async fn acquire_wait(
        &self,
        product: Product,
        exclude: &[usize],
        prefer: Option<&str>,
        deadline: tokio::time::Instant,
    ) -> Result<TokenLease, NoToken> {
        loop {
            let released = self.shared.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            match self.pick(product, exclude, prefer) {
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
        self.pick(product, exclude, None)
    }

    /// The preferred token first, then the most remaining quota, then the fewest requests in flight.
    fn pick(&self, product: Product, exclude: &[usize], prefer: Option<&str>) -> Result<TokenLease, NoToken> {
        let now = Instant::now();
        let mut tokens = lock(&self.shared.tokens);
        let mut best: Option<(usize, Rank)> = None;
        let mut cooling: Option<(Duration, Option<String>)> = None;
        let mut busy = false;
        for (i, t) in tokens.iter_mut().enumerate() {
            if let TokenStatus::Cooling { until } = t.status {
                if until > now {
                    if cooling.as_ref().is_none_or(|(w, _)| until - now < *w) {
                        cooling = Some((until - now, t.proxy_error.clone()));
                    }
                    continue;
                }
                t.status = TokenStatus::Active;
            }
            if matches!(t.status, TokenStatus::Expired | TokenStatus::Removed) || !t.enabled {
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
                    shared: self.shared.clone(),
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

    /// This replica's requests in flight per token (only tokens with some), for the other replicas.
    pub fn in_flight_counts(&self) -> InFlightCounts {
        lock(&self.shared.tokens).iter().filter(|t| t.in_flight > 0).map(|t| (t.id.clone(), t.in_flight)).collect()
    }

    /// Another replica's latest in-flight counts (`None` just re-checks which entries lapsed): they count
    /// against each token's concurrency cap here for `lasts`, unless renewed.
    pub fn remote_in_flight(&self, replica: Option<(&str, InFlightCounts)>, lasts: Duration) {
        let now = Instant::now();
        let mut remote = self.remote.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((replica, counts)) = replica {
            remote.insert(replica.to_owned(), (now + lasts, counts));
        }
        remote.retain(|_, (until, _)| *until > now);
        let mut sums: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
        for (_, counts) in remote.values() {
            for (id, n) in counts {
                *sums.entry(id.as_str()).or_default() += n;
            }
        }
        let mut tokens = lock(&self.shared.tokens);
        let mut freed = false;
        for t in tokens.iter_mut() {
            let n = sums.get(t.id.as_str()).copied().unwrap_or(0);
            freed |= n < t.remote_in_flight;
            t.remote_in_flight = n;
        }
        drop(tokens);
        if freed {
            self.shared.released.notify_waiters();
        }
    }

    /// Tells `observer` of every token change upstream answers make from now on (once).
    pub fn observe(&self, observer: Observer) {
        let _ = self.observer.set(observer);
    }

    fn emit(&self, event: Option<TokenEvent>) {
        if let (Some(event), Some(observer)) = (event, self.observer.get()) {
            observer(event);
        }
    }

    /// Applies a change another replica saw (nothing is emitted again).
    pub fn apply(&self, event: &TokenEvent) {
        let mut tokens = lock(&self.shared.tokens);
        let Some(t) = tokens.iter_mut().find(|t| t.id == event.token() && t.status != TokenStatus::Removed) else {
            return;
        };
        match event {
            TokenEvent::Product { product, remaining, until_ms, .. } => {
                let Some(p) = Product::ALL.iter().find(|p| p.key() == product) else { return };
                let st = &mut t.products[p.idx()];
                st.remaining = *remaining;
                st.cooling_until = until_ms.map(instant_at);
            }
            TokenEvent::Cooling { until_ms, why, .. } => {
                t.status = TokenStatus::Cooling { until: instant_at(*until_ms) };
                t.proxy_error = why.clone();
            }
            TokenEvent::Expired { .. } => t.status = TokenStatus::Expired,
        }
        drop(tokens);
        self.shared.released.notify_waiters();
    }

    pub fn report_index(&self, index: usize, product: Product, outcome: Result<(), &UpstreamError>) {
        let event = self.record(index, product, outcome);
        self.emit(event);
    }

    fn record(&self, index: usize, product: Product, outcome: Result<(), &UpstreamError>) -> Option<TokenEvent> {
        let mut tokens = lock(&self.shared.tokens);
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
                let cool = retry_after.unwrap_or(self.settings.default_cooldown);
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
            Err(_) => {}
        }
        None
    }

    /// (usable now, configured).
    pub fn capacity(&self) -> (usize, usize) {
        let now = Instant::now();
        let tokens = lock(&self.shared.tokens);
        let usable = tokens.iter().filter(|t| t.label_and_cooldown(now).0 == "active").count();
        (usable, tokens.iter().filter(|t| t.status != TokenStatus::Removed).count())
    }

    pub fn snapshot(&self) -> Vec<TokenInfo> {
        let now = Instant::now();
        lock(&self.shared.tokens)
            .iter()
            .filter(|t| t.status != TokenStatus::Removed)
            .map(|t| {
                let (status, cooldown) = t.label_and_cooldown(now);
                TokenInfo {
                    source: t.source,
                    id: t.id.clone(),
                    token: mask(&t.token),
                    status,
                    enabled: t.enabled,
                    note: t.note.clone(),
                    last_error: t.last_error.as_ref().map(|(e, _)| e.clone()),
                    last_error_at: t.last_error.as_ref().map(|(_, at)| *at),
                    checked_at: t.checked_at,
                    in_flight: t.in_flight,
                    fail_count: t.fail_count,
                    remaining: t.remaining(),
                    cooldown_secs: cooldown.map(|d| d.as_secs().max(1)),
                    proxy: t.proxy.as_deref().map(super::browser::redact_proxy),
                    products: Product::ALL
                        .iter()
                        .map(|p| {
                            let st = t.products[p.idx()];
                            let cooling = st.cooling(now).map(|d| d.as_secs().max(1));
                            (
                                p.key(),
                                ProductInfo {
                                    remaining: st.remaining,
                                    cooldown_secs: cooling,
                                    refills_at: cooling.map(|c| crate::clock::now_secs() + c),
                                },
                            )
                        })
                        .collect(),
                }
            })
            .collect()
    }

    /// Adds tokens (or brings back removed/expired ones); returns how many became usable.
    pub fn add(&self, raw: &[String]) -> usize {
        let mut tokens = lock(&self.shared.tokens);
        let mut added = 0;
        for (token, proxy) in raw.iter().map(|t| parse_entry(t)).filter(|(t, _)| !t.is_empty()) {
            match tokens.iter_mut().find(|t| t.token == token) {
                Some(t) if t.status.label(Instant::now()) == "active" => {
                    t.proxy = proxy.or(t.proxy.take());
                }
                Some(t) => {
                    t.proxy = proxy.or(t.proxy.take());
                    t.status = TokenStatus::Active;
                    t.fail_count = 0;
                    added += 1;
                }
                None => {
                    tokens.push(TokenState::new(token, proxy, "admin"));
                    added += 1;
                }
            }
        }
        drop(tokens);
        self.shared.released.notify_waiters();
        added
    }

    /// Adds one token as the console imports it: `false` when the pool already holds it (a removed or
    /// expired one comes back, as with `add`).
    pub fn add_one(&self, token: String, proxy: Option<String>, note: Option<String>) -> bool {
        let id = token_id(&token);
        if self.holds(&id) {
            return false;
        }
        let entry = match &proxy {
            Some(p) => format!("{token}|{p}"),
            None => token,
        };
        self.add(&[entry]);
        if note.is_some() {
            let _ = self.update(&id, &TokenPatch { note: Some(note), ..TokenPatch::default() });
        }
        true
    }

    /// Remembers an error seen with a token outside a generation (a failed quota check), for the console.
    pub fn note_error(&self, index: usize, e: &UpstreamError) {
        if let Some(t) = lock(&self.shared.tokens).get_mut(index) {
            t.last_error = Some((e.to_string(), crate::clock::now_secs()));
        }
    }

    /// The pool serves (or may serve again by itself) the token `id` names: not removed, not expired.
    pub fn holds(&self, id: &str) -> bool {
        lock(&self.shared.tokens)
            .iter()
            .any(|t| t.id == id && !matches!(t.status, TokenStatus::Removed | TokenStatus::Expired))
    }

    /// Changes what the console may change of a token added at run time.
    pub fn update(&self, id: &str, patch: &TokenPatch) -> Result<(), PatchError> {
        let mut tokens = lock(&self.shared.tokens);
        let t =
            tokens.iter_mut().find(|t| t.status != TokenStatus::Removed && t.id == id).ok_or(PatchError::NotFound)?;
        if let Some(enabled) = patch.enabled {
            t.enabled = enabled;
        }
        if let Some(note) = &patch.note {
            t.note = note.clone().filter(|n| !n.trim().is_empty());
        }
        if let Some(proxy) = &patch.proxy {
            t.proxy = proxy.clone();
            t.proxy_error = None;
        }
        drop(tokens);
        self.shared.released.notify_waiters();
        Ok(())
    }

    /// Where a token came from (`config` or `admin`), unless it was removed.
    pub fn source_of(&self, id: &str) -> Option<&'static str> {
        lock(&self.shared.tokens).iter().find(|t| t.status != TokenStatus::Removed && t.id == id).map(|t| t.source)
    }

    /// The pool's index of the token `id` names, for a refresh of that one token.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        lock(&self.shared.tokens).iter().position(|t| t.status != TokenStatus::Removed && t.id == id)
    }

    /// Every token with its proxy, note and switch, for an export (the full values: the operator's backup).
    pub fn export(&self) -> Vec<ExportedToken> {
        lock(&self.shared.tokens)
            .iter()
            .filter(|t| t.status != TokenStatus::Removed)
            .map(|t| ExportedToken {
                token: t.token.clone(),
                proxy: t.proxy.clone(),
                note: t.note.clone(),
                enabled: t.enabled,
            })
            .collect()
    }

    /// Takes a token out of rotation by its id; in-flight requests finish.
    pub fn remove(&self, id: &str) -> bool {
        let mut tokens = lock(&self.shared.tokens);
        match tokens.iter_mut().find(|t| t.status != TokenStatus::Removed && t.id == id) {
            Some(t) => {
                t.status = TokenStatus::Removed;
                true
            }
            None => false,
        }
    }

    /// (index, token, proxy) of every token worth asking the upstream about.
    /// The token (and its proxy) a `token_id` names, unless it was removed.
    pub fn find(&self, id: &str) -> Option<(String, Option<String>)> {
        lock(&self.shared.tokens)
            .iter()
            .find(|t| t.status != TokenStatus::Removed && t.id == id)
            .map(|t| (t.token.clone(), t.proxy.clone()))
    }

    pub fn refreshable(&self) -> Vec<(usize, String, Option<String>)> {
        lock(&self.shared.tokens)
            .iter()
            .enumerate()
            .filter(|(_, t)| !matches!(t.status, TokenStatus::Removed | TokenStatus::Expired))
            .map(|(i, t)| (i, t.token.clone(), t.proxy.clone()))
            .collect()
    }

    /// Applies the upstream's answer for one product: `remaining` (`None` = not said), and until when it
    /// is unavailable (`None` = available now).
    pub fn set_product_quota(&self, index: usize, product: Product, remaining: Option<u32>, until: Option<Instant>) {
        let mut tokens = lock(&self.shared.tokens);
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
        self.shared.released.notify_waiters();
        self.emit(Some(event));
    }

    /// Default rest for an exhausted product whose next availability the upstream did not say.
    pub fn default_cooldown(&self) -> Duration {
        self.settings.default_cooldown
    }

    /// Counts by health label, for metrics.
    pub fn health(&self) -> Vec<(&'static str, usize)> {
        let now = Instant::now();
        let tokens = lock(&self.shared.tokens);
        ["active", "cooling", "expired", "disabled"]
            .into_iter()
            .map(|l| (l, tokens.iter().filter(|t| t.label_and_cooldown(now).0 == l).count()))
            .collect()
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

    #[tokio::test]
    async fn the_account_holding_the_inputs_is_preferred_while_usable() {
        let p = pool(&["tok-a", "tok-b"], 1);
        let soon = || tokio::time::Instant::now() + Duration::from_millis(50);
        let b = token_id("tok-b");
        let lease = p.acquire_wait(Product::Video, &[], Some(&b), soon()).await.unwrap();
        assert_eq!(lease.token, "tok-b");
        // At its cap, another account serves rather than the request waiting for it.
        let other = p.acquire_wait(Product::Video, &[], Some(&b), soon()).await.unwrap();
        assert_eq!(other.token, "tok-a");
        assert_eq!(p.find(&b), Some(("tok-b".to_string(), None)));
        assert_eq!(p.find("000000000000"), None);
    }

    #[test]
    fn normalizes_pasted_tokens() {
        assert_eq!(normalize_token(" sso=abc.def; Path=/ "), "abc.def");
        assert_eq!(normalize_token("a b\u{e9}c"), "abc");
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
        assert_eq!(p.acquire_wait(Product::Image, &[], None, soon).await.err(), Some(NoToken::Busy));
        let waiter = {
            let p = p.clone();
            tokio::spawn(async move {
                p.acquire_wait(Product::Image, &[], None, tokio::time::Instant::now() + Duration::from_secs(5))
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

    #[test]
    fn admin_add_remove_and_quota_refresh() {
        let p = pool(&["token-aaaa-1111", "token-bbbb-2222"], 4);
        let id = token_id("token-aaaa-1111");
        assert!(p.remove(&id));
        assert!(!p.remove(&id));
        assert_eq!(p.capacity(), (1, 1));
        assert!(p.snapshot().iter().all(|t| t.id != id && !t.token.contains("token-bbbb-2222")));
        assert_eq!(p.add(&["sso=token-aaaa-1111; Path=/".into(), "token-cccc-3333".into()]), 2);
        assert_eq!(p.capacity(), (3, 3));
        let later = Some(Instant::now() + Duration::from_secs(60));
        for product in Product::ALL {
            p.set_product_quota(2, product, Some(0), later);
        }
        assert_eq!(p.snapshot()[2].status, "cooling", "every product used up: the token as a whole rests");
        p.set_product_quota(2, Product::Video, Some(5), None);
        let snap = &p.snapshot()[2];
        assert_eq!((snap.status, snap.remaining), ("active", Some(5)));
        assert_eq!(snap.products["video"].remaining, Some(5));
        assert!(snap.products["image"].cooldown_secs.is_some());
        assert_eq!(p.acquire(Product::Image, &[0, 1]).err().map(|e| matches!(e, NoToken::Cooling(..))), Some(true));
        assert_eq!(p.acquire(Product::Video, &[0, 1]).map(|l| l.index).ok(), Some(2));
    }

    #[test]
    fn disabled_tokens_are_kept_but_never_picked_and_imports_see_duplicates() {
        let p = pool(&["token-aaaa-1111"], 4);
        assert!(p.add_one("token-bbbb-2222".into(), None, Some("spare".into())));
        assert!(!p.add_one("token-bbbb-2222".into(), None, None), "already held");
        let b = token_id("token-bbbb-2222");
        p.update(&token_id("token-aaaa-1111"), &TokenPatch { enabled: Some(false), ..TokenPatch::default() }).unwrap();
        assert_eq!(p.acquire(Product::Image, &[]).map(|l| l.index).ok(), Some(1), "only the enabled one serves");
        p.update(&b, &TokenPatch { enabled: Some(false), ..TokenPatch::default() }).unwrap();
        assert_eq!(p.acquire(Product::Image, &[]).err(), Some(NoToken::NoneUsable));
        let snap = p.snapshot();
        assert_eq!((snap[1].status, snap[1].note.as_deref()), ("disabled", Some("spare")));
        assert_eq!(p.health().iter().find(|(l, _)| *l == "disabled").map(|(_, n)| *n), Some(2));
        p.update(
            &b,
            &TokenPatch { note: Some(None), proxy: Some(Some("http://127.0.0.1:1".into())), ..TokenPatch::default() },
        )
        .unwrap();
        assert_eq!(p.snapshot()[1].note, None);
        assert_eq!(p.find(&b).unwrap().1.as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(p.update("000000000000", &TokenPatch::default()), Err(PatchError::NotFound));
    }

    #[test]
    fn other_replicas_requests_count_against_the_cap_until_their_word_lapses() {
        let p = pool(&["token-aaaa-1111"], 1);
        let id = token_id("token-aaaa-1111");
        p.remote_in_flight(Some(("r1", [(id.clone(), 1)].into())), Duration::from_millis(50));
        assert_eq!(p.acquire(Product::Image, &[]).err(), Some(NoToken::Busy));
        std::thread::sleep(Duration::from_millis(60));
        p.remote_in_flight(None, Duration::from_millis(50));
        assert!(p.acquire(Product::Image, &[]).is_ok(), "a replica that stopped saying it no longer counts");
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

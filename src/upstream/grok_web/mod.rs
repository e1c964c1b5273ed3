//! The grok.com web client: sso-cookie auth over a token pool, the Imagine WebSocket for
//! text-to-image, upload + conversation stream for edits, and cookie-authenticated asset downloads.
//! Every byte to grok.com leaves through the browser transport (`browser/`).

pub mod browser;
mod classify;
mod conversation;
mod imagine;
pub mod ndjson;
pub mod saved_tokens;
pub mod statsig;
pub mod token_import;
pub mod token_pool;
mod wire;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures_util::StreamExt;
use http::Method;
use http::header::{HeaderMap, HeaderName, HeaderValue};

pub use token_pool::{PoolSettings, Product, SsoPool};

use self::browser::{BrowserProfile, BrowserTransport, Egress, FlareSolverr, TransportSettings};
use crate::config::GrokWebConfig;
use crate::jobs::{EditJob, ImageJob, ProgressSink, ProgressSlots, VideoJob};
use crate::media::kind::sniff_media_type;
use crate::metrics::Metrics;
use crate::secret::mask;
use crate::upstream::assets::{Asset, VideoAssets};
use crate::upstream::error::{UpstreamError, outcome_label};
use crate::upstream::tokens::{ImportLine, ImportReport, TokenChangeError, TokenPatch};

pub struct GrokWebClient {
    /// Where tokens added at run time are kept (`state.dir`); `None` = in memory only.
    saved: Option<Arc<saved_tokens::SavedTokens>>,
    transport: BrowserTransport,
    statsig: statsig::Statsig,
    solver: Option<FlareSolverr>,
    cfg: GrokWebConfig,
    pool: SsoPool,
    metrics: Arc<Metrics>,
}

/// One token checked out for a call, and where its traffic leaves from.
pub(crate) struct Account {
    pub token: String,
    /// `token_id`: names the account in media origins and journaled video references.
    pub id: String,
    pub egress: Egress,
}

impl GrokWebClient {
    pub fn new(cfg: GrokWebConfig, metrics: Arc<Metrics>) -> Result<Self, String> {
        crate::install_crypto_provider();
        let profile = BrowserProfile::select(&cfg.browser, &cfg.platform, cfg.user_agent.as_deref())?;
        let ca_pem = match (&cfg.ca_file, &cfg.ca_pem) {
            (Some(path), _) => Some(std::fs::read(path).map_err(|e| format!("grok.ca_file {}: {e}", path.display()))?),
            (None, Some(pem)) => Some(pem.clone().into_bytes()),
            (None, None) => None,
        };
        check_entries(&cfg.tokens)?;
        let solver = match cfg.flaresolverr_url.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
            Some(url) => Some(FlareSolverr::new(
                url,
                Duration::from_secs(cfg.flaresolverr_timeout_secs.max(5)),
                ca_pem.as_deref(),
            )?),
            None => None,
        };
        let statsig =
            statsig::Statsig::new(statsig::Mode::parse(&cfg.statsig, cfg.statsig_id.as_deref())?, ca_pem.as_deref())?;
        let transport = BrowserTransport::new(TransportSettings {
            profile,
            proxy: cfg.proxy.clone().filter(|p| !p.trim().is_empty()),
            ca_pem,
            connect_timeout: Duration::from_secs(cfg.connect_timeout_secs.max(1)),
        })?;
        let pool = SsoPool::new(
            &cfg.tokens,
            PoolSettings {
                max_concurrency: cfg.token_max_concurrency.max(1),
                default_cooldown: Duration::from_secs(cfg.rate_limit_cooldown_secs),
                fail_threshold: cfg.token_fail_threshold.max(1),
            },
        );
        tracing::info!(profile = %transport.profile().name, user_agent = %transport.profile().user_agent, "grok.com browser profile");
        Ok(Self { saved: None, transport, statsig, solver, cfg, pool, metrics })
    }

    /// Keeps tokens added at run time in `dir`, and brings back the ones a previous run kept.
    pub fn with_saved_tokens(mut self, dir: &std::path::Path) -> Result<Self, String> {
        let (saved, kept) = saved_tokens::SavedTokens::open(dir)?;
        let entries: Vec<String> = kept.iter().map(|(e, _)| e.clone()).collect();
        check_entries(&entries)?;
        let back = self.pool.add(&entries);
        for (entry, meta) in &kept {
            let id = token_pool::token_id(&token_pool::parse_entry(entry).0);
            let patch = TokenPatch { enabled: Some(!meta.disabled), note: Some(meta.note.clone()), proxy: None };
            let _ = self.pool.update(&id, &patch);
        }
        if !entries.is_empty() {
            tracing::info!(kept = entries.len(), back, "tokens added at run time before the restart are back");
        }
        self.saved = Some(Arc::new(saved));
        Ok(self)
    }

    /// Adds tokens at run time (kept across restarts when there is a state dir); returns how many
    /// became usable.
    pub async fn add_tokens(&self, entries: Vec<String>) -> Result<usize, String> {
        check_entries(&entries)?;
        if let Some(saved) = self.saved.clone() {
            let keep = entries.clone();
            tokio::task::spawn_blocking(move || saved.save(&keep))
                .await
                .map_err(|e| format!("saving tokens stopped: {e}"))??;
        }
        Ok(self.pool.add(&entries))
    }

    /// Takes a token out of rotation, and out of the state dir when it was kept there.
    pub async fn remove_token(&self, id: &str) -> Result<bool, String> {
        if !self.pool.remove(id) {
            return Ok(false);
        }
        if let Some(saved) = self.saved.clone() {
            let id = id.to_owned();
            tokio::task::spawn_blocking(move || saved.forget(&id))
                .await
                .map_err(|e| format!("forgetting the token stopped: {e}"))??;
        }
        Ok(true)
    }

    /// Imports a token file (see `token_import`): each entry is added, a duplicate, or rejected with
    /// its reason. Added tokens are kept in the state dir, with their note.
    pub async fn import_tokens(&self, content: &str, filename: Option<&str>) -> Result<ImportReport, String> {
        let (format, entries) = token_import::parse(content, filename);
        let mut report = ImportReport { format, added: 0, duplicates: 0, rejected: 0, lines: Vec::new() };
        let mut seen = std::collections::HashSet::new();
        for entry in entries {
            let (result, id, token, reason) = match entry.found {
                Err(why) => ("rejected", None, None, Some(why)),
                Ok(c) => {
                    let id = token_pool::token_id(&c.token);
                    let masked = Some(mask(&c.token));
                    if !seen.insert(id.clone()) {
                        ("duplicate", Some(id), masked, Some("already earlier in this file".to_owned()))
                    } else if self.pool.holds(&id) {
                        ("duplicate", Some(id), masked, Some("already in the pool".to_owned()))
                    } else {
                        let entry = match &c.proxy {
                            Some(p) => format!("{}|{p}", c.token),
                            None => c.token.clone(),
                        };
                        self.keep(&[entry]).await?;
                        if self.pool.add_one(c.token, c.proxy, c.note.clone()) {
                            if c.note.is_some() {
                                self.keep_meta(&id).await?;
                            }
                            ("added", Some(id), masked, None)
                        } else {
                            ("duplicate", Some(id), masked, Some("already in the pool".to_owned()))
                        }
                    }
                }
            };
            match result {
                "added" => report.added += 1,
                "duplicate" => report.duplicates += 1,
                _ => report.rejected += 1,
            }
            report.lines.push(ImportLine { line: entry.line, result, id, token, reason });
        }
        tracing::info!(
            added = report.added,
            duplicates = report.duplicates,
            rejected = report.rejected,
            "tokens imported"
        );
        Ok(report)
    }

    /// Changes a token added at run time (config tokens are read-only: change them where they are given).
    pub async fn update_token(&self, id: &str, patch: TokenPatch) -> Result<(), TokenChangeError> {
        match self.pool.source_of(id) {
            None => return Err(TokenChangeError::NotFound),
            Some("config") => return Err(TokenChangeError::ReadOnly),
            Some(_) => {}
        }
        if let Some(Some(proxy)) = &patch.proxy {
            browser::check_proxy_url(proxy).map_err(TokenChangeError::Invalid)?;
        }
        self.pool.update(id, &patch).map_err(|_| TokenChangeError::NotFound)?;
        if patch.proxy.is_some()
            && let Some((token, proxy)) = self.pool.find(id)
        {
            let entry = proxy.map_or_else(|| token.clone(), |p| format!("{token}|{p}"));
            self.keep(&[entry]).await.map_err(TokenChangeError::Storage)?;
        }
        self.keep_meta(id).await.map_err(TokenChangeError::Storage)
    }

    /// Where a token came from (`config`, `admin`), unless there is no such token.
    pub fn token_source(&self, id: &str) -> Option<&'static str> {
        self.pool.source_of(id)
    }

    /// Asks the upstream for one token's quota now: `None` when there is no such token, else whether
    /// the upstream answered (when not, the token's `last_error` says why).
    pub async fn refresh_token(&self, id: &str) -> Option<bool> {
        let index = self.pool.index_of(id)?;
        let (token, proxy) = self.pool.find(id)?;
        Some(self.refresh_index(index, &token, proxy.as_deref()).await)
    }

    async fn keep(&self, entries: &[String]) -> Result<(), String> {
        let Some(saved) = self.saved.clone() else { return Ok(()) };
        let keep = entries.to_vec();
        tokio::task::spawn_blocking(move || saved.save(&keep))
            .await
            .map_err(|e| format!("saving tokens stopped: {e}"))?
    }

    async fn keep_meta(&self, id: &str) -> Result<(), String> {
        let Some(saved) = self.saved.clone() else { return Ok(()) };
        let Some(info) = self.pool.snapshot().into_iter().find(|t| t.id == id) else { return Ok(()) };
        let meta = saved_tokens::Meta { note: info.note, disabled: !info.enabled };
        let id = id.to_owned();
        tokio::task::spawn_blocking(move || saved.save_meta(&id, &meta))
            .await
            .map_err(|e| format!("saving token settings stopped: {e}"))?
    }

    pub fn pool(&self) -> &SsoPool {
        &self.pool
    }

    pub fn transport(&self) -> &BrowserTransport {
        &self.transport
    }

    pub(crate) fn account(&self, token: &str, proxy: Option<&str>) -> Account {
        Account {
            token: token.to_owned(),
            id: token_pool::token_id(token),
            egress: self.transport.egress(token, proxy),
        }
    }

    fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.cfg.idle_timeout_secs.max(1))
    }

    fn first_byte_timeout(&self) -> Duration {
        Duration::from_secs(self.cfg.first_byte_timeout_secs.max(1))
    }

    /// Asks the upstream for every token's media quota, per product: an exhausted product rests until
    /// grok.com says it is back (`nextAvailableAt`), a refilled one comes back. Returns how many tokens
    /// answered.
    pub async fn refresh_quotas(&self) -> usize {
        let mut answered = 0;
        for (index, token, proxy) in self.pool.refreshable() {
            answered += usize::from(self.refresh_index(index, &token, proxy.as_deref()).await);
        }
        answered
    }

    /// One token's quota refresh; true when the upstream answered.
    async fn refresh_index(&self, index: usize, token: &str, proxy: Option<&str>) -> bool {
        let account = self.account(token, proxy);
        match self.quota_info(&account).await {
            Ok(products) => {
                for (product, quota) in products {
                    let (remaining, until) = match quota {
                        None => (None, None),
                        Some(q) => (q.remaining, self.unavailable_until(&q)),
                    };
                    self.pool.set_product_quota(index, product, remaining, until);
                }
                true
            }
            Err(e) => {
                tracing::debug!(token = %mask(token), "quota refresh failed: {e}");
                self.pool.note_error(index, &e);
                // Only what speaks of the account itself counts (dead credentials, a broken
                // proxy); a limited or failed refresh leaves every product as last known.
                if matches!(e, UpstreamError::Auth(_) | UpstreamError::ProxyFailed(_)) {
                    self.pool.report_index(index, Product::Image, Err(&e));
                }
                false
            }
        }
    }

    /// When an exhausted product comes back: grok.com's `nextAvailableAt`, else its window, else ours.
    fn unavailable_until(&self, q: &wire::ProductQuota) -> Option<std::time::Instant> {
        if q.available && q.remaining != Some(0) {
            return None;
        }
        let wait = q
            .next_available_at
            .and_then(|t| t.duration_since(std::time::SystemTime::now()).ok())
            .or(q.window_secs.map(Duration::from_secs))
            .unwrap_or_else(|| self.pool.default_cooldown());
        Some(std::time::Instant::now() + wait)
    }

    /// `POST /rest/media/imagine/quota_info` for one account.
    pub(crate) async fn quota_info(
        &self,
        account: &Account,
    ) -> Result<Vec<(Product, Option<wire::ProductQuota>)>, UpstreamError> {
        let resp = self.signed_post(account, wire::QUOTA_INFO_PATH, "{}".into(), "quota_info").await?;
        let body = self.read_body(account, resp, 64 * 1024).await?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| UpstreamError::Protocol(format!("unparseable quota_info answer: {e}")))?;
        wire::parse_quota_info(&v).map_err(UpstreamError::Protocol)
    }

    /// sso cookies, then the Cloudflare cookies this token earned, then the operator's extras.
    pub(crate) fn cookie(&self, token: &str) -> String {
        let mut c = format!("sso={token}; sso-rw={token}");
        let cf = self.transport.clearance.cookie_header(token);
        if !cf.is_empty() {
            c.push_str("; ");
            c.push_str(&cf);
        }
        if let Some(extra) = self.cfg.extra_cookies.as_deref().filter(|s| !s.trim().is_empty()) {
            c.push_str("; ");
            c.push_str(extra.trim());
        }
        c
    }

    /// The `x-statsig-id` for `method path` (`None` with `grok.statsig = "off"`).
    async fn statsig_header(
        &self,
        account: &Account,
        method: &str,
        path: &str,
    ) -> Result<Option<String>, UpstreamError> {
        match &self.statsig.mode {
            statsig::Mode::Off => Ok(None),
            statsig::Mode::Fixed(v) => Ok(Some(v.clone())),
            statsig::Mode::Local => {
                let inputs = self.statsig.inputs_or_fetch(|| self.fetch_signing_inputs(account)).await?;
                Ok(Some(statsig::Statsig::mint_now(&inputs, method, path)))
            }
            statsig::Mode::Signer(url) => {
                let meta = self.statsig.cached_seed().map(|s| base64::engine::general_purpose::STANDARD.encode(s));
                self.statsig.from_signer(url, method, path, meta.as_deref()).await.map(Some)
            }
        }
    }

    /// What `local` signing needs from grok.com's frontend: the page (fetched as the browser would
    /// navigate to it) for the meta tag's seed and the build's curves table, then its script chunks for
    /// the build's seed positions. Without the fingerprint it still signs, warning that grok.com may
    /// refuse that.
    async fn fetch_signing_inputs(&self, account: &Account) -> Result<statsig::SigningInputs, UpstreamError> {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&self.cookie(&account.token)) {
            headers.insert(http::header::COOKIE, v);
        }
        let url = format!("{}/", self.cfg.base_url.trim_end_matches('/'));
        let req = self.transport.request(&account.egress, Method::GET, &url, headers)?;
        let resp = self.send(account, req, "grok.com page").await?;
        let body = self.read_body(account, resp, 4 * 1024 * 1024).await?;
        let page = String::from_utf8_lossy(&body);
        let seed = statsig::seed_from_page(&page).ok_or_else(|| {
            UpstreamError::Protocol(
                "grok.com's page has no grok-site-verification seed; set grok.statsig to signer:<url> or fixed:<value>"
                    .into(),
            )
        })?;
        let curves = statsig::curves_from_page(&page);
        let indices = match &curves {
            Some(_) => self.find_build_indices(account, &url, &page).await,
            None => None,
        };
        let fingerprint = statsig::build_fingerprint(&seed, curves.as_ref(), indices.as_ref()).unwrap_or_else(|why| {
            tracing::warn!(
                "x-statsig-id: no animation fingerprint ({why}); signing without it, which grok.com may refuse \
                 (code 7): if it does, set grok.statsig to signer:<url> or fixed:<value>"
            );
            String::new()
        });
        Ok(statsig::SigningInputs { seed, fingerprint })
    }

    /// The build's seed positions, from the generator chunk: the page's scripts are fetched in order,
    /// a few at a time, and the chunks they load are followed (those of a chunk that loads the generator
    /// first), up to `MAX_CHUNKS`.
    async fn find_build_indices(&self, account: &Account, page_url: &str, page: &str) -> Option<statsig::BuildIndices> {
        const MAX_CHUNKS: usize = 40;
        const AT_ONCE: usize = 4;
        let mut seen = std::collections::HashSet::new();
        let mut queue = std::collections::VecDeque::new();
        let mut enqueue = |queue: &mut std::collections::VecDeque<String>, text: &str, from: &str, first: bool| {
            let found: Vec<String> = statsig::chunk_refs(text)
                .iter()
                .filter_map(|r| statsig::resolve_chunk(r, from))
                .filter(|u| self.is_grok_host(u) && seen.insert(u.clone()))
                .collect();
            if first {
                found.into_iter().rev().for_each(|u| queue.push_front(u));
            } else {
                queue.extend(found);
            }
        };
        enqueue(&mut queue, page, page_url, false);
        let mut fetched = 0;
        while fetched < MAX_CHUNKS && !queue.is_empty() {
            let batch: Vec<String> =
                std::iter::from_fn(|| queue.pop_front()).take(AT_ONCE.min(MAX_CHUNKS - fetched)).collect();
            fetched += batch.len();
            let bodies = futures_util::future::join_all(batch.iter().map(|u| self.fetch_chunk(account, u))).await;
            for (url, js) in batch.iter().zip(bodies) {
                let Some(js) = js else { continue };
                if let Some(indices) = statsig::indices_from_chunk(&js) {
                    tracing::debug!(chunk = %url, ?indices, "x-statsig-id: build indices found");
                    return Some(indices);
                }
                enqueue(&mut queue, &js, url, statsig::loads_generator(&js));
            }
        }
        None
    }

    /// One script chunk, requested as the page's `<script>` would; `None` if it cannot be had.
    async fn fetch_chunk(&self, account: &Account, url: &str) -> Option<String> {
        let same_origin = url.starts_with(&format!("{}/", self.cfg.base_url.trim_end_matches('/')));
        let site = if same_origin { "same-origin" } else { "same-site" };
        let headers = self.subresource_headers(account, "*/*", site, "script", true);
        let fetched = async {
            let req = self.transport.request(&account.egress, Method::GET, url, headers)?;
            let resp = self.send(account, req, "grok.com script chunk").await?;
            self.read_body(account, resp, 4 * 1024 * 1024).await
        };
        match fetched.await {
            Ok(body) => Some(String::from_utf8_lossy(&body).into_owned()),
            Err(e) => {
                tracing::debug!(chunk = %url, "x-statsig-id: script chunk not read: {e}");
                None
            }
        }
    }

    /// A signed JSON POST to grok.com. A code-7 answer (anti-bot, "page is out of date") means the
    /// signing inputs went stale: they are fetched again and the call retried once.
    async fn signed_post(
        &self,
        account: &Account,
        path: &str,
        body: String,
        what: &str,
    ) -> Result<wreq::Response, UpstreamError> {
        let mut retried = false;
        loop {
            let mut headers = self.api_headers(account);
            headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            if let Some(sig) = self.statsig_header(account, "POST", path).await?
                && let Ok(v) = HeaderValue::from_str(&sig)
            {
                headers.insert(HeaderName::from_static("x-statsig-id"), v);
            }
            let req =
                self.transport.request(&account.egress, Method::POST, &self.url(path), headers)?.body(body.clone());
            match self.send(account, req, what).await {
                Err(UpstreamError::Challenge(m))
                    if !retried && !m.contains("cf-mitigated") && self.statsig.refreshable() =>
                {
                    tracing::info!("x-statsig-id refused ({m}); refreshing the signing inputs once");
                    self.statsig.invalidate();
                    retried = true;
                }
                other => return other,
            }
        }
    }

    /// Headers of a browser's same-origin fetch from grok.com/imagine (identity headers come from the
    /// profile, in the transport).
    fn api_headers(&self, account: &Account) -> HeaderMap {
        let origin = self.cfg.base_url.trim_end_matches('/');
        header_map(&[
            ("accept", "*/*"),
            ("accept-language", "en-US,en;q=0.9"),
            ("origin", origin),
            ("referer", &format!("{origin}/imagine")),
            ("sec-fetch-site", "same-origin"),
            ("sec-fetch-mode", "cors"),
            ("sec-fetch-dest", "empty"),
            ("priority", "u=1, i"),
            ("cache-control", "no-cache"),
            ("pragma", "no-cache"),
            ("x-xai-request-id", &uuid::Uuid::new_v4().to_string()),
            ("cookie", &self.cookie(&account.token)),
        ])
    }

    /// Headers of a subresource the page loads (a script, an image): `no-cors`, referred by the page,
    /// the sso cookie only where the caller says it belongs.
    fn subresource_headers(&self, account: &Account, accept: &str, site: &str, dest: &str, cookie: bool) -> HeaderMap {
        let referer = format!("{}/", self.cfg.base_url.trim_end_matches('/'));
        let cookie = if cookie { self.cookie(&account.token) } else { String::new() };
        let mut pairs = vec![
            ("accept", accept),
            ("referer", referer.as_str()),
            ("sec-fetch-site", site),
            ("sec-fetch-mode", "no-cors"),
            ("sec-fetch-dest", dest),
        ];
        if !cookie.is_empty() {
            pairs.push(("cookie", cookie.as_str()));
        }
        header_map(&pairs)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.cfg.base_url.trim_end_matches('/'), path)
    }

    /// Sends a request to grok.com: first-byte timeout, Cloudflare cookies kept, a non-success answer
    /// classified. Every REST call, upload and download goes through here.
    async fn send(
        &self,
        account: &Account,
        req: wreq::RequestBuilder,
        what: &str,
    ) -> Result<wreq::Response, UpstreamError> {
        let resp = tokio::time::timeout(self.first_byte_timeout(), req.send())
            .await
            .map_err(|_| UpstreamError::Timeout(format!("{what} did not answer in time")))?
            .map_err(|e| browser::map_error(&e, &account.egress))?;
        self.transport.clearance.observe(&account.token, resp.headers());
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            return Err(classify::classify_http(status, &headers, &read_text_limited(resp).await));
        }
        Ok(resp)
    }

    /// Runs `op` with the best token, moving on to the next token when the failure is the token's
    /// (rate limit, auth, challenge, proxy, connection), up to `max_attempts` tokens. A challenge is
    /// first taken to the clearance service, if one is configured, and retried once with that token.
    /// `prefer` names the account that holds the job's inputs already (see `SsoPool::acquire_wait`).
    async fn with_token<T, F, Fut>(
        &self,
        what: &'static str,
        product: Product,
        prefer: Option<&str>,
        mut op: F,
    ) -> Result<T, UpstreamError>
    where
        F: FnMut(Account) -> Fut,
        Fut: Future<Output = Result<T, UpstreamError>>,
    {
        let mut tried = Vec::new();
        let mut last: Option<UpstreamError> = None;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(self.cfg.token_wait_secs);
        for _ in 0..self.cfg.max_attempts.max(1) {
            let lease = match self.pool.acquire_wait(product, &tried, prefer, deadline).await {
                Ok(l) => l,
                // After a rate limit the pool knows best when a token frees up; otherwise the
                // last real failure says more than "no token left".
                Err(e) => {
                    return Err(match last {
                        Some(UpstreamError::RateLimited { .. }) | None => e.into(),
                        Some(other) => other,
                    });
                }
            };
            tried.push(lease.index);
            let total = Duration::from_secs(self.cfg.total_timeout_secs.max(1));
            let mut attempt = |account: Account| {
                let fut = op(account);
                async move {
                    match tokio::time::timeout(total, fut).await {
                        Ok(r) => r,
                        Err(_) => {
                            Err(UpstreamError::Timeout(format!("upstream call took longer than {}s", total.as_secs())))
                        }
                    }
                }
            };
            let mut result = attempt(self.account(&lease.token, lease.proxy.as_deref())).await;
            if let (Err(UpstreamError::Challenge(why)), Some(solver)) = (&result, &self.solver) {
                self.metrics.upstream(what, "challenge");
                tracing::warn!(token = %mask(&lease.token), "challenged ({why}); asking FlareSolverr");
                let account = self.account(&lease.token, lease.proxy.as_deref());
                result = match solver
                    .solve(&format!("{}/", self.cfg.base_url.trim_end_matches('/')), account.egress.proxy.as_deref())
                    .await
                {
                    Ok(solution) => match self.transport.clearance.install(&lease.token, &solution) {
                        Ok(()) => attempt(self.account(&lease.token, lease.proxy.as_deref())).await,
                        Err(e) => Err(UpstreamError::Challenge(format!("clearance unusable: {e}"))),
                    },
                    Err(e) => Err(e),
                };
            }
            self.metrics.upstream(what, outcome_label(&result));
            self.pool.report(&lease, result.as_ref().map(|_| ()));
            match result {
                Ok(v) => return Ok(v),
                Err(e) if e.retry_on_other_token() => {
                    if matches!(e, UpstreamError::Challenge(_)) {
                        // A refused clearance is worth nothing; the next solve starts clean.
                        self.transport.clearance.forget(&lease.token);
                    }
                    tracing::warn!(token = %mask(&lease.token), "{what} failed, trying another token: {e}");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| UpstreamError::Failed(format!("{what}: no attempt made"))))
    }

    pub async fn generate_images(&self, job: &ImageJob, sink: &ProgressSink) -> Result<Vec<Asset>, UpstreamError> {
        let slots = ProgressSlots::new(sink.clone(), job.n);
        self.with_token("image", Product::Image, None, |account| imagine::generate(self, account, job, &slots)).await
    }

    /// n edits are n conversations, run side by side (each on the best token at the time).
    pub async fn edit_images(&self, job: &EditJob, sink: &ProgressSink) -> Result<Vec<Asset>, UpstreamError> {
        let slots = ProgressSlots::new(sink.clone(), job.n);
        let runs = (0..job.n).map(|slot| {
            let slots = &slots;
            async move {
                self.with_token("edit", Product::Edit, None, |account| {
                    conversation::edit(self, account, job, slot, slots)
                })
                .await
            }
        });
        futures_util::future::try_join_all(runs).await
    }

    pub async fn generate_video(&self, job: &VideoJob, sink: &ProgressSink) -> Result<VideoAssets, UpstreamError> {
        let product = if job.resolution == "720p" { Product::Video720p } else { Product::Video };
        // The account that generated an input image can name it instead of uploading it again.
        let owner = job.images.iter().find_map(|i| i.origin.as_ref()).map(|o| o.account.clone());
        self.with_token("video", product, owner.as_deref(), |account| conversation::video(self, account, job, sink))
            .await
    }

    /// Collects a video grok.com started before a restart, from its media post, with the token that
    /// started it (`upstream_id` as journaled: `grok-web:<token id>:<post id>`).
    pub async fn resume_video(&self, upstream_id: &str, sink: &ProgressSink) -> Result<VideoAssets, UpstreamError> {
        let parsed = upstream_id.strip_prefix(conversation::RESUME_PREFIX).and_then(|r| r.split_once(':'));
        let Some((token_id, post)) = parsed else {
            return Err(UpstreamError::Failed(format!("`{upstream_id}` is not a grok.com video reference")));
        };
        let Some((token, proxy)) = self.pool.find(token_id) else {
            return Err(UpstreamError::Failed(format!(
                "the token that started video {post} is no longer configured; it cannot be collected"
            )));
        };
        let account = self.account(&token, proxy.as_deref());
        let (video_url, thumbnail_url) = conversation::recover_video(self, &account, post, sink).await?;
        conversation::download_video(self, &account, &video_url, thumbnail_url.as_deref()).await
    }

    /// Whether `url` is grok.com's own: only those get the sso cookie, never a public image host.
    fn is_grok_host(&self, url: &str) -> bool {
        let host = |u: &str| url::Url::parse(u).ok().and_then(|u| u.host_str().map(str::to_ascii_lowercase));
        let Some(h) = host(url) else { return false };
        h == "grok.com"
            || h.ends_with(".grok.com")
            || [&self.cfg.base_url, &self.cfg.assets_url].iter().any(|base| host(base).as_deref() == Some(h.as_str()))
    }

    /// Downloads a generated asset (relative paths resolve against the assets host).
    async fn download(&self, account: &Account, url_or_path: &str) -> Result<Asset, UpstreamError> {
        let url = if url_or_path.starts_with("http://") || url_or_path.starts_with("https://") {
            url_or_path.to_owned()
        } else {
            format!("{}/{}", self.cfg.assets_url.trim_end_matches('/'), url_or_path.trim_start_matches('/'))
        };
        const ACCEPT_IMAGE: &str = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";
        let headers = self.subresource_headers(account, ACCEPT_IMAGE, "same-site", "image", self.is_grok_host(&url));
        let req = self.transport.request(&account.egress, Method::GET, &url, headers)?;
        let resp = self.send(account, req, "asset download").await?;
        let bytes = self.read_body(account, resp, self.cfg.max_download_bytes).await?;
        let content_type = sniff_media_type(&bytes)
            .ok_or_else(|| UpstreamError::Protocol(format!("asset {} is not an image or video", short(&url))))?;
        Ok(Asset { bytes, content_type, origin: None })
    }

    /// Reads a body with the idle timeout between chunks and a size cap.
    async fn read_body(&self, account: &Account, resp: wreq::Response, max: u64) -> Result<Bytes, UpstreamError> {
        let mut stream = resp.bytes_stream();
        let mut buf = Vec::new();
        loop {
            let next = tokio::time::timeout(self.idle_timeout(), stream.next())
                .await
                .map_err(|_| UpstreamError::Timeout("upstream stalled mid-download".into()))?;
            match next {
                None => break,
                Some(Ok(chunk)) => {
                    if (buf.len() + chunk.len()) as u64 > max {
                        return Err(UpstreamError::Protocol(format!("asset larger than {max} bytes")));
                    }
                    buf.extend_from_slice(&chunk);
                }
                Some(Err(e)) => return Err(browser::map_error(&e, &account.egress)),
            }
        }
        Ok(Bytes::from(buf))
    }
}

/// Refuses token entries (`TOKEN|PROXY_URL`) whose proxy the transport cannot use.
fn check_entries(entries: &[String]) -> Result<(), String> {
    for entry in entries {
        if let (_, Some(proxy)) = token_pool::parse_entry(entry) {
            browser::check_proxy_url(&proxy)?;
        }
    }
    Ok(())
}

/// Headers from (name, value) pairs, in order; a value that is not a valid header value is left out.
fn header_map(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(pairs.len());
    for (name, value) in pairs {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(HeaderName::from_static(name), v);
        }
    }
    h
}

/// A refused WebSocket handshake (status and headers only: the body stays with the transport).
pub fn classify_handshake(status: u16, headers: &HeaderMap) -> UpstreamError {
    classify::classify_http(status, headers, "")
}

/// At most 4 KiB of an error body: enough to classify it.
async fn read_text_limited(resp: wreq::Response) -> String {
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    let read = async {
        while let Some(Ok(chunk)) = stream.next().await {
            buf.extend_from_slice(&chunk);
            if buf.len() >= 4096 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
    buf.truncate(4096);
    String::from_utf8_lossy(&buf).into_owned()
}

fn short(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

fn decode_blob(blob: &str) -> Option<Bytes> {
    let data = match blob.split_once(";base64,") {
        Some((_, d)) => d,
        None => blob,
    };
    base64::engine::general_purpose::STANDARD.decode(data.trim()).ok().map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sso_cookie_goes_only_to_grok_hosts() {
        let c = GrokWebClient::new(GrokWebConfig::default(), Arc::default()).unwrap();
        for grok in ["https://grok.com/rest/x", "https://assets.grok.com/users/u/a.png", "https://www.grok.com/"] {
            assert!(c.is_grok_host(grok), "{grok}");
        }
        for public in [
            "https://imagine-public.x.ai/imagine-public/images/a.png",
            "https://grok.com.evil.example/a.png",
            "https://notgrok.com/a.png",
            "not a url",
        ] {
            assert!(!c.is_grok_host(public), "{public}");
        }
    }
}

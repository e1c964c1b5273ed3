//! grok.com's side of token administration: tokens added, imported, changed and removed at run time
//! (kept in the state dir), and every account's media quota asked of grok.com.

use std::sync::Arc;
use std::time::Duration;

use crate::secret::mask;
use crate::upstream::error::UpstreamError;
use crate::upstream::grok_web::token_pool::{self, Product};
use crate::upstream::grok_web::{Account, GrokWebClient, browser, saved_tokens, token_import, wire};
use crate::upstream::tokens::{ExportedToken, ImportLine, ImportReport, TokenBook, TokenChangeError, TokenPatch};

impl GrokWebClient {
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
        let added = self.pool.add(&entries);
        let ids = entries.iter().map(|e| token_pool::token_id(&token_pool::parse_entry(e).0)).collect();
        self.share(ids).await?;
        Ok(added)
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
        if let Some(book) = self.book.get() {
            book.remove(vec![id.to_owned()]).await?;
        }
        Ok(true)
    }

    /// Imports a token file (see `token_import`): each entry is added, a duplicate, or rejected with
    /// its reason. Added tokens are kept in the state dir, with their note: all of them in one write
    /// before they serve, their notes in a second (a 10,000-line file is two commits, not 10,000).
    pub async fn import_tokens(&self, content: &str, filename: Option<&str>) -> Result<ImportReport, String> {
        let (format, entries) = token_import::parse(content, filename);
        let mut report = ImportReport { format, added: 0, duplicates: 0, rejected: 0, lines: Vec::new() };
        let mut seen = std::collections::HashSet::new();
        // (its line in the report, token, proxy, note)
        let mut fresh = Vec::new();
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
                        fresh.push((report.lines.len(), c.token, c.proxy, c.note));
                        ("added", Some(id), masked, None)
                    }
                }
            };
            report.lines.push(ImportLine { line: entry.line, result, id, token, reason });
        }
        let keep: Vec<String> = fresh
            .iter()
            .map(|(_, token, proxy, _)| proxy.as_ref().map_or_else(|| token.clone(), |p| format!("{token}|{p}")))
            .collect();
        self.keep(&keep).await?;
        let mut metas = Vec::new();
        for (line, token, proxy, note) in fresh {
            let noted = note.is_some();
            if !self.pool.add_one(token, proxy, note) {
                let l = &mut report.lines[line];
                (l.result, l.reason) = ("duplicate", Some("already in the pool".to_owned()));
                continue;
            }
            if let Some(info) = report.lines[line].id.as_deref().filter(|_| noted).and_then(|id| self.pool.info(id)) {
                metas.push((info.id, saved_tokens::Meta { note: info.note, disabled: !info.enabled }));
            }
        }
        if let (Some(saved), false) = (self.saved.clone(), metas.is_empty()) {
            tokio::task::spawn_blocking(move || saved.save_metas(&metas))
                .await
                .map_err(|e| format!("saving token settings stopped: {e}"))??;
        }
        for line in &report.lines {
            match line.result {
                "added" => report.added += 1,
                "duplicate" => report.duplicates += 1,
                _ => report.rejected += 1,
            }
        }
        let added = report.lines.iter().filter(|l| l.result == "added").filter_map(|l| l.id.clone()).collect();
        self.share(added).await?;
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
        self.keep_meta(id).await.map_err(TokenChangeError::Storage)?;
        self.share(vec![id.to_owned()]).await.map_err(TokenChangeError::Storage)
    }

    /// Asks the upstream for one token's quota now: `None` when there is no such token, else whether
    /// the upstream answered (when not, the token's `last_error` says why).
    pub async fn refresh_token(&self, id: &str) -> Option<bool> {
        let index = self.pool.index_of(id)?;
        let (token, proxy) = self.pool.find(id)?;
        Some(self.refresh_index(index, &token, proxy.as_deref(), true).await)
    }

    async fn keep(&self, entries: &[String]) -> Result<(), String> {
        let Some(saved) = self.saved.clone().filter(|_| !entries.is_empty()) else { return Ok(()) };
        let keep = entries.to_vec();
        tokio::task::spawn_blocking(move || saved.save(&keep))
            .await
            .map_err(|e| format!("saving tokens stopped: {e}"))?
    }

    async fn keep_meta(&self, id: &str) -> Result<(), String> {
        let Some(saved) = self.saved.clone() else { return Ok(()) };
        let Some(info) = self.pool.info(id) else { return Ok(()) };
        let meta = saved_tokens::Meta { note: info.note, disabled: !info.enabled };
        let id = id.to_owned();
        tokio::task::spawn_blocking(move || saved.save_meta(&id, &meta))
            .await
            .map_err(|e| format!("saving token settings stopped: {e}"))?
    }

    /// Asks the upstream for every token's media quota, per product: an exhausted product rests until
    /// grok.com says it is back (`nextAvailableAt`), a refilled one comes back. At most
    /// `quota_refresh_per_sec` calls a second. Returns how many tokens answered.
    pub async fn refresh_quotas(&self) -> usize {
        self.refresh_quotas_over(Duration::ZERO).await
    }

    /// `refresh_quotas` spread evenly over `every` (and still capped per second): the tokens are
    /// the ones in the pool when the round starts; one added meanwhile waits for the next round.
    pub async fn refresh_quotas_over(&self, every: Duration) -> usize {
        let tokens = self.pool.refreshable();
        crate::upstream::pace::paced(
            tokens,
            every,
            self.cfg.quota_refresh_per_sec,
            |(index, token, proxy)| async move { self.refresh_index(index, &token, proxy.as_deref(), false).await },
        )
        .await
    }

    /// One token's quota refresh (and its plan, when not known yet or `forced`); true when the
    /// upstream answered.
    async fn refresh_index(&self, index: usize, token: &str, proxy: Option<&str>, forced: bool) -> bool {
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
                // A plan seldom changes: asked once, and again when the operator re-checks.
                if self.pool.plan(index).is_none() || forced {
                    match self.plan(&account).await {
                        Ok(Some(plan)) => self.pool.set_plan(index, plan),
                        Ok(None) => {}
                        Err(e) => tracing::debug!(token = %mask(token), "plan check failed: {e}"),
                    }
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

    /// `POST /rest/rate-limits` for one account: its plan, when the answer tells it.
    async fn plan(&self, account: &Account) -> Result<Option<token_pool::Plan>, UpstreamError> {
        let resp =
            self.signed_post(account, wire::RATE_LIMITS_PATH, wire::rate_limits_request(), "rate_limits").await?;
        let body = self.read_body(account, resp, 64 * 1024).await?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| UpstreamError::Protocol(format!("unparseable rate-limits answer: {e}")))?;
        Ok(wire::parse_plan(&v))
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
}

/// Console-made tokens shared by replicas (`TokenBook`).
impl GrokWebClient {
    /// Keeps console-made tokens in `book` from now on (once), instead of the state dir.
    pub fn share_tokens(&self, book: Arc<dyn TokenBook>) {
        let _ = self.book.set(book);
    }

    /// Puts the tokens `ids` name, as they are now, into the shared book (when there is one).
    async fn share(&self, ids: Vec<String>) -> Result<(), String> {
        let Some(book) = self.book.get() else { return Ok(()) };
        if ids.is_empty() {
            return Ok(());
        }
        let tokens: Vec<ExportedToken> = ids
            .iter()
            .filter_map(|id| {
                let (token, proxy) = self.pool.find(id)?;
                let info = self.pool.info(id)?;
                Some(ExportedToken { token, proxy, note: info.note, enabled: info.enabled })
            })
            .collect();
        book.put(tokens).await
    }

    /// Applies what another replica put into the shared book or took out of it (or what the book
    /// holds, at start): tokens come in (or back) as console-made ones with their proxy, note and
    /// switch; removed ones leave. Nothing is written back.
    pub fn apply_book(&self, put: &[ExportedToken], removed: &[String]) {
        for t in put {
            let id = token_pool::token_id(&t.token);
            if !self.pool.holds(&id) {
                self.pool.add(&[t.entry()]);
            }
            let patch =
                TokenPatch { enabled: Some(t.enabled), note: Some(t.note.clone()), proxy: Some(t.proxy.clone()) };
            let _ = self.pool.update(&id, &patch);
        }
        for id in removed {
            self.pool.remove(id);
        }
        if !put.is_empty() || !removed.is_empty() {
            tracing::info!(
                put = put.len(),
                removed = removed.len(),
                "console-made tokens applied from the shared store"
            );
        }
    }
}

/// Refuses token entries (`TOKEN|PROXY_URL`) whose proxy the transport cannot use.
pub(super) fn check_entries(entries: &[String]) -> Result<(), String> {
    for entry in entries {
        if let (_, Some(proxy)) = token_pool::parse_entry(entry) {
            browser::check_proxy_url(&proxy)?;
        }
    }
    Ok(())
}

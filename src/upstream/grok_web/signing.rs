//! The `x-statsig-id` on grok.com's REST calls: which value the mode gives, what `local` signing
//! fetches from grok.com's frontend, and the signed POST that refreshes it once when refused.

use base64::Engine;
use http::Method;
use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::upstream::error::UpstreamError;
use crate::upstream::grok_web::{Account, GrokWebClient, statsig};

impl GrokWebClient {
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
    pub(super) async fn signed_post(
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
                // A stale signature, or an anti-bot refusal that is not Cloudflare's: the signing
                // inputs are read again and the call replayed once, with the same account and
                // clearance (chenyme/grok2api #1002).
                Err(UpstreamError::StaleSignature(m) | UpstreamError::Challenge(m))
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
}

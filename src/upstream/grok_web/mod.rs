//! The grok.com web client: sso-cookie auth over a token pool, the Imagine WebSocket for
//! text-to-image, upload + conversation stream for edits, and cookie-authenticated asset downloads.

mod classify;
mod conversation;
mod imagine;
pub mod ndjson;
pub mod token_pool;
mod wire;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

pub use token_pool::{PoolSettings, TokenPool};

use super::{Asset, UpstreamError, VideoAssets, sniff_media_type};
use crate::config::GrokWebConfig;
use crate::jobs::{EditJob, ImageJob, ProgressSink, ProgressSlots, VideoJob};
use crate::metrics::Metrics;

pub struct GrokWebClient {
    http: reqwest::Client,
    cfg: GrokWebConfig,
    pool: TokenPool,
    metrics: Arc<Metrics>,
}

/// Images one edit conversation yields (side-by-side pair).
const IMAGES_PER_EDIT_CALL: usize = 2;

impl GrokWebClient {
    pub fn new(cfg: GrokWebConfig, metrics: Arc<Metrics>) -> Result<Self, String> {
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(cfg.connect_timeout_secs))
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .map_err(|e| format!("cannot build HTTP client: {e}"))?;
        let pool = TokenPool::new(
            &cfg.tokens,
            PoolSettings {
                max_concurrency: cfg.token_max_concurrency.max(1),
                default_cooldown: Duration::from_secs(cfg.rate_limit_cooldown_secs),
                fail_threshold: cfg.token_fail_threshold.max(1),
            },
        );
        Ok(Self { http, cfg, pool, metrics })
    }

    pub fn pool(&self) -> &TokenPool {
        &self.pool
    }

    fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.cfg.idle_timeout_secs.max(1))
    }

    fn first_byte_timeout(&self) -> Duration {
        Duration::from_secs(self.cfg.first_byte_timeout_secs.max(1))
    }

    /// Asks the upstream for every token's remaining quota and updates the pool: an exhausted token
    /// cools down for the window, a refilled one comes back. Returns how many tokens answered.
    pub async fn refresh_quotas(&self) -> usize {
        let mut answered = 0;
        for (index, token) in self.pool.refreshable() {
            let send = self
                .http
                .post(self.url(wire::RATE_LIMITS_PATH))
                .headers(self.api_headers(&token))
                .header("content-type", "application/json")
                .body(wire::rate_limits_request().to_string())
                .send();
            let resp = match tokio::time::timeout(self.first_byte_timeout(), send).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    tracing::debug!(token = %token_pool::mask(&token), "quota refresh failed: {e}");
                    continue;
                }
                Err(_) => continue,
            };
            let status = resp.status();
            if !status.is_success() {
                let headers = resp.headers().clone();
                let err = classify::classify_http(status.as_u16(), &headers, &read_text_limited(resp).await);
                self.pool.report_index(index, Err(&err));
                continue;
            }
            match resp.json::<wire::RateLimits>().await {
                Ok(q) => {
                    answered += 1;
                    let window = q.window_size_seconds.map(Duration::from_secs);
                    self.pool.set_quota(index, q.remaining(), window);
                }
                Err(e) => tracing::debug!("unparseable rate-limits answer: {e}"),
            }
        }
        answered
    }

    fn cookie(&self, token: &str) -> String {
        let mut c = format!("sso={token}; sso-rw={token}");
        if let Some(extra) = self.cfg.extra_cookies.as_deref().filter(|s| !s.trim().is_empty()) {
            c.push_str("; ");
            c.push_str(extra.trim());
        }
        c
    }

    /// Real values are 70 opaque bytes; without a configured one we send bytes of the same shape.
    fn statsig_id(&self) -> String {
        match self.cfg.statsig_id.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => s.to_owned(),
            None => {
                let bytes: [u8; 70] = std::array::from_fn(|_| rand::random::<u8>());
                base64::engine::general_purpose::STANDARD.encode(bytes)
            }
        }
    }

    /// Headers of a browser's same-origin fetch from grok.com/imagine.
    fn api_headers(&self, token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let mut put = |k: &'static str, v: String| {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(HeaderName::from_static(k), v);
            }
        };
        let origin = self.cfg.base_url.trim_end_matches('/').to_owned();
        put("accept", "*/*".into());
        put("accept-language", "en-US,en;q=0.9".into());
        put("user-agent", self.cfg.user_agent.clone());
        put("origin", origin.clone());
        put("referer", format!("{origin}/imagine"));
        put("sec-fetch-site", "same-origin".into());
        put("sec-fetch-mode", "cors".into());
        put("sec-fetch-dest", "empty".into());
        put("priority", "u=1, i".into());
        put("cache-control", "no-cache".into());
        put("pragma", "no-cache".into());
        put("x-statsig-id", self.statsig_id());
        put("x-xai-request-id", uuid::Uuid::new_v4().to_string());
        put("cookie", self.cookie(token));
        h
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.cfg.base_url.trim_end_matches('/'), path)
    }

    /// Runs `op` with the best token, moving on to the next token when the failure is the token's
    /// (rate limit, auth, challenge, connection), up to `max_attempts` tokens.
    async fn with_token<T, F, Fut>(&self, what: &'static str, mut op: F) -> Result<T, UpstreamError>
    where
        F: FnMut(String) -> Fut,
        Fut: Future<Output = Result<T, UpstreamError>>,
    {
        let mut tried = Vec::new();
        let mut last: Option<UpstreamError> = None;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(self.cfg.token_wait_secs);
        for _ in 0..self.cfg.max_attempts.max(1) {
            let lease = match self.pool.acquire_wait(&tried, deadline).await {
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
            let result = match tokio::time::timeout(total, op(lease.token.clone())).await {
                Ok(r) => r,
                Err(_) => Err(UpstreamError::Timeout(format!("upstream call took longer than {}s", total.as_secs()))),
            };
            self.metrics.upstream(what, super::outcome_label(&result));
            self.pool.report(&lease, result.as_ref().map(|_| ()));
            match result {
                Ok(v) => return Ok(v),
                Err(e) if e.retry_on_other_token() => {
                    tracing::warn!(token = %token_pool::mask(&lease.token), "{what} failed, trying another token: {e}");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| UpstreamError::Failed(format!("{what}: no attempt made"))))
    }

    pub async fn generate_images(&self, job: &ImageJob, sink: &ProgressSink) -> Result<Vec<Asset>, UpstreamError> {
        let slots = ProgressSlots::new(sink.clone(), job.n);
        self.with_token("image", |token| imagine::generate(self, token, job, &slots)).await
    }

    pub async fn edit_images(&self, job: &EditJob, sink: &ProgressSink) -> Result<Vec<Asset>, UpstreamError> {
        let slots = ProgressSlots::new(sink.clone(), job.n);
        let calls = job.n.div_ceil(IMAGES_PER_EDIT_CALL);
        let runs = (0..calls).map(|call| {
            let want = IMAGES_PER_EDIT_CALL.min(job.n - call * IMAGES_PER_EDIT_CALL);
            let slots = &slots;
            async move {
                self.with_token("edit", |token| {
                    conversation::edit(self, token, job, want, call * IMAGES_PER_EDIT_CALL, slots)
                })
                .await
            }
        });
        let results = futures_util::future::try_join_all(runs).await?;
        Ok(results.into_iter().flatten().collect())
    }

    pub async fn generate_video(&self, job: &VideoJob, sink: &ProgressSink) -> Result<VideoAssets, UpstreamError> {
        self.with_token("video", |token| conversation::video(self, token, job, sink)).await
    }

    /// Downloads a generated asset (relative paths resolve against the assets host) with the token's cookie.
    async fn download(&self, token: &str, url_or_path: &str) -> Result<Asset, UpstreamError> {
        let url = if url_or_path.starts_with("http://") || url_or_path.starts_with("https://") {
            url_or_path.to_owned()
        } else {
            format!("{}/{}", self.cfg.assets_url.trim_end_matches('/'), url_or_path.trim_start_matches('/'))
        };
        let origin = self.cfg.base_url.trim_end_matches('/');
        let resp = self
            .http
            .get(&url)
            .header("cookie", self.cookie(token))
            .header("user-agent", &self.cfg.user_agent)
            .header("referer", format!("{origin}/"))
            .header("sec-fetch-mode", "navigate")
            .header("sec-fetch-dest", "document")
            .header("upgrade-insecure-requests", "1")
            .send();
        let resp = tokio::time::timeout(self.idle_timeout(), resp)
            .await
            .map_err(|_| UpstreamError::Timeout("asset download did not start in time".into()))?
            .map_err(transport)?;
        let status = resp.status();
        if !status.is_success() {
            let headers = resp.headers().clone();
            let body = read_text_limited(resp).await;
            return Err(classify::classify_http(status.as_u16(), &headers, &body));
        }
        let bytes = self.read_body(resp, self.cfg.max_download_bytes).await?;
        let content_type = sniff_media_type(&bytes)
            .ok_or_else(|| UpstreamError::Protocol(format!("asset {} is not an image or video", short(&url))))?;
        Ok(Asset { bytes, content_type })
    }

    /// Reads a body with the idle timeout between chunks and a size cap.
    async fn read_body(&self, resp: reqwest::Response, max: u64) -> Result<Bytes, UpstreamError> {
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
                Some(Err(e)) => return Err(transport(e)),
            }
        }
        Ok(Bytes::from(buf))
    }
}

fn transport(e: reqwest::Error) -> UpstreamError {
    if e.is_timeout() { UpstreamError::Timeout(e.to_string()) } else { UpstreamError::Transport(e.to_string()) }
}

/// At most 4 KiB of an error body: enough to classify it.
async fn read_text_limited(resp: reqwest::Response) -> String {
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

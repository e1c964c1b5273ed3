//! The grok.com web client: sso-cookie auth over a token pool, the Imagine WebSocket for
//! text-to-image (`imagine.rs`), upload + conversation stream for edits and videos
//! (`conversation.rs`), and cookie-authenticated asset downloads. Every byte to grok.com leaves through
//! the browser transport (`browser/`), by `GrokWebClient::send` (this file: the client and its request
//! path). Beside it: `signing.rs` (the `x-statsig-id`, minted by `statsig/`), `token_admin.rs` (tokens
//! added, imported, changed and removed at run time, kept by `saved_tokens.rs`, parsed by
//! `token_import.rs`; quota refresh), `token_pool/` (which account serves), `wire.rs` and `classify.rs`
//! (grok.com's names and its errors), `doctor/` (`grok2api doctor`).

pub mod browser;
mod classify;
mod conversation;
pub mod doctor;
mod imagine;
pub mod ndjson;
pub mod saved_tokens;
mod signing;
pub mod statsig;
mod token_admin;
pub mod token_import;
pub mod token_pool;
pub mod wire;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures_util::StreamExt;
use http::Method;
use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::upstream::grok_web::conversation::VideoRef;
use crate::upstream::grok_web::token_pool::{Allow, FREE_VIDEO_SECONDS, NoToken, Plan, VideoFit};
use crate::upstream::quality::{self, RequestKey};
pub use token_pool::{PoolSettings, Product, SsoPool};

use self::browser::{BrowserProfile, BrowserTransport, Egress, FlareSolverr, TransportSettings};
use self::token_admin::check_entries;
use crate::config::GrokWebConfig;
use crate::jobs::{EditJob, ImageJob, ProgressSink, ProgressSlots, VideoJob, VideoOp, VideoOpJob};
use crate::media::kind::sniff_media_type;
use crate::metrics::Metrics;
use crate::secret::mask;
use crate::upstream::assets::{Asset, VideoAssets};
use crate::upstream::error::{UpstreamError, outcome_label};

pub struct GrokWebClient {
    /// Where tokens added at run time are kept (`state.dir`); `None` = in memory only.
    saved: Option<Arc<saved_tokens::SavedTokens>>,
    /// With several replicas, where console-made tokens are kept instead (set once, by the app).
    book: std::sync::OnceLock<Arc<dyn crate::upstream::tokens::TokenBook>>,
    transport: BrowserTransport,
    statsig: statsig::Statsig,
    solver: Option<FlareSolverr>,
    cfg: GrokWebConfig,
    pool: SsoPool,
    /// Refuses canned outputs (flagged accounts).
    guard: quality::QualityGuard,
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
                max_cooldown: Duration::from_secs(cfg.cooldown_max_secs.max(1)),
                fail_threshold: cfg.token_fail_threshold.max(1),
            },
        );
        let guard = quality::QualityGuard::new(cfg.quality_guard, &cfg.canned_outputs, quality::WINDOW)?;
        tracing::info!(profile = %transport.profile().name, user_agent = %transport.profile().user_agent, "grok.com browser profile");
        Ok(Self {
            saved: None,
            book: std::sync::OnceLock::new(),
            transport,
            statsig,
            solver,
            cfg,
            pool,
            guard,
            metrics,
        })
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
    /// (rate limit, auth, challenge, proxy, connection), up to `max_attempts` tokens. One request
    /// rests at most one account: a second 429 for the same request says more about the request (or
    /// the upstream as a whole) than about that account, so it is noted on the account, not made a
    /// rest (sub2api #7398: one request cooled 11 healthy accounts, 25 of 26 at once). A challenge is
    /// first taken to the clearance service, if one is configured, and retried once with that token.
    /// `prefer` names the account that holds the job's inputs already (see `SsoPool::acquire_wait`);
    /// `allow` which accounts can make it at all.
    async fn with_token<T, F, Fut>(
        &self,
        what: &'static str,
        product: Product,
        prefer: Option<&str>,
        allow: Allow<'_>,
        mut op: F,
    ) -> Result<T, UpstreamError>
    where
        F: FnMut(Account) -> Fut,
        Fut: Future<Output = Result<T, UpstreamError>>,
    {
        let mut tried = Vec::new();
        let mut last: Option<UpstreamError> = None;
        let mut rested_one = false;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(self.cfg.token_wait_secs);
        for _ in 0..self.cfg.max_attempts.max(1) {
            let lease = match self.pool.acquire_wait(product, &tried, prefer, allow, deadline).await {
                Ok(l) => l,
                // After a rate limit the pool knows best when a token frees up; otherwise the
                // last real failure says more than "no token left".
                Err(e) => {
                    return Err(match (last, e) {
                        // Only accounts that refused this request's rate without resting are left:
                        // it waits as long as an account rests.
                        (Some(limited @ UpstreamError::RateLimited { .. }), NoToken::NoneUsable) => {
                            self.rate_limited(limited)
                        }
                        (None | Some(UpstreamError::RateLimited { .. }), e) => e.into(),
                        (Some(other), _) => other,
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
            match &result {
                Err(e @ UpstreamError::RateLimited { .. }) if rested_one => self.pool.note_error(lease.index, e),
                other => self.pool.report(&lease, other.as_ref().map(|_| ())),
            }
            rested_one |= matches!(result, Err(UpstreamError::RateLimited { .. }));
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
        Err(match last {
            // Every attempt was refused for the rate: the client waits as long as an account rests.
            Some(limited @ UpstreamError::RateLimited { .. }) => self.rate_limited(limited),
            Some(e) => e,
            None => UpstreamError::Failed(format!("{what}: no attempt made")),
        })
    }

    /// A 429 for the client, saying to wait as long as an account would rest for it.
    fn rate_limited(&self, e: UpstreamError) -> UpstreamError {
        match e {
            UpstreamError::RateLimited { retry_after, message } => {
                UpstreamError::RateLimited { retry_after: Some(self.pool.rest_after_429(retry_after)), message }
            }
            other => other,
        }
    }

    pub async fn generate_images(&self, job: &ImageJob, sink: &ProgressSink) -> Result<Vec<Asset>, UpstreamError> {
        let slots = ProgressSlots::new(sink.clone(), job.n);
        let request = RequestKey::new(&format!("image {}", job.aspect_ratio), &job.prompt, &[]);
        let product = if imagine::quality_mode(job) { Product::ImagePro } else { Product::Image };
        self.with_token("image", product, None, Allow::Any, |account| async {
            let id = account.id.clone();
            let assets = imagine::generate(self, account, job, &slots).await?;
            self.judge(&id, request, &[], assets.clone()).await?;
            Ok(assets)
        })
        .await
    }

    /// n edits are n conversations, run side by side (each on the best token at the time).
    pub async fn edit_images(&self, job: &EditJob, sink: &ProgressSink) -> Result<Vec<Asset>, UpstreamError> {
        let slots = ProgressSlots::new(sink.clone(), job.n);
        let inputs =
            self.guard.fingerprints(job.images.iter().map(|i| (i.bytes.clone(), i.content_type)).collect()).await?;
        let request = RequestKey::new(&format!("edit {:?}", job.aspect_ratio), &job.prompt, &inputs);
        let runs = (0..job.n).map(|slot| {
            let (slots, inputs) = (&slots, &inputs);
            async move {
                self.with_token("edit", Product::Edit, None, Allow::Any, |account| async move {
                    let id = account.id.clone();
                    let asset = conversation::edit(self, account, job, slot, slots).await?;
                    self.judge(&id, request, inputs, vec![asset.clone()]).await?;
                    Ok(asset)
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
        let inputs =
            self.guard.fingerprints(job.images.iter().map(|i| (i.bytes.clone(), i.content_type)).collect()).await?;
        let kind = format!("video {} {}s {} {:?}", job.aspect_ratio, job.duration, job.resolution, job.preset);
        let request = RequestKey::new(&kind, &job.prompt, &inputs);
        let allow = match self.video_fit(job)? {
            VideoFit::NotFree => Allow::NotPlan(Plan::Basic),
            _ => Allow::Any,
        };
        self.with_token("video", product, owner.as_deref(), allow, |account| {
            let inputs = &inputs;
            async move {
                let id = account.id.clone();
                let assets = conversation::video(self, account, job, sink).await?;
                // The video alone is judged: its poster is one of its frames.
                self.judge(&id, request, inputs, vec![assets.video.clone()]).await?;
                Ok(assets)
            }
        })
        .await
    }

    /// The account and post an extension continues, from the source video's origin: grok.com extends
    /// only its own posts, with the account that made them (another account's post is refused with
    /// 403 `invalid-parent-post`: CrisLIUning/grok2api's account rotation notes), and has no video
    /// edit at all. Checked when the job is accepted, so such a request is a 400.
    pub fn can_extend(&self, job: &VideoOpJob) -> Result<(), UpstreamError> {
        self.extension_source(job).map(|_| ())
    }

    fn extension_source(&self, job: &VideoOpJob) -> Result<(String, VideoRef), UpstreamError> {
        if job.op == VideoOp::Edit {
            return Err(UpstreamError::Unsupported(
                "grok.com has no video edit: the xai upstream (upstream.kind = \"xai\") edits and remixes videos"
                    .into(),
            ));
        }
        let Some(origin) = &job.video.origin else {
            return Err(UpstreamError::Unsupported(
                "grok.com extends only videos it made, with the account that made them: send the id of a video this \
                 gateway made on grok.com (its file link works until the gateway restarts); the xai upstream \
                 extends any video"
                    .into(),
            ));
        };
        if !self.pool.holds(&origin.account) {
            return Err(UpstreamError::Unsupported(format!(
                "the grok.com account that made this video ({}) is no longer usable here, and grok.com extends a \
                 video only with the account that made it",
                origin.account
            )));
        }
        // The stitched result is a video of the whole length: a free account stops at 6 s.
        let free = self.pool.index_of(&origin.account).and_then(|i| self.pool.plan(i)) == Some(Plan::Basic);
        if let (true, VideoOp::Extend { seconds }) = (free, job.op)
            && job.video.seconds.round() as u32 + seconds > FREE_VIDEO_SECONDS
        {
            return Err(UpstreamError::PlanLimit(format!(
                "the video was made by a free grok.com account, which makes videos of at most {FREE_VIDEO_SECONDS} \
                 seconds, and grok.com extends a video only with the account that made it"
            )));
        }
        Ok((origin.account.clone(), VideoRef::parse(&origin.asset_id)))
    }

    /// Extends a video this gateway made on grok.com (`extension_source`), by `seconds`: the result is
    /// the whole stitched video, judged like any other output.
    pub async fn extend_video(&self, job: &VideoOpJob, sink: &ProgressSink) -> Result<VideoAssets, UpstreamError> {
        let (account_id, video) = self.extension_source(job)?;
        let VideoOp::Extend { seconds } = job.op else {
            return Err(UpstreamError::Unsupported("grok.com has no video edit".into()));
        };
        let (w, h) = crate::media::mp4::info(&job.video.bytes).and_then(|i| i.size).unwrap_or((16, 9));
        let resolution = if w.min(h) >= 720 { "720p" } else { "480p" };
        let source = wire::ExtensionSource {
            post: &video.post,
            original_post: video.root(),
            seconds: job.video.seconds,
            aspect_ratio: nearest_video_ratio(w, h),
            resolution,
        };
        let product = if resolution == "720p" { Product::Video720p } else { Product::Video };
        let inputs = self.guard.fingerprints(vec![(job.video.bytes.clone(), job.video.content_type)]).await?;
        let request = RequestKey::new(&format!("extend {seconds}s"), &job.prompt, &inputs);
        self.with_token("extend", product, Some(&account_id), Allow::Only(&account_id), |account| {
            let (inputs, source) = (&inputs, &source);
            async move {
                let id = account.id.clone();
                let assets = conversation::extend(self, account, &job.prompt, source, seconds, sink).await?;
                self.judge(&id, request, inputs, vec![assets.video.clone()]).await?;
                Ok(assets)
            }
        })
        .await
    }

    /// Whether the pool can make `job` (`SsoPool::video_fit`): a video longer than free accounts make,
    /// with only free accounts left to make it, is refused before any account is spent on a 429.
    pub fn video_fit(&self, job: &VideoJob) -> Result<VideoFit, UpstreamError> {
        match self.pool.video_fit(job.duration) {
            VideoFit::None => Err(UpstreamError::PlanLimit(format!(
                "free grok.com accounts make videos of at most {FREE_VIDEO_SECONDS} seconds, and every account \
                 this gateway can use now is free: ask for {FREE_VIDEO_SECONDS} seconds or less (or add a SuperGrok \
                 account)"
            ))),
            fit => Ok(fit),
        }
    }

    /// Fails an answer the quality guard takes for canned output (`quality.rs`). The account that
    /// answered is flagged when the error reaches the pool; another that gave the same bytes to a
    /// different request is flagged here.
    async fn judge(
        &self,
        account: &str,
        request: RequestKey,
        inputs: &[quality::Hash],
        outputs: Vec<Asset>,
    ) -> Result<(), UpstreamError> {
        let hashes = self.guard.fingerprints(outputs.into_iter().map(|a| (a.bytes, a.content_type)).collect()).await?;
        self.guard.check(account, request, inputs, &hashes).map_err(|canned| {
            for other in &canned.also {
                self.pool.flag(other, &canned.to_string());
            }
            UpstreamError::CannedOutput(canned.to_string())
        })
    }

    /// Collects a video grok.com started before a restart, from its media post, with the token that
    /// started it (`upstream_id` as journaled: `grok-web:<token id>:<post id>`).
    pub async fn resume_video(&self, upstream_id: &str, sink: &ProgressSink) -> Result<VideoAssets, UpstreamError> {
        let parsed = upstream_id.strip_prefix(conversation::RESUME_PREFIX).and_then(|r| r.split_once(':'));
        let Some((token_id, video)) = parsed else {
            return Err(UpstreamError::Failed(format!("`{upstream_id}` is not a grok.com video reference")));
        };
        // `post`, or `post@root` for an extension (`conversation::stream_video`).
        let video = VideoRef::parse(video);
        let post = video.post.as_str();
        let Some((token, proxy)) = self.pool.find(token_id) else {
            return Err(UpstreamError::Failed(format!(
                "the token that started video {post} is no longer configured; it cannot be collected"
            )));
        };
        let account = self.account(&token, proxy.as_deref());
        let (video_url, thumbnail_url) = conversation::recover_video(self, &account, post, sink).await?;
        let mut assets = conversation::download_video(self, &account, &video_url, thumbnail_url.as_deref()).await?;
        conversation::mark_origin(&mut assets, &account, video.clone());
        // No other account can take it over: a canned clip fails the task rather than being delivered.
        let request = RequestKey::new("resumed video", upstream_id, &[]);
        let judged = self.judge(&account.id, request, &[], vec![assets.video.clone()]).await;
        if let Err(e @ UpstreamError::CannedOutput(_)) = &judged {
            self.pool.flag(&account.id, &e.to_string());
        }
        judged.map(|()| assets)
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

/// The video ratio grok.com makes nearest to `w`×`h` (an extension keeps its source's shape).
fn nearest_video_ratio(w: u32, h: u32) -> &'static str {
    let shape = (f64::from(w.max(1)) / f64::from(h.max(1))).ln();
    let distance = |r: &str| {
        let (a, b) = r.split_once(':').unwrap_or(("1", "1"));
        let r = (a.parse::<f64>().unwrap_or(1.0) / b.parse::<f64>().unwrap_or(1.0)).ln();
        (r - shape).abs()
    };
    ["16:9", "9:16", "3:2", "2:3", "1:1"]
        .into_iter()
        .min_by(|a, b| distance(a).total_cmp(&distance(b)))
        .unwrap_or("16:9")
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
    use crate::upstream::grok_web::*;

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

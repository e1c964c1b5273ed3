//! The official xAI API as an upstream: JSON image generation and edits (our multipart inputs become
//! data URLs), and asynchronous video (`POST /v1/videos/generations` → `request_id`, then polling
//! `GET /v1/videos/{request_id}`). Results live on temporary xAI URLs, so they are downloaded at once.
//!
//! A video create is never sent twice: once the POST may have reached xAI, failures end the job
//! rather than retry, and the `request_id` is reported (`JobEvent::Submitted`) before polling starts
//! so a restarted gateway resumes polling instead of paying again. Polling, by contrast, is free and
//! safe to repeat: a pending answer is a 202 (with or without a body), and passing 5xx / 408 / 409 /
//! 429 answers are retried with backoff until the video timeout, since xAI already bills that video.

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::XaiConfig;
use crate::jobs::{
    EditJob, ImageJob, InputImage, ProgressSink, VideoInput, VideoJob, VideoOp, VideoOpJob, VideoPreset,
};
use crate::media::kind::sniff_media_type;
use crate::metrics::Metrics;
use crate::upstream::assets::{Asset, VideoAssets};
use crate::upstream::error::{UpstreamError, outcome_label, retry_after};
use crate::upstream::quality::{self, QualityGuard, RequestKey};
use crate::upstream::xai_models::{image_caps, xai_quality};

pub struct XaiClient {
    http: reqwest::Client,
    cfg: XaiConfig,
    /// Refuses canned outputs: the API has answered with an unrelated clip before (CLIProxyAPI #5221).
    guard: QualityGuard,
    metrics: std::sync::Arc<Metrics>,
}

#[derive(Debug, Deserialize)]
struct ImagesResponse {
    /// Missing = not an images answer; present but empty = xAI withheld every image (moderation).
    #[serde(default)]
    data: Option<Vec<ImageItem>>,
}

#[derive(Debug, Deserialize)]
struct ImageItem {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    b64_json: Option<String>,
    /// `false` when xAI's moderation flagged this image (its URL, if any, must not be served).
    #[serde(default)]
    respect_moderation: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct VideoCreated {
    request_id: String,
}

#[derive(Debug, Deserialize)]
struct VideoStatus {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    progress: Option<f64>,
    #[serde(default)]
    video: Option<VideoOut>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct VideoOut {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    respect_moderation: Option<bool>,
}

fn data_url(image: &InputImage) -> String {
    format!("data:{};base64,{}", image.content_type, base64::engine::general_purpose::STANDARD.encode(&image.bytes))
}

/// Decodes `%XX` escapes and `+` for matching and logging; malformed escapes stay as they are.
/// xAI's messages sometimes arrive URL-encoded (gRPC's `grpc-message` encoding).
fn percent_decode_lossy(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let escaped = bytes
            .get(i + 1..i + 3)
            .filter(|_| b == b'%')
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (b, escaped) {
            (_, Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (other, None) => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// xAI's billing stop: "Your team ... has either used all available credits or reached its monthly
/// spending limit" (seen as 429, and as 403 on some endpoints).
fn is_out_of_credits(lower: &str) -> bool {
    lower.contains("used all available credits") || lower.contains("monthly spending limit")
}

/// Answers that say nothing about the video itself, only that this poll did not get through: a
/// passing 5xx, a request timeout (408) or a conflict (409). Polling again is free and safe.
fn poll_retryable(status: u16) -> bool {
    matches!(status, 408 | 409 | 500..=599)
}

/// The wait before poll number `failures + 1` after consecutive failures: doubling from the poll
/// interval, at most 30 s (never below the interval).
fn poll_backoff(interval: Duration, failures: u32) -> Duration {
    interval.saturating_mul(1 << failures.min(10)).min(Duration::from_secs(30)).max(interval)
}

/// xAI's error answers, by what the gateway should do. A wrong key is a 400 there; it is our
/// configuration problem, never the client's 401. Messages are matched URL-decoded, in the body or
/// in a `grpc-message` header.
fn classify(status: u16, headers: &HeaderMap, body: &str) -> UpstreamError {
    let grpc = headers.get("grpc-message").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let text = percent_decode_lossy(&format!("{body} {grpc}"));
    let lower = text.to_ascii_lowercase();
    let snippet: String = text.trim().chars().take(200).collect();
    let looks_html = lower.trim_start().starts_with('<');
    if matches!(status, 402 | 403 | 429) && is_out_of_credits(&lower) {
        tracing::error!(
            "xAI stopped the configured key for billing (no credits, or the monthly spending limit reached); \
             top up or raise the limit in the xAI console: {snippet}"
        );
        return UpstreamError::CreditsExhausted(
            "the gateway's xAI account has used its credits or reached its spending limit".into(),
        );
    }
    match status {
        400 if lower.contains("api key") => {
            tracing::error!("xAI rejected the configured API key (xai.api_key): {snippet}");
            UpstreamError::Auth("xAI rejected the gateway's API key".into())
        }
        401 => {
            tracing::error!("xAI refused authentication (xai.api_key): {snippet}");
            UpstreamError::Auth("xAI refused the gateway's credentials".into())
        }
        403 if looks_html || lower.contains("cloudflare") => {
            UpstreamError::Challenge("xAI answered 403 with a challenge page".into())
        }
        403 => {
            tracing::error!("xAI forbids this request for the configured key: {snippet}");
            UpstreamError::Auth(format!("xAI forbids the request: {snippet}"))
        }
        429 => {
            UpstreamError::RateLimited { retry_after: retry_after(headers), message: "xAI rate limit reached".into() }
        }
        s => UpstreamError::Failed(format!("xAI answered HTTP {s}: {snippet}")),
    }
}

impl XaiClient {
    pub fn new(cfg: XaiConfig, metrics: std::sync::Arc<Metrics>) -> Result<Self, String> {
        crate::install_crypto_provider();
        if cfg.api_key.as_deref().is_none_or(str::is_empty) {
            tracing::warn!("upstream.kind = \"xai\" but xai.api_key is empty; generation requests will fail");
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(cfg.connect_timeout_secs.max(1)))
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .map_err(|e| format!("cannot build HTTP client: {e}"))?;
        let guard = QualityGuard::new(cfg.quality_guard, &cfg.canned_outputs, quality::WINDOW)
            .map_err(|e| e.replace("grok.canned_outputs", "xai.canned_outputs"))?;
        Ok(Self { http, cfg, guard, metrics })
    }

    /// (usable, configured) for readiness: the one API key.
    pub fn capacity(&self) -> (usize, usize) {
        let n = usize::from(self.cfg.api_key.as_deref().is_some_and(|k| !k.is_empty()));
        (n, n)
    }

    /// The models (and so the abilities) this client was configured with.
    pub fn config(&self) -> &XaiConfig {
        &self.cfg
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.cfg.base_url.trim_end_matches('/'))
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.cfg.request_timeout_secs.max(1))
    }

    fn record<T>(&self, op: &'static str, r: &Result<T, UpstreamError>) {
        self.metrics.upstream(op, outcome_label(r));
    }

    /// One JSON call; answers the status and body of a 2xx, else the classified error.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Bytes), UpstreamError> {
        let (status, headers, bytes) = self.send(method, path, body).await?;
        if !(200..300).contains(&status) {
            return Err(classify(status, &headers, &String::from_utf8_lossy(&bytes)));
        }
        Ok((status, bytes))
    }

    /// One JSON call, whatever its status; only a failure to get an answer is an error.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, HeaderMap, Bytes), UpstreamError> {
        let mut req =
            self.http.request(method, self.url(path)).bearer_auth(self.cfg.api_key.as_deref().unwrap_or_default());
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let resp = tokio::time::timeout(self.request_timeout(), req.send())
            .await
            .map_err(|_| {
                UpstreamError::Timeout(format!("xAI did not answer within {}s", self.request_timeout().as_secs()))
            })?
            .map_err(|e| {
                if e.is_timeout() {
                    UpstreamError::Timeout(e.to_string())
                } else {
                    UpstreamError::Transport(e.to_string())
                }
            })?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = tokio::time::timeout(self.request_timeout(), resp.bytes())
            .await
            .map_err(|_| UpstreamError::Timeout("xAI stalled mid-answer".into()))?
            .map_err(|e| UpstreamError::Transport(format!("xAI answer broke: {e}")))?;
        Ok((status, headers, bytes))
    }

    fn parse<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, UpstreamError> {
        serde_json::from_slice(bytes).map_err(|_| {
            UpstreamError::Protocol(format!(
                "unparseable xAI answer: {}",
                String::from_utf8_lossy(bytes).chars().take(120).collect::<String>()
            ))
        })
    }

    /// Temporary result URLs are public; download them before they expire.
    async fn download(&self, url: &str) -> Result<Asset, UpstreamError> {
        let resp = tokio::time::timeout(self.request_timeout(), self.http.get(url).send())
            .await
            .map_err(|_| UpstreamError::Timeout("xAI asset download did not start in time".into()))?
            .map_err(|e| UpstreamError::Transport(e.to_string()))?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp.text().await.unwrap_or_default();
            return Err(classify(status, &headers, &body));
        }
        let mut stream = resp.bytes_stream();
        let mut buf = Vec::new();
        while let Some(chunk) = tokio::time::timeout(self.request_timeout(), stream.next())
            .await
            .map_err(|_| UpstreamError::Timeout("xAI asset download stalled".into()))?
        {
            let chunk = chunk.map_err(|e| UpstreamError::Transport(e.to_string()))?;
            if (buf.len() + chunk.len()) as u64 > self.cfg.max_download_bytes {
                return Err(UpstreamError::Protocol("xAI asset larger than xai.max_download_bytes".into()));
            }
            buf.extend_from_slice(&chunk);
        }
        let bytes = Bytes::from(buf);
        let content_type = sniff_media_type(&bytes)
            .ok_or_else(|| UpstreamError::Protocol("xAI asset is not an image or video".into()))?;
        Ok(Asset { bytes, content_type, origin: None })
    }

    /// Images are cheap: one retry on a rate limit or a connection failure (never on a billing stop).
    async fn images(
        &self,
        op: &'static str,
        path: &str,
        body: Value,
        sink: &ProgressSink,
    ) -> Result<Vec<Asset>, UpstreamError> {
        let mut attempt = 0;
        let (_, bytes) = loop {
            let r = self.call(reqwest::Method::POST, path, Some(&body)).await;
            self.record(op, &r);
            match r {
                Err(e @ (UpstreamError::RateLimited { .. } | UpstreamError::Transport(_))) if attempt == 0 => {
                    attempt += 1;
                    let wait = match e {
                        UpstreamError::RateLimited { retry_after: Some(d), .. } => d,
                        _ => Duration::from_millis(500),
                    };
                    tokio::time::sleep(wait.min(Duration::from_secs(5))).await;
                }
                other => break other?,
            }
        };
        sink.progress(60);
        let parsed: ImagesResponse = Self::parse(&bytes)?;
        let Some(data) = parsed.data else {
            return Err(UpstreamError::Protocol("xAI answered without a `data` list".into()));
        };
        if data.is_empty() {
            return Err(UpstreamError::Moderated("xAI withheld every image (moderation); rephrase the prompt".into()));
        }
        let mut out = Vec::with_capacity(data.len());
        let mut moderated = 0;
        for item in data {
            if item.respect_moderation == Some(false) {
                moderated += 1;
                continue;
            }
            let b64 = item.b64_json.filter(|s| !s.is_empty());
            let url = item.url.filter(|s| !s.is_empty());
            let asset = match (b64, url) {
                (Some(b64), _) => {
                    let data = b64.split_once(";base64,").map_or(b64.as_str(), |(_, d)| d);
                    let bytes = Bytes::from(
                        base64::engine::general_purpose::STANDARD
                            .decode(data.trim())
                            .map_err(|_| UpstreamError::Protocol("xAI b64_json is not base64".into()))?,
                    );
                    let content_type = sniff_media_type(&bytes)
                        .ok_or_else(|| UpstreamError::Protocol("xAI image is not an image".into()))?;
                    Asset { bytes, content_type, origin: None }
                }
                (None, Some(url)) => self.download(&url).await?,
                (None, None) => {
                    moderated += 1;
                    continue;
                }
            };
            out.push(asset);
        }
        if moderated > 0 {
            return Err(UpstreamError::Moderated(format!("xAI moderated {moderated} image(s); rephrase the prompt")));
        }
        if out.is_empty() {
            return Err(UpstreamError::Protocol("xAI answered without images".into()));
        }
        Ok(out)
    }

    pub async fn generate_images(&self, job: &ImageJob, sink: &ProgressSink) -> Result<Vec<Asset>, UpstreamError> {
        let mut body = json!({"model": self.cfg.image_model, "prompt": job.prompt, "n": job.n,
                              "response_format": "url", "aspect_ratio": job.aspect_ratio, "resolution": "1k"});
        // Only 2.0 takes `quality`; another model would refuse the request over it.
        if let Some(q) = job.quality.filter(|_| image_caps(&self.cfg.image_model).quality) {
            body["quality"] = json!(xai_quality(q));
        }
        let assets = self.images("image", "/v1/images/generations", body, sink).await?;
        let request = RequestKey::new(&format!("image {}", job.aspect_ratio), &job.prompt, &[]);
        self.judge("image", request, &[], &assets).await?;
        Ok(assets)
    }

    pub async fn edit_images(&self, job: &EditJob, sink: &ProgressSink) -> Result<Vec<Asset>, UpstreamError> {
        let mut body =
            json!({"model": self.cfg.edit_model, "prompt": job.prompt, "n": job.n, "response_format": "url"});
        if let Some(q) = job.quality.filter(|_| image_caps(&self.cfg.edit_model).quality) {
            body["quality"] = json!(xai_quality(q));
        }
        if let [one] = job.images.as_slice() {
            body["image"] = json!({"url": data_url(one)});
        } else {
            body["images"] = json!(job.images.iter().map(|i| json!({"url": data_url(i)})).collect::<Vec<_>>());
            if let Some(ar) = job.aspect_ratio {
                body["aspect_ratio"] = json!(ar);
            }
        }
        let assets = self.images("edit", "/v1/images/edits", body, sink).await?;
        let inputs =
            self.guard.fingerprints(job.images.iter().map(|i| (i.bytes.clone(), i.content_type)).collect()).await?;
        let request = RequestKey::new(&format!("edit {:?}", job.aspect_ratio), &job.prompt, &inputs);
        self.judge("edit", request, &inputs, &assets).await?;
        Ok(assets)
    }

    pub async fn generate_video(&self, job: &VideoJob, sink: &ProgressSink) -> Result<VideoAssets, UpstreamError> {
        if job.preset != VideoPreset::Normal {
            tracing::warn!("xAI has no video preset; `{:?}` is ignored", job.preset);
        }
        let mut body = json!({"model": self.cfg.video_model, "duration": job.duration,
                              "aspect_ratio": job.aspect_ratio, "resolution": job.resolution});
        // xAI's prompt is optional only for image-to-video; the API layer asks for one otherwise.
        if !job.prompt.is_empty() {
            body["prompt"] = json!(job.prompt);
        }
        match job.input() {
            VideoInput::Text => {}
            VideoInput::FirstFrame => body["image"] = json!({"url": data_url(&job.images[0])}),
            VideoInput::References => {
                body["reference_images"] =
                    job.images.iter().map(|i| json!({"url": data_url(i)})).collect::<Vec<_>>().into();
            }
        }
        let made = self.create_video("video", "/v1/videos/generations", &body, sink).await?;
        let inputs =
            self.guard.fingerprints(job.images.iter().map(|i| (i.bytes.clone(), i.content_type)).collect()).await?;
        let kind = format!("video {} {}s {}", job.aspect_ratio, job.duration, job.resolution);
        self.judge("video", RequestKey::new(&kind, &job.prompt, &inputs), &inputs, std::slice::from_ref(&made.video))
            .await?;
        Ok(made)
    }

    /// Fails an answer the quality guard takes for canned output (`upstream/quality.rs`); there is no
    /// other account to move it to, so the client is told rather than served it.
    async fn judge(
        &self,
        op: &'static str,
        request: RequestKey,
        inputs: &[quality::Hash],
        outputs: &[Asset],
    ) -> Result<(), UpstreamError> {
        let hashes =
            self.guard.fingerprints(outputs.iter().map(|a| (a.bytes.clone(), a.content_type)).collect()).await?;
        self.guard.check("xai", request, inputs, &hashes).map_err(|canned| {
            self.metrics.upstream(op, "canned_output");
            tracing::error!(%canned, "xAI answered with canned media; not delivered");
            UpstreamError::CannedOutput(canned.to_string())
        })
    }

    /// An edit (`POST /v1/videos/edits`: the result keeps the input's length) or an extension
    /// (`POST /v1/videos/extensions`, `duration` = the seconds added), polled like a generation. The
    /// input goes as a data URL, as image inputs do: the gateway's own links may not be reachable
    /// from xAI, and xAI takes `{url}` as "a public URL or base64 data URL of an .mp4" (source:
    /// docs.x.ai developers/model-capabilities/video/extension.md; xai-sdk-ts types.ts VideoUrl).
    pub async fn video_op(&self, job: &VideoOpJob, sink: &ProgressSink) -> Result<VideoAssets, UpstreamError> {
        let video = format!(
            "data:{};base64,{}",
            job.video.content_type,
            base64::engine::general_purpose::STANDARD.encode(&job.video.bytes)
        );
        let mut body = json!({"model": self.cfg.video_edit_model, "prompt": job.prompt, "video": {"url": video}});
        let (op, path) = match job.op {
            VideoOp::Edit => ("video_edit", "/v1/videos/edits"),
            VideoOp::Extend { seconds } => {
                body["duration"] = json!(seconds);
                ("video_extend", "/v1/videos/extensions")
            }
        };
        let made = self.create_video(op, path, &body, sink).await?;
        let inputs = self.guard.fingerprints(vec![(job.video.bytes.clone(), job.video.content_type)]).await?;
        let request = RequestKey::new(&format!("{op} {:?}", job.op), &job.prompt, &inputs);
        self.judge(op, request, &inputs, std::slice::from_ref(&made.video)).await?;
        Ok(made)
    }

    /// Sends a video create once (whatever happens after the bytes may have left, it is not
    /// repeated: xAI would bill twice), reports its `request_id`, then polls it to the end.
    async fn create_video(
        &self,
        op: &'static str,
        path: &str,
        body: &Value,
        sink: &ProgressSink,
    ) -> Result<VideoAssets, UpstreamError> {
        let created = self.call(reqwest::Method::POST, path, Some(body)).await;
        self.record(op, &created);
        let (_, bytes) = created?;
        let created: VideoCreated = Self::parse(&bytes)?;
        sink.submitted(&created.request_id);
        self.poll_video(&created.request_id, sink).await
    }

    /// Polls a video request until it ends (also used after a restart). xAI bills the video once
    /// it is accepted, so a poll that does not get through is retried until the video timeout:
    /// 5xx / 408 / 409 and rate limits with backoff, broken connections a few times in a row.
    pub async fn poll_video(&self, request_id: &str, sink: &ProgressSink) -> Result<VideoAssets, UpstreamError> {
        let interval = Duration::from_millis(self.cfg.poll_interval_ms.max(10));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(self.cfg.video_timeout_secs.max(1));
        let path = format!("/v1/videos/{request_id}");
        // Consecutive polls that did not get through (for the backoff), and of those, broken connections.
        let mut failures: u32 = 0;
        let mut broken: u32 = 0;
        let mut last_failure: Option<String> = None;
        loop {
            if tokio::time::Instant::now() >= deadline {
                let why = last_failure.map(|w| format!(" (last poll: {w})")).unwrap_or_default();
                let e = UpstreamError::Timeout(format!(
                    "xAI video {request_id} not done within {}s{why}",
                    self.cfg.video_timeout_secs
                ));
                self.record("video_poll", &Err::<(), _>(e.clone()));
                return Err(e);
            }
            let wait = match self.send(reqwest::Method::GET, &path, None).await {
                // Still pending: xAI answers 202, with a status body or with none at all (or one we
                // cannot read, which says no more than an empty one).
                Ok((202, _, bytes)) => {
                    (failures, broken) = (0, 0);
                    if let Ok(st) = serde_json::from_slice::<VideoStatus>(&bytes)
                        && let Some(end) = self.video_status(request_id, st, sink).await
                    {
                        return end;
                    }
                    interval
                }
                Ok((200..=299, _, bytes)) => {
                    (failures, broken) = (0, 0);
                    let st: VideoStatus = Self::parse(&bytes)?;
                    if let Some(end) = self.video_status(request_id, st, sink).await {
                        return end;
                    }
                    interval
                }
                Ok((status, headers, bytes)) => {
                    let e = classify(status, &headers, &String::from_utf8_lossy(&bytes));
                    let hint = match &e {
                        UpstreamError::RateLimited { retry_after, .. } => Some(*retry_after),
                        _ if poll_retryable(status) => Some(None),
                        _ => None,
                    };
                    self.record("video_poll", &Err::<(), _>(e.clone()));
                    let Some(retry_after) = hint else {
                        return Err(e);
                    };
                    tracing::warn!(request = request_id, "xAI video poll answered HTTP {status}; polling on: {e}");
                    failures += 1;
                    last_failure = Some(format!("HTTP {status}"));
                    retry_after.unwrap_or_else(|| poll_backoff(interval, failures)).max(interval)
                }
                Err(e @ (UpstreamError::Transport(_) | UpstreamError::Timeout(_))) if broken < 3 => {
                    tracing::warn!(request = request_id, "xAI video poll failed; polling on: {e}");
                    self.record("video_poll", &Err::<(), _>(e.clone()));
                    broken += 1;
                    failures += 1;
                    last_failure = Some(e.to_string());
                    poll_backoff(interval, failures)
                }
                Err(e) => {
                    self.record("video_poll", &Err::<(), _>(e.clone()));
                    return Err(e);
                }
            };
            tokio::time::sleep(wait.min(deadline.saturating_duration_since(tokio::time::Instant::now()))).await;
        }
    }

    /// Acts on a 2xx status body: `Some` ends the polling with a result or an error.
    async fn video_status(
        &self,
        request_id: &str,
        st: VideoStatus,
        sink: &ProgressSink,
    ) -> Option<Result<VideoAssets, UpstreamError>> {
        match st.status.as_deref() {
            Some("pending") | None => {
                if let Some(p) = st.progress {
                    sink.progress((p.clamp(0.0, 100.0) as u8).min(99));
                }
                None
            }
            Some("done") => {
                self.metrics.upstream("video_poll", "ok");
                let video = st.video.unwrap_or(VideoOut { url: None, respect_moderation: None });
                let url = video.url.filter(|u| !u.is_empty());
                let Some(url) = url.filter(|_| video.respect_moderation != Some(false)) else {
                    return Some(Err(UpstreamError::Moderated("xAI moderated the video; rephrase the prompt".into())));
                };
                Some(self.download(&url).await.and_then(|asset| {
                    if asset.content_type.starts_with("video/") {
                        Ok(VideoAssets { video: asset, thumbnail: None })
                    } else {
                        Err(UpstreamError::Protocol("xAI video is not a video".into()))
                    }
                }))
            }
            Some("failed") => {
                let e = st.error.map_or_else(|| "generation failed".to_string(), |e| e.to_string());
                Some(Err(UpstreamError::Failed(format!("xAI video failed: {e}"))))
            }
            Some("expired") => {
                Some(Err(UpstreamError::Failed("upstream_expired: the xAI result expired before download".into())))
            }
            Some(other) => {
                tracing::warn!(request = request_id, "unknown xAI video status `{other}`; polling on");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::upstream::xai::*;

    #[test]
    fn wrong_key_is_an_upstream_auth_failure() {
        let h = HeaderMap::new();
        let e = classify(
            400,
            &h,
            r#"{"code":"Client specified an invalid argument","error":"Incorrect API key provided: xa***"}"#,
        );
        assert!(matches!(e, UpstreamError::Auth(_)));
        assert!(matches!(classify(400, &h, r#"{"error":"Argument not supported: size"}"#), UpstreamError::Failed(_)));
        assert!(matches!(classify(401, &h, ""), UpstreamError::Auth(_)));
        assert!(matches!(classify(403, &h, "<html>cf</html>"), UpstreamError::Challenge(_)));
        assert!(matches!(classify(429, &h, ""), UpstreamError::RateLimited { .. }));
        assert!(matches!(classify(503, &h, "x"), UpstreamError::Failed(_)));
    }

    #[test]
    fn wrong_key_is_recognised_url_encoded_too() {
        let h = HeaderMap::new();
        let encoded = r#"{"error":"Incorrect%20API%20key%20provided%3A%20xa%2A%2A%2A"}"#;
        assert!(matches!(classify(400, &h, encoded), UpstreamError::Auth(_)));
        assert!(matches!(classify(400, &h, "Incorrect+API+key+provided"), UpstreamError::Auth(_)));
        let mut grpc = HeaderMap::new();
        grpc.insert("grpc-message", "Incorrect%20API%20key%20provided".parse().unwrap());
        assert!(matches!(classify(400, &grpc, ""), UpstreamError::Auth(_)));
        assert_eq!(percent_decode_lossy("100%25 %zz %4"), "100% %zz %4");
        assert_eq!(percent_decode_lossy("caf%C3%A9"), "café");
    }

    #[test]
    fn out_of_credits_is_a_billing_stop_not_a_rate_limit() {
        let h = HeaderMap::new();
        let body = r#"{"code":"Some resource has been exhausted","error":"Your team 16f2 has either used all available credits or reached its monthly spending limit. To continue making API requests, please purchase more credits or raise your spending limit."}"#;
        assert!(matches!(classify(429, &h, body), UpstreamError::CreditsExhausted(_)));
        assert!(matches!(classify(403, &h, body), UpstreamError::CreditsExhausted(_)));
        let encoded = "used%20all%20available%20credits";
        assert!(matches!(classify(429, &h, encoded), UpstreamError::CreditsExhausted(_)));
        assert!(!classify(429, &h, body).retry_on_other_token());
        assert!(matches!(classify(429, &h, "rate limit exceeded"), UpstreamError::RateLimited { .. }));
    }

    #[test]
    fn polls_retry_passing_failures_with_a_bounded_backoff() {
        for s in [408, 409, 500, 502, 503, 504] {
            assert!(poll_retryable(s), "{s}");
        }
        for s in [400, 401, 403, 404, 410, 422, 429] {
            assert!(!poll_retryable(s), "{s}");
        }
        let i = Duration::from_millis(100);
        assert_eq!(poll_backoff(i, 1), Duration::from_millis(200));
        assert_eq!(poll_backoff(i, 3), Duration::from_millis(800));
        assert_eq!(poll_backoff(i, 40), Duration::from_secs(30));
        assert_eq!(poll_backoff(Duration::from_secs(60), 2), Duration::from_secs(60));
    }
}

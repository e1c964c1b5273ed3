//! The official xAI API as an upstream: JSON image generation and edits (our multipart inputs become
//! data URLs), and asynchronous video (`POST /v1/videos/generations` → `request_id`, then polling
//! `GET /v1/videos/{request_id}`). Results live on temporary xAI URLs, so they are downloaded at once.
//!
//! A video create is never sent twice: once the POST may have reached xAI, failures end the job
//! rather than retry, and the `request_id` is reported (`JobEvent::Submitted`) before polling starts
//! so a restarted gateway resumes polling instead of paying again.

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Asset, UpstreamError, VideoAssets, retry_after, sniff_media_type};
use crate::config::XaiConfig;
use crate::jobs::{EditJob, ImageJob, InputImage, ProgressSink, VideoJob, VideoPreset};
use crate::metrics::Metrics;

pub struct XaiClient {
    http: reqwest::Client,
    cfg: XaiConfig,
    metrics: std::sync::Arc<Metrics>,
}

#[derive(Debug, Deserialize)]
struct ImagesResponse {
    #[serde(default)]
    data: Vec<ImageItem>,
}

#[derive(Debug, Deserialize)]
struct ImageItem {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    b64_json: Option<String>,
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

/// xAI's error answers, by what the gateway should do. A wrong key is a 400 there; it is our
/// configuration problem, never the client's 401.
fn classify(status: u16, headers: &HeaderMap, body: &str) -> UpstreamError {
    let lower = body.to_ascii_lowercase();
    let snippet: String = body.chars().take(200).collect();
    let looks_html = lower.trim_start().starts_with('<');
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
        Ok(Self { http, cfg, metrics })
    }

    /// (usable, configured) for readiness: the one API key.
    pub fn capacity(&self) -> (usize, usize) {
        let n = usize::from(self.cfg.api_key.as_deref().is_some_and(|k| !k.is_empty()));
        (n, n)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.cfg.base_url.trim_end_matches('/'))
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.cfg.request_timeout_secs.max(1))
    }

    fn record<T>(&self, op: &'static str, r: &Result<T, UpstreamError>) {
        self.metrics.upstream(op, super::outcome_label(r));
    }

    /// One JSON call; answers the parsed body of a 2xx, else the classified error.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Bytes), UpstreamError> {
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
        if !(200..300).contains(&status) {
            return Err(classify(status, &headers, &String::from_utf8_lossy(&bytes)));
        }
        Ok((status, bytes))
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
        Ok(Asset { bytes, content_type })
    }

    /// Images are cheap: one retry on a rate limit or a connection failure.
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
        let mut out = Vec::with_capacity(parsed.data.len());
        let mut moderated = 0;
        for item in parsed.data {
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
                    Asset { bytes, content_type }
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
        let body = json!({"model": self.cfg.image_model, "prompt": job.prompt, "n": job.n, "response_format": "url",
                          "aspect_ratio": job.aspect_ratio, "resolution": "1k"});
        self.images("image", "/v1/images/generations", body, sink).await
    }

    pub async fn edit_images(&self, job: &EditJob, sink: &ProgressSink) -> Result<Vec<Asset>, UpstreamError> {
        let mut body =
            json!({"model": self.cfg.edit_model, "prompt": job.prompt, "n": job.n, "response_format": "url"});
        if let [one] = job.images.as_slice() {
            body["image"] = json!({"url": data_url(one)});
        } else {
            body["images"] = json!(job.images.iter().map(|i| json!({"url": data_url(i)})).collect::<Vec<_>>());
            if let Some(ar) = job.aspect_ratio {
                body["aspect_ratio"] = json!(ar);
            }
        }
        self.images("edit", "/v1/images/edits", body, sink).await
    }

    pub async fn generate_video(&self, job: &VideoJob, sink: &ProgressSink) -> Result<VideoAssets, UpstreamError> {
        if job.preset != VideoPreset::Normal {
            tracing::warn!("xAI has no video preset; `{:?}` is ignored", job.preset);
        }
        let mut body = json!({"model": self.cfg.video_model, "prompt": job.prompt, "duration": job.duration,
                              "aspect_ratio": job.aspect_ratio, "resolution": job.resolution});
        if let Some(image) = &job.image {
            body["image"] = json!({"url": data_url(image)});
        }
        // The create is sent once: whatever happens after the bytes may have left, it is not repeated.
        let created = self.call(reqwest::Method::POST, "/v1/videos/generations", Some(&body)).await;
        self.record("video", &created);
        let (_, bytes) = created?;
        let created: VideoCreated = Self::parse(&bytes)?;
        sink.submitted(&created.request_id);
        self.poll_video(&created.request_id, sink).await
    }

    /// Polls a video request until it ends (also used after a restart).
    pub async fn poll_video(&self, request_id: &str, sink: &ProgressSink) -> Result<VideoAssets, UpstreamError> {
        let interval = Duration::from_millis(self.cfg.poll_interval_ms.max(10));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(self.cfg.video_timeout_secs.max(1));
        let mut transient = 0;
        loop {
            if tokio::time::Instant::now() > deadline {
                return Err(UpstreamError::Timeout(format!(
                    "xAI video {request_id} not done within {}s",
                    self.cfg.video_timeout_secs
                )));
            }
            let r = self.call(reqwest::Method::GET, &format!("/v1/videos/{request_id}"), None).await;
            let (status, bytes) = match r {
                Ok(ok) => {
                    transient = 0;
                    ok
                }
                // Polling is safe to repeat; a few hiccups in a row are tolerated.
                Err(UpstreamError::Transport(_) | UpstreamError::Timeout(_) | UpstreamError::RateLimited { .. })
                    if transient < 3 =>
                {
                    transient += 1;
                    tokio::time::sleep(interval * 2).await;
                    continue;
                }
                Err(e) => {
                    self.record("video_poll", &Err::<(), _>(e.clone()));
                    return Err(e);
                }
            };
            if status == 202 && bytes.is_empty() {
                tokio::time::sleep(interval).await;
                continue;
            }
            let st: VideoStatus = Self::parse(&bytes)?;
            match st.status.as_deref() {
                Some("pending") | None => {
                    if let Some(p) = st.progress {
                        sink.progress((p.clamp(0.0, 100.0) as u8).min(99));
                    }
                }
                Some("done") => {
                    self.metrics.upstream("video_poll", "ok");
                    let video = st.video.unwrap_or(VideoOut { url: None, respect_moderation: None });
                    let url = video.url.filter(|u| !u.is_empty());
                    let Some(url) = url.filter(|_| video.respect_moderation != Some(false)) else {
                        return Err(UpstreamError::Moderated("xAI moderated the video; rephrase the prompt".into()));
                    };
                    let asset = self.download(&url).await?;
                    if !asset.content_type.starts_with("video/") {
                        return Err(UpstreamError::Protocol("xAI video is not a video".into()));
                    }
                    return Ok(VideoAssets { video: asset, thumbnail: None });
                }
                Some("failed") => {
                    let e = st.error.map_or_else(|| "generation failed".to_string(), |e| e.to_string());
                    return Err(UpstreamError::Failed(format!("xAI video failed: {e}")));
                }
                Some("expired") => {
                    return Err(UpstreamError::Failed(
                        "upstream_expired: the xAI result expired before download".into(),
                    ));
                }
                Some(other) => tracing::warn!(request = request_id, "unknown xAI video status `{other}`; polling on"),
            }
            tokio::time::sleep(interval).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

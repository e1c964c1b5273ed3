//! `POST /v1/chat/completions` for the video model: the prompt is the last user message, an optional
//! `image_url` part makes it image-to-video, `video_config` picks ratio, length, resolution and preset.
//! Answers a `chat.completion` (markdown link + structured `video`), or `chat.completion.chunk` SSE with
//! `progress` chunks when `stream: true`.

use std::time::Duration;

use crate::owner::KeyId;
use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use super::stream::{request_timeout, run_to_end, sse_job};
use super::{Capability, JsonBody, public_base, resolve_model, unix_now, validate_prompt};
use crate::api::state::AppState;
use crate::error::ApiError;
use crate::jobs::{
    InputImage, Job, JobEvent, JobOutput, MAX_REFERENCE_VIDEO_SECONDS, MAX_VIDEO_IMAGES, VIDEO_SECONDS, VideoJob,
    VideoPreset,
};
use crate::media::kind::sniff_media_type;
use crate::net::{self, FetchError, FetchPolicy};

pub const MAX_INPUT_IMAGE_BYTES: usize = 20 * 1024 * 1024;

/// Chat completions for the video model: the last user message is the prompt (and its images).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub stream: Option<bool>,
    /// `aspect_ratio`, `video_length` (1–15 s), `resolution_name`, `preset`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub video_config: Option<Value>,
    /// `{"include_usage": true}`: the stream ends with a chunk carrying `usage` (and no choices).
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<MessageContent>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type")]
pub enum ContentPart {
    #[serde(rename = "text")]
    Text { text: String },
    #[serde(rename = "image_url")]
    ImageUrl { image_url: ImageUrl },
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ImageUrl {
    Object { url: String },
    Bare(String),
}

impl ImageUrl {
    fn url(&self) -> &str {
        match self {
            Self::Object { url } | Self::Bare(url) => url,
        }
    }
}

/// `video_config`, validated. Every bad value is a 400 naming `video_config.<field>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoConfig {
    pub aspect_ratio: &'static str,
    pub video_length: u32,
    pub resolution: &'static str,
    pub preset: VideoPreset,
}

fn pick<T: Copy>(
    cfg: &serde_json::Map<String, Value>,
    field: &'static str,
    default: T,
    choices: &[(&str, T)],
) -> Result<T, ApiError> {
    let param = format!("video_config.{field}");
    match cfg.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::String(s)) => choices.iter().find(|(k, _)| *k == s.trim()).map(|(_, v)| *v).ok_or_else(|| {
            let allowed: Vec<&str> = choices.iter().map(|(k, _)| *k).collect();
            ApiError::invalid_param(&param, format!("`{s}` is not one of {}", allowed.join(", ")))
        }),
        Some(other) => Err(ApiError::invalid_param(&param, format!("must be a string, got {other}"))),
    }
}

impl VideoConfig {
    pub fn parse(v: Option<&Value>) -> Result<Self, ApiError> {
        let empty = serde_json::Map::new();
        let cfg = match v {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(m)) => m,
            Some(_) => return Err(ApiError::invalid_param("video_config", "video_config must be an object")),
        };
        let ratios = [("16:9", "16:9"), ("9:16", "9:16"), ("3:2", "3:2"), ("2:3", "2:3"), ("1:1", "1:1")];
        let aspect_ratio = pick(cfg, "aspect_ratio", "3:2", &ratios)?;
        // 1080p only where the upstream's model makes it: checked with the request (`video_job`).
        let resolutions = [("480p", "480p"), ("720p", "720p"), ("1080p", "1080p")];
        let resolution = pick(cfg, "resolution_name", "480p", &resolutions)?;
        let presets = [
            ("normal", VideoPreset::Normal),
            ("fun", VideoPreset::Fun),
            ("spicy", VideoPreset::Spicy),
            ("custom", VideoPreset::Custom),
        ];
        let preset = pick(cfg, "preset", VideoPreset::Normal, &presets)?;
        let video_length = match cfg.get("video_length") {
            None | Some(Value::Null) => 6,
            Some(v) => video_seconds(v).ok_or_else(|| {
                ApiError::invalid_param(
                    "video_config.video_length",
                    format!(
                        "must be a number of seconds from {} to {}, got {v}",
                        VIDEO_SECONDS.start(),
                        VIDEO_SECONDS.end()
                    ),
                )
            })?,
        };
        Ok(Self { aspect_ratio, video_length, resolution, preset })
    }
}

/// grok.com and xAI take whole seconds from 1 to 15; a fraction is taken to the nearest second.
fn video_seconds(v: &Value) -> Option<u32> {
    let secs = v.as_f64()?.round();
    (secs >= f64::from(*VIDEO_SECONDS.start()) && secs <= f64::from(*VIDEO_SECONDS.end())).then_some(secs as u32)
}

/// What the last user message asks for: its text (empty when it has none) and its image references,
/// in order.
pub fn last_user_message(messages: &[ChatMessage]) -> Result<(String, Vec<String>), ApiError> {
    let msg = messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .ok_or_else(|| ApiError::invalid_param("messages", "messages must contain a user message"))?;
    let (text, images) = match &msg.content {
        None => (String::new(), Vec::new()),
        Some(MessageContent::Text(t)) => (t.clone(), Vec::new()),
        Some(MessageContent::Parts(parts)) => {
            let mut texts = Vec::new();
            let mut images = Vec::new();
            for p in parts {
                match p {
                    ContentPart::Text { text } => texts.push(text.as_str()),
                    ContentPart::ImageUrl { image_url } => images.push(image_url.url().to_owned()),
                    ContentPart::Other => {}
                }
            }
            (texts.join("\n"), images)
        }
    };
    if text.trim().is_empty() {
        return Ok((String::new(), images));
    }
    Ok((validate_prompt(&text).map_err(|e| ApiError { param: Some("messages".into()), ..e })?, images))
}

fn bad_image(message: impl Into<String>) -> ApiError {
    ApiError { code: "invalid_image", ..ApiError::invalid_param("messages", message) }
}

/// The media-store name in a link to one of this gateway's own images (`.../v1/files/image/<name>`,
/// absolute or relative): such an input is read from the store, with its upstream origin, instead of
/// being fetched over the network.
fn own_image_name(url: &str) -> Option<&str> {
    let path = match url.split_once("://") {
        Some((scheme, rest)) if scheme == "http" || scheme == "https" => &rest[rest.find('/')?..],
        Some(_) => return None,
        None => url,
    };
    let path = path.split(['?', '#']).next().unwrap_or(path);
    path.strip_prefix("/v1/files/image/").filter(|name| !name.contains('/'))
}

/// Turns an `image_url` into a checked input image: one of this gateway's own files, a data URL, or
/// an http(s) URL fetched under the SSRF policy.
pub async fn load_image(url: &str, state: &AppState) -> Result<InputImage, ApiError> {
    if let Some(name) = own_image_name(url)
        && let Some((bytes, content_type, origin)) = state.media.read_image(name).await
    {
        return Ok(InputImage { bytes, content_type, file_name: name.to_owned(), origin });
    }
    let policy = &state.fetch_policy;
    let bytes = if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest.split_once(',').ok_or_else(|| bad_image("malformed data URL"))?;
        if !meta.ends_with(";base64") {
            return Err(bad_image("data URLs must be base64-encoded"));
        }
        if data.len() / 4 * 3 > MAX_INPUT_IMAGE_BYTES + 3 {
            return Err(bad_image("image is larger than 20 MiB"));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|_| bad_image("data URL is not valid base64"))?;
        bytes::Bytes::from(decoded)
    } else {
        let policy = FetchPolicy { max_bytes: MAX_INPUT_IMAGE_BYTES, ..policy.clone() };
        match net::fetch(url, &policy).await {
            Ok((bytes, _)) => bytes,
            Err(FetchError::Forbidden(m)) => return Err(bad_image(format!("image_url refused: {m}"))),
            Err(FetchError::Failed(m)) => return Err(bad_image(format!("cannot fetch image_url: {m}"))),
        }
    };
    if bytes.len() > MAX_INPUT_IMAGE_BYTES {
        return Err(bad_image("image is larger than 20 MiB"));
    }
    let content_type = sniff_media_type(&bytes)
        .filter(|t| t.starts_with("image/"))
        .ok_or_else(|| bad_image("image_url is not a PNG, JPEG or WebP image"))?;
    let ext = content_type.trim_start_matches("image/").replace("jpeg", "jpg");
    Ok(InputImage { bytes, content_type, file_name: format!("input.{ext}"), origin: None })
}

/// `load_image` for each of `urls`, in order; a refusal names `param` (the field the URLs came in).
pub async fn load_images(urls: &[String], state: &AppState, param: &str) -> Result<Vec<InputImage>, ApiError> {
    let mut images = Vec::with_capacity(urls.len());
    for url in urls {
        images.push(load_image(url, state).await.map_err(|e| ApiError { param: Some(param.into()), ..e })?);
    }
    Ok(images)
}

/// Builds the video job for a chat request or a video task. No images: text-to-video (a prompt is
/// required). One image: its first frame. Several: reference images. With images the prompt may be
/// left out; the preset then says how to animate them.
pub async fn video_job(req: &ChatRequest, state: &AppState) -> Result<VideoJob, ApiError> {
    resolve_model(&req.model, Capability::Video)?;
    let cfg = VideoConfig::parse(req.video_config.as_ref())?;
    let (prompt, urls) = last_user_message(&req.messages)?;
    if urls.len() > MAX_VIDEO_IMAGES {
        return Err(bad_image(format!("at most {MAX_VIDEO_IMAGES} images per video, got {}", urls.len())));
    }
    if prompt.is_empty() && urls.is_empty() {
        return Err(ApiError::invalid_param("messages", "the last user message has no text prompt"));
    }
    // Reference-to-video, as both upstreams define it: a prompt saying what to do with the
    // references, and at most 10 seconds.
    if urls.len() > 1 && prompt.is_empty() {
        return Err(ApiError::invalid_param("messages", "several reference images need a text prompt"));
    }
    if urls.len() > 1 && cfg.video_length > MAX_REFERENCE_VIDEO_SECONDS {
        return Err(ApiError::invalid_param(
            "video_config.video_length",
            format!("a video from reference images is at most {MAX_REFERENCE_VIDEO_SECONDS} seconds"),
        ));
    }
    if prompt.is_empty() && cfg.preset == VideoPreset::Custom {
        return Err(ApiError::invalid_param(
            "video_config.preset",
            "preset `custom` animates by a prompt: add one, or pick normal, fun or spicy",
        ));
    }
    super::upstream_limits::check_resolution(state, cfg.resolution, urls.len() > 1, "video_config.resolution_name")?;
    let images = load_images(&urls, state, "messages").await?;
    Ok(VideoJob {
        prompt,
        aspect_ratio: cfg.aspect_ratio,
        duration: cfg.video_length,
        resolution: cfg.resolution,
        preset: cfg.preset,
        images,
    })
}

struct VideoLinks {
    url: String,
    thumbnail_url: Option<String>,
    duration: u32,
}

fn links(output: JobOutput, base: &str) -> Result<VideoLinks, ApiError> {
    match output {
        JobOutput::Video { video, thumbnail, duration, .. } => Ok(VideoLinks {
            url: format!("{base}{}", video.path()),
            thumbnail_url: thumbnail.map(|t| format!("{base}{}", t.path())),
            duration,
        }),
        JobOutput::Images(_) => Err(ApiError::internal("video job produced images")),
    }
}

impl VideoLinks {
    fn markdown(&self) -> String {
        format!("[video]({})", self.url)
    }

    fn json(&self) -> Value {
        json!(self.video())
    }

    fn video(&self) -> ChatVideo {
        ChatVideo { url: self.url.clone(), thumbnail_url: self.thumbnail_url.clone(), duration: self.duration }
    }
}

/// A chat completion carrying a video: the link as markdown in `content`, and structured in `video`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ChatCompletion {
    pub id: String,
    /// Always `chat.completion`.
    pub object: &'static str,
    pub created: u64,
    pub model: &'static str,
    pub choices: Vec<ChatChoice>,
    pub usage: Usage,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ChatChoice {
    pub index: u32,
    pub finish_reason: &'static str,
    pub message: ChatVideoMessage,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ChatVideoMessage {
    /// Always `assistant`.
    pub role: &'static str,
    /// `[video](<url>)`.
    pub content: String,
    pub video: ChatVideo,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ChatVideo {
    pub url: String,
    pub thumbnail_url: Option<String>,
    /// Seconds.
    pub duration: u32,
}

/// Always zero: generations are not metered in tokens.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
}

#[utoipa::path(post, path = "/v1/chat/completions", tag = "video", request_body = ChatRequest,
    responses(
        (status = 200, description = "the video (SSE `chat.completion.chunk`s with `progress` when `stream: true`)", content(
            (ChatCompletion = "application/json"), (super::schema::StreamEvent = "text/event-stream"))),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody),
        (status = 502, body = crate::error::ErrorBody), (status = 504, body = crate::error::ErrorBody)))]
pub async fn completions(
    State(state): State<AppState>,
    Extension(owner): Extension<KeyId>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<ChatRequest>,
) -> Result<Response, ApiError> {
    let job = video_job(&req, &state).await?;
    let model = resolve_model(&req.model, Capability::Video)?;
    let base = public_base(state.cfg.server.public_base_url.as_deref(), &headers);
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = unix_now();
    if req.stream.unwrap_or(false) {
        let usage = req.stream_options.as_ref().and_then(|o| o.include_usage).unwrap_or(false);
        let chunks = Chunks { id, created, model, usage };
        return Ok(stream(&state, owner, Job::Video(job), request_timeout(&state), chunks, base));
    }
    let video = links(run_to_end(&state, &owner, &Job::Video(job)).await?, &base)?;
    Ok(axum::Json(ChatCompletion {
        id,
        object: "chat.completion",
        created,
        model,
        choices: vec![ChatChoice {
            index: 0,
            finish_reason: "stop",
            message: ChatVideoMessage { role: "assistant", content: video.markdown(), video: video.video() },
        }],
        usage: Usage { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 },
    })
    .into_response())
}

/// How every chunk of one stream is stamped.
#[derive(Clone)]
struct Chunks {
    id: String,
    created: u64,
    model: &'static str,
    /// `stream_options.include_usage`: every chunk has `usage: null`, and a last one carries it.
    usage: bool,
}

impl Chunks {
    fn stamped(&self, choices: Value, usage: Value) -> Value {
        let mut c = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "choices": choices});
        if self.usage {
            c["usage"] = usage;
        }
        c
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        self.stamped(json!([{"index": 0, "delta": delta, "finish_reason": finish}]), Value::Null)
    }

    fn usage(&self) -> Option<Event> {
        let usage = json!(Usage { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 });
        self.usage.then(|| Event::default().data(self.stamped(json!([]), usage).to_string()))
    }
}

fn stream(state: &AppState, owner: KeyId, job: Job, timeout: Duration, chunks: Chunks, base: String) -> Response {
    let chunk = {
        let chunks = chunks.clone();
        move |delta: Value, finish: Option<&str>| chunks.chunk(delta, finish)
    };
    let progress_chunk = chunk.clone();
    let mut opened = false;
    let on_event = move |ev: JobEvent| {
        let JobEvent::Progress(p) = ev else { return None };
        let role = if opened { json!({"content": ""}) } else { json!({"role": "assistant", "content": ""}) };
        opened = true;
        let mut c = progress_chunk(role, None);
        c["progress"] = json!(p);
        Some(Event::default().data(c.to_string()))
    };
    let on_done = move |result: Result<JobOutput, ApiError>| {
        let done = Event::default().data("[DONE]");
        match result.and_then(|o| links(o, &base)) {
            Ok(video) => {
                let mut last =
                    chunk(json!({"role": "assistant", "content": video.markdown(), "video": video.json()}), None);
                last["progress"] = json!(100);
                let mut events = vec![
                    Event::default().data(last.to_string()),
                    Event::default().data(chunk(json!({}), Some("stop")).to_string()),
                ];
                events.extend(chunks.usage());
                events.push(done);
                events
            }
            Err(e) => vec![Event::default().data(e.body().to_string()), done],
        }
    };
    sse_job(state, owner, job, timeout, on_event, on_done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_config_defaults_and_errors() {
        let d = VideoConfig::parse(None).unwrap();
        assert_eq!((d.aspect_ratio, d.video_length, d.resolution, d.preset), ("3:2", 6, "480p", VideoPreset::Normal));
        let ok = VideoConfig::parse(Some(
            &json!({"aspect_ratio":"9:16","video_length":10,"resolution_name":"720p","preset":"spicy"}),
        ))
        .unwrap();
        assert_eq!((ok.aspect_ratio, ok.video_length, ok.preset), ("9:16", 10, VideoPreset::Spicy));
        // grok.com takes any whole second from 1 to 15; a fraction goes to the nearest second.
        for (len, secs) in [(json!(1), 1), (json!(7), 7), (json!(15), 15), (json!(6.4), 6), (json!(14.6), 15)] {
            assert_eq!(VideoConfig::parse(Some(&json!({ "video_length": len }))).unwrap().video_length, secs);
        }
        for (bad, param) in [
            (json!({"aspect_ratio": "4:3"}), "video_config.aspect_ratio"),
            (json!({"aspect_ratio": 169}), "video_config.aspect_ratio"),
            (json!({"video_length": 0}), "video_config.video_length"),
            (json!({"video_length": 16}), "video_config.video_length"),
            (json!({"video_length": 15.5}), "video_config.video_length"),
            (json!({"video_length": -3}), "video_config.video_length"),
            (json!({"video_length": "6"}), "video_config.video_length"),
            // 1080p is parsed, then judged against the upstream (`upstream_limits::check_resolution`).
            (json!({"resolution_name": "4k"}), "video_config.resolution_name"),
            (json!({"preset": "wild"}), "video_config.preset"),
            (json!("6s"), "video_config"),
        ] {
            let e = VideoConfig::parse(Some(&bad)).unwrap_err();
            assert_eq!((e.status.as_u16(), e.param.as_deref()), (400, Some(param)), "{bad}");
        }
    }

    #[test]
    fn prompt_comes_from_the_last_user_message() {
        let msgs: Vec<ChatMessage> = serde_json::from_value(json!([
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [
                {"type": "text", "text": "让这张图动起来"},
                {"type": "image_url", "image_url": {"url": "https://a.example/1.png"}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
            ]}
        ]))
        .unwrap();
        let (prompt, images) = last_user_message(&msgs).unwrap();
        assert_eq!(prompt, "让这张图动起来");
        assert_eq!(images, ["https://a.example/1.png", "data:image/png;base64,AAAA"]);
        let none: Vec<ChatMessage> = serde_json::from_value(json!([{"role": "system", "content": "x"}])).unwrap();
        assert_eq!(last_user_message(&none).unwrap_err().param.as_deref(), Some("messages"));
    }

    #[test]
    fn links_to_our_own_images_are_recognised() {
        let name = "0123456789abcdef0123456789abcdef.png";
        for url in [
            format!("http://localhost:8000/v1/files/image/{name}"),
            format!("https://gw.example/v1/files/image/{name}?download=1"),
            format!("/v1/files/image/{name}"),
        ] {
            assert_eq!(own_image_name(&url), Some(name), "{url}");
        }
        for url in [
            "https://a.example/1.png",
            "data:image/png;base64,AAAA",
            "/v1/files/video/x.mp4",
            "ftp://h/v1/files/image/x",
        ] {
            assert_eq!(own_image_name(url), None, "{url}");
        }
    }
}

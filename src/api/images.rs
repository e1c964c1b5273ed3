//! `POST /v1/images/generations`, and the response writing shared with edits: plain JSON, or an SSE
//! stream of OpenAI image events when `stream: true`.

use std::time::Duration;

use crate::auth::KeyId;
use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use super::stream::sse_job;
use super::{
    Capability, JsonBody, ResponseFormat, aspect_ratio_for_size, public_base, resolve_model, unix_now, validate_n,
    validate_prompt,
};
use crate::app::AppState;
use crate::error::ApiError;
use crate::jobs::{ImageFormat, ImageJob, ImageOutput, Job, JobEvent, JobOutput, ProgressSink};
use crate::media::StoredMedia;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ImageGenerationRequest {
    pub model: String,
    pub prompt: String,
    #[serde(default)]
    pub n: Option<i64>,
    #[serde(default)]
    pub size: Option<String>,
    #[serde(default)]
    pub response_format: Option<String>,
    #[serde(default)]
    pub stream: Option<bool>,
    /// OpenAI's newer image parameters: honoured where they map (see `ImageOptions`).
    #[serde(flatten)]
    pub options: ImageOptions,
}

/// Parameters OpenAI's SDKs send for gpt-image models. `output_format` / `output_compression` and
/// `partial_images` are honoured; `quality`, `background`, `moderation`, `style` and `user` have no
/// upstream counterpart and are accepted and ignored (one debug line), never refused.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct ImageOptions {
    #[serde(default)]
    pub output_format: Option<String>,
    #[serde(default)]
    pub output_compression: Option<i64>,
    #[serde(default)]
    pub partial_images: Option<i64>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub quality: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub background: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub moderation: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub style: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub user: Option<Value>,
}

impl ImageOptions {
    /// The output the caller asked for; a format we cannot write is a 400 naming the ones we can.
    pub fn output(&self) -> Result<ImageOutput, ApiError> {
        let format = match self.output_format.as_deref().map(str::trim).filter(|f| !f.is_empty()) {
            None => None,
            Some(f) => Some(ImageFormat::parse(f).ok_or_else(|| {
                ApiError::invalid_param("output_format", format!("`{f}` is not one of png, jpeg, webp"))
            })?),
        };
        let compression = match self.output_compression {
            None => None,
            Some(c @ 0..=100) => Some(c as u8),
            Some(c) => return Err(ApiError::invalid_param("output_compression", format!("must be 0-100, got {c}"))),
        };
        let ignored: Vec<&str> = [
            ("quality", &self.quality),
            ("background", &self.background),
            ("moderation", &self.moderation),
            ("style", &self.style),
            ("user", &self.user),
        ]
        .into_iter()
        .filter(|(_, v)| v.as_ref().is_some_and(|v| !v.is_null()))
        .map(|(k, _)| k)
        .collect();
        if !ignored.is_empty() {
            tracing::debug!(params = ?ignored, "image parameters with no upstream counterpart, ignored");
        }
        Ok(ImageOutput { format, compression })
    }

    /// How many partial images per image a stream may send (OpenAI allows 0–3); unset = every preview.
    pub fn partial_images(&self) -> Result<Option<u32>, ApiError> {
        match self.partial_images {
            None => Ok(None),
            Some(n @ 0..=3) => Ok(Some(n as u32)),
            Some(n) => Err(ApiError::invalid_param("partial_images", format!("must be 0-3, got {n}"))),
        }
    }
}

/// A validated image request: the job plus how to answer.
pub struct ImageRequest {
    pub job: Job,
    pub format: ResponseFormat,
    pub stream: bool,
    pub size: String,
    /// Partial images per image in a stream; `None` = every preview.
    pub partial_images: Option<u32>,
}

impl ImageGenerationRequest {
    pub fn validate(self) -> Result<ImageRequest, ApiError> {
        resolve_model(&self.model, Capability::Image)?;
        let prompt = validate_prompt(&self.prompt)?;
        let n = validate_n(self.n)?;
        let size = self.size.unwrap_or_else(|| "1024x1024".into());
        let aspect_ratio = aspect_ratio_for_size(&size)?;
        let format = ResponseFormat::parse(self.response_format.as_deref())?;
        let output = self.options.output()?;
        Ok(ImageRequest {
            job: Job::Image(ImageJob { prompt, n, aspect_ratio, output }),
            format,
            stream: self.stream.unwrap_or(false),
            size,
            partial_images: self.options.partial_images()?,
        })
    }
}

#[utoipa::path(post, path = "/v1/images/generations", tag = "images", request_body = ImageGenerationRequest,
    responses(
        (status = 200, description = "the images; with `stream: true` an SSE stream of `image_generation.partial_image` and `image_generation.completed` events", content(
            (ImagesResponse = "application/json"), (super::openapi::StreamEvent = "text/event-stream"))),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody),
        (status = 502, body = crate::error::ErrorBody), (status = 504, body = crate::error::ErrorBody)))]
pub async fn generations(
    State(state): State<AppState>,
    Extension(owner): Extension<KeyId>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<ImageGenerationRequest>,
) -> Result<Response, ApiError> {
    let req = req.validate()?;
    respond(&state, owner, req, public_base(state.cfg.server.public_base_url.as_deref(), &headers)).await
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The images of an image job's output (a video here would be a bug in job dispatch).
fn images(output: JobOutput) -> Result<Vec<StoredMedia>, ApiError> {
    match output {
        JobOutput::Images(media) => Ok(media),
        JobOutput::Video { .. } => Err(ApiError::internal("image job produced a video")),
    }
}

/// OpenAI's images response (generations and edits).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ImagesResponse {
    /// Unix seconds.
    pub created: u64,
    pub data: Vec<ImageData>,
}

/// One image: a link (`response_format: "url"`) or the file inline (`b64_json`).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ImageData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b64_json: Option<String>,
    /// Always empty: the upstream does not say.
    pub revised_prompt: String,
}

/// The OpenAI `data` array for finished images.
pub fn image_data(media: &[StoredMedia], format: ResponseFormat, base: &str) -> Vec<ImageData> {
    media
        .iter()
        .map(|m| match format {
            ResponseFormat::Url => {
                ImageData { url: Some(format!("{base}{}", m.path())), b64_json: None, revised_prompt: String::new() }
            }
            ResponseFormat::B64Json => {
                ImageData { url: None, b64_json: Some(b64(&m.bytes)), revised_prompt: String::new() }
            }
        })
        .collect()
}

pub async fn respond(state: &AppState, owner: KeyId, req: ImageRequest, base: String) -> Result<Response, ApiError> {
    let timeout = Duration::from_secs(state.cfg.server.request_timeout_secs.max(1));
    if req.stream {
        return Ok(stream(state, owner, req, base, timeout));
    }
    let output = tokio::time::timeout(timeout, state.runner.run(&owner, &req.job, &ProgressSink::none()))
        .await
        .map_err(|_| ApiError::timeout(format!("generation took longer than {}s", timeout.as_secs())))??;
    let media = images(output)?;
    Ok(axum::Json(ImagesResponse { created: unix_now(), data: image_data(&media, req.format, &base) }).into_response())
}

fn event(kind: &str, data: Value) -> Event {
    Event::default().event(kind).data(data.to_string())
}

/// SSE: `image_generation.partial_image` per preview, `image_generation.completed` per image, or one
/// `error` event.
fn stream(state: &AppState, owner: KeyId, req: ImageRequest, base: String, timeout: Duration) -> Response {
    let ImageRequest { job, format, size, partial_images, .. } = req;
    let created = unix_now();
    let mut partials: Vec<u32> = Vec::new();
    let preview_size = size.clone();
    let on_event = move |ev: JobEvent| {
        let JobEvent::Preview { index, bytes } = ev else { return None };
        if partials.len() <= index {
            partials.resize(index + 1, 0);
        }
        if partial_images.is_some_and(|max| partials[index] >= max) {
            return None;
        }
        let data = json!({"type": "image_generation.partial_image", "b64_json": b64(&bytes),
            "partial_image_index": partials[index], "index": index, "created_at": created,
            "size": preview_size, "quality": "auto", "background": "opaque", "output_format": "png"});
        partials[index] += 1;
        Some(event("image_generation.partial_image", data))
    };
    let on_done = move |result: Result<JobOutput, ApiError>| match result.and_then(images) {
        Ok(media) => {
            let urls = image_data(&media, ResponseFormat::Url, &base);
            media
                .iter()
                .enumerate()
                .map(|(index, m)| {
                    let mut data = json!({"type": "image_generation.completed", "b64_json": b64(&m.bytes), "index": index,
                        "created_at": created, "size": size, "quality": "auto", "background": "opaque",
                        "output_format": m.content_type.trim_start_matches("image/"),
                        "usage": {"total_tokens": 0, "input_tokens": 0, "output_tokens": 0,
                                  "input_tokens_details": {"text_tokens": 0, "image_tokens": 0}}});
                    if format == ResponseFormat::Url {
                        data["url"] = json!(urls[index].url);
                    }
                    event("image_generation.completed", data)
                })
                .collect()
        }
        Err(e) => {
            let mut body = e.body();
            body["type"] = json!("error");
            vec![event("error", body)]
        }
    };
    sse_job(state, owner, job, timeout, on_event, on_done)
}

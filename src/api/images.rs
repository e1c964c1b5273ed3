//! `POST /v1/images/generations`, and the response writing shared with edits: plain JSON, or an SSE
//! stream of OpenAI image events when `stream: true`.

use std::time::Duration;

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
use crate::jobs::{ImageJob, Job, JobEvent, JobOutput, ProgressSink};
use crate::media::StoredMedia;

#[derive(Debug, Deserialize)]
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
}

/// A validated image request: the job plus how to answer.
pub struct ImageRequest {
    pub job: Job,
    pub format: ResponseFormat,
    pub stream: bool,
    pub size: String,
}

impl ImageGenerationRequest {
    pub fn validate(self) -> Result<ImageRequest, ApiError> {
        resolve_model(&self.model, Capability::Image)?;
        let prompt = validate_prompt(&self.prompt)?;
        let n = validate_n(self.n)?;
        let size = self.size.unwrap_or_else(|| "1024x1024".into());
        let aspect_ratio = aspect_ratio_for_size(&size)?;
        let format = ResponseFormat::parse(self.response_format.as_deref())?;
        Ok(ImageRequest {
            job: Job::Image(ImageJob { prompt, n, aspect_ratio }),
            format,
            stream: self.stream.unwrap_or(false),
            size,
        })
    }
}

pub async fn generations(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<ImageGenerationRequest>,
) -> Result<Response, ApiError> {
    let req = req.validate()?;
    respond(&state, req, public_base(state.cfg.server.public_base_url.as_deref(), &headers)).await
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

/// The OpenAI `data` array for finished images.
pub fn image_data(media: &[StoredMedia], format: ResponseFormat, base: &str) -> Vec<Value> {
    media
        .iter()
        .map(|m| match format {
            ResponseFormat::Url => json!({"url": format!("{base}{}", m.path()), "revised_prompt": ""}),
            ResponseFormat::B64Json => json!({"b64_json": b64(&m.bytes), "revised_prompt": ""}),
        })
        .collect()
}

pub async fn respond(state: &AppState, req: ImageRequest, base: String) -> Result<Response, ApiError> {
    let timeout = Duration::from_secs(state.cfg.server.request_timeout_secs.max(1));
    if req.stream {
        return Ok(stream(state, req, base, timeout));
    }
    let output = tokio::time::timeout(timeout, state.runner.run(&req.job, &ProgressSink::none()))
        .await
        .map_err(|_| ApiError::timeout(format!("generation took longer than {}s", timeout.as_secs())))??;
    let media = images(output)?;
    Ok(axum::Json(json!({"created": unix_now(), "data": image_data(&media, req.format, &base)})).into_response())
}

fn event(kind: &str, data: Value) -> Event {
    Event::default().event(kind).data(data.to_string())
}

/// SSE: `image_generation.partial_image` per preview, `image_generation.completed` per image, or one
/// `error` event.
fn stream(state: &AppState, req: ImageRequest, base: String, timeout: Duration) -> Response {
    let ImageRequest { job, format, size, .. } = req;
    let created = unix_now();
    let mut partials: Vec<u32> = Vec::new();
    let preview_size = size.clone();
    let on_event = move |ev: JobEvent| {
        let JobEvent::Preview { index, bytes } = ev else { return None };
        if partials.len() <= index {
            partials.resize(index + 1, 0);
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
                        data["url"] = urls[index]["url"].clone();
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
    sse_job(state, job, timeout, on_event, on_done)
}

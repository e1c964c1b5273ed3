//! `POST /v1/images/generations`, and the response writing shared with edits: plain JSON, or an SSE
//! stream of OpenAI image events when `stream: true`.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{
    Capability, JsonBody, ResponseFormat, aspect_ratio_for_size, public_base, resolve_model, validate_n,
    validate_prompt,
};
use crate::app::AppState;
use crate::error::ApiError;
use crate::jobs::{ImageJob, Job, JobEvent, JobOutput, ProgressSink};

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

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The OpenAI `data` array for finished images.
pub fn image_data(output: &JobOutput, format: ResponseFormat, base: &str) -> Vec<Value> {
    output
        .media
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
    Ok(axum::Json(json!({"created": unix_now(), "data": image_data(&output, req.format, &base)})).into_response())
}

fn event(kind: &str, data: Value) -> Event {
    Event::default().event(kind).data(data.to_string())
}

/// SSE: `image_generation.partial_image` per preview, `image_generation.completed` per image, or one
/// `error` event. The job runs in a tracked task that stops (dropping the upstream request and its
/// token) as soon as the client goes away.
fn stream(state: &AppState, req: ImageRequest, base: String, timeout: Duration) -> Response {
    let (out, out_rx) = mpsc::channel::<Result<Event, Infallible>>(16);
    let (sink, mut events) = ProgressSink::channel(32);
    let runner = state.runner.clone();
    let ImageRequest { job, format, size, .. } = req;
    state.tracker.spawn(async move {
        let created = unix_now();
        let run = runner.run(&job, &sink);
        tokio::pin!(run);
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut partials: Vec<u32> = Vec::new();
        let result = loop {
            tokio::select! {
                _ = out.closed() => return,
                _ = &mut deadline => break Err(ApiError::timeout(format!("generation took longer than {}s", timeout.as_secs()))),
                Some(ev) = events.recv() => {
                    if let JobEvent::Preview { index, bytes } = ev {
                        if partials.len() <= index {
                            partials.resize(index + 1, 0);
                        }
                        let data = json!({"type": "image_generation.partial_image", "b64_json": b64(&bytes),
                            "partial_image_index": partials[index], "index": index, "created_at": created,
                            "size": size, "quality": "auto", "background": "opaque", "output_format": "png"});
                        partials[index] += 1;
                        if out.send(Ok(event("image_generation.partial_image", data))).await.is_err() {
                            return;
                        }
                    }
                }
                r = &mut run => break r.map_err(ApiError::from),
            }
        };
        match result {
            Ok(output) => {
                let urls = image_data(&output, ResponseFormat::Url, &base);
                for (index, media) in output.media.iter().enumerate() {
                    let mut data = json!({"type": "image_generation.completed", "b64_json": b64(&media.bytes), "index": index,
                        "created_at": created, "size": size, "quality": "auto", "background": "opaque",
                        "output_format": media.content_type.trim_start_matches("image/"),
                        "usage": {"total_tokens": 0, "input_tokens": 0, "output_tokens": 0,
                                  "input_tokens_details": {"text_tokens": 0, "image_tokens": 0}}});
                    if format == ResponseFormat::Url {
                        data["url"] = urls[index]["url"].clone();
                    }
                    if out.send(Ok(event("image_generation.completed", data))).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                let mut body = e.body();
                body["type"] = json!("error");
                let _ = out.send(Ok(event("error", body))).await;
            }
        }
    });
    Sse::new(ReceiverStream::new(out_rx)).keep_alive(KeepAlive::default()).into_response()
}

//! `POST /v1/responses`: OpenAI's Responses API for our image, edit and video models, because it is
//! the default of the AI SDK's `openai(model)` and of LangChain's `use_responses_api`. The last user
//! message is the prompt (`input_text` parts) and its inputs (`input_image` parts); the answer is one
//! assistant message whose text links the media (`![image](…)`, `[video](…)`), with the links also in
//! `output[0].content[0].annotations` as `url_citation`s. With `stream: true` it is the Responses
//! event stream (`response.created` … `response.completed`, or `response.failed`). Text models are
//! not served: they get a 400 naming the models and routes there are.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::chat::{ChatMessage, ChatRequest, ContentPart, ImageUrl, MessageContent, load_images, video_job};
use super::stream::{request_timeout, run_to_end, sse_job_after};
use super::{Capability, JsonBody, public_base, unix_now, validate_prompt};
use crate::api::state::AppState;
use crate::catalog::lookup;
use crate::error::ApiError;
use crate::jobs::{EditJob, ImageJob, ImageOutput, Job, JobOutput};
use crate::keys::Policy;
use crate::owner::KeyId;

/// The Responses API body; fields we have no use for (`instructions`, `tools`, `reasoning`,
/// `temperature`, …) are accepted and ignored.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ResponsesRequest {
    pub model: String,
    /// A string, or a list of messages whose content is a string or `input_text` / `input_image` parts.
    #[schema(value_type = Object)]
    pub input: Value,
    #[serde(default)]
    pub stream: Option<bool>,
    /// For the video model: as on chat completions (`aspect_ratio`, `video_length`, …).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub video_config: Option<Value>,
}

/// The prompt and image references of the last user message of `input`.
fn last_user_input(input: &Value) -> Result<(String, Vec<String>), ApiError> {
    let bad = |m: &str| ApiError::invalid_param("input", m.to_owned());
    let message = match input {
        Value::String(text) => return Ok((text.clone(), Vec::new())),
        Value::Array(items) => items
            .iter()
            .rev()
            .find(|item| item.get("role").and_then(Value::as_str) == Some("user"))
            .ok_or_else(|| bad("input has no user message"))?,
        _ => return Err(bad("input must be a string or a list of messages")),
    };
    let mut texts = Vec::new();
    let mut images = Vec::new();
    match message.get("content") {
        Some(Value::String(text)) => texts.push(text.clone()),
        Some(Value::Array(parts)) => {
            for part in parts {
                match part.get("type").and_then(Value::as_str) {
                    Some("input_text" | "text") => {
                        texts.extend(part.get("text").and_then(Value::as_str).map(str::to_owned));
                    }
                    Some("input_image") => match part.get("image_url") {
                        Some(Value::String(url)) => images.push(url.clone()),
                        Some(Value::Object(o)) if o.get("url").is_some_and(Value::is_string) => {
                            images.extend(o.get("url").and_then(Value::as_str).map(str::to_owned));
                        }
                        _ if part.get("file_id").is_some() => {
                            return Err(ApiError::bad_request(
                                "unsupported",
                                "input_image.file_id names OpenAI's file store; send image_url (https or data URL)",
                            ));
                        }
                        _ => return Err(bad("an input_image needs image_url")),
                    },
                    _ => {}
                }
            }
        }
        _ => return Err(bad("the last user message has no content")),
    }
    Ok((texts.join("\n"), images))
}

fn not_served(model: &str) -> ApiError {
    ApiError::model_not_supported(
        model,
        "the Responses API here: /v1/responses serves grok-imagine-1.0 (images), grok-imagine-1.0-edit \
         (edits, with input_image) and grok-imagine-1.0-video (video); this gateway has no text models",
    )
}

/// The job a Responses request asks for, and the model it names.
async fn job(req: &ResponsesRequest, state: &AppState) -> Result<(&'static str, Job), ApiError> {
    let (model, cap) = lookup(&req.model).ok_or_else(|| not_served(&req.model))?;
    let (text, urls) = last_user_input(&req.input)?;
    match cap {
        Capability::Video => {
            let mut parts = vec![ContentPart::Text { text }];
            parts.extend(urls.into_iter().map(|url| ContentPart::ImageUrl { image_url: ImageUrl::Bare(url) }));
            let chat = ChatRequest {
                model: req.model.clone(),
                messages: vec![ChatMessage { role: "user".into(), content: Some(MessageContent::Parts(parts)) }],
                stream: None,
                video_config: req.video_config.clone(),
                stream_options: None,
            };
            Ok((model, Job::Video(video_job(&chat, state).await?)))
        }
        Capability::Image | Capability::Edit => {
            let prompt = validate_prompt(&text).map_err(|e| ApiError { param: Some("input".into()), ..e })?;
            if urls.len() > super::edits::MAX_IMAGES {
                return Err(ApiError::invalid_param(
                    "input",
                    format!("at most {} input images per edit", super::edits::MAX_IMAGES),
                ));
            }
            if urls.is_empty() {
                if cap == Capability::Edit {
                    return Err(ApiError::invalid_param("input", "an edit needs an input_image"));
                }
                return Ok((
                    model,
                    Job::Image(ImageJob {
                        prompt,
                        n: 1,
                        aspect_ratio: "1:1",
                        output: ImageOutput::default(),
                        quality: None,
                    }),
                ));
            }
            let images = load_images(&urls, state, "input").await?;
            let edit =
                EditJob { prompt, n: 1, aspect_ratio: None, images, output: ImageOutput::default(), quality: None };
            let job = Job::Edit(edit);
            super::images::check_upstream(state, &job)?;
            Ok((model, job))
        }
    }
}

/// The links of a finished job, as markdown and as plain URLs.
fn answer(output: JobOutput, base: &str) -> (String, Vec<String>) {
    match output {
        JobOutput::Images(media) => {
            let urls: Vec<String> = media.iter().map(|m| format!("{base}{}", m.path())).collect();
            let text = urls.iter().map(|u| format!("![image]({u})")).collect::<Vec<_>>().join("\n");
            (text, urls)
        }
        JobOutput::Video { video, .. } => {
            let url = format!("{base}{}", video.path());
            (format!("[video]({url})"), vec![url])
        }
    }
}

/// `text` as an `output_text` part, each link annotated where it occurs.
fn text_part(text: &str, urls: &[String]) -> Value {
    let annotations: Vec<Value> = urls
        .iter()
        .filter_map(|u| {
            let start = text.find(u.as_str())?;
            // Indices count characters, as the Responses API's do; our links are ASCII.
            let start = text[..start].chars().count();
            Some(json!({"type": "url_citation", "start_index": start, "end_index": start + u.chars().count(),
                        "url": u, "title": ""}))
        })
        .collect();
    json!({"type": "output_text", "text": text, "annotations": annotations, "logprobs": []})
}

fn message(id: &str, status: &str, content: Vec<Value>) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant", "content": content})
}

fn usage() -> Value {
    json!({"input_tokens": 0, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 0,
           "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 0})
}

/// The response object at `status`, with `output` so far.
fn response(id: &str, created: u64, model: &str, status: &str, output: Vec<Value>, error: Value) -> Value {
    let done = status == "completed";
    json!({"id": id, "object": "response", "created_at": created, "status": status, "model": model,
           "output": output, "error": error, "incomplete_details": null, "instructions": null,
           "parallel_tool_calls": false, "tool_choice": "auto", "tools": [], "metadata": {},
           "text": {"format": {"type": "text"}}, "usage": if done { usage() } else { Value::Null }})
}

#[utoipa::path(post, path = "/v1/responses", tag = "responses", request_body = ResponsesRequest,
    description = "OpenAI's Responses API for the image, edit and video models: one assistant message linking the media.",
    responses(
        (status = 200, description = "a `response` object; with `stream: true` the Responses event stream", content(
            (Object = "application/json"), (String = "text/event-stream"))),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody),
        (status = 429, body = crate::error::ErrorBody), (status = 502, body = crate::error::ErrorBody),
        (status = 504, body = crate::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Extension(owner): Extension<KeyId>,
    policy: Option<Extension<Arc<Policy>>>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<ResponsesRequest>,
) -> Result<Response, ApiError> {
    // The other routes check a key's model list before the body is read; this one learns its model here.
    if let (Some((model, _)), Some(Extension(policy))) = (lookup(&req.model), &policy) {
        crate::keys::check_model(policy, model)?;
    }
    let (model, job) = job(&req, &state).await?;
    let base = public_base(state.cfg.server.public_base_url.as_deref(), &headers);
    let id = format!("resp_{}", uuid::Uuid::new_v4().simple());
    let created = unix_now();
    if req.stream.unwrap_or(false) {
        return Ok(stream(&state, owner, job, request_timeout(&state), Ids { id, created, model }, base));
    }
    let (text, urls) = answer(run_to_end(&state, &owner, &job).await?, &base);
    let msg = message(&format!("msg_{}", uuid::Uuid::new_v4().simple()), "completed", vec![text_part(&text, &urls)]);
    Ok(axum::Json(response(&id, created, model, "completed", vec![msg], Value::Null)).into_response())
}

struct Ids {
    id: String,
    created: u64,
    model: &'static str,
}

/// The Responses event stream: `response.created` and `response.in_progress` at once, then the
/// message's events when the media is ready, and `response.completed`; or `response.failed`.
fn stream(state: &AppState, owner: KeyId, job: Job, timeout: Duration, ids: Ids, base: String) -> Response {
    let seq = Arc::new(AtomicU64::new(0));
    let event = {
        let seq = seq.clone();
        move |kind: &str, mut data: Value| {
            data["type"] = json!(kind);
            data["sequence_number"] = json!(seq.fetch_add(1, Ordering::Relaxed));
            Event::default().event(kind).data(data.to_string())
        }
    };
    let Ids { id, created, model } = ids;
    let opening = vec![
        event(
            "response.created",
            json!({"response": response(&id, created, model, "in_progress", vec![], Value::Null)}),
        ),
        event(
            "response.in_progress",
            json!({"response": response(&id, created, model, "in_progress", vec![], Value::Null)}),
        ),
    ];
    let on_done = move |result: Result<JobOutput, ApiError>| match result {
        Ok(output) => {
            let (text, urls) = answer(output, &base);
            let item_id = format!("msg_{}", uuid::Uuid::new_v4().simple());
            let part = text_part(&text, &urls);
            let empty = json!({"type": "output_text", "text": "", "annotations": [], "logprobs": []});
            let item = message(&item_id, "completed", vec![part.clone()]);
            let at = |mut v: Value| {
                v["item_id"] = json!(item_id);
                v["output_index"] = json!(0);
                v["content_index"] = json!(0);
                v
            };
            vec![
                event(
                    "response.output_item.added",
                    json!({"output_index": 0, "item": message(&item_id, "in_progress", vec![])}),
                ),
                event("response.content_part.added", at(json!({"part": empty}))),
                event("response.output_text.delta", at(json!({"delta": text, "logprobs": []}))),
                event("response.output_text.done", at(json!({"text": text, "logprobs": []}))),
                event("response.content_part.done", at(json!({"part": part}))),
                event("response.output_item.done", json!({"output_index": 0, "item": item.clone()})),
                event(
                    "response.completed",
                    json!({"response": response(&id, created, model, "completed", vec![item], Value::Null)}),
                ),
            ]
        }
        Err(e) => {
            let error = json!({"code": e.code, "message": e.message});
            vec![event("response.failed", json!({"response": response(&id, created, model, "failed", vec![], error)}))]
        }
    };
    sse_job_after(state, owner, job, timeout, opening, |_| None, on_done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_and_images_come_from_the_last_user_message() {
        assert_eq!(last_user_input(&json!("a cat")).unwrap(), ("a cat".to_owned(), vec![]));
        let input = json!([
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": [{"type": "output_text", "text": "ok"}]},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "make it move"},
                {"type": "input_image", "image_url": "https://a.example/1.png"},
                {"type": "input_image", "image_url": {"url": "data:image/png;base64,AAAA"}}
            ]}
        ]);
        let (text, images) = last_user_input(&input).unwrap();
        assert_eq!(text, "make it move");
        assert_eq!(images, ["https://a.example/1.png", "data:image/png;base64,AAAA"]);
        for bad in [json!(3), json!([{"role": "system", "content": "x"}]), json!([{"role": "user"}])] {
            assert_eq!(last_user_input(&bad).unwrap_err().param.as_deref(), Some("input"), "{bad}");
        }
        let file = json!([{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]);
        assert_eq!(last_user_input(&file).unwrap_err().status.as_u16(), 400);
    }

    #[test]
    fn links_are_annotated_where_they_occur() {
        let urls = vec!["http://h/v1/files/image/a.png".to_owned(), "http://h/v1/files/image/b.png".to_owned()];
        let part = text_part("![image](http://h/v1/files/image/a.png)\n![image](http://h/v1/files/image/b.png)", &urls);
        let a = &part["annotations"][0];
        assert_eq!((a["start_index"].as_u64(), a["end_index"].as_u64()), (Some(9), Some(38)));
        assert_eq!(part["annotations"][1]["start_index"], 49);
    }
}

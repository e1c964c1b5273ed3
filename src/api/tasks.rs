//! Async task endpoints (contract §4). They answer in the `{code, message, data}` envelope, whose `code`
//! always equals the HTTP status — errors included.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use super::chat::{ChatRequest, video_job};
use super::images::ImageGenerationRequest;
use super::{JsonBody, ResponseFormat, public_base};
use crate::api::state::AppState;
use crate::error::{ApiError, Envelope, TaskErrorBody};
use crate::jobs::Job;
use crate::media::{MediaKind, MediaStore};
use crate::net::{self, FetchError};
use crate::owner::KeyId;
use crate::tasks::idempotency::{Claim, body_hash};
use crate::tasks::store::Listing;
use crate::tasks::{Task, TaskApi, TaskKind, TaskStatus, TaskView, VideoRequest};

pub use crate::error::TaskError;

/// A JSON object body, with the same rejections as `JsonBody` but in the envelope.
pub struct TaskJson(pub serde_json::Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for TaskJson {
    type Rejection = TaskError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match JsonBody::<Value>::from_request(req, state).await? {
            JsonBody(Value::Object(m)) => Ok(Self(m)),
            JsonBody(_) => {
                Err(ApiError::unprocessable("invalid_request_structure", "request body must be a JSON object").into())
            }
        }
    }
}

/// `Params<T>` for the task endpoints: the rejection comes in the envelope.
pub struct TaskParams<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for TaskParams<T> {
    type Rejection = TaskError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, TaskError> {
        Ok(Self(super::Params::<T>::from_request_parts(parts, state).await?.0))
    }
}

/// `api::Path<T>` for the task endpoints: the rejection comes in the envelope.
pub struct TaskPath<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for TaskPath<T> {
    type Rejection = TaskError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, TaskError> {
        Ok(Self(super::Path::<T>::from_request_parts(parts, state).await?.0))
    }
}

/// `data` of a create: the new task's id.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskAccepted {
    pub task_id: String,
}

/// `data` of a listing.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskPage {
    /// Newest first.
    pub tasks: Vec<TaskView>,
    pub has_more: bool,
    /// Pass as `after` for the next page.
    pub next_after: Option<String>,
}

/// `data` of deleting a finished task.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskDeleted {
    pub task_id: String,
    pub deleted: bool,
}

fn envelope<T: serde::Serialize>(status: StatusCode, message: &str, data: T) -> Response {
    (status, Json(Envelope { code: status.as_u16(), message: message.to_owned(), data: Some(data) })).into_response()
}

fn not_found() -> TaskError {
    ApiError::not_found("task not found").into()
}

fn kind_of(segment: &str) -> Result<TaskKind, TaskError> {
    TaskKind::from_segment(segment).ok_or_else(not_found)
}

/// Renders a task's `data`, reading `b64_json` images back from the media store.
pub fn render(task: &Task, media: &MediaStore) -> TaskView {
    task.view(|names, base| {
        names
            .iter()
            .map(|name| match task.outcome.as_deref() {
                Some(crate::tasks::Outcome::Images { b64: true, .. }) => {
                    // Evicted from the media store since (or unreadable): the image is gone.
                    let file = media.get(MediaKind::Image, name)?;
                    std::fs::read(&file.path).ok().map(|b| base64::engine::general_purpose::STANDARD.encode(b))
                }
                _ => Some(format!("{base}/v1/files/image/{name}")),
            })
            .collect()
    })
}

/// A finished task's callback body, in the shape of the API that made it: OpenAI's webhook event
/// (`video.completed` / `video.failed`, `data: {id}`) for `/v1/videos` tasks, ours for the others.
/// Both are signed the same way (Standard Webhooks).
pub fn callback_event(task: &Task, media: &MediaStore) -> Value {
    match task.api {
        TaskApi::OpenAi => {
            let kind = if task.status == TaskStatus::Success { "video.completed" } else { "video.failed" };
            json!({
                "id": format!("evt_{}", uuid::Uuid::new_v4().simple()),
                "object": "event",
                "created_at": task.updated_ms / 1000,
                "type": kind,
                "data": {"id": &*task.id},
            })
        }
        TaskApi::Native | TaskApi::Xai => crate::tasks::callbacks::event(task, json!(render(task, media))),
    }
}

/// A bare `prompt` (+ top-level `aspect_ratio`, `video_length`, `resolution_name`, `preset`, and
/// `image_url` or an `image_urls` list) becomes the chat shape. With images the prompt may be absent.
fn normalize_video_body(body: &mut serde_json::Map<String, Value>) {
    if body.contains_key("messages") {
        return;
    }
    let mut urls: Vec<Value> = body.get("image_url").cloned().filter(|u| !u.is_null()).into_iter().collect();
    if let Some(Value::Array(more)) = body.get("image_urls") {
        urls.extend(more.iter().cloned());
    }
    let prompt = body.get("prompt").cloned().filter(|p| !p.is_null());
    if prompt.is_none() && urls.is_empty() {
        return;
    }
    let mut content: Vec<Value> = prompt.map(|p| json!({"type": "text", "text": p})).into_iter().collect();
    for url in urls {
        let url = if url.is_string() { json!({"url": url}) } else { url };
        content.push(json!({"type": "image_url", "image_url": url}));
    }
    body.insert("messages".into(), json!([{"role": "user", "content": content}]));
    if !body.contains_key("video_config") {
        let mut cfg = serde_json::Map::new();
        for k in ["aspect_ratio", "video_length", "resolution_name", "preset"] {
            if let Some(v) = body.get(k) {
                cfg.insert(k.into(), v.clone());
            }
        }
        body.insert("video_config".into(), Value::Object(cfg));
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &serde_json::Map<String, Value>) -> Result<T, TaskError> {
    T::deserialize(body).map_err(|e| {
        let mut err =
            ApiError::unprocessable("invalid_request_structure", format!("request body has the wrong structure: {e}"));
        err.param = super::missing_field_name(&e.to_string());
        TaskError(err)
    })
}

/// A callback URL is stored with its task and shown in listings: a URL, not a payload.
pub const MAX_CALLBACK_URL: usize = 2048;

async fn callback_url(state: &AppState, body: &serde_json::Map<String, Value>) -> Result<Option<String>, TaskError> {
    let url = match body.get("callback_url") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
        Some(Value::String(s)) if s.trim().len() > MAX_CALLBACK_URL => {
            return Err(ApiError::invalid_param(
                "callback_url",
                format!("callback_url is {} bytes; the limit is {MAX_CALLBACK_URL}", s.trim().len()),
            )
            .into());
        }
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(_) => return Err(ApiError::invalid_param("callback_url", "callback_url must be a string").into()),
    };
    let Some(settings) = &state.callbacks else {
        return Err(ApiError::invalid_param(
            "callback_url",
            "callbacks are not enabled on this gateway (the operator must set callbacks.secret)",
        )
        .into());
    };
    let bad = |m: String| TaskError(ApiError::invalid_param("callback_url", format!("callback_url refused: {m}")));
    let parsed = net::parse_target(&url).map_err(|e| bad(e.to_string()))?;
    match net::resolve_checked(&parsed, &settings.policy).await {
        Ok(_) => Ok(Some(url)),
        Err(FetchError::Forbidden(m) | FetchError::Failed(m)) => Err(bad(m)),
    }
}

fn accepted(kind: TaskKind, id: &str) -> Response {
    let location = format!("/v1/{}/tasks/{id}", kind.segment());
    let mut resp = envelope(StatusCode::ACCEPTED, "task accepted", TaskAccepted { task_id: id.to_owned() });
    for (name, value) in
        [(header::LOCATION.as_str(), location.clone()), ("operation-location", format!("{location}/result"))]
    {
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(header::HeaderName::from_static(name), v);
        }
    }
    resp
}

/// A task to create, whatever API asked for it.
pub struct NewTask<'a> {
    pub kind: TaskKind,
    pub api: TaskApi,
    pub request: Option<Arc<VideoRequest>>,
    /// The request as received: hashed for `Idempotency-Key`, read for `callback_url`.
    pub body: &'a serde_json::Map<String, Value>,
}

/// The create path every task API shares: idempotency, the per-key limit, callback URL, queue slot.
/// Returns the task's id (the first task's, for a repeated `Idempotency-Key`).
pub async fn submit(
    state: &AppState,
    owner: KeyId,
    headers: &HeaderMap,
    new: NewTask<'_>,
    build: impl AsyncFnOnce() -> Result<(Job, bool), ApiError>,
) -> Result<Arc<str>, ApiError> {
    let NewTask { kind, api, request, body } = new;
    let idem = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let key = v.to_str().ok().map(str::trim).filter(|k| !k.is_empty() && k.len() <= 255).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_idempotency_key",
                    "Idempotency-Key must be 1-255 visible ASCII characters",
                )
            })?;
            let hash = body_hash(&json!({"kind": kind.segment(), "api": api.as_str(), "body": body}));
            match state.service.idem_check(&owner, key, &hash).await? {
                Claim::Existing(id) => return Ok(id),
                Claim::Conflict => return Err(idempotency_conflict()),
                Claim::New => Some((key.to_owned(), hash)),
            }
        }
    };
    let own = state.guard.keys.policy(&owner).and_then(|p| p.max_concurrent_tasks);
    let max = own.unwrap_or(state.cfg.limits.max_concurrent_tasks);
    let full = || ApiError::rate_limited(5, format!("this API key already has {max} unfinished tasks"));
    // The task, once created, holds its own count and the slot goes.
    let mut slot = match max {
        0 => None,
        _ => Some(state.service.reserve_slot(&owner, max).await?.ok_or_else(full)?),
    };
    let local = slot.as_mut().and_then(|s| s.take_local());
    let made: Result<Arc<str>, ApiError> = async {
        let callback = callback_url(state, body).await.map_err(|e| e.0)?;
        let (job, b64) = build().await?;
        let base: Arc<str> = Arc::from(public_base(state.cfg.server.public_base_url.as_deref(), headers));
        let store = state.tasks.clone();
        let task_owner = owner.clone();
        let id = state
            .queue
            .submit(
                &owner,
                move || {
                    let id = store.create_for(task_owner, kind, callback, api, request);
                    drop(local);
                    id
                },
                job,
                base,
                b64,
            )
            .await?;
        if let Some((key, hash)) = idem {
            match state.service.idem_bind(&owner, &key, hash, &id).await? {
                Claim::New => {}
                // A concurrent twin won the race: keep its task, drop ours so only one runs.
                Claim::Existing(first) => {
                    state.queue.discard(&id);
                    return Ok(first);
                }
                Claim::Conflict => {
                    state.queue.discard(&id);
                    return Err(idempotency_conflict());
                }
            }
        }
        Ok(id)
    }
    .await;
    if let Some(slot) = slot {
        state.service.release_slot(&owner, slot).await;
    }
    made
}

/// The task endpoints' create: `submit`, answered 202 in the envelope.
async fn create(
    state: &AppState,
    owner: KeyId,
    headers: &HeaderMap,
    kind: TaskKind,
    body: &serde_json::Map<String, Value>,
    build: impl AsyncFnOnce() -> Result<(Job, bool), ApiError>,
) -> Result<Response, TaskError> {
    let new = NewTask { kind, api: TaskApi::Native, request: None, body };
    let id = submit(state, owner, headers, new, build).await?;
    Ok(accepted(kind, &id))
}

fn idempotency_conflict() -> ApiError {
    ApiError::unprocessable("idempotency_key_reused", "this Idempotency-Key was used with a different request body")
}

#[utoipa::path(post, path = "/v1/video/generations/async", tag = "tasks",
    description = "Also at `POST /v1/video/tasks`. The chat-completions body (or the bare `prompt` form) plus `callback_url`.",
    request_body = VideoTaskForm, params(super::schema::IdempotencyKey),
    responses((status = 202, body = Envelope<TaskAccepted>), (status = 400, body = TaskErrorBody),
              (status = 401, body = TaskErrorBody), (status = 422, body = TaskErrorBody), (status = 429, body = TaskErrorBody)))]
pub async fn create_video(
    State(state): State<AppState>,
    Extension(owner): Extension<KeyId>,
    headers: HeaderMap,
    TaskJson(mut body): TaskJson,
) -> Result<Response, TaskError> {
    normalize_video_body(&mut body);
    let req: ChatRequest = parse(&body)?;
    create(&state, owner, &headers, TaskKind::Video, &body, async || {
        Ok((Job::Video(video_job(&req, &state).await?), false))
    })
    .await
}

#[utoipa::path(post, path = "/v1/images/generations/async", tag = "tasks",
    description = "Also at `POST /v1/images/tasks`. The images body plus `callback_url`.",
    request_body = ImageTaskForm, params(super::schema::IdempotencyKey),
    responses((status = 202, body = Envelope<TaskAccepted>), (status = 400, body = TaskErrorBody),
              (status = 401, body = TaskErrorBody), (status = 422, body = TaskErrorBody), (status = 429, body = TaskErrorBody)))]
pub async fn create_image(
    State(state): State<AppState>,
    Extension(owner): Extension<KeyId>,
    headers: HeaderMap,
    TaskJson(body): TaskJson,
) -> Result<Response, TaskError> {
    let req: ImageGenerationRequest = parse(&body)?;
    create(&state, owner, &headers, TaskKind::Image, &body, async || {
        let req = req.validate(state.cfg.images.default_response_format.into(), &headers)?;
        super::images::check_upstream(&state, &req.job)?;
        Ok((req.job, req.format == ResponseFormat::B64Json))
    })
    .await
}

/// A task of `kind` made through `api` that `owner` may read. With `auth.public_task_reads` the id
/// alone is the capability; otherwise the caller must own the task.
pub(super) async fn readable(
    state: &AppState,
    id: &str,
    kind: TaskKind,
    api: TaskApi,
    owner: Option<&KeyId>,
) -> Result<Option<Task>, ApiError> {
    let owner = if state.cfg.auth.public_task_reads { None } else { owner };
    state.service.readable(id, kind, api, owner).await
}

pub(super) async fn lookup(
    state: &AppState,
    segment: &str,
    id: &str,
    owner: Option<&KeyId>,
) -> Result<Task, TaskError> {
    readable(state, id, kind_of(segment)?, TaskApi::Native, owner).await?.ok_or_else(not_found)
}

#[utoipa::path(get, path = "/v1/{kind}/tasks/{id}", tag = "tasks",
    params(("kind" = super::schema::TaskSegment, Path), ("id" = String, Path)),
    responses((status = 200, body = Envelope<TaskView>), (status = 404, body = TaskErrorBody)))]
pub async fn status(
    State(state): State<AppState>,
    TaskPath((segment, id)): TaskPath<(String, String)>,
    owner: Option<Extension<KeyId>>,
) -> Result<Response, TaskError> {
    let task = lookup(&state, &segment, &id, owner.as_ref().map(|e| &e.0)).await?;
    Ok(envelope(StatusCode::OK, "ok", render(&task, &state.media)))
}

#[utoipa::path(get, path = "/v1/{kind}/tasks/{id}/result", tag = "tasks",
    params(("kind" = super::schema::TaskSegment, Path), ("id" = String, Path)),
    responses((status = 200, body = Envelope<TaskView>),
              (status = 409, description = "not finished yet (`Retry-After`)", body = Envelope<TaskView>),
              (status = 404, body = TaskErrorBody)))]
pub async fn result(
    State(state): State<AppState>,
    TaskPath((segment, id)): TaskPath<(String, String)>,
    owner: Option<Extension<KeyId>>,
) -> Result<Response, TaskError> {
    let task = lookup(&state, &segment, &id, owner.as_ref().map(|e| &e.0)).await?;
    if task.status.is_terminal() {
        return Ok(envelope(StatusCode::OK, "ok", render(&task, &state.media)));
    }
    let mut resp = envelope(StatusCode::CONFLICT, "task not finished", render(&task, &state.media));
    let retry = if task.kind == TaskKind::Video { "5" } else { "2" };
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(retry));
    Ok(resp)
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    limit: Option<String>,
    after: Option<String>,
}

#[utoipa::path(get, path = "/v1/video/tasks", tag = "tasks",
    params(("status" = Option<String>, Query), ("limit" = Option<u32>, Query), ("after" = Option<String>, Query)),
    responses((status = 200, body = Envelope<TaskPage>), (status = 400, body = TaskErrorBody)))]
pub async fn list_video(
    State(state): State<AppState>,
    Extension(owner): Extension<KeyId>,
    TaskParams(q): TaskParams<ListQuery>,
) -> Result<Response, TaskError> {
    list(&state, &owner, TaskKind::Video, q).await
}

#[utoipa::path(get, path = "/v1/images/tasks", tag = "tasks",
    params(("status" = Option<String>, Query), ("limit" = Option<u32>, Query), ("after" = Option<String>, Query)),
    responses((status = 200, body = Envelope<TaskPage>), (status = 400, body = TaskErrorBody)))]
pub async fn list_images(
    State(state): State<AppState>,
    Extension(owner): Extension<KeyId>,
    TaskParams(q): TaskParams<ListQuery>,
) -> Result<Response, TaskError> {
    list(&state, &owner, TaskKind::Image, q).await
}

async fn list(state: &AppState, owner: &KeyId, kind: TaskKind, q: ListQuery) -> Result<Response, TaskError> {
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(TaskStatus::parse(s).ok_or_else(|| {
            TaskError(ApiError::invalid_param(
                "status",
                format!("`{s}` is not one of pending, processing, success, failed"),
            ))
        })?),
    };
    let limit = match q.limit.as_deref().filter(|s| !s.is_empty()) {
        None => 20,
        Some(s) => match s.parse::<usize>() {
            Ok(n @ 1..=100) => n,
            _ => return Err(ApiError::invalid_param("limit", format!("limit must be 1-100, got `{s}`")).into()),
        },
    };
    let page = state
        .service
        .page(owner, &Listing { status, after: q.after.as_deref(), ..Listing::native(kind, limit) })
        .await?;
    let next_after = if page.has_more { page.tasks.last().map(|t| t.id.to_string()) } else { None };
    let tasks: Vec<TaskView> = page.tasks.iter().map(|t| render(t, &state.media)).collect();
    Ok(envelope(StatusCode::OK, "ok", TaskPage { tasks, has_more: page.has_more, next_after }))
}

#[utoipa::path(delete, path = "/v1/{kind}/tasks/{id}", tag = "tasks",
    params(("kind" = super::schema::TaskSegment, Path), ("id" = String, Path)),
    responses((status = 200, description = "cancelled (the task) or forgotten", body = TaskDeleteAnswer),
              (status = 404, body = TaskErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    TaskPath((segment, id)): TaskPath<(String, String)>,
    Extension(owner): Extension<KeyId>,
) -> Result<Response, TaskError> {
    let kind = kind_of(&segment)?;
    let task = readable(&state, &id, kind, TaskApi::Native, Some(&owner)).await?.ok_or_else(not_found)?;
    if task.status.is_terminal() {
        state.service.forget(&task).await?;
        return Ok(envelope(StatusCode::OK, "task deleted", TaskDeleted { task_id: id, deleted: true }));
    }
    match state.service.cancel_anywhere(&id, "cancelled by the client").await? {
        Some(task) => Ok(envelope(StatusCode::OK, "task cancelled", render(&task, &state.media))),
        // It finished between the lookup and the cancel: report what it is now.
        None => {
            let task = readable(&state, &id, kind, TaskApi::Native, Some(&owner)).await?.ok_or_else(not_found)?;
            Ok(envelope(StatusCode::OK, "task already finished", render(&task, &state.media)))
        }
    }
}

/// Documentation only (the OpenAPI document).
/// `POST /v1/video/generations/async`: the chat-completions body, or the bare form.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct VideoTaskForm {
    pub model: String,
    /// The chat form; or leave it out and give `prompt` (and the fields below) directly.
    pub messages: Option<Vec<super::chat::ChatMessage>>,
    #[schema(value_type = Option<Object>)]
    pub video_config: Option<serde_json::Value>,
    pub prompt: Option<String>,
    pub aspect_ratio: Option<String>,
    /// Whole seconds, 1–15.
    pub video_length: Option<u32>,
    pub resolution_name: Option<String>,
    pub preset: Option<String>,
    /// A first-frame image: https URL, data URL, or one of this gateway's image links.
    pub image_url: Option<String>,
    /// Several images: reference-to-video (2–7).
    pub image_urls: Option<Vec<String>>,
    /// Where to POST the signed result (Standard Webhooks).
    pub callback_url: Option<String>,
}

/// `POST /v1/images/generations/async`: the images body plus `callback_url`.
#[derive(utoipa::ToSchema, serde::Deserialize)]
#[allow(dead_code)]
pub struct ImageTaskForm {
    #[serde(flatten)]
    pub request: ImageGenerationRequest,
    pub callback_url: Option<String>,
}

/// `DELETE /v1/{kind}/tasks/{id}`: the cancelled task, or the forgotten one's id.
#[derive(utoipa::ToSchema, serde::Serialize)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum TaskDeleteAnswer {
    Cancelled(crate::error::Envelope<crate::tasks::TaskView>),
    Forgotten(crate::error::Envelope<TaskDeleted>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_prompt_is_normalized_to_chat_shape() {
        let mut body = json!({"model": "grok-imagine-video", "prompt": "waves", "video_length": 10,
                              "image_url": "https://example.com/a.png"})
        .as_object()
        .cloned()
        .unwrap();
        normalize_video_body(&mut body);
        assert_eq!(body["messages"][0]["content"][0]["text"], "waves");
        assert_eq!(body["messages"][0]["content"][1]["image_url"]["url"], "https://example.com/a.png");
        assert_eq!(body["video_config"]["video_length"], 10);
        let req: ChatRequest = serde_json::from_value(Value::Object(body)).unwrap();
        assert_eq!(req.messages.len(), 1);

        // Images without a prompt: the upstream animates them in the preset's style.
        let mut body = json!({"model": "grok-imagine-video", "image_urls": ["https://example.com/a.png",
                              "https://example.com/b.png"], "preset": "fun"})
        .as_object()
        .cloned()
        .unwrap();
        normalize_video_body(&mut body);
        let content = body["messages"][0]["content"].as_array().unwrap();
        assert_eq!(content.len(), 2);
        assert_eq!(content[1]["image_url"]["url"], "https://example.com/b.png");
        assert_eq!(body["video_config"]["preset"], "fun");
    }
}

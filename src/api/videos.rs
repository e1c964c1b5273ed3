//! OpenAI's Videos API on our task store: `POST /v1/videos` (JSON or multipart), `GET /v1/videos/{id}`,
//! `GET /v1/videos`, `DELETE /v1/videos/{id}`, `GET /v1/videos/{id}/content`. Tasks made here have
//! `video_` ids and are only ever shown as OpenAI Video objects; errors are in OpenAI's shape.
//! The xAI shape (`/v1/videos/generations`) lives in `xai_videos.rs` and shares `GET /v1/videos/{id}`,
//! which answers in the shape of the API that made the task.

use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::chat::load_image;
use super::video_spec::{VideoSpec, submit_video};
use super::{ObjectOrForm, Path};
use crate::api::state::AppState;
use crate::error::ApiError;
use crate::jobs::InputImage;
use crate::media::MediaKind;
use crate::media::kind::sniff_media_type;
use crate::owner::KeyId;
use crate::tasks::store::Listing;
use crate::tasks::{Outcome, Task, TaskApi, TaskKind, TaskStatus};

/// How often OpenAI's SDK should poll (`openai-poll-after-ms`, read by `videos.poll`).
const POLL_AFTER_MS: &str = "1000";

/// The create body: JSON, or multipart as OpenAI's SDK sends it (text fields plus an
/// `input_reference` file, or `input_reference[image_url]`).
pub struct CreateBody {
    fields: serde_json::Map<String, Value>,
    reference_file: Option<InputImage>,
}

impl<S: Send + Sync> FromRequest<S> for CreateBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let mut multipart = match super::object_or_form(req, state).await? {
            ObjectOrForm::Object(fields) => return Ok(Self { fields, reference_file: None }),
            ObjectOrForm::Form(form) => form,
        };
        let mut body = Self { fields: serde_json::Map::new(), reference_file: None };
        let bad = super::multipart_error;
        while let Some(field) = multipart.next_field().await.map_err(bad)? {
            let name = field.name().unwrap_or_default().to_owned();
            if name == "input_reference" && field.file_name().is_some() {
                let file_name = field.file_name().unwrap_or("reference").to_owned();
                let bytes = field.bytes().await.map_err(bad)?;
                if bytes.len() > super::chat::MAX_INPUT_IMAGE_BYTES {
                    return Err(ApiError::invalid_param("input_reference", "the image is larger than 20 MiB"));
                }
                let content_type = sniff_media_type(&bytes).filter(|t| t.starts_with("image/")).ok_or_else(|| {
                    ApiError::invalid_param("input_reference", "input_reference must be a PNG, JPEG or WebP image")
                })?;
                body.reference_file = Some(InputImage { bytes, content_type, file_name, origin: None });
                continue;
            }
            let text = field.text().await.map_err(bad)?;
            // `input_reference[image_url]` and `input_reference[file_id]` (OpenAI's SDKs flatten the
            // JSON object into bracketed form fields) become the JSON form's object, so both forms
            // are judged alike.
            let member = name
                .strip_prefix("input_reference[")
                .and_then(|rest| rest.strip_suffix(']'))
                .or_else(|| name.strip_prefix("input_reference."));
            match member {
                Some(member) => {
                    let reference = body.fields.entry("input_reference").or_insert_with(|| json!({}));
                    match reference.as_object_mut() {
                        Some(object) => {
                            object.insert(member.to_owned(), Value::String(text));
                        }
                        None => {
                            return Err(ApiError::invalid_param(
                                "input_reference",
                                "input_reference is given both as a value and as fields",
                            ));
                        }
                    }
                }
                None => {
                    body.fields.insert(name, Value::String(text));
                }
            }
        }
        Ok(body)
    }
}

/// `input_reference`: the uploaded file, `{image_url}` (an https or data URL, or one of our own
/// links), or a bare URL string. `{file_id}` names OpenAI's file store, which we do not have.
async fn reference(state: &AppState, body: &CreateBody) -> Result<Option<InputImage>, ApiError> {
    if let Some(file) = &body.reference_file {
        return Ok(Some(file.clone()));
    }
    let url = match body.fields.get("input_reference") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(u)) => u.clone(),
        Some(Value::Object(o)) => match (o.get("image_url").and_then(Value::as_str), o.get("file_id")) {
            (Some(u), _) => u.to_owned(),
            (None, Some(_)) => {
                return Err(ApiError::bad_request(
                    "unsupported",
                    "input_reference.file_id names OpenAI's file store; send the image itself or image_url",
                ));
            }
            (None, None) => {
                return Err(ApiError::invalid_param("input_reference", "input_reference needs image_url"));
            }
        },
        Some(_) => return Err(ApiError::invalid_param("input_reference", "input_reference must be an object")),
    };
    load_image(&url, state).await.map(Some).map_err(|e| ApiError { param: Some("input_reference".into()), ..e })
}

#[utoipa::path(post, path = "/v1/videos", tag = "videos",
    request_body(content((super::schema::CreateVideoForm = "application/json"), (super::schema::CreateVideoForm = "multipart/form-data"))),
    params(super::schema::IdempotencyKey),
    responses((status = 200, body = VideoObject), (status = 400, body = crate::error::ErrorBody),
              (status = 404, description = "the `Idempotency-Key` names a video deleted since", body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody),
              (status = 429, body = crate::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Extension(owner): Extension<KeyId>,
    headers: HeaderMap,
    body: CreateBody,
) -> Result<Response, ApiError> {
    let spec = VideoSpec::parse(&body.fields)?;
    super::upstream_limits::check_resolution(&state, spec.resolution, false, "size")?;
    let images = async || Ok(reference(&state, &body).await?.into_iter().collect());
    let id = submit_video(&state, owner.clone(), &headers, TaskApi::OpenAi, &spec, &body.fields, images).await?;
    let task = state.tasks.get(&id, TaskKind::Video, Some(&owner)).ok_or_else(|| not_found(&id))?;
    Ok(Json(video_object(&task)).into_response())
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("no video `{id}`"))
}

/// An OpenAI-made task of the caller (or anyone's, with `auth.public_task_reads`).
async fn lookup(state: &AppState, id: &str, owner: Option<&KeyId>) -> Result<Task, ApiError> {
    super::tasks::readable(state, id, TaskKind::Video, TaskApi::OpenAi, owner).await?.ok_or_else(|| not_found(id))
}

/// OpenAI's Video object.
#[derive(Debug, Serialize, ToSchema)]
pub struct VideoObject {
    /// `video_<32 hex>`.
    pub id: String,
    /// Always `video`.
    pub object: &'static str,
    pub model: Option<String>,
    pub status: VideoStatus,
    pub progress: u8,
    /// Unix seconds.
    pub created_at: u64,
    pub completed_at: Option<u64>,
    /// Always `null`: results live as long as the task and the media store keep them.
    pub expires_at: Option<u64>,
    pub prompt: Option<String>,
    /// Whole seconds, as a string (OpenAI's form).
    pub seconds: String,
    pub size: Option<String>,
    pub remixed_from_video_id: Option<String>,
    pub error: Option<VideoError>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VideoStatus {
    Queued,
    InProgress,
    Completed,
    Failed,
}

impl VideoStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VideoError {
    pub code: String,
    pub message: String,
}

/// `GET /v1/videos`.
#[derive(Debug, Serialize, ToSchema)]
pub struct VideoList {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<VideoObject>,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
    pub has_more: bool,
}

/// `DELETE /v1/videos/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct VideoDeleted {
    pub id: String,
    /// Always `video.deleted`.
    pub object: &'static str,
    pub deleted: bool,
}

/// The Video object of a task.
pub fn video_object(task: &Task) -> VideoObject {
    let secs = |ms: u64| ms / 1000;
    let request = task.request.as_deref();
    let status = match task.status {
        TaskStatus::Pending => VideoStatus::Queued,
        TaskStatus::Processing => VideoStatus::InProgress,
        TaskStatus::Success => VideoStatus::Completed,
        TaskStatus::Failed => VideoStatus::Failed,
    };
    let error = match task.outcome.as_deref() {
        Some(Outcome::Failed { code, message }) => Some(VideoError { code: code.clone(), message: message.clone() }),
        _ => None,
    };
    let seconds = match task.outcome.as_deref() {
        Some(Outcome::Video { duration, .. }) => *duration,
        _ => request.map_or(0, |r| r.seconds),
    };
    VideoObject {
        id: task.id.to_string(),
        object: "video",
        model: request.map(|r| r.model.clone()),
        status,
        progress: task.progress,
        created_at: secs(task.created_ms),
        completed_at: task.status.is_terminal().then(|| secs(task.updated_ms)),
        expires_at: None,
        prompt: request.map(|r| r.prompt.clone()),
        seconds: seconds.to_string(),
        size: request.map(|r| r.size.clone()),
        remixed_from_video_id: request.and_then(|r| r.remixed_from.clone()),
        error,
    }
}

/// `GET /v1/videos/{id}`: the OpenAI object for `video_` ids, xAI's answer for the others.
#[utoipa::path(get, path = "/v1/videos/{id}", tag = "videos",
    description = "A `video_…` id answers OpenAI's Video object; an xAI request id (UUID) answers xAI's poll: 202 while pending.",
    params(("id" = String, Path)),
    responses((status = 200, body = super::schema::VideoAnswer),
              (status = 202, body = super::xai_videos::XaiVideoStatus),
              (status = 404, body = crate::error::ErrorBody)))]
pub async fn retrieve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    owner: Option<Extension<KeyId>>,
) -> Result<Response, ApiError> {
    let owner = owner.as_ref().map(|e| &e.0);
    if TaskApi::of_id(&id) == TaskApi::Xai {
        return super::xai_videos::retrieve(&state, &id, owner).await;
    }
    let task = lookup(&state, &id, owner).await?;
    let mut resp = Json(video_object(&task)).into_response();
    if !task.status.is_terminal() {
        resp.headers_mut().insert("openai-poll-after-ms", HeaderValue::from_static(POLL_AFTER_MS));
    }
    Ok(resp)
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    after: Option<String>,
    limit: Option<String>,
    order: Option<String>,
}

#[utoipa::path(get, path = "/v1/videos", tag = "videos",
    params(("after" = Option<String>, Query), ("limit" = Option<u32>, Query), ("order" = Option<String>, Query, description = "`desc` (default) or `asc`")),
    responses((status = 200, body = VideoList), (status = 400, body = crate::error::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(owner): Extension<KeyId>,
    super::Params(q): super::Params<ListQuery>,
) -> Result<Json<VideoList>, ApiError> {
    let limit = match q.limit.as_deref().filter(|s| !s.is_empty()) {
        None => 20,
        Some(s) => match s.parse::<usize>() {
            Ok(n @ 1..=100) => n,
            _ => return Err(ApiError::invalid_param("limit", format!("limit must be 1-100, got `{s}`"))),
        },
    };
    let oldest_first = match q.order.as_deref() {
        None | Some("") | Some("desc") => false,
        Some("asc") => true,
        Some(other) => return Err(ApiError::invalid_param("order", format!("`{other}` is not one of asc, desc"))),
    };
    let listing = Listing {
        api: TaskApi::OpenAi,
        after: q.after.as_deref().filter(|a| !a.is_empty()),
        oldest_first,
        ..Listing::native(TaskKind::Video, limit)
    };
    let page = state.service.page(&owner, &listing).await?;
    Ok(Json(VideoList {
        object: "list",
        data: page.tasks.iter().map(video_object).collect(),
        first_id: page.tasks.first().map(|t| t.id.to_string()),
        last_id: page.tasks.last().map(|t| t.id.to_string()),
        has_more: page.has_more,
    }))
}

/// `DELETE /v1/videos/{id}`: a finished video is forgotten; an unfinished one is cancelled first.
#[utoipa::path(delete, path = "/v1/videos/{id}", tag = "videos", params(("id" = String, Path)),
    responses((status = 200, body = VideoDeleted), (status = 404, body = crate::error::ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Extension(owner): Extension<KeyId>,
) -> Result<Json<VideoDeleted>, ApiError> {
    let task = lookup(&state, &id, Some(&owner)).await?;
    let task = match task.status.is_terminal() {
        true => task,
        false => state.service.cancel_anywhere(&id, "cancelled by the client").await?.unwrap_or(task),
    };
    state.service.forget(&task).await?;
    Ok(Json(VideoDeleted { id, object: "video.deleted", deleted: true }))
}

#[derive(Debug, Deserialize)]
pub struct ContentQuery {
    variant: Option<String>,
}

/// `GET /v1/videos/{id}/content?variant=video|thumbnail`: the bytes themselves (with ranges), so a
/// relay needs no second hop to `/v1/files`.
#[utoipa::path(get, path = "/v1/videos/{id}/content", tag = "videos",
    params(("id" = String, Path), ("variant" = Option<String>, Query, description = "`video` (default) or `thumbnail`"),
        super::schema::MediaHeaders),
    responses(super::schema::MediaAnswers, (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn content(
    State(state): State<AppState>,
    Path(id): Path<String>,
    super::Params(q): super::Params<ContentQuery>,
    owner: Option<Extension<KeyId>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let task = lookup(&state, &id, owner.as_ref().map(|e| &e.0)).await?;
    let (video, thumbnail) = match task.outcome.as_deref() {
        Some(Outcome::Video { video, thumbnail, .. }) => (video.clone(), thumbnail.clone()),
        _ => {
            return Err(ApiError::not_found(format!(
                "video `{id}` is {}; its content is there once it is completed",
                video_object(&task).status.as_str()
            )));
        }
    };
    match q.variant.as_deref().unwrap_or("video") {
        "video" => super::files::serve(&state, MediaKind::Video, &video, &headers, true).await,
        "thumbnail" => match thumbnail {
            Some(t) => super::files::serve(&state, MediaKind::Image, &t, &headers, true).await,
            None => Err(ApiError::not_found(format!("video `{id}` has no thumbnail (the upstream sent none)"))),
        },
        "spritesheet" => Err(ApiError::bad_request("unsupported", "spritesheets are not made by this gateway")),
        other => Err(ApiError::invalid_param("variant", format!("`{other}` is not one of video, thumbnail"))),
    }
}

/// Characters: an OpenAI operation no upstream offers through us (remix, edits and extensions are
/// `video_ops`).
#[utoipa::path(post, path = "/v1/videos/characters", tag = "videos",
    description = "Not offered by this gateway.",
    responses((status = 400, body = crate::error::ErrorBody)))]
pub async fn unsupported() -> ApiError {
    ApiError::bad_request("unsupported", "video characters are not supported by this gateway")
}

//! OpenAI's Videos API on our task store: `POST /v1/videos` (JSON or multipart), `GET /v1/videos/{id}`,
//! `GET /v1/videos`, `DELETE /v1/videos/{id}`, `GET /v1/videos/{id}/content`. Tasks made here have
//! `video_` ids and are only ever shown as OpenAI Video objects; errors are in OpenAI's shape.
//! The xAI shape (`/v1/videos/generations`) lives in `xai_videos.rs` and shares `GET /v1/videos/{id}`,
//! which answers in the shape of the API that made the task.

use std::sync::Arc;

use axum::extract::multipart::MultipartRejection;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::chat::load_image;
use super::tasks::{NewTask, submit};
use super::{Capability, MODELS, Path, resolve_model, validate_prompt};
use crate::api::state::AppState;
use crate::error::ApiError;
use crate::jobs::{InputImage, Job, VIDEO_SECONDS, VideoJob, VideoPreset};
use crate::media::MediaKind;
use crate::owner::KeyId;
use crate::tasks::store::Listing;
use crate::tasks::{Outcome, Task, TaskApi, TaskKind, TaskStatus, VideoRequest};
use crate::upstream::sniff_media_type;

/// How often OpenAI's SDK should poll (`openai-poll-after-ms`, read by `videos.poll`).
const POLL_AFTER_MS: &str = "1000";

/// `size` → (aspect ratio, resolution, the size actually made). OpenAI's four sizes first: the two
/// large ones are made at 720p, the most grok.com makes, and the Video object says so.
pub const SIZES: &[(&str, &str, &str, &str)] = &[
    ("720x1280", "9:16", "720p", "720x1280"),
    ("1280x720", "16:9", "720p", "1280x720"),
    ("1024x1792", "9:16", "720p", "720x1280"),
    ("1792x1024", "16:9", "720p", "1280x720"),
    ("1080x720", "3:2", "720p", "1080x720"),
    ("720x1080", "2:3", "720p", "720x1080"),
    ("720x720", "1:1", "720p", "720x720"),
    ("854x480", "16:9", "480p", "854x480"),
    ("480x854", "9:16", "480p", "480x854"),
    ("720x480", "3:2", "480p", "720x480"),
    ("480x720", "2:3", "480p", "480x720"),
    ("480x480", "1:1", "480p", "480x480"),
];

/// OpenAI's default size and length.
const DEFAULT_SIZE: &str = "720x1280";
const DEFAULT_SECONDS: u32 = 4;

/// What a video create asks for, validated, whichever API's body it came in.
#[derive(Debug, PartialEq)]
pub struct VideoSpec {
    pub model: &'static str,
    /// Empty only for image-to-video through the xAI shape.
    pub prompt: String,
    pub seconds: u32,
    pub aspect_ratio: &'static str,
    pub resolution: &'static str,
    /// What the task reports as its size: OpenAI's size as made, xAI's aspect ratio.
    pub size: &'static str,
}

impl VideoSpec {
    /// OpenAI's body (JSON fields, or the multipart form's).
    pub fn parse(fields: &serde_json::Map<String, Value>) -> Result<Self, ApiError> {
        let text = |k: &str| fields.get(k).and_then(Value::as_str);
        let prompt = validate_prompt(text("prompt").ok_or_else(|| ApiError::missing_field("prompt"))?)?;
        let (aspect_ratio, resolution, made) = size(text("size"))?;
        Ok(Self {
            model: video_model(text("model"))?,
            prompt,
            seconds: seconds(fields.get("seconds"), "seconds", DEFAULT_SECONDS)?,
            aspect_ratio,
            resolution,
            size: made,
        })
    }
}

/// Creates the video task both video APIs make: `spec` recorded with the task for `api`'s reads,
/// `images` loaded only once the cheap checks (idempotency, limits, callback) have passed.
pub async fn submit_video(
    state: &AppState,
    owner: KeyId,
    headers: &HeaderMap,
    api: TaskApi,
    spec: &VideoSpec,
    body: &serde_json::Map<String, Value>,
    images: impl AsyncFnOnce() -> Result<Vec<InputImage>, ApiError>,
) -> Result<std::sync::Arc<str>, ApiError> {
    let request = Arc::new(VideoRequest {
        model: spec.model.to_owned(),
        prompt: spec.prompt.clone(),
        seconds: spec.seconds,
        size: spec.size.to_owned(),
        resolution: spec.resolution.to_owned(),
    });
    let new = NewTask { kind: TaskKind::Video, api, request: Some(request), body };
    submit(state, owner, headers, new, async || {
        let job = VideoJob {
            prompt: spec.prompt.clone(),
            aspect_ratio: spec.aspect_ratio,
            duration: spec.seconds,
            resolution: spec.resolution,
            // A prompt is its own direction (custom); only a prompt-less image-to-video uses the preset.
            preset: VideoPreset::Normal,
            images: images().await?,
        };
        Ok((Job::Video(job), false))
    })
    .await
}

/// The video model for `model` (default: ours); a Sora model gets the list of what we serve.
pub fn video_model(model: Option<&str>) -> Result<&'static str, ApiError> {
    let Some(model) = model.map(str::trim).filter(|m| !m.is_empty()) else {
        return resolve_model("grok-imagine-1.0-video", Capability::Video);
    };
    resolve_model(model, Capability::Video).map_err(|mut e| {
        let ours: Vec<&str> = MODELS
            .iter()
            .filter(|(_, _, c)| *c == Capability::Video)
            .flat_map(|(id, alias, _)| [*id, *alias])
            .collect();
        e.message = format!("model `{model}` is not served here; video models: {}", ours.join(", "));
        e
    })
}

/// A video length as the APIs send it (a string, as OpenAI does, or a number): whole seconds the
/// upstreams make. `param` names the field in the error; `default` is the API's own.
pub fn seconds(v: Option<&Value>, param: &str, default: u32) -> Result<u32, ApiError> {
    let bad = |got: &str| {
        ApiError::invalid_param(
            param,
            format!(
                "{param} must be a whole number from {} to {}, got {got}",
                VIDEO_SECONDS.start(),
                VIDEO_SECONDS.end()
            ),
        )
    };
    let n = match v {
        None | Some(Value::Null) => return Ok(default),
        Some(Value::String(s)) => s.trim().parse::<u32>().map_err(|_| bad(&format!("`{s}`")))?,
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| bad(&n.to_string()))?,
        Some(other) => return Err(bad(&other.to_string())),
    };
    if VIDEO_SECONDS.contains(&n) { Ok(n) } else { Err(bad(&n.to_string())) }
}

pub fn size(v: Option<&str>) -> Result<(&'static str, &'static str, &'static str), ApiError> {
    let asked = v.map(str::trim).filter(|s| !s.is_empty()).unwrap_or(DEFAULT_SIZE);
    SIZES.iter().find(|(s, ..)| *s == asked).map(|(_, ratio, res, made)| (*ratio, *res, *made)).ok_or_else(|| {
        let allowed: Vec<&str> = SIZES.iter().map(|(s, ..)| *s).collect();
        ApiError::invalid_param("size", format!("`{asked}` is not one of {}", allowed.join(", ")))
    })
}

/// The create body: JSON, or multipart as OpenAI's SDK sends it (text fields plus an
/// `input_reference` file, or `input_reference[image_url]`).
pub struct CreateBody {
    fields: serde_json::Map<String, Value>,
    reference_file: Option<InputImage>,
}

impl<S: Send + Sync> FromRequest<S> for CreateBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_multipart = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("multipart/form-data"));
        if !is_multipart {
            return match super::JsonBody::<Value>::from_request(req, state).await? {
                super::JsonBody(Value::Object(fields)) => Ok(Self { fields, reference_file: None }),
                _ => Err(ApiError::unprocessable("invalid_request_structure", "request body must be a JSON object")),
            };
        }
        let mut multipart = Multipart::from_request(req, state).await.map_err(|e: MultipartRejection| {
            ApiError::bad_request("invalid_multipart", format!("malformed multipart body: {}", e.body_text()))
        })?;
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
    request_body(content((super::openapi::CreateVideoForm = "application/json"), (super::openapi::CreateVideoForm = "multipart/form-data"))),
    params(super::openapi::IdempotencyKey),
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
        remixed_from_video_id: None,
        error,
    }
}

/// `GET /v1/videos/{id}`: the OpenAI object for `video_` ids, xAI's answer for the others.
#[utoipa::path(get, path = "/v1/videos/{id}", tag = "videos",
    description = "A `video_…` id answers OpenAI's Video object; an xAI request id (UUID) answers xAI's poll: 202 while pending.",
    params(("id" = String, Path)),
    responses((status = 200, body = super::openapi::VideoAnswer),
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
        super::openapi::MediaHeaders),
    responses(super::openapi::MediaAnswers, (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
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

/// Remix, edit, extend and characters: OpenAI operations neither upstream offers through us.
#[utoipa::path(post, path = "/v1/videos/{id}/remix", tag = "videos",
    description = "Also `POST /v1/videos/edits`, `/v1/videos/extensions`, `/v1/videos/characters`: not offered by this gateway.",
    params(("id" = String, Path)), responses((status = 400, body = crate::error::ErrorBody)))]
pub async fn unsupported() -> ApiError {
    ApiError::bad_request(
        "unsupported",
        "remix, edits, extensions and characters are not supported by this gateway; create a new video",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_sizes_and_lengths_map_or_are_refused_by_name() {
        assert_eq!(size(None).unwrap(), ("9:16", "720p", "720x1280"));
        assert_eq!(size(Some("1792x1024")).unwrap(), ("16:9", "720p", "1280x720"));
        assert_eq!(size(Some("480x480")).unwrap(), ("1:1", "480p", "480x480"));
        let e = size(Some("1920x1080")).unwrap_err();
        assert!(e.message.contains("1280x720") && e.param.as_deref() == Some("size"), "{}", e.message);
        assert_eq!(seconds(None, "seconds", 4).unwrap(), 4);
        assert_eq!(seconds(Some(&json!("8")), "seconds", 4).unwrap(), 8);
        assert_eq!(seconds(Some(&json!(12)), "seconds", 4).unwrap(), 12);
        for bad in [json!("0"), json!(16), json!("4.5"), json!(true)] {
            assert_eq!(seconds(Some(&bad), "seconds", 4).unwrap_err().param.as_deref(), Some("seconds"), "{bad}");
        }
        let e = video_model(Some("sora-2")).unwrap_err();
        assert!(e.message.contains("grok-imagine-1.0-video"), "{}", e.message);
        assert_eq!(video_model(None).unwrap(), "grok-imagine-1.0-video");
        assert_eq!(video_model(Some("grok-imagine-video")).unwrap(), "grok-imagine-1.0-video");
    }
}

//! xAI's video API on our task store, so clients written for xAI work against us unchanged:
//! `POST /v1/videos/generations` → `{request_id}`, and `GET /v1/videos/{request_id}` (shared with the
//! OpenAI shape, which owns `video_` ids) → 202 `{status: "pending"}` while it runs, then 200 with
//! `done` (and `video {url, duration, respect_moderation}`), `failed` (and `error {code, message}`) or
//! `expired` (the file is gone from the media store). Shapes as xAI publishes them
//! (../shared/docs/upstream-xai-and-webhooks.md §1.3–1.5), mirrored by `upstream::xai`'s reader.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::chat::load_images;
use super::video_spec::{VideoSpec, seconds, submit_video, video_model};
use super::{JsonBody, validate_prompt};
use crate::api::state::AppState;
use crate::error::ApiError;
use crate::jobs::{MAX_REFERENCE_VIDEO_SECONDS, MAX_VIDEO_IMAGES};
use crate::media::MediaKind;
use crate::owner::KeyId;
use crate::tasks::{Outcome, Task, TaskApi, TaskKind, TaskStatus};

/// The ratios xAI lists that the upstreams behind us make (`4:3`/`3:4` they do not).
const RATIOS: &[&str] = &["16:9", "9:16", "3:2", "2:3", "1:1"];
const DEFAULT_SECONDS: u32 = 8;

/// A validated `POST /v1/videos/generations` body.
#[derive(Debug, PartialEq)]
pub struct Spec {
    /// The task's size is its aspect ratio.
    pub video: VideoSpec,
    /// `image.url` (first frame) or the `reference_images[].url`s.
    pub image_urls: Vec<String>,
    pub references: bool,
}

fn urls_of(v: &Value, param: &str) -> Result<String, ApiError> {
    match v {
        Value::String(u) => Ok(u.clone()),
        Value::Object(o) => match (o.get("url").and_then(Value::as_str), o.get("file_id")) {
            (Some(u), _) => Ok(u.to_owned()),
            (None, Some(_)) => Err(ApiError::bad_request(
                "unsupported",
                format!("{param}.file_id names xAI's file store; send the image as a url (https or data URL)"),
            )),
            (None, None) => Err(ApiError::invalid_param(param, format!("{param} needs a url"))),
        },
        _ => Err(ApiError::invalid_param(param, format!("{param} must be an object with a url"))),
    }
}

impl Spec {
    pub fn parse(body: &serde_json::Map<String, Value>) -> Result<Self, ApiError> {
        let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
        let seconds = seconds(body.get("duration").or_else(|| body.get("seconds")), "duration", DEFAULT_SECONDS)?;
        let aspect_ratio = match text("aspect_ratio") {
            None => "16:9",
            Some(r) => RATIOS.iter().find(|x| **x == r).copied().ok_or_else(|| {
                ApiError::invalid_param("aspect_ratio", format!("`{r}` is not one of {}", RATIOS.join(", ")))
            })?,
        };
        let resolution = match text("resolution") {
            None | Some("480p") => "480p",
            Some("720p") => "720p",
            // Where the upstream's model makes it: checked with the upstream (`check_resolution`).
            Some("1080p") => "1080p",
            Some(r) => {
                return Err(ApiError::invalid_param("resolution", format!("`{r}` is not one of 480p, 720p, 1080p")));
            }
        };
        let image = body.get("image").or_else(|| body.get("input_reference")).filter(|v| !v.is_null());
        let references = body.get("reference_images").filter(|v| !v.is_null());
        let (image_urls, is_references) = match (image, references) {
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid_param(
                    "reference_images",
                    "reference_images cannot be combined with image",
                ));
            }
            (Some(i), None) => (vec![urls_of(i, "image")?], false),
            (None, Some(Value::Array(list))) => {
                if list.is_empty() || list.len() > MAX_VIDEO_IMAGES {
                    return Err(ApiError::invalid_param(
                        "reference_images",
                        format!("reference_images takes 1 to {MAX_VIDEO_IMAGES} images"),
                    ));
                }
                (list.iter().map(|r| urls_of(r, "reference_images")).collect::<Result<_, _>>()?, true)
            }
            (None, Some(_)) => {
                return Err(ApiError::invalid_param("reference_images", "reference_images must be a list"));
            }
            (None, None) => (Vec::new(), false),
        };
        if is_references && seconds > MAX_REFERENCE_VIDEO_SECONDS {
            return Err(ApiError::invalid_param(
                "duration",
                format!("a video from reference images is at most {MAX_REFERENCE_VIDEO_SECONDS} seconds"),
            ));
        }
        // As xAI: the prompt is optional only for image-to-video.
        let prompt = match text("prompt") {
            Some(p) => validate_prompt(p)?,
            None if image.is_some() => String::new(),
            None => return Err(ApiError::missing_field("prompt")),
        };
        let video = VideoSpec {
            model: video_model(text("model"))?,
            prompt,
            seconds,
            aspect_ratio,
            resolution,
            size: aspect_ratio,
        };
        Ok(Self { video, image_urls, references: is_references })
    }
}

#[utoipa::path(post, path = "/v1/videos/generations", tag = "videos",
    request_body = super::schema::XaiCreateForm, params(super::schema::IdempotencyKey),
    responses((status = 200, body = XaiCreated), (status = 400, body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody),
              (status = 429, body = crate::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Extension(owner): Extension<KeyId>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let Value::Object(body) = body else {
        return Err(ApiError::unprocessable("invalid_request_structure", "request body must be a JSON object"));
    };
    let spec = Spec::parse(&body)?;
    super::upstream_limits::check_resolution(&state, spec.video.resolution, spec.references, "resolution")?;
    let images = async || {
        let param = if spec.references { "reference_images" } else { "image" };
        load_images(&spec.image_urls, &state, param).await
    };
    let id = submit_video(&state, owner, &headers, TaskApi::Xai, &spec.video, &body, images).await?;
    Ok(Json(XaiCreated { request_id: id.to_string() }).into_response())
}

/// xAI's four error codes, from ours.
fn xai_error_code(code: &str) -> &'static str {
    match code {
        "upstream_auth_failed" | "upstream_challenge" => "permission_denied",
        "rate_limit_exceeded" | "upstream_credits_exhausted" | "cancelled" => "failed_precondition",
        c if c.starts_with("invalid") => "invalid_argument",
        _ => "internal_error",
    }
}

/// `POST /v1/videos/generations`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct XaiCreated {
    pub request_id: String,
}

/// `pending` (HTTP 202), `done`, `failed` or `expired` (HTTP 200).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum XaiStatus {
    Pending,
    Done,
    Failed,
    Expired,
}

impl XaiStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Expired => "expired",
        }
    }
}

/// xAI's poll answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct XaiVideoStatus {
    pub status: XaiStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<u8>,
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video: Option<XaiVideo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<XaiError>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct XaiVideo {
    /// Empty when moderated.
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<u32>,
    /// `false`: the video was moderated and there is nothing to download.
    pub respect_moderation: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct XaiError {
    /// `invalid_argument`, `permission_denied`, `failed_precondition` or `internal_error`.
    pub code: &'static str,
    pub message: String,
}

/// The poll answer for an xAI-made task.
pub fn status_body(task: &Task, media_has: impl Fn(&str) -> bool) -> (StatusCode, XaiVideoStatus) {
    let model = task.request.as_deref().map(|r| r.model.clone());
    let answer =
        |status, progress, video, error| XaiVideoStatus { status, progress, model: model.clone(), video, error };
    match (task.status, task.outcome.as_deref()) {
        (TaskStatus::Pending | TaskStatus::Processing, _) => {
            (StatusCode::ACCEPTED, answer(XaiStatus::Pending, Some(task.progress), None, None))
        }
        (_, Some(Outcome::Video { base, video, duration, .. })) if media_has(video) => {
            let video = XaiVideo {
                url: format!("{base}/v1/files/video/{video}"),
                duration: Some(*duration),
                respect_moderation: true,
            };
            (StatusCode::OK, answer(XaiStatus::Done, Some(100), Some(video), None))
        }
        (_, Some(Outcome::Video { .. })) => (StatusCode::OK, answer(XaiStatus::Expired, None, None, None)),
        // xAI reports a moderated video as done without a URL.
        (_, Some(Outcome::Failed { code, .. })) if code == "content_policy_violation" => {
            let video = XaiVideo { url: String::new(), duration: None, respect_moderation: false };
            (StatusCode::OK, answer(XaiStatus::Done, Some(100), Some(video), None))
        }
        (_, Some(Outcome::Failed { code, message })) => {
            let error = XaiError { code: xai_error_code(code), message: format!("{code}: {message}") };
            (StatusCode::OK, answer(XaiStatus::Failed, Some(task.progress), None, Some(error)))
        }
        (_, None | Some(Outcome::Images { .. })) => {
            let error = XaiError { code: "internal_error", message: "no result".into() };
            (StatusCode::OK, answer(XaiStatus::Failed, None, None, Some(error)))
        }
    }
}

/// `GET /v1/videos/{request_id}` for xAI-made tasks (dispatched from `videos::retrieve`).
pub async fn retrieve(state: &AppState, id: &str, owner: Option<&KeyId>) -> Result<Response, ApiError> {
    let task = super::tasks::readable(state, id, TaskKind::Video, TaskApi::Xai, owner)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no video request `{id}`")))?;
    let (status, body) = status_body(&task, |name| state.media.get(MediaKind::Video, name).is_some());
    Ok((status, Json(body)).into_response())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(v: Value) -> Result<Spec, ApiError> {
        Spec::parse(v.as_object().unwrap())
    }

    #[test]
    fn xai_requests_map_or_are_refused_by_name() {
        let s = parse(json!({"prompt": "waves", "model": "grok-imagine-video"})).unwrap().video;
        assert_eq!((s.seconds, s.aspect_ratio, s.resolution, s.size), (8, "16:9", "480p", "16:9"));
        let s = parse(json!({"prompt": "w", "duration": "12", "aspect_ratio": "9:16", "resolution": "720p"})).unwrap();
        assert_eq!((s.video.seconds, s.video.aspect_ratio, s.video.resolution), (12, "9:16", "720p"));
        assert_eq!(parse(json!({"prompt": "w", "seconds": 3})).unwrap().video.seconds, 3);
        let s = parse(json!({"image": {"url": "data:image/png;base64,AA"}})).unwrap();
        assert_eq!((s.video.prompt.as_str(), s.image_urls.len(), s.references), ("", 1, false));
        let s =
            parse(json!({"prompt": "p", "reference_images": [{"url": "https://a/1.png"}, {"url": "https://a/2.png"}]}))
                .unwrap();
        assert!(s.references);
        for (bad, param) in [
            (json!({"prompt": "w", "duration": 16}), "duration"),
            (json!({"prompt": "w", "aspect_ratio": "4:3"}), "aspect_ratio"),
            (json!({"prompt": "w", "resolution": "4k"}), "resolution"),
            (json!({"duration": 6}), "prompt"),
            (json!({"prompt": "p", "reference_images": [{"url": "u"}], "duration": 12}), "duration"),
            (json!({"prompt": "p", "image": {"url": "u"}, "reference_images": [{"url": "u"}]}), "reference_images"),
            (json!({"prompt": "p", "model": "sora-2"}), "model"),
        ] {
            assert_eq!(parse(bad.clone()).unwrap_err().param.as_deref(), Some(param), "{bad}");
        }
    }
}

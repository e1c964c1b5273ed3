//! Video edits, extensions and remixes, made by xAI's `/v1/videos/edits` and `/v1/videos/extensions`
//! (source: xai-sdk-ts src/generated/types.ts EditVideoRequest / ExtendVideoRequest; docs.x.ai
//! developers/model-capabilities/video/editing and video/extension.md), in the two shapes clients use:
//!
//! - OpenAI's, as `client.videos.remix / edit / extend` send them (source: openai-python v3.3.1
//!   src/openai/resources/videos.py): `POST /v1/videos/{id}/remix` (JSON `{prompt}`),
//!   `POST /v1/videos/edits` and `/v1/videos/extensions` (multipart: `prompt`, `seconds`, and `video`
//!   as a file or `video[id]`, the SDK's bracketed form of `{"id": …}`); answered with the Video object.
//! - xAI's: the same two paths with a JSON body `{prompt, video: {url}, duration?}`, answered with
//!   `{request_id}` and polled at `GET /v1/videos/{request_id}`.
//!
//! The content type tells them apart (multipart = OpenAI, JSON = xAI), as the create endpoints are
//! told apart by path. Every one is a video task like any other (runner, progress, cancel,
//! callbacks); the source video is read back from the media store when it is one of ours.

use axum::extract::{FromRequest, Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine;
use bytes::Bytes;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::tasks::{NewTask, submit};
use super::video_spec::video_model;
use super::xai_videos::XaiCreated;
use super::{JsonBody, validate_prompt};
use super::{ObjectOrForm, Path};
use crate::api::state::AppState;
use crate::error::ApiError;
use crate::jobs::video_op::{DEFAULT_EXTEND_SECONDS, EXTEND_INPUT_SECONDS, EXTEND_SECONDS, MAX_EDIT_INPUT_SECONDS};
use crate::jobs::{InputVideo, Job, VideoOp, VideoOpJob};
use crate::media::MediaKind;
use crate::net::{self, FetchError, FetchPolicy};
use crate::owner::KeyId;
use crate::tasks::{Outcome, TaskApi, TaskKind, VideoRequest};

/// An edit or extension body: OpenAI's multipart form, or xAI's JSON.
pub struct OpBody {
    fields: serde_json::Map<String, Value>,
    /// An uploaded `video` file (multipart only).
    file: Option<Bytes>,
    api: TaskApi,
}

impl<S: Send + Sync> FromRequest<S> for OpBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let mut multipart = match super::object_or_form(req, state).await? {
            ObjectOrForm::Object(fields) => return Ok(Self { fields, file: None, api: TaskApi::Xai }),
            ObjectOrForm::Form(form) => form,
        };
        let mut body = Self { fields: serde_json::Map::new(), file: None, api: TaskApi::OpenAi };
        let bad = super::multipart_error;
        while let Some(field) = multipart.next_field().await.map_err(bad)? {
            let name = field.name().unwrap_or_default().to_owned();
            if name == "video" && field.file_name().is_some() {
                body.file = Some(field.bytes().await.map_err(bad)?);
                continue;
            }
            let text = field.text().await.map_err(bad)?;
            // `video[id]` (the SDK's form of `{"id": …}`), `video.id`, or a bare id in `video`.
            match name.as_str() {
                "video[id]" | "video.id" | "video" => {
                    body.fields.insert("video".into(), json!({"id": text}));
                }
                _ => {
                    body.fields.insert(name, Value::String(text));
                }
            }
        }
        Ok(body)
    }
}

/// Refuses the request when this gateway's upstream cannot make `kind`: grok.com extends videos (its
/// own) but has no edit, and on xAI only `grok-imagine-video` edits and extends (`xai.video_edit_model`).
fn upstream_can(state: &AppState, kind: OpKind) -> Result<(), ApiError> {
    let upstream = state.runner.upstream();
    let caps = upstream.caps();
    if (kind == OpKind::Edit && caps.video_edits) || (kind == OpKind::Extend && caps.video_extensions) {
        return Ok(());
    }
    let message = match upstream.name() {
        "xai" => "video edits, extensions and remixes need xai.video_edit_model = \"grok-imagine-video\" \
                  (xAI makes them with that model only)"
            .to_owned(),
        name => format!(
            "video edits and remixes are made only by the xai upstream (upstream.kind = \"xai\"); this gateway \
             runs on {name}, which extends videos (/v1/videos/extensions) but does not edit them"
        ),
    };
    Err(ApiError::bad_request("unsupported_on_upstream", message))
}

/// The source video: its checked bytes, and when it is one of our videos its id and the task's size.
struct Source {
    video: InputVideo,
    from_id: Option<String>,
    size: Option<String>,
}

/// Reads a video this gateway made for `owner` (any of its video APIs' ids).
async fn by_id(state: &AppState, id: &str, owner: &KeyId) -> Result<Option<Source>, ApiError> {
    let Some(task) = super::tasks::readable(state, id, TaskKind::Video, TaskApi::of_id(id), Some(owner)).await? else {
        return Ok(None);
    };
    let Some(Outcome::Video { video, origin, .. }) = task.outcome.as_deref() else {
        return Err(ApiError::invalid_param(
            "video",
            format!("video `{id}` is not completed; only a finished video can be used"),
        ));
    };
    let mut video = read_own(state, video).await?.ok_or_else(|| {
        ApiError::invalid_param("video", format!("video `{id}` is no longer in the media store; make it again"))
    })?;
    // The task's record keeps it on every replica and across restarts; the store only in memory.
    video.origin = origin.clone().or(video.origin);
    let size = task.request.as_deref().map(|r| r.size.clone());
    Ok(Some(Source { video, from_id: Some(id.to_owned()), size }))
}

async fn read_own(state: &AppState, name: &str) -> Result<Option<InputVideo>, ApiError> {
    let file = state
        .media
        .fetch(MediaKind::Video, name)
        .await
        .map_err(|e| ApiError::unavailable("storage_unavailable", format!("cannot read the video: {e}")))?;
    let Some(bytes) = (match file {
        Some(f) => tokio::fs::read(&f.path).await.ok().map(Bytes::from),
        None => None,
    }) else {
        return Ok(None);
    };
    let mut video = checked(bytes)?;
    video.origin = state.media.origin_of(MediaKind::Video, name);
    Ok(Some(video))
}

/// A video URL as xAI takes it: one of our own `/v1/files/video/…` links (read from the store), a
/// base64 `data:` URL, or an http(s) URL fetched under the SSRF policy.
async fn by_url(state: &AppState, url: &str) -> Result<Source, ApiError> {
    let max = state.cfg.server.max_upload_bytes;
    let bad = |m: String| ApiError::invalid_param("video", m);
    // One of our links, whatever host it names (the public base URL may differ from the one the
    // client used): names are random and the files are served to anyone holding the link anyway.
    let path = url.split_once("://").map_or(Some(url), |(_, rest)| rest.find('/').map(|i| &rest[i..]));
    if let Some(name) = path
        .map(|p| p.split(['?', '#']).next().unwrap_or(p))
        .and_then(|p| p.strip_prefix("/v1/files/video/"))
        .filter(|n| !n.contains('/'))
        && let Some(video) = read_own(state, name).await?
    {
        return Ok(Source { video, from_id: None, size: None });
    }
    let bytes = if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest.split_once(',').ok_or_else(|| bad("malformed data URL".into()))?;
        if !meta.ends_with(";base64") {
            return Err(bad("data URLs must be base64-encoded".into()));
        }
        // Refused before decoding: the decoded size is known from the text's length.
        if data.len() / 4 * 3 > max + 3 {
            return Err(ApiError::payload_too_large(format!("the video is larger than {max} bytes")));
        }
        Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|_| bad("data URL is not valid base64".into()))?,
        )
    } else {
        let policy = FetchPolicy { max_bytes: max, ..state.fetch_policy.clone() };
        match net::fetch(url, &policy).await {
            Ok((bytes, _)) => bytes,
            Err(FetchError::Forbidden(m)) => return Err(bad(format!("video url refused: {m}"))),
            Err(FetchError::Failed(m)) => return Err(bad(format!("cannot fetch the video url: {m}"))),
        }
    };
    if bytes.len() > max {
        return Err(ApiError::payload_too_large(format!("the video is larger than {max} bytes")));
    }
    Ok(Source { video: checked(bytes)?, from_id: None, size: None })
}

/// An MP4 whose length can be read: xAI takes MP4 (H.264, H.265, AV1) only.
fn checked(bytes: Bytes) -> Result<InputVideo, ApiError> {
    let info = crate::media::mp4::info(&bytes)
        .ok_or_else(|| ApiError::invalid_param("video", "the video must be an MP4 file (H.264, H.265 or AV1)"))?;
    Ok(InputVideo { bytes, content_type: "video/mp4", seconds: info.seconds, origin: None })
}

/// The source a body names: an uploaded file, `{"id"}` (a video of ours), or `{"url"}` / a URL.
async fn source(state: &AppState, owner: &KeyId, body: &OpBody) -> Result<Source, ApiError> {
    if let Some(file) = &body.file {
        return checked(file.clone()).map(|video| Source { video, from_id: None, size: None });
    }
    match body.fields.get("video") {
        None | Some(Value::Null) => Err(ApiError::missing_field("video")),
        Some(Value::String(url)) => by_url(state, url).await,
        Some(Value::Object(o)) => match (o.get("id"), o.get("url"), o.get("file_id")) {
            (Some(Value::String(id)), ..) => by_id(state, id, owner)
                .await?
                .ok_or_else(|| ApiError::invalid_param("video", format!("no video `{id}` of yours"))),
            (_, Some(Value::String(url)), _) => by_url(state, url).await,
            (_, _, Some(_)) => Err(ApiError::bad_request(
                "unsupported",
                "video.file_id names a file store this gateway does not have; send the video's url or id",
            )),
            _ => Err(ApiError::invalid_param("video", "video needs an id, a url, or a file")),
        },
        Some(_) => Err(ApiError::invalid_param("video", "video must be a file, {\"id\"} or {\"url\"}")),
    }
}

/// The operation's limits on the source, and the seconds an extension adds (OpenAI's `seconds`,
/// xAI's `duration`; `seconds` is taken on both).
fn operation(kind: OpKind, fields: &serde_json::Map<String, Value>, source: &InputVideo) -> Result<VideoOp, ApiError> {
    match kind {
        OpKind::Edit => {
            if source.seconds > MAX_EDIT_INPUT_SECONDS {
                return Err(ApiError::invalid_param(
                    "video",
                    format!(
                        "the video lasts {:.1} s; xAI edits videos of at most {MAX_EDIT_INPUT_SECONDS} s",
                        source.seconds
                    ),
                ));
            }
            Ok(VideoOp::Edit)
        }
        OpKind::Extend => {
            if !EXTEND_INPUT_SECONDS.contains(&source.seconds) {
                return Err(ApiError::invalid_param(
                    "video",
                    format!(
                        "the video lasts {:.1} s; xAI extends videos of {} to {} s",
                        source.seconds,
                        EXTEND_INPUT_SECONDS.start(),
                        EXTEND_INPUT_SECONDS.end()
                    ),
                ));
            }
            let (param, v) = match fields.get("duration") {
                Some(v) => ("duration", Some(v)),
                None => ("seconds", fields.get("seconds")),
            };
            Ok(VideoOp::Extend { seconds: added_seconds(v, param)? })
        }
    }
}

/// The seconds an extension adds: 2–10 (xAI's limit), default 6.
pub fn added_seconds(v: Option<&Value>, param: &str) -> Result<u32, ApiError> {
    let bad = |got: &str| {
        ApiError::invalid_param(
            param,
            format!(
                "{param} is the length of the added part: a whole number from {} to {} (xAI's limit), got {got}",
                EXTEND_SECONDS.start(),
                EXTEND_SECONDS.end()
            ),
        )
    };
    let n = match v {
        None | Some(Value::Null) => return Ok(DEFAULT_EXTEND_SECONDS),
        Some(Value::String(s)) => s.trim().parse::<u32>().map_err(|_| bad(&format!("`{s}`")))?,
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| bad(&n.to_string()))?,
        Some(other) => return Err(bad(&other.to_string())),
    };
    if EXTEND_SECONDS.contains(&n) { Ok(n) } else { Err(bad(&n.to_string())) }
}

/// The size the result is made at: the source's (as its task reported it, else as its file says),
/// at most 720p, which is all xAI makes edits and extensions at (source: docs.x.ai
/// developers/model-capabilities/video/editing; extensions are shown with `grok-imagine-video`, a
/// 720p model). Empty when neither says.
fn made_size(reported: Option<&str>, file: Option<(u32, u32)>) -> String {
    let parsed = reported.and_then(|s| {
        let (w, h) = s.split_once('x')?;
        Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?))
    });
    let Some((w, h)) = parsed.or(file) else { return String::new() };
    let short = w.min(h);
    if short <= 720 {
        return format!("{w}x{h}");
    }
    // Scaled so the short side is 720, each side even (as encoders want).
    let scale = |side: u32| ((u64::from(side) * 720 / u64::from(short)) / 2 * 2) as u32;
    format!("{}x{}", scale(w), scale(h))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Edit,
    Extend,
}

/// Makes the task, answering in the shape of `api`.
async fn run(
    state: &AppState,
    owner: KeyId,
    headers: &HeaderMap,
    api: TaskApi,
    kind: OpKind,
    fields: &serde_json::Map<String, Value>,
    source: Source,
) -> Result<Response, ApiError> {
    let text = |k: &str| fields.get(k).and_then(Value::as_str);
    let prompt = validate_prompt(text("prompt").ok_or_else(|| ApiError::missing_field("prompt"))?)?;
    let model = video_model(text("model"))?;
    let op = operation(kind, fields, &source.video)?;
    let job = VideoOpJob { op, prompt: prompt.clone(), video: source.video };
    let size = made_size(source.size.as_deref(), crate::media::mp4::info(&job.video.bytes).and_then(|i| i.size));
    let request = std::sync::Arc::new(VideoRequest {
        model: model.to_owned(),
        prompt,
        seconds: job.result_seconds(),
        size,
        // xAI's edits and extensions are made at most at 720p.
        resolution: "720p".into(),
        remixed_from: source.from_id,
    });
    // An uploaded file is not in the fields: its digest is, so `Idempotency-Key` tells two uploads apart.
    let mut hashed = fields.clone();
    hashed.insert("op".into(), json!(if kind == OpKind::Edit { "edit" } else { "extend" }));
    hashed.insert("video_sha256".into(), json!(hex::encode(Sha256::digest(&job.video.bytes))));
    let new = NewTask { kind: TaskKind::Video, api, request: Some(request), body: &hashed };
    let id = submit(state, owner.clone(), headers, new, async || Ok((Job::VideoOp(job), false))).await?;
    answer(state, api, &id, &owner)
}

fn answer(state: &AppState, api: TaskApi, id: &str, owner: &KeyId) -> Result<Response, ApiError> {
    match api {
        TaskApi::Xai => Ok(Json(XaiCreated { request_id: id.to_owned() }).into_response()),
        _ => {
            let task = state
                .tasks
                .get(id, TaskKind::Video, Some(owner))
                .ok_or_else(|| ApiError::not_found(format!("no video `{id}`")))?;
            Ok(Json(super::videos::video_object(&task)).into_response())
        }
    }
}

#[utoipa::path(post, path = "/v1/videos/edits", tag = "videos",
    description = "Edits a video (xAI upstream only; grok-web answers 400 `unsupported_on_upstream`). Multipart \
        (OpenAI's `client.videos.edit`: `prompt`, `video` file or `video[id]`) answers the Video object; JSON \
        (xAI's `{prompt, video: {url}}`) answers `{request_id}`. The input lasts at most 8.7 s; the result keeps its length.",
    request_body(content((super::schema::VideoEditForm = "multipart/form-data"), (super::schema::XaiVideoOpForm = "application/json"))),
    params(super::schema::IdempotencyKey),
    responses((status = 200, body = super::schema::VideoOpAnswer), (status = 400, body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody), (status = 413, body = crate::error::ErrorBody),
              (status = 422, body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody)))]
pub async fn edits(
    State(state): State<AppState>,
    Extension(owner): Extension<KeyId>,
    headers: HeaderMap,
    body: OpBody,
) -> Result<Response, ApiError> {
    upstream_can(&state, OpKind::Edit)?;
    let source = source(&state, &owner, &body).await?;
    run(&state, owner, &headers, body.api, OpKind::Edit, &body.fields, source).await
}

#[utoipa::path(post, path = "/v1/videos/extensions", tag = "videos",
    description = "Extends a video by 2–10 s (xAI; on grok-web only videos this gateway made there, with the account \
        that made them, else 400 `unsupported_on_upstream`). \
        Multipart (OpenAI's `client.videos.extend`: `prompt`, `seconds`, `video` file or `video[id]`) answers the \
        Video object, whose `seconds` is the whole result's; JSON (xAI's `{prompt, video: {url}, duration}`) \
        answers `{request_id}`. The input lasts 2–15 s.",
    request_body(content((super::schema::VideoExtendForm = "multipart/form-data"), (super::schema::XaiVideoOpForm = "application/json"))),
    params(super::schema::IdempotencyKey),
    responses((status = 200, body = super::schema::VideoOpAnswer), (status = 400, body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody), (status = 413, body = crate::error::ErrorBody),
              (status = 422, body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody)))]
pub async fn extensions(
    State(state): State<AppState>,
    Extension(owner): Extension<KeyId>,
    headers: HeaderMap,
    body: OpBody,
) -> Result<Response, ApiError> {
    upstream_can(&state, OpKind::Extend)?;
    let source = source(&state, &owner, &body).await?;
    run(&state, owner, &headers, body.api, OpKind::Extend, &body.fields, source).await
}

#[utoipa::path(post, path = "/v1/videos/{id}/remix", tag = "videos",
    description = "OpenAI's `client.videos.remix`: an edit of a finished video this gateway made for the caller, \
        answered with the new Video object (`remixed_from_video_id` = `id`). xAI upstream only.",
    params(("id" = String, Path), super::schema::IdempotencyKey),
    request_body = super::schema::RemixForm,
    responses((status = 200, body = super::videos::VideoObject), (status = 400, body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
              (status = 422, body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody)))]
pub async fn remix(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Extension(owner): Extension<KeyId>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let Value::Object(mut fields) = body else {
        return Err(ApiError::unprocessable("invalid_request_structure", "request body must be a JSON object"));
    };
    upstream_can(&state, OpKind::Edit)?;
    let source = by_id(&state, &id, &owner).await?.ok_or_else(|| ApiError::not_found(format!("no video `{id}`")))?;
    // The source is part of what is asked: the same prompt on another video is another request.
    fields.insert("remix_of".into(), json!(id));
    run(&state, owner, &headers, TaskApi::OpenAi, OpKind::Edit, &fields, source).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_extension_adds_two_to_ten_seconds() {
        assert_eq!(added_seconds(None, "seconds").unwrap(), 6);
        assert_eq!(added_seconds(Some(&json!("4")), "seconds").unwrap(), 4);
        assert_eq!(added_seconds(Some(&json!(10)), "duration").unwrap(), 10);
        for bad in [json!("12"), json!(1), json!("x"), json!(true)] {
            let e = added_seconds(Some(&bad), "seconds").unwrap_err();
            assert!(e.message.contains("2 to 10"), "{bad}: {}", e.message);
            assert_eq!(e.param.as_deref(), Some("seconds"));
        }
    }

    #[test]
    fn results_are_reported_at_the_sources_size_at_most_720p() {
        assert_eq!(made_size(Some("1280x720"), Some((320, 180))), "1280x720", "the task's own report first");
        assert_eq!(made_size(Some("1920x1080"), None), "1280x720");
        assert_eq!(made_size(Some("1080x1920"), None), "720x1280");
        assert_eq!(made_size(Some("16:9"), Some((854, 480))), "854x480", "an xAI task reports a ratio: the file");
        assert_eq!(made_size(None, None), "");
    }

    #[test]
    fn sources_are_held_to_xais_input_limits() {
        let video = |seconds| InputVideo { bytes: Bytes::new(), content_type: "video/mp4", seconds, origin: None };
        let none = serde_json::Map::new();
        assert_eq!(operation(OpKind::Edit, &none, &video(8.7)).unwrap(), VideoOp::Edit);
        assert!(operation(OpKind::Edit, &none, &video(10.0)).unwrap_err().message.contains("8.7"));
        assert_eq!(operation(OpKind::Extend, &none, &video(6.0)).unwrap(), VideoOp::Extend { seconds: 6 });
        assert!(operation(OpKind::Extend, &none, &video(1.0)).unwrap_err().message.contains("2 to 15"));
        let fields = json!({"duration": 3}).as_object().cloned().unwrap_or_default();
        assert_eq!(operation(OpKind::Extend, &fields, &video(6.0)).unwrap(), VideoOp::Extend { seconds: 3 });
    }
}

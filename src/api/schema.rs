//! Types that exist only to describe the HTTP surface in the OpenAPI document (`api::openapi`): the
//! bodies a handler reads field by field (multipart forms, and bodies whose fields take more than one
//! JSON type), event streams (one schema per event, as schemathesis reads `text/event-stream`), path
//! segments, and served files. Handlers name them in their `#[utoipa::path]` attributes; the
//! document is assembled above the handlers, so this file imports none of them.

use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::content::Content;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{AnyOfBuilder, KnownFormat, ObjectBuilder, Ref, Schema, SchemaFormat, Type};

/// `POST /v1/images/edits` (multipart).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EditForm {
    /// `grok-imagine-1.0-edit` (alias `grok-imagine-image-edit`).
    pub model: String,
    pub prompt: String,
    /// 1–3 PNG/JPEG/WebP files (`image` or `image[]`), 20 MiB each; up to 5 on the xAI upstream with
    /// `grok-imagine-image-2.0`.
    #[schema(value_type = Vec<String>, format = Binary)]
    pub image: Vec<Vec<u8>>,
    pub n: Option<u32>,
    pub size: Option<String>,
    /// `url` (default) or `b64_json`.
    pub response_format: Option<String>,
    pub stream: Option<bool>,
    /// `png`, `jpeg` or `webp`.
    pub output_format: Option<String>,
    pub output_compression: Option<u8>,
    pub partial_images: Option<u8>,
}

/// `POST /v1/images/edits` as JSON, as xAI's clients send it.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EditJsonForm {
    /// `grok-imagine-1.0-edit`, or the image model (xAI names one model for both).
    pub model: String,
    pub prompt: String,
    /// One input: `{"url": …}` (https URL, data URL, or one of this gateway's image links) or the URL.
    #[schema(value_type = Option<Object>)]
    pub image: Option<serde_json::Value>,
    /// Up to 3 inputs (5 on the xAI upstream with `grok-imagine-image-2.0`), each like `image`.
    #[schema(value_type = Option<Vec<Object>>)]
    pub images: Option<Vec<serde_json::Value>>,
    pub n: Option<u32>,
    /// `auto` (default: the input's shape) or a size / ratio as on generations.
    pub size: Option<String>,
    /// xAI's `1:1`, `16:9`, `9:16`, `3:2`, `2:3` or `auto`; `21:9` and `5:2` with xAI's 2.0.
    pub aspect_ratio: Option<String>,
    pub response_format: Option<String>,
    pub stream: Option<bool>,
    pub output_format: Option<String>,
}

/// `POST /v1/videos` (JSON, or multipart with `input_reference` as a file).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CreateVideoForm {
    pub prompt: String,
    /// Our video model or alias (default `grok-imagine-1.0-video`); `sora-*` is refused.
    pub model: Option<String>,
    /// Whole seconds 1–15, as a string or a number (default `4`).
    #[schema(value_type = Option<String>)]
    pub seconds: Option<serde_json::Value>,
    /// `720x1280` (default), `1280x720`, `1024x1792`, `1792x1024`, `1080x720`, `720x1080`, `720x720`,
    /// `854x480`, `480x854`, `720x480`, `480x720`, `480x480`; `1920x1080`, `1080x1920` on the xAI upstream
    /// with `grok-imagine-video-1.5`.
    pub size: Option<String>,
    /// A file part (multipart), or `{"image_url": …}`.
    #[schema(value_type = Option<Object>)]
    pub input_reference: Option<serde_json::Value>,
    pub callback_url: Option<String>,
}

/// `POST /v1/videos/generations` (xAI's body).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct XaiCreateForm {
    /// Required except with `image`.
    pub prompt: Option<String>,
    pub model: Option<String>,
    /// 1–15 (default 8), number or numeric string; `seconds` is an alias.
    #[schema(value_type = Option<u32>)]
    pub duration: Option<serde_json::Value>,
    /// `16:9` (default), `9:16`, `3:2`, `2:3`, `1:1`.
    pub aspect_ratio: Option<String>,
    /// `480p` (default) or `720p`; `1080p` on the xAI upstream with `grok-imagine-video-1.5` (not with
    /// `reference_images`).
    pub resolution: Option<String>,
    /// `{"url": …}`: the first frame.
    #[schema(value_type = Option<Object>)]
    pub image: Option<serde_json::Value>,
    /// 1–7 `{"url": …}`: reference-to-video, at most 10 s.
    #[schema(value_type = Option<Vec<Object>>)]
    pub reference_images: Option<Vec<serde_json::Value>>,
}

/// `POST /v1/videos/edits` as OpenAI's SDK sends it (multipart).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct VideoEditForm {
    pub prompt: String,
    /// An MP4 of at most 8.7 s.
    #[schema(value_type = Option<String>, format = Binary)]
    pub video: Option<Vec<u8>>,
    /// Or a finished video of the caller's (`video_…` or an xAI request id): the SDK's `{"id": …}`.
    #[schema(rename = "video[id]")]
    pub video_id: Option<String>,
    pub model: Option<String>,
    pub callback_url: Option<String>,
}

/// `POST /v1/videos/extensions` as OpenAI's SDK sends it (multipart).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct VideoExtendForm {
    pub prompt: String,
    /// The seconds added: 2–10 (xAI's limit; default 6).
    pub seconds: Option<String>,
    /// An MP4 of 2–15 s.
    #[schema(value_type = Option<String>, format = Binary)]
    pub video: Option<Vec<u8>>,
    /// Or a finished video of the caller's: the SDK's `{"id": …}`.
    #[schema(rename = "video[id]")]
    pub video_id: Option<String>,
    pub model: Option<String>,
    pub callback_url: Option<String>,
}

/// `POST /v1/videos/edits` and `/v1/videos/extensions` in xAI's shape (JSON).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct XaiVideoOpForm {
    pub prompt: String,
    /// `{"url": …}`: one of this gateway's `/v1/files/video/…` links, a `data:video/mp4;base64,…` URL, or
    /// an https URL; `{"id": …}` names a finished video of the caller's.
    #[schema(value_type = Object)]
    pub video: serde_json::Value,
    /// Extensions only: the seconds added, 2–10 (default 6).
    #[schema(value_type = Option<u32>)]
    pub duration: Option<serde_json::Value>,
    pub model: Option<String>,
    pub callback_url: Option<String>,
}

/// `POST /v1/videos/{id}/remix` (JSON, as OpenAI's SDK sends it).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RemixForm {
    pub prompt: String,
    pub callback_url: Option<String>,
}

/// An edit or extension's answer: the Video object (multipart, OpenAI) or `{request_id}` (JSON, xAI).
pub struct VideoOpAnswer;

impl utoipa::PartialSchema for VideoOpAnswer {
    fn schema() -> RefOr<Schema> {
        AnyOfBuilder::new()
            .description(Some("OpenAI's Video object for a multipart request, xAI's `{request_id}` for a JSON one."))
            .item(Ref::from_schema_name("VideoObject"))
            .item(Ref::from_schema_name("XaiCreated"))
            .into()
    }
}

impl ToSchema for VideoOpAnswer {}

/// `GET /v1/videos/{id}`: the shape of the API that made the video. `anyOf`, not the `oneOf` an
/// untagged enum derives: a failed OpenAI Video object is also a valid xAI answer, and that is fine.
pub struct VideoAnswer;

impl utoipa::PartialSchema for VideoAnswer {
    fn schema() -> RefOr<Schema> {
        AnyOfBuilder::new()
            .description(Some(
                "The Video object of the OpenAI API, or xAI's poll answer: the shape of the API that made it.",
            ))
            .item(Ref::from_schema_name("VideoObject"))
            .item(Ref::from_schema_name("XaiVideoStatus"))
            .into()
    }
}

impl ToSchema for VideoAnswer {}

/// One server-sent event as a stream carries it: `event` names it, `id` orders it, `data` is its
/// payload (JSON, and `[DONE]` at the end of a chat stream).
fn sse_event(names: Option<&[&str]>, data: Option<&str>) -> RefOr<Schema> {
    let mut payload = ObjectBuilder::new().schema_type(Type::String);
    if let Some(schema) = data {
        // What `data` holds, once parsed (JSON Schema's content keywords).
        payload = payload.content_media_type("application/json").extensions(Some(
            [("contentSchema", serde_json::json!({"$ref": format!("#/components/schemas/{schema}")}))]
                .into_iter()
                .collect(),
        ));
    }
    let mut event = ObjectBuilder::new().schema_type(Type::String);
    if let Some(names) = names {
        event = event.enum_values(Some(names.iter().copied()));
    }
    ObjectBuilder::new()
        .property("event", event)
        .property(
            "id",
            ObjectBuilder::new().schema_type(Type::String).description(Some("send back as `Last-Event-ID`")),
        )
        .property("data", payload)
        .required("data")
        .into()
}

/// An event of `GET /v1/{kind}/tasks/{id}/events`: the task's status and its view.
pub struct TaskEvent;

impl utoipa::PartialSchema for TaskEvent {
    fn schema() -> RefOr<Schema> {
        sse_event(Some(&["pending", "processing", "success", "failed"]), Some("TaskView"))
    }
}

impl ToSchema for TaskEvent {}

/// An event of `GET /v1/videos/{id}/events`: `video.<status>` with the Video object, or xAI's status
/// with its poll answer.
pub struct VideoEvent;

impl utoipa::PartialSchema for VideoEvent {
    fn schema() -> RefOr<Schema> {
        sse_event(None, Some("VideoAnswer"))
    }
}

impl ToSchema for VideoEvent {}

/// An event of a generation stream (`stream: true` on images, edits and chat): JSON chunks, named
/// on the images streams, and `[DONE]` last on chat.
pub struct StreamEvent;

impl utoipa::PartialSchema for StreamEvent {
    fn schema() -> RefOr<Schema> {
        sse_event(None, None)
    }
}

impl ToSchema for StreamEvent {}

/// `{kind}` of the task routes (`/v1/{kind}/tasks/{id}`).
#[derive(ToSchema, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum TaskSegment {
    Video,
    Images,
}

/// `{kind}` of a file link (`/v1/files/{kind}/{name}`).
#[derive(ToSchema, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum FileKind {
    Image,
    Video,
}

/// The header every task create reads (`tasks::submit`).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct IdempotencyKey {
    /// 1–255 visible ASCII characters (else 400 `invalid_idempotency_key`): a repeat with the same
    /// body answers the first task, one with another body is a 422 `idempotency_key_reused`.
    #[param(rename = "Idempotency-Key")]
    pub key: Option<String>,
}

/// The conditional and range headers a stored file is served with (`files::serve`).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct MediaHeaders {
    /// One range, `bytes=START-END`, `bytes=START-` or `bytes=-SUFFIX` (206, or 416 past the end).
    #[param(rename = "Range")]
    pub range: Option<String>,
    /// The `ETag` of a copy the client holds (304 when it still matches).
    #[param(rename = "If-None-Match")]
    pub if_none_match: Option<String>,
}

/// What serving a stored file answers (`files::serve`): the bytes, a range of them, a redirect to
/// object storage, 304 for a held copy, 416 for a range past the end, 503 when the store fails.
pub struct MediaAnswers;

impl utoipa::IntoResponses for MediaAnswers {
    fn responses() -> std::collections::BTreeMap<String, RefOr<Response>> {
        let bytes = || Content::new(Some(ObjectBuilder::new().schema_type(Type::String).format(Some(binary()))));
        let media = |description: &str| {
            ["image/png", "image/jpeg", "image/webp", "video/mp4"]
                .into_iter()
                .fold(ResponseBuilder::new().description(description), |r, t| r.content(t, bytes()))
                .build()
        };
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content("application/json", Content::new(Some(Ref::from_schema_name("ErrorBody"))))
                .build()
        };
        [
            ("200", media("the file (`ETag`, `Accept-Ranges: bytes`)")),
            ("206", media("the requested range (`Content-Range`)")),
            ("302", ResponseBuilder::new().description("a presigned link to object storage (`Location`)").build()),
            (
                "304",
                ResponseBuilder::new().description("the copy the client holds is current (`If-None-Match`)").build(),
            ),
            ("416", error("the range starts past the end (`Content-Range: bytes */SIZE`)")),
            ("503", error("the media store is failing (`media_store_unavailable`)")),
        ]
        .into_iter()
        .map(|(status, r)| (status.to_owned(), r.into()))
        .collect()
    }
}

fn binary() -> SchemaFormat {
    SchemaFormat::KnownFormat(KnownFormat::Binary)
}

//! `GET /openapi.json`: the OpenAPI 3.1 description of the whole HTTP surface, generated at build
//! time from the handlers' `#[utoipa::path]` attributes and the types they read and write. The few
//! bodies a handler reads field by field (multipart forms, and bodies whose fields take more than one
//! JSON type) are described by the form types below; tests check real responses against it.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::{admin, chat, edits, events, files, health, images, models, responses, tasks, videos, xai_videos};

/// `POST /v1/images/edits` (multipart).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EditForm {
    /// `grok-imagine-1.0-edit` (alias `grok-imagine-image-edit`).
    pub model: String,
    pub prompt: String,
    /// 1–3 PNG/JPEG/WebP files (`image` or `image[]`), 20 MiB each.
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
    /// Up to 3 inputs, each like `image`.
    #[schema(value_type = Option<Vec<Object>>)]
    pub images: Option<Vec<serde_json::Value>>,
    pub n: Option<u32>,
    /// `auto` (default: the input's shape) or a size / ratio as on generations.
    pub size: Option<String>,
    /// xAI's `1:1`, `16:9`, `9:16`, `3:2`, `2:3` or `auto`.
    pub aspect_ratio: Option<String>,
    pub response_format: Option<String>,
    pub stream: Option<bool>,
    pub output_format: Option<String>,
}

/// `POST /v1/video/generations/async`: the chat-completions body, or the bare form.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct VideoTaskForm {
    pub model: String,
    /// The chat form; or leave it out and give `prompt` (and the fields below) directly.
    pub messages: Option<Vec<chat::ChatMessage>>,
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
#[derive(ToSchema, serde::Deserialize)]
#[allow(dead_code)]
pub struct ImageTaskForm {
    #[serde(flatten)]
    pub request: images::ImageGenerationRequest,
    pub callback_url: Option<String>,
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
    /// `854x480`, `480x854`, `720x480`, `480x720`, `480x480`.
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
    /// `480p` (default) or `720p`.
    pub resolution: Option<String>,
    /// `{"url": …}`: the first frame.
    #[schema(value_type = Option<Object>)]
    pub image: Option<serde_json::Value>,
    /// 1–7 `{"url": …}`: reference-to-video, at most 10 s.
    #[schema(value_type = Option<Vec<Object>>)]
    pub reference_images: Option<Vec<serde_json::Value>>,
}

/// `GET /v1/videos/{id}`: the shape of the API that made the video.
#[derive(ToSchema, serde::Serialize)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum VideoAnswer {
    OpenAi(videos::VideoObject),
    Xai(xai_videos::XaiVideoStatus),
}

/// `DELETE /v1/{kind}/tasks/{id}`: the cancelled task, or the forgotten one's id.
#[derive(ToSchema, serde::Serialize)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum TaskDeleteAnswer {
    Cancelled(crate::error::Envelope<crate::tasks::TaskView>),
    Forgotten(crate::error::Envelope<tasks::TaskDeleted>),
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "grok2api", description = "Grok Imagine behind OpenAI-compatible endpoints, async tasks, and the OpenAI and xAI video APIs."),
    modifiers(&BearerAuth),
    security(("api_key" = [])),
    paths(
        models::list, models::get,
        images::generations, edits::edits, chat::completions, responses::create,
        tasks::create_video, tasks::create_image, tasks::status, tasks::result, tasks::list_video,
        tasks::list_images, tasks::delete, events::task_events,
        videos::create, videos::retrieve, videos::list, videos::delete, videos::content, videos::unsupported,
        events::video_events, xai_videos::create,
        files::get_file,
        health::healthz, health::readyz, health::metrics,
        admin::tokens::list_tokens, admin::tokens::add_tokens, admin::tokens::remove_token,
        admin::tokens::refresh_tokens, admin::tokens::import_tokens, admin::tokens::export_tokens,
        admin::tokens::patch_token, admin::tokens::refresh_token, admin::tokens::bulk,
        admin::keys::list, admin::keys::create, admin::keys::revoke, admin::keys::rotate,
        admin::usage::list, admin::usage::csv, admin::tasks::list, admin::tasks::detail, admin::tasks::cancel,
        admin::tasks::redeliver, admin::overview::overview,
        crate::console::session::login, crate::console::session::logout, crate::console::session::session,
        openapi_json,
    )
)]
pub struct ApiDoc;

/// The document, built once.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: std::sync::OnceLock<utoipa::openapi::OpenApi> = std::sync::OnceLock::new();
    DOC.get_or_init(ApiDoc::openapi)
}

#[utoipa::path(get, path = "/openapi.json", tag = "operations", security(()),
    responses((status = 200, description = "this document", content_type = "application/json", body = Object)))]
pub async fn openapi_json() -> Json<&'static utoipa::openapi::OpenApi> {
    Json(document())
}

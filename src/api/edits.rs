//! `POST /v1/images/edits`: multipart as OpenAI's SDKs send it (up to three PNG/JPEG/WebP files of at
//! most 20 MiB each), or JSON as xAI's clients send it (`image` / `images` as `{"url": …}`, each an
//! https or data URL or one of this gateway's links).

use crate::owner::KeyId;
use axum::Extension;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use super::images::{ImageEvents, ImageOptions, ImageRequest, answer_format, requested_ratio, respond};
use super::{
    Capability, JsonBody, ResponseFormat, multipart_error, public_base, resolve_model, validate_n, validate_prompt,
};
use crate::api::state::AppState;
use crate::error::ApiError;
use crate::jobs::{EditJob, InputImage, Job};
use crate::media::kind::sniff_media_type;

pub const MAX_IMAGES: usize = 5;
pub const MAX_IMAGE_BYTES: usize = 20 * 1024 * 1024;

/// An edit request, whichever way it came.
#[derive(Default)]
struct Edit {
    model: Option<String>,
    prompt: Option<String>,
    n: Option<i64>,
    size: Option<String>,
    aspect_ratio: Option<String>,
    response_format: Option<String>,
    stream: bool,
    options: ImageOptions,
    images: Vec<InputImage>,
}

/// The multipart form's text fields, before they are typed.
#[derive(Default)]
struct FormText {
    model: Option<String>,
    prompt: Option<String>,
    n: Option<String>,
    size: Option<String>,
    aspect_ratio: Option<String>,
    response_format: Option<String>,
    stream: Option<String>,
    output_format: Option<String>,
    output_compression: Option<String>,
    partial_images: Option<String>,
    quality: Option<String>,
    background: Option<String>,
    moderation: Option<String>,
    input_fidelity: Option<String>,
}

async fn read_form(mut multipart: Multipart) -> Result<Edit, ApiError> {
    let mut form = FormText::default();
    let mut images = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "image" || name == "image[]" {
            if images.len() == MAX_IMAGES {
                return Err(ApiError::invalid_param("image", format!("at most {MAX_IMAGES} images per edit")));
            }
            let file_name = field.file_name().unwrap_or("image").to_owned();
            let bytes = field.bytes().await.map_err(multipart_error)?;
            if bytes.len() > MAX_IMAGE_BYTES {
                return Err(ApiError::invalid_param("image", format!("`{file_name}` is larger than 20 MiB")));
            }
            let content_type = sniff_media_type(&bytes).filter(|t| t.starts_with("image/")).ok_or_else(|| {
                ApiError::invalid_param("image", format!("`{file_name}` is not a PNG, JPEG or WebP image"))
            })?;
            images.push(InputImage { bytes, content_type, file_name, origin: None });
            continue;
        }
        let slot = match name.as_str() {
            "model" => &mut form.model,
            "prompt" => &mut form.prompt,
            "n" => &mut form.n,
            "size" => &mut form.size,
            "aspect_ratio" => &mut form.aspect_ratio,
            "response_format" => &mut form.response_format,
            "stream" => &mut form.stream,
            "output_format" => &mut form.output_format,
            "output_compression" => &mut form.output_compression,
            "partial_images" => &mut form.partial_images,
            "quality" => &mut form.quality,
            "background" => &mut form.background,
            "moderation" => &mut form.moderation,
            "input_fidelity" => &mut form.input_fidelity,
            _ => continue, // unknown fields are ignored, as for JSON
        };
        let text = field.text().await.map_err(|e| match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => multipart_error(e),
            _ => ApiError::invalid_param(&name, format!("field `{name}` is not valid UTF-8 text")),
        })?;
        *slot = Some(text);
    }
    let int = |name: &str, v: Option<&str>| -> Result<Option<i64>, ApiError> {
        match v.map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => s
                .parse()
                .map(Some)
                .map_err(|_| ApiError::invalid_param(name, format!("{name} must be an integer, got `{s}`"))),
        }
    };
    let stream = match form.stream.as_deref().map(str::trim) {
        None | Some("") | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::invalid_param("stream", format!("stream must be true or false, got `{other}`")));
        }
    };
    let text = |v: Option<String>| v.filter(|s| !s.trim().is_empty()).map(Value::String);
    Ok(Edit {
        n: int("n", form.n.as_deref())?,
        options: ImageOptions {
            output_format: form.output_format,
            output_compression: int("output_compression", form.output_compression.as_deref())?,
            partial_images: int("partial_images", form.partial_images.as_deref())?,
            quality: text(form.quality),
            background: text(form.background),
            moderation: text(form.moderation),
            input_fidelity: text(form.input_fidelity),
            ..ImageOptions::default()
        },
        model: form.model,
        prompt: form.prompt,
        size: form.size,
        aspect_ratio: form.aspect_ratio,
        response_format: form.response_format,
        stream,
        images,
    })
}

/// The JSON body xAI's image clients send (`@ai-sdk/xai`, LiteLLM's `xai/`), also taking OpenAI's
/// `{"image_url": …}` references.
#[derive(Deserialize)]
pub struct EditJson {
    model: Option<String>,
    prompt: Option<String>,
    #[serde(default)]
    image: Option<ImageRef>,
    #[serde(default)]
    images: Option<Vec<ImageRef>>,
    #[serde(default)]
    n: Option<i64>,
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    aspect_ratio: Option<String>,
    #[serde(default)]
    response_format: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(flatten)]
    options: ImageOptions,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum ImageRef {
    Url(String),
    Object {
        #[serde(default)]
        url: Option<String>,
        #[serde(default)]
        image_url: Option<String>,
        #[serde(default)]
        file_id: Option<String>,
    },
}

impl ImageRef {
    fn url(&self) -> Result<&str, ApiError> {
        match self {
            Self::Url(u) | Self::Object { url: Some(u), .. } | Self::Object { image_url: Some(u), .. } => Ok(u),
            Self::Object { file_id: Some(_), .. } => Err(ApiError::bad_request(
                "unsupported",
                "image.file_id names OpenAI's file store; send the image itself (a data URL) or its URL",
            )),
            Self::Object { .. } => Err(ApiError::invalid_param("image", "an image needs `url`")),
        }
    }
}

async fn read_json(state: &AppState, body: EditJson) -> Result<Edit, ApiError> {
    let refs: Vec<ImageRef> = body.image.into_iter().chain(body.images.into_iter().flatten()).collect();
    if refs.len() > MAX_IMAGES {
        return Err(ApiError::invalid_param(
            "image",
            format!("at most {MAX_IMAGES} images per edit, got {}", refs.len()),
        ));
    }
    let mut images = Vec::with_capacity(refs.len());
    for r in &refs {
        let image = super::chat::load_image(r.url()?, state).await;
        images.push(image.map_err(|e| ApiError { param: Some("image".into()), ..e })?);
    }
    Ok(Edit {
        model: body.model,
        prompt: body.prompt,
        n: body.n,
        size: body.size,
        aspect_ratio: body.aspect_ratio,
        response_format: body.response_format,
        stream: body.stream.unwrap_or(false),
        options: body.options,
        images,
    })
}

/// Multipart or JSON, by `Content-Type`; anything else is a 415 naming both.
pub enum EditBody {
    Form(Multipart),
    Json(Box<EditJson>),
}

impl<S: Send + Sync> FromRequest<S> for EditBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if mime == "application/json" || mime.ends_with("+json") {
            let JsonBody(body) = JsonBody::<EditJson>::from_request(req, state).await?;
            return Ok(Self::Json(Box::new(body)));
        }
        if mime != "multipart/form-data" {
            return Err(ApiError::unsupported_media_type(
                "expected `Content-Type: multipart/form-data` (with a boundary) or `application/json`",
            ));
        }
        let form = Multipart::from_request(req, state).await.map_err(|_| {
            ApiError::unsupported_media_type("expected `Content-Type: multipart/form-data` with a boundary")
        })?;
        Ok(Self::Form(form))
    }
}

#[utoipa::path(post, path = "/v1/images/edits", tag = "images",
    request_body(content((super::schema::EditForm = "multipart/form-data"), (super::schema::EditJsonForm = "application/json"))),
    responses(
        (status = 200, description = "the edited images (SSE `image_edit.partial_image` / `image_edit.completed` with `stream=true`)", content(
            (super::images::ImagesResponse = "application/json"), (super::schema::StreamEvent = "text/event-stream"))),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 413, body = crate::error::ErrorBody), (status = 415, body = crate::error::ErrorBody),
        (status = 429, body = crate::error::ErrorBody), (status = 502, body = crate::error::ErrorBody)))]
pub async fn edits(
    State(state): State<AppState>,
    Extension(owner): Extension<KeyId>,
    headers: HeaderMap,
    body: EditBody,
) -> Result<Response, ApiError> {
    let edit = match body {
        EditBody::Form(form) => read_form(form).await?,
        EditBody::Json(json) => read_json(&state, *json).await?,
    };
    let req = validate(edit, state.cfg.images.default_response_format.into(), &headers)?;
    super::images::check_upstream(&state, &req.job)?;
    respond(&state, owner, req, public_base(state.cfg.server.public_base_url.as_deref(), &headers)).await
}

fn validate(edit: Edit, default: ResponseFormat, headers: &HeaderMap) -> Result<ImageRequest, ApiError> {
    let model = edit.model.ok_or_else(|| ApiError::missing_field("model"))?;
    // xAI names one model for generations and edits: its clients send the image model here.
    resolve_model(&model, Capability::Edit).or_else(|e| resolve_model(&model, Capability::Image).map_err(|_| e))?;
    let prompt = validate_prompt(&edit.prompt.ok_or_else(|| ApiError::missing_field("prompt"))?)?;
    if edit.images.is_empty() {
        return Err(ApiError::missing_field("image"));
    }
    let n = validate_n(edit.n)?;
    // `auto` (and no size at all) keeps the input's shape.
    let aspect_ratio = requested_ratio(edit.size.as_deref(), edit.aspect_ratio.as_deref())?;
    // An empty form field names nothing.
    let named = edit.response_format.as_deref().map(str::trim).filter(|f| !f.is_empty());
    let format = answer_format(named, &edit.options, edit.size.as_deref(), default, headers)?;
    let output = edit.options.output()?;
    Ok(ImageRequest {
        partial_images: edit.options.partial_images()?,
        job: Job::Edit(EditJob {
            prompt,
            n,
            aspect_ratio,
            images: edit.images,
            output,
            quality: edit.options.quality()?,
        }),
        format,
        stream: edit.stream,
        events: ImageEvents::Edit,
    })
}

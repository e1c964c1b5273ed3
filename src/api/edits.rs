//! `POST /v1/images/edits` (multipart): up to three PNG/JPEG/WebP inputs of at most 20 MiB each.

use crate::auth::KeyId;
use axum::Extension;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::images::{ImageOptions, ImageRequest, respond};
use super::{
    Capability, ResponseFormat, aspect_ratio_for_size, multipart_error, public_base, resolve_model, validate_n,
    validate_prompt,
};
use crate::app::AppState;
use crate::error::ApiError;
use crate::jobs::{EditJob, InputImage, Job};
use crate::upstream::sniff_media_type;

pub const MAX_IMAGES: usize = 3;
pub const MAX_IMAGE_BYTES: usize = 20 * 1024 * 1024;

#[derive(Default)]
struct Form {
    model: Option<String>,
    prompt: Option<String>,
    n: Option<String>,
    size: Option<String>,
    response_format: Option<String>,
    stream: Option<String>,
    output_format: Option<String>,
    output_compression: Option<String>,
    partial_images: Option<String>,
    images: Vec<InputImage>,
}

async fn read_form(mut multipart: Multipart) -> Result<Form, ApiError> {
    let mut form = Form::default();
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "image" || name == "image[]" {
            if form.images.len() == MAX_IMAGES {
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
            form.images.push(InputImage { bytes, content_type, file_name, origin: None });
            continue;
        }
        let slot = match name.as_str() {
            "model" => &mut form.model,
            "prompt" => &mut form.prompt,
            "n" => &mut form.n,
            "size" => &mut form.size,
            "response_format" => &mut form.response_format,
            "stream" => &mut form.stream,
            "output_format" => &mut form.output_format,
            "output_compression" => &mut form.output_compression,
            "partial_images" => &mut form.partial_images,
            _ => continue, // unknown fields are ignored, as for JSON
        };
        let text = field.text().await.map_err(|e| match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => multipart_error(e),
            _ => ApiError::invalid_param(&name, format!("field `{name}` is not valid UTF-8 text")),
        })?;
        *slot = Some(text);
    }
    Ok(form)
}

#[utoipa::path(post, path = "/v1/images/edits", tag = "images",
    request_body(content = super::openapi::EditForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "the edited images (SSE with `stream=true`)", content(
            (super::images::ImagesResponse = "application/json"), (super::openapi::StreamEvent = "text/event-stream"))),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 413, body = crate::error::ErrorBody), (status = 415, body = crate::error::ErrorBody),
        (status = 429, body = crate::error::ErrorBody), (status = 502, body = crate::error::ErrorBody)))]
pub async fn edits(
    State(state): State<AppState>,
    Extension(owner): Extension<KeyId>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let multipart = multipart.map_err(|_| {
        ApiError::unsupported_media_type("expected `Content-Type: multipart/form-data` with a boundary")
    })?;
    let form = read_form(multipart).await?;
    let model = form.model.ok_or_else(|| ApiError::missing_field("model"))?;
    resolve_model(&model, Capability::Edit)?;
    let prompt = validate_prompt(&form.prompt.ok_or_else(|| ApiError::missing_field("prompt"))?)?;
    if form.images.is_empty() {
        return Err(ApiError::missing_field("image"));
    }
    let n = match form.n.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s) => Some(
            s.parse::<i64>().map_err(|_| ApiError::invalid_param("n", format!("n must be an integer, got `{s}`")))?,
        ),
    };
    let n = validate_n(n)?;
    let aspect_ratio = form.size.as_deref().map(aspect_ratio_for_size).transpose()?;
    let format = ResponseFormat::parse(form.response_format.as_deref())?;
    let stream = match form.stream.as_deref().map(str::trim) {
        None | Some("") | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::invalid_param("stream", format!("stream must be true or false, got `{other}`")));
        }
    };
    let int = |name: &str, v: Option<&str>| -> Result<Option<i64>, ApiError> {
        match v.map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => s
                .parse()
                .map(Some)
                .map_err(|_| ApiError::invalid_param(name, format!("{name} must be an integer, got `{s}`"))),
        }
    };
    let options = ImageOptions {
        output_format: form.output_format,
        output_compression: int("output_compression", form.output_compression.as_deref())?,
        partial_images: int("partial_images", form.partial_images.as_deref())?,
        ..ImageOptions::default()
    };
    let output = options.output()?;
    let req = ImageRequest {
        partial_images: options.partial_images()?,
        job: Job::Edit(EditJob { prompt, n, aspect_ratio, images: form.images, output }),
        format,
        stream,
        size: form.size.unwrap_or_else(|| "auto".into()),
    };
    respond(&state, owner, req, public_base(state.cfg.server.public_base_url.as_deref(), &headers)).await
}

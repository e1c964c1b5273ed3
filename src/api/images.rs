//! `POST /v1/images/generations`, and the response writing shared with edits: plain JSON, or an SSE
//! stream of OpenAI image events when `stream: true`.

use std::time::Duration;

use crate::owner::KeyId;
use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use super::stream::{request_timeout, run_to_end, sse_job};
use super::{
    Capability, JsonBody, ResponseFormat, aspect_ratio_for_size, public_base, resolve_model, unix_now, validate_n,
    validate_prompt,
};
use crate::api::state::AppState;
use crate::error::ApiError;
use crate::jobs::{ImageFormat, ImageJob, ImageOutput, ImageQuality, Job, JobEvent, JobOutput};
use crate::media::StoredMedia;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ImageGenerationRequest {
    pub model: String,
    pub prompt: String,
    #[serde(default)]
    pub n: Option<i64>,
    #[serde(default)]
    pub size: Option<String>,
    #[serde(default)]
    pub response_format: Option<String>,
    #[serde(default)]
    pub stream: Option<bool>,
    /// xAI's way to pick the shape (`1:1`, `16:9`, `9:16`, `3:2`, `2:3`, `auto`; `21:9` and `5:2` on the
    /// xAI upstream with `grok-imagine-image-2.0`), for clients written for xAI's images API.
    #[serde(default)]
    pub aspect_ratio: Option<String>,
    /// OpenAI's newer image parameters: honoured where they map (see `ImageOptions`).
    #[serde(flatten)]
    pub options: ImageOptions,
}

/// Parameters OpenAI's SDKs send for gpt-image models. `output_format` / `output_compression` and
/// `partial_images` are honoured; `quality` becomes xAI's (`xai_quality`; grok.com has none, a value
/// neither API knows is a 400); `background`, `moderation`, `style` and `user` have no upstream
/// counterpart and are accepted and ignored (one debug line), never refused.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct ImageOptions {
    #[serde(default)]
    pub output_format: Option<String>,
    #[serde(default)]
    pub output_compression: Option<i64>,
    #[serde(default)]
    pub partial_images: Option<i64>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub quality: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub background: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub moderation: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub style: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub user: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub input_fidelity: Option<Value>,
}

impl ImageOptions {
    /// OpenAI's `quality` (xAI's 2.0 takes it, grok.com makes `high` in its quality mode); a value
    /// neither API knows is a 400 naming the values.
    pub fn quality(&self) -> Result<Option<ImageQuality>, ApiError> {
        match &self.quality {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(q)) => {
                ImageQuality::parse(q).map(Some).map_err(|m| ApiError::invalid_param("quality", m))
            }
            Some(other) => Err(ApiError::invalid_param("quality", format!("quality must be a string, got {other}"))),
        }
    }

    /// The output the caller asked for; a format we cannot write is a 400 naming the ones we can.
    pub fn output(&self) -> Result<ImageOutput, ApiError> {
        let format = match self.output_format.as_deref().map(str::trim).filter(|f| !f.is_empty()) {
            None => None,
            Some(f) => Some(ImageFormat::parse(f).ok_or_else(|| {
                ApiError::invalid_param("output_format", format!("`{f}` is not one of png, jpeg, webp"))
            })?),
        };
        let compression = match self.output_compression {
            None => None,
            Some(c @ 0..=100) => Some(c as u8),
            Some(c) => return Err(ApiError::invalid_param("output_compression", format!("must be 0-100, got {c}"))),
        };
        let ignored: Vec<&str> = [
            ("background", &self.background),
            ("moderation", &self.moderation),
            ("style", &self.style),
            ("user", &self.user),
            ("input_fidelity", &self.input_fidelity),
        ]
        .into_iter()
        .filter(|(_, v)| v.as_ref().is_some_and(|v| !v.is_null()))
        .map(|(k, _)| k)
        .collect();
        if !ignored.is_empty() {
            tracing::debug!(params = ?ignored, "image parameters with no upstream counterpart, ignored");
        }
        Ok(ImageOutput { format, compression })
    }

    /// Whether the request carries a parameter only OpenAI's gpt-image family has. Clients written
    /// for those models read `b64_json` alone (those models never return links) and never ask for it.
    /// `output_format` is not one: xAI's clients and ours send it with links.
    pub fn gpt_image_only(&self) -> bool {
        let set = |v: &Option<Value>| v.as_ref().is_some_and(|v| !v.is_null());
        let gpt_quality =
            matches!(self.quality.as_ref().and_then(Value::as_str), Some("low" | "medium" | "high" | "auto"));
        gpt_quality
            || set(&self.background)
            || set(&self.moderation)
            || set(&self.input_fidelity)
            || self.output_compression.is_some()
            || self.partial_images.is_some()
    }

    /// How many partial images per image a stream may send (OpenAI allows 0–3); unset = every preview.
    pub fn partial_images(&self) -> Result<Option<u32>, ApiError> {
        match self.partial_images {
            None => Ok(None),
            Some(n @ 0..=3) => Ok(Some(n as u32)),
            Some(n) => Err(ApiError::invalid_param("partial_images", format!("must be 0-3, got {n}"))),
        }
    }
}

/// Which of OpenAI's two image streams an answer belongs to: its events are named after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageEvents {
    Generation,
    Edit,
}

impl ImageEvents {
    fn name(self, suffix: &str) -> String {
        match self {
            Self::Generation => format!("image_generation.{suffix}"),
            Self::Edit => format!("image_edit.{suffix}"),
        }
    }
}

/// A validated image request: the job plus how to answer.
pub struct ImageRequest {
    pub job: Job,
    pub format: ResponseFormat,
    pub stream: bool,
    pub events: ImageEvents,
    /// Partial images per image in a stream; `None` = every preview.
    pub partial_images: Option<u32>,
}

/// What the caller gets when it does not name a `response_format`: `b64_json` for clients written
/// for OpenAI's gpt-image models (they read nothing else), else `images.default_response_format`.
fn default_format(configured: ResponseFormat, gpt_image_only: bool, headers: &HeaderMap) -> ResponseFormat {
    if gpt_image_only || reads_only_b64(headers) { ResponseFormat::B64Json } else { configured }
}

/// The format an answer uses: the one `named`, else `default_format`'s pick, hinted by the request's
/// gpt-image-only fields and `size: "auto"` (also that family's).
pub fn answer_format(
    named: Option<&str>,
    options: &ImageOptions,
    size: Option<&str>,
    default: ResponseFormat,
    headers: &HeaderMap,
) -> Result<ResponseFormat, ApiError> {
    match named {
        None => Ok(default_format(default, options.gpt_image_only() || size.map(str::trim) == Some("auto"), headers)),
        named => ResponseFormat::parse(named),
    }
}

/// The Vercel AI SDK hands every image to its caller as bytes, and its OpenAI provider reads only
/// `b64_json` (on generations and edits) while asking for it only on generations with models it does
/// not know. It names itself in the User-Agent: `ai/<v>` and `ai-sdk-provider-utils/<v>` (v6+),
/// `ai-sdk/<package>/<v>` before.
fn reads_only_b64(headers: &HeaderMap) -> bool {
    let Some(ua) = headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    ua.split_ascii_whitespace().any(|t| t.starts_with("ai/") || t.starts_with("ai-sdk/") || t.starts_with("ai-sdk-"))
}

/// Refuses what the upstream (with its configured model) does not make, naming the limit: xAI's
/// 2.0 ratios `21:9` and `5:2`, and more edit sources than its model takes (3; 5 on 2.0). Sources:
/// docs.x.ai release-notes.md (August 2026) and images/multi-image-editing.
pub fn check_upstream(state: &AppState, job: &Job) -> Result<(), ApiError> {
    let caps = state.runner.upstream().caps();
    let (ratio, takes, sources, quality) = match job {
        Job::Image(j) => (Some(j.aspect_ratio), caps.image, 0, j.quality),
        Job::Edit(j) => (j.aspect_ratio, caps.edit, j.images.len(), j.quality),
        Job::Video(_) | Job::VideoOp(_) => return Ok(()),
    };
    let upstream = match caps.name {
        "xai" => "this gateway's xAI image model".to_owned(),
        name => format!("this gateway's upstream ({name})"),
    };
    // grok.com names the ratios of each mode; xAI's models make all of theirs but the 2.0 ones.
    if let (Some(r), Some(modes)) = (ratio, caps.image_ratios) {
        // Quality mode is text-to-image's; an edit is made in the fast mode's shapes.
        let image = matches!(job, Job::Image(_));
        let made = if image && quality == Some(ImageQuality::High) { modes.quality } else { modes.fast };
        if !made.contains(&r) {
            let how = if image && modes.quality.contains(&r) {
                "in quality mode only: ask with `quality: high`".to_owned()
            } else {
                format!(
                    "not at all: it makes {}, and {} in quality mode; xAI's API makes {r}",
                    modes.fast.join(", "),
                    modes.quality.iter().filter(|q| !modes.fast.contains(q)).copied().collect::<Vec<_>>().join(", ")
                )
            };
            return Err(ApiError::invalid_param(
                "aspect_ratio",
                format!("aspect_ratio {r}: {upstream} makes it {how}"),
            ));
        }
    } else if let Some(r) = ratio.filter(|r| crate::upstream::xai_models::WIDE_RATIOS.contains(r) && !takes.wide_ratios)
    {
        return Err(ApiError::invalid_param(
            "aspect_ratio",
            format!("{upstream} does not make {r}; 21:9 and 5:2 are made only by xAI's grok-imagine-image-2.0"),
        ));
    }
    if sources > takes.max_edit_images {
        return Err(ApiError::invalid_param(
            "image",
            format!(
                "{upstream} edits at most {} images at once, got {sources} (xAI's grok-imagine-image-2.0 takes 5)",
                takes.max_edit_images
            ),
        ));
    }
    Ok(())
}

/// `size` and xAI's `aspect_ratio` together: the upstream ratio, `None` for `auto` (the upstream's
/// choice). Both given and disagreeing is a 400 rather than a silent pick.
pub fn requested_ratio(size: Option<&str>, aspect_ratio: Option<&str>) -> Result<Option<&'static str>, ApiError> {
    let from_size = size.map(size_ratio).transpose()?.flatten();
    let from_ratio = match aspect_ratio.map(str::trim).filter(|r| !r.is_empty()) {
        None | Some("auto") => None,
        Some(r) => Some(crate::jobs::aspect_ratio_for_size(r).map_err(|_| {
            ApiError::invalid_param(
                "aspect_ratio",
                format!("unsupported aspect_ratio `{r}`; one of {} (or auto)", crate::jobs::IMAGE_RATIOS.join(", ")),
            )
        })?),
    };
    match (from_size, from_ratio) {
        (Some(a), Some(b)) if a != b => Err(ApiError::invalid_param(
            "aspect_ratio",
            format!("size means {a} and aspect_ratio {b}: send one of them"),
        )),
        (a, b) => Ok(b.or(a)),
    }
}

/// `size` → the upstream ratio; `auto` (the default of OpenAI's newer models) leaves it to the upstream.
fn size_ratio(size: &str) -> Result<Option<&'static str>, ApiError> {
    match size.trim() {
        "auto" | "" => Ok(None),
        s => aspect_ratio_for_size(s).map(Some),
    }
}

impl ImageGenerationRequest {
    pub fn validate(self, default: ResponseFormat, headers: &HeaderMap) -> Result<ImageRequest, ApiError> {
        resolve_model(&self.model, Capability::Image)?;
        let prompt = validate_prompt(&self.prompt)?;
        let n = validate_n(self.n)?;
        // Text-to-image has no input to take a shape from: `auto` is square, as OpenAI's is.
        let aspect_ratio = requested_ratio(self.size.as_deref(), self.aspect_ratio.as_deref())?.unwrap_or("1:1");
        let format =
            answer_format(self.response_format.as_deref(), &self.options, self.size.as_deref(), default, headers)?;
        let output = self.options.output()?;
        Ok(ImageRequest {
            job: Job::Image(ImageJob { prompt, n, aspect_ratio, output, quality: self.options.quality()? }),
            format,
            stream: self.stream.unwrap_or(false),
            events: ImageEvents::Generation,
            partial_images: self.options.partial_images()?,
        })
    }
}

#[utoipa::path(post, path = "/v1/images/generations", tag = "images", request_body = ImageGenerationRequest,
    responses(
        (status = 200, description = "the images; with `stream: true` an SSE stream of `image_generation.partial_image` and `image_generation.completed` events", content(
            (ImagesResponse = "application/json"), (super::schema::StreamEvent = "text/event-stream"))),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody),
        (status = 502, body = crate::error::ErrorBody), (status = 504, body = crate::error::ErrorBody)))]
pub async fn generations(
    State(state): State<AppState>,
    Extension(owner): Extension<KeyId>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<ImageGenerationRequest>,
) -> Result<Response, ApiError> {
    let req = req.validate(state.cfg.images.default_response_format.into(), &headers)?;
    check_upstream(&state, &req.job)?;
    respond(&state, owner, req, public_base(state.cfg.server.public_base_url.as_deref(), &headers)).await
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The images of an image job's output (a video here would be a bug in job dispatch).
fn images(output: JobOutput) -> Result<Vec<StoredMedia>, ApiError> {
    match output {
        JobOutput::Images(media) => Ok(media),
        JobOutput::Video { .. } => Err(ApiError::internal("image job produced a video")),
    }
}

/// OpenAI's images response (generations and edits).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ImagesResponse {
    /// Unix seconds.
    pub created: u64,
    pub data: Vec<ImageData>,
    /// `png`, `jpeg` or `webp`: the format of the files (of the first, should they differ).
    pub output_format: String,
    /// `<width>x<height>` of the first image, read from the file.
    pub size: String,
    /// Always `auto`: the upstream has no quality setting.
    pub quality: &'static str,
    /// Always `opaque`.
    pub background: &'static str,
    pub usage: ImageUsage,
}

/// Always zero: generations are not metered in tokens. Present because clients of OpenAI's newer
/// image models read it.
#[derive(Debug, Default, serde::Serialize, utoipa::ToSchema)]
pub struct ImageUsage {
    pub total_tokens: u32,
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub input_tokens_details: ImageTokenDetails,
}

#[derive(Debug, Default, serde::Serialize, utoipa::ToSchema)]
pub struct ImageTokenDetails {
    pub text_tokens: u32,
    pub image_tokens: u32,
}

impl ImagesResponse {
    pub fn new(media: &[StoredMedia], format: ResponseFormat, base: &str) -> Self {
        let first = media.first();
        Self {
            created: unix_now(),
            data: image_data(media, format, base),
            output_format: first.map_or("png", |m| file_format(m.content_type)).to_owned(),
            size: first.map_or_else(String::new, |m| dimensions(&m.bytes)),
            quality: "auto",
            background: "opaque",
            usage: ImageUsage::default(),
        }
    }
}

/// `image/jpeg` → `jpeg`, as OpenAI names output formats.
fn file_format(content_type: &str) -> &str {
    content_type.strip_prefix("image/").unwrap_or(content_type)
}

/// `<width>x<height>` from the image's header (no decode); empty when the header cannot be read.
fn dimensions(bytes: &[u8]) -> String {
    image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .ok()
        .and_then(|r| r.into_dimensions().ok())
        .map_or_else(String::new, |(w, h)| format!("{w}x{h}"))
}

/// One image: a link (`response_format: "url"`) or the file inline (`b64_json`).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ImageData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b64_json: Option<String>,
    /// Always empty: the upstream does not say.
    pub revised_prompt: String,
}

/// The OpenAI `data` array for finished images.
pub fn image_data(media: &[StoredMedia], format: ResponseFormat, base: &str) -> Vec<ImageData> {
    media
        .iter()
        .map(|m| match format {
            ResponseFormat::Url => {
                ImageData { url: Some(format!("{base}{}", m.path())), b64_json: None, revised_prompt: String::new() }
            }
            ResponseFormat::B64Json => {
                ImageData { url: None, b64_json: Some(b64(&m.bytes)), revised_prompt: String::new() }
            }
        })
        .collect()
}

pub async fn respond(state: &AppState, owner: KeyId, req: ImageRequest, base: String) -> Result<Response, ApiError> {
    if req.stream {
        return Ok(stream(state, owner, req, base, request_timeout(state)));
    }
    let media = images(run_to_end(state, &owner, &req.job).await?)?;
    Ok(axum::Json(ImagesResponse::new(&media, req.format, &base)).into_response())
}

fn event(kind: &str, data: Value) -> Event {
    Event::default().event(kind).data(data.to_string())
}

/// SSE: `<kind>.partial_image` per preview, `<kind>.completed` per image (`image_generation` or
/// `image_edit`, as OpenAI names them), or one `error` event.
fn stream(state: &AppState, owner: KeyId, req: ImageRequest, base: String, timeout: Duration) -> Response {
    let ImageRequest { job, format, events, partial_images, .. } = req;
    let (partial_name, completed_name) = (events.name("partial_image"), events.name("completed"));
    let created = unix_now();
    let mut partials: Vec<u32> = Vec::new();
    let on_event = move |ev: JobEvent| {
        let JobEvent::Preview { index, bytes } = ev else { return None };
        if partials.len() <= index {
            partials.resize(index + 1, 0);
        }
        if partial_images.is_some_and(|max| partials[index] >= max) {
            return None;
        }
        let data = json!({"type": partial_name, "b64_json": b64(&bytes),
        "partial_image_index": partials[index], "index": index, "created_at": created,
        "size": dimensions(&bytes), "quality": "auto", "background": "opaque",
        // Previews arrive without a content type: their bytes say it.
        "output_format": file_format(
            crate::media::kind::sniff_media_type(&bytes).filter(|t| t.starts_with("image/")).unwrap_or("image/png"),
        )});
        partials[index] += 1;
        Some(event(&partial_name, data))
    };
    let on_done = move |result: Result<JobOutput, ApiError>| match result.and_then(images) {
        Ok(media) => {
            let urls = image_data(&media, ResponseFormat::Url, &base);
            media
                .iter()
                .enumerate()
                .map(|(index, m)| {
                    let mut data = json!({"type": completed_name, "b64_json": b64(&m.bytes), "index": index,
                        "created_at": created, "size": dimensions(&m.bytes), "quality": "auto", "background": "opaque",
                        "output_format": file_format(m.content_type),
                        "usage": ImageUsage::default()});
                    if format == ResponseFormat::Url {
                        data["url"] = json!(urls[index].url);
                    }
                    event(&completed_name, data)
                })
                .collect()
        }
        Err(e) => {
            let mut body = e.body();
            body["type"] = json!("error");
            vec![event("error", body)]
        }
    };
    sse_job(state, owner, job, timeout, on_event, on_done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_and_aspect_ratio_make_one_ratio() {
        assert_eq!(requested_ratio(None, None).unwrap(), None);
        assert_eq!(requested_ratio(Some("auto"), None).unwrap(), None);
        assert_eq!(requested_ratio(None, Some("auto")).unwrap(), None);
        assert_eq!(requested_ratio(Some("1280x720"), None).unwrap(), Some("16:9"));
        assert_eq!(requested_ratio(None, Some("9:16")).unwrap(), Some("9:16"));
        assert_eq!(requested_ratio(Some("1280x720"), Some("16:9")).unwrap(), Some("16:9"));
        assert_eq!(requested_ratio(Some("auto"), Some("2:3")).unwrap(), Some("2:3"));
        // The newer ratios parse; whether the upstream makes each is `check_upstream`'s to say.
        assert_eq!(requested_ratio(None, Some("19.5:9")).unwrap(), Some("19.5:9"));
        assert_eq!(requested_ratio(Some("4:3"), None).unwrap(), Some("4:3"));
        for (size, ratio, param) in [
            (None, Some("7:5"), "aspect_ratio"),
            (None, Some("19:9"), "aspect_ratio"),
            (Some("1024x1024"), Some("16:9"), "aspect_ratio"),
            (Some("512x512"), None, "size"),
        ] {
            let e = requested_ratio(size, ratio).unwrap_err();
            assert_eq!((e.status.as_u16(), e.param.as_deref()), (400, Some(param)), "{size:?} {ratio:?}");
        }
    }

    #[test]
    fn who_gets_b64_json_without_asking() {
        let ua = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(axum::http::header::USER_AGENT, v.parse().unwrap());
            h
        };
        let none = HeaderMap::new();
        assert_eq!(default_format(ResponseFormat::Url, false, &none), ResponseFormat::Url);
        assert_eq!(default_format(ResponseFormat::B64Json, false, &none), ResponseFormat::B64Json);
        assert_eq!(default_format(ResponseFormat::Url, true, &none), ResponseFormat::B64Json);
        for sdk in
            ["ai/7.0.173 ai-sdk-provider-utils/5.0.81 node.js/v20.20.2", "ai-sdk/openai/1.3.0 runtime/node.js/20"]
        {
            assert_eq!(default_format(ResponseFormat::Url, false, &ua(sdk)), ResponseFormat::B64Json, "{sdk}");
        }
        for other in
            ["OpenAI/Python 2.8.0", "curl/8.5.0", "Mozilla/5.0 (X11; Linux x86_64) Chrome/156", "OpenAI/JS 6.49.0"]
        {
            assert_eq!(default_format(ResponseFormat::Url, false, &ua(other)), ResponseFormat::Url, "{other}");
        }
        let options = |v: Value| serde_json::from_value::<ImageOptions>(v).unwrap().gpt_image_only();
        assert!(!options(json!({})));
        assert!(!options(json!({"output_format": "jpeg", "quality": "hd", "style": "vivid"})));
        for family in [
            json!({"quality": "high"}),
            json!({"background": "transparent"}),
            json!({"moderation": "low"}),
            json!({"output_compression": 80}),
            json!({"partial_images": 2}),
            json!({"input_fidelity": "high"}),
        ] {
            assert!(options(family.clone()), "{family}");
        }
    }
}

//! HTTP handlers, one module per endpoint family, plus what they share: body extraction that fails
//! with our error shape, model and parameter validation, and link building.

pub mod admin;
pub mod chat;
pub mod edits;
pub mod events;
pub mod files;
pub mod gate;
pub mod health;
pub mod images;
pub mod models;
pub mod openapi;
pub mod responses;
pub mod schema;
pub mod state;
pub mod stream;
pub mod tasks;
pub mod upstream_limits;
pub mod video_ops;
pub mod video_spec;
pub mod videos;
pub mod xai_videos;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// `Query<T>` whose rejection is ours (400 `invalid_query` in the OpenAI error shape), not axum's
/// plain text: a repeated or malformed parameter is the caller's mistake, said the way every other one is.
pub struct Params<T>(pub T);

#[allow(clippy::disallowed_types)] // the one place that reads a query string with axum's extractor
impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Self(v)),
            Err(r) => Err(ApiError::bad_request("invalid_query", format!("invalid query string: {}", r.body_text()))),
        }
    }
}

/// `axum::extract::Path<T>` whose rejection is ours: a segment that is not UTF-8 once percent-decoded
/// (`/v1/videos/%FF`), or not of the type the handler reads, is a 400 `invalid_path` in the OpenAI
/// error shape, never axum's plain text. (`tasks::TaskPath` answers the same in the envelope.)
pub struct Path<T>(pub T);

#[allow(clippy::disallowed_types)] // the one place that reads a path with axum's extractor
impl<S: Send + Sync, T: DeserializeOwned + Send> axum::extract::FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Self(v)),
            Err(axum::extract::rejection::PathRejection::FailedToDeserializePathParams(e)) => {
                Err(ApiError::bad_request("invalid_path", format!("invalid URL path: {}", e.body_text())))
            }
            // The route has no such parameter: a mistake of ours, not the caller's.
            Err(other) => Err(ApiError::internal(format!("cannot read the URL path: {}", other.body_text()))),
        }
    }
}

/// `Json<T>` whose rejections are ours: not JSON → 422, wrong shape → 422, wrong content type → 415,
/// too large → 413.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::unsupported_media_type("expected `Content-Type: application/json`"));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|r| body_rejection(&r, r.status()))?;
        check_json_cost(&bytes)?;
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Values one JSON body may hold, and how deeply they may nest. Parsed, a value costs tens of bytes
/// however few it took to send (`[0,0,0,…]` is two bytes a value): this bounds what a body can
/// cost in memory to a small multiple of its size, whatever its shape.
pub const MAX_JSON_VALUES: usize = 100_000;
pub const MAX_JSON_DEPTH: usize = 64;

/// Counts a body's values (strings, containers, and what commas separate) and its nesting, without
/// parsing it.
pub fn check_json_cost(body: &[u8]) -> Result<(), ApiError> {
    let (mut values, mut depth, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &c in body {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => {
                in_string = true;
                values += 1;
            }
            b'{' | b'[' => {
                depth += 1;
                values += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(ApiError::payload_too_large(format!(
                        "request body nests deeper than {MAX_JSON_DEPTH} levels"
                    )));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' => values += 1,
            _ => {}
        }
        if values > MAX_JSON_VALUES {
            return Err(ApiError::payload_too_large(format!(
                "request body holds more than {MAX_JSON_VALUES} JSON values"
            )));
        }
    }
    Ok(())
}

/// A body the OpenAI SDKs send either way: a JSON object (its fields), or a multipart form (to read).
pub enum ObjectOrForm {
    Object(serde_json::Map<String, serde_json::Value>),
    Form(axum::extract::Multipart),
}

/// Reads a body as `ObjectOrForm`: multipart when the content type says so, else JSON that must be an
/// object (422 otherwise).
pub async fn object_or_form<S: Send + Sync>(req: Request, state: &S) -> Result<ObjectOrForm, ApiError> {
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !is_multipart {
        return match JsonBody::<serde_json::Value>::from_request(req, state).await? {
            JsonBody(serde_json::Value::Object(fields)) => Ok(ObjectOrForm::Object(fields)),
            _ => Err(ApiError::unprocessable("invalid_request_structure", "request body must be a JSON object")),
        };
    }
    let form = axum::extract::Multipart::from_request(req, state).await.map_err(
        |e: axum::extract::multipart::MultipartRejection| {
            ApiError::bad_request("invalid_multipart", format!("malformed multipart body: {}", e.body_text()))
        },
    )?;
    Ok(ObjectOrForm::Form(form))
}

/// A multipart body that could not be read: cut off by the body rules, over the route's limit
/// (413), or malformed (400).
pub fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if let Some(rule) = body_rule_error(&e) {
        return rule;
    }
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::payload_too_large("multipart body is larger than the configured limit");
    }
    ApiError::bad_request("invalid_multipart", format!("malformed multipart body: {}", e.body_text()))
}

/// A body that could not be read: cut off by the body rules, over the route's limit, or broken.
pub fn body_rejection(err: &(dyn std::error::Error + 'static), status: StatusCode) -> ApiError {
    if let Some(e) = body_rule_error(err) {
        return e;
    }
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::payload_too_large("request body is larger than the configured limit");
    }
    ApiError::bad_request("invalid_body", format!("cannot read request body: {err}"))
}

/// A body cut off by the server's body rules: too slow (408) or over the server-wide budget (503).
pub fn body_rule_error(err: &(dyn std::error::Error + 'static)) -> Option<ApiError> {
    use crate::server::body::BodyError;
    Some(match BodyError::find(err)? {
        BodyError::TooSlow => ApiError::request_timeout("the request body arrived too slowly; send it at once"),
        BodyError::Busy => {
            let mut e = ApiError::unavailable("server_busy", BodyError::Busy.to_string());
            e.retry_after_secs = Some(1);
            e
        }
    })
}

/// A parse failure of `Json::from_bytes` (reading the body and its content type are checked before).
fn json_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::JsonDataError(e) => {
            let detail = std::error::Error::source(&e).map_or_else(|| e.body_text(), |s| s.to_string());
            let mut err = ApiError::unprocessable(
                "invalid_request_structure",
                format!("request body has the wrong structure: {detail}"),
            );
            err.param = missing_field_name(&detail);
            err
        }
        JsonRejection::JsonSyntaxError(e) => {
            let detail = std::error::Error::source(&e).map_or_else(|| e.body_text(), |s| s.to_string());
            ApiError::unprocessable("invalid_json", format!("request body is not valid JSON: {detail}"))
        }
        other => ApiError::bad_request("invalid_body", format!("cannot read request body: {}", other.body_text())),
    }
}

pub(crate) fn missing_field_name(detail: &str) -> Option<String> {
    let rest = detail.split("missing field `").nth(1)?;
    Some(rest.split('`').next()?.to_owned())
}

pub use crate::catalog::{Capability, MODELS, canonical_model, model_of_route};

/// The canonical id for `model`, if it exists and serves `want`.
pub fn resolve_model(model: &str, want: Capability) -> Result<&'static str, ApiError> {
    crate::catalog::lookup(model)
        .filter(|(_, cap)| *cap == want)
        .map(|(id, _)| id)
        .ok_or_else(|| ApiError::model_not_supported(model, want.describe()))
}

/// OpenAI `size` (or a bare ratio) → the upstream aspect ratio.
pub fn aspect_ratio_for_size(size: &str) -> Result<&'static str, ApiError> {
    crate::jobs::aspect_ratio_for_size(size).map_err(|m| ApiError::invalid_param("size", m))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFormat {
    Url,
    B64Json,
}

impl ResponseFormat {
    pub fn parse(v: Option<&str>) -> Result<Self, ApiError> {
        match v.map(str::trim) {
            None | Some("url") => Ok(Self::Url),
            Some("b64_json") | Some("base64") => Ok(Self::B64Json),
            Some(other) => {
                Err(ApiError::invalid_param("response_format", format!("`{other}` is not one of url, b64_json")))
            }
        }
    }
}

impl From<crate::config::ImageResponseFormat> for ResponseFormat {
    fn from(f: crate::config::ImageResponseFormat) -> Self {
        match f {
            crate::config::ImageResponseFormat::Url => Self::Url,
            crate::config::ImageResponseFormat::B64Json => Self::B64Json,
        }
    }
}

/// Seconds since the epoch, for OpenAI `created` fields.
pub use crate::clock::now_secs as unix_now;

pub const MAX_PROMPT_CHARS: usize = 4000;

pub fn validate_prompt(prompt: &str) -> Result<String, ApiError> {
    let len = prompt.chars().count();
    if prompt.trim().is_empty() {
        return Err(ApiError::invalid_param("prompt", "prompt must not be empty"));
    }
    if len > MAX_PROMPT_CHARS {
        return Err(ApiError::invalid_param(
            "prompt",
            format!("prompt is {len} characters; the limit is {MAX_PROMPT_CHARS}"),
        ));
    }
    Ok(prompt.to_owned())
}

pub fn validate_n(n: Option<i64>) -> Result<usize, ApiError> {
    match n.unwrap_or(1) {
        n @ 1..=10 => Ok(n as usize),
        n => Err(ApiError::invalid_param("n", format!("n must be between 1 and 10, got {n}"))),
    }
}

/// Where links we return should point: configured base URL, else the scheme and host the client used.
pub fn public_base(configured: Option<&str>, headers: &HeaderMap) -> String {
    if let Some(base) = configured.filter(|b| !b.is_empty()) {
        return base.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic() && b != b'/'))
        .unwrap_or("localhost:8000");
    let scheme = match headers.get("x-forwarded-proto").and_then(|h| h.to_str().ok()) {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_resolve_by_id_and_alias_for_their_capability_only() {
        assert_eq!(resolve_model("grok-imagine-image", Capability::Image).unwrap(), "grok-imagine-1.0");
        assert_eq!(resolve_model("grok-imagine-1.0-edit", Capability::Edit).unwrap(), "grok-imagine-1.0-edit");
        let e = resolve_model("grok-imagine-1.0-video", Capability::Image).unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (400, "model_not_supported"));
        assert!(resolve_model("dall-e-3", Capability::Image).is_err());
    }

    #[test]
    fn every_generation_route_names_its_model() {
        use axum::http::Method;
        assert_eq!(model_of_route(&Method::POST, "/v1/images/tasks"), Some("grok-imagine-1.0"));
        assert_eq!(model_of_route(&Method::POST, "/v1/images/edits"), Some("grok-imagine-1.0-edit"));
        assert_eq!(model_of_route(&Method::POST, "/v1/videos"), Some("grok-imagine-1.0-video"));
        assert_eq!(model_of_route(&Method::GET, "/v1/videos"), None);
        assert_eq!(model_of_route(&Method::POST, "/v1/videos/abc/remix"), Some("grok-imagine-1.0-video"));
        assert_eq!(model_of_route(&Method::POST, "/v1/videos/extensions"), Some("grok-imagine-1.0-video"));
        assert_eq!(model_of_route(&Method::POST, "/v1/videos/characters"), None);
        assert_eq!(canonical_model("grok-imagine-video"), Some("grok-imagine-1.0-video"));
        // One model per capability is what makes the route decide; a second would need the body.
        for cap in [Capability::Image, Capability::Edit, Capability::Video] {
            assert_eq!(MODELS.iter().filter(|(_, _, c)| *c == cap).count(), 1);
        }
    }

    #[test]
    fn sizes_map_to_ratios() {
        assert_eq!(aspect_ratio_for_size("1792x1024").unwrap(), "3:2");
        assert_eq!(aspect_ratio_for_size("9:16").unwrap(), "9:16");
        assert_eq!(aspect_ratio_for_size("512x512").unwrap_err().param.as_deref(), Some("size"));
    }

    #[test]
    fn bounds() {
        assert!(validate_n(Some(0)).is_err() && validate_n(Some(11)).is_err());
        assert_eq!(validate_n(None).unwrap(), 1);
        assert!(validate_prompt(" ").is_err());
        assert!(validate_prompt(&"字".repeat(4000)).is_ok());
        assert!(validate_prompt(&"字".repeat(4001)).is_err());
        assert_eq!(ResponseFormat::parse(Some("base64")).unwrap(), ResponseFormat::B64Json);
        assert!(ResponseFormat::parse(Some("png")).is_err());
    }

    #[test]
    fn json_cost_counts_values_and_depth_not_bytes() {
        assert!(check_json_cost(br#"{"prompt":"a cat, a dog, [and] {more}","n":2}"#).is_ok());
        let many = format!("[{}0]", "0,".repeat(MAX_JSON_VALUES));
        assert_eq!(check_json_cost(many.as_bytes()).unwrap_err().status, StatusCode::PAYLOAD_TOO_LARGE);
        let deep = format!("{}{}", "[".repeat(MAX_JSON_DEPTH + 1), "]".repeat(MAX_JSON_DEPTH + 1));
        assert!(check_json_cost(deep.as_bytes()).is_err());
        // A long string is one value: a data URL costs its bytes, nothing more.
        let big = format!(r#"{{"url":"data:image/png;base64,{}\"x"}}"#, "A".repeat(1 << 20));
        assert!(check_json_cost(big.as_bytes()).is_ok());
    }

    #[test]
    fn base_url_from_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "gw.example:8000".parse().unwrap());
        assert_eq!(public_base(None, &h), "http://gw.example:8000");
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        assert_eq!(public_base(None, &h), "https://gw.example:8000");
        assert_eq!(public_base(Some("https://cdn.example/"), &h), "https://cdn.example");
    }
}

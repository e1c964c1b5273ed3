//! The one error type of the HTTP surface. It knows its status and writes the OpenAI error body;
//! every failure, from a bad field to an upstream timeout, leaves through here.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::upstream::UpstreamError;

/// OpenAI's error body: every failure of the OpenAI-shaped endpoints.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `not_found_error`, `rate_limit_error`,
    /// `upstream_error`, `server_error`, …
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The request field at fault, when one is.
    pub param: Option<String>,
    /// Machine-readable: `invalid_value`, `model_not_supported`, `upstream_timeout`, …
    pub code: &'static str,
}

/// The task endpoints' envelope; `code` always equals the HTTP status, errors included.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Envelope<T> {
    pub code: u16,
    pub message: String,
    /// `null` on errors.
    pub data: Option<T>,
}

/// How the task endpoints answer an error: the envelope with the HTTP status as `code` and `data: null`
/// (the document's schema of `TaskError` answers; `Envelope<Value>` allows any `data`).
pub struct TaskErrorBody;

impl utoipa::PartialSchema for TaskErrorBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .description(Some("The task endpoints' error: `code` is the HTTP status, `data` is `null`."))
            .property("code", ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(400)).maximum(Some(599)))
            .required("code")
            .property("message", ObjectBuilder::new().schema_type(Type::String))
            .required("message")
            .property("data", ObjectBuilder::new().schema_type(Type::Null))
            .required("data")
            .into()
    }
}

impl utoipa::ToSchema for TaskErrorBody {}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// OpenAI `error.type`.
    pub kind: &'static str,
    /// OpenAI `error.code`.
    pub code: &'static str,
    pub message: String,
    pub param: Option<String>,
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, kind, code, message: message.into(), param: None, retry_after_secs: None }
    }

    pub fn invalid_param(param: &str, message: impl Into<String>) -> Self {
        Self {
            param: Some(param.to_owned()),
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", "invalid_value", message)
        }
    }

    pub fn model_not_supported(model: &str, capability: &str) -> Self {
        Self {
            param: Some("model".into()),
            ..Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "model_not_supported",
                format!("model `{model}` does not support {capability}; see GET /v1/models"),
            )
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", code, message)
    }

    /// Body parsed but has the wrong shape (missing field, wrong type), or is not JSON at all.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request_error", code, message)
    }

    pub fn missing_field(param: &str) -> Self {
        Self {
            param: Some(param.to_owned()),
            ..Self::unprocessable("missing_required_field", format!("missing required field `{param}`"))
        }
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid_api_key",
            "missing or invalid API key; send `Authorization: Bearer <key>`",
        )
    }

    /// A key that was valid once: expired or revoked (said plainly, it is the caller's own key).
    pub fn key_refused(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "authentication_error", "invalid_api_key", message)
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "permission_error", code, message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "invalid_request_error", code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found_error", "not_found", message)
    }

    pub fn method_not_allowed() -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "invalid_request_error", "method_not_allowed", "method not allowed")
    }

    pub fn request_timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::REQUEST_TIMEOUT, "invalid_request_error", "request_timeout", message)
    }

    pub fn payload_too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request_error", "payload_too_large", message)
    }

    /// A `Range` that starts past the end of the file (the caller also sends `Content-Range: bytes */size`).
    pub fn range_not_satisfiable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::RANGE_NOT_SATISFIABLE, "invalid_request_error", "range_not_satisfiable", message)
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_request_error", "unsupported_media_type", message)
    }

    pub fn rate_limited(retry_after_secs: u64, message: impl Into<String>) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs.max(1)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", "rate_limit_exceeded", message)
        }
    }

    pub fn upstream(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, "upstream_error", code, message)
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, "upstream_error", "upstream_timeout", message)
    }

    /// A dependency of ours (the journal, the media store) is failing: retry later.
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", code, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal_error", message)
    }

    pub fn body(&self) -> serde_json::Value {
        let body = ErrorBody {
            error: ErrorDetail {
                message: self.message.clone(),
                kind: self.kind,
                param: self.param.clone(),
                code: self.code,
            },
        };
        serde_json::to_value(body).unwrap_or_else(|_| json!({"error": {"message": self.message}}))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// Writes this error with `body` (OpenAI shape or task envelope): status, `Retry-After`, and a log
    /// line for server-side failures.
    pub fn respond(&self, body: serde_json::Value) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), code = self.code, "{}", self.message);
        }
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.respond(self.body())
    }
}

/// What a client may read of an upstream failure: the text without any URL in it. Transport
/// errors name the upstream endpoint, and proxy failures a token's proxy (its host, port and user);
/// both are the operator's business, so the whole text goes to the log and the client gets the rest.
fn for_client(message: String) -> String {
    const SCHEMES: [&str; 6] = ["https://", "http://", "wss://", "ws://", "socks5h://", "socks5://"];
    if !SCHEMES.iter().any(|s| message.contains(s)) {
        return message;
    }
    tracing::warn!(detail = %message, "upstream failure (its URLs are left out of the answer to the client)");
    let mut out = String::with_capacity(message.len());
    let mut rest = message.as_str();
    while let Some((at, scheme)) = SCHEMES.iter().filter_map(|s| rest.find(s).map(|i| (i, *s))).min_by_key(|(i, _)| *i)
    {
        out.push_str(&rest[..at]);
        let name = if scheme.starts_with("socks") { "<proxy>" } else { "<url>" };
        out.push_str(name);
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '`' | '\'' | '"' | ',' | ';'))
            .unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

impl From<UpstreamError> for ApiError {
    fn from(e: UpstreamError) -> Self {
        if let UpstreamError::ProxyFailed(detail) = &e {
            tracing::warn!(%detail, "a token's proxy failed");
        }
        let e = e.map_message(for_client);
        match e {
            UpstreamError::RateLimited { retry_after, message } => {
                // Whole seconds, rounded up: a `1.5` s wait is not over after 1 s.
                let secs = retry_after.map_or(30, |d| d.as_secs() + u64::from(d.subsec_nanos() > 0));
                ApiError::rate_limited(secs, message)
            }
            UpstreamError::CreditsExhausted(m) => ApiError::upstream("upstream_credits_exhausted", m),
            UpstreamError::Moderated(m) => ApiError::bad_request("content_policy_violation", m),
            UpstreamError::PlanLimit(m) => ApiError::bad_request("upstream_plan_limit", m),
            UpstreamError::Unsupported(m) => ApiError::bad_request("unsupported_on_upstream", m),
            UpstreamError::Auth(m) => ApiError::upstream("upstream_auth_failed", m),
            UpstreamError::Challenge(m) | UpstreamError::StaleSignature(m) => {
                ApiError::upstream("upstream_challenge", m)
            }
            UpstreamError::ProxyFailed(_) => ApiError::upstream(
                "upstream_proxy_failed",
                "the proxy of the upstream account failed; the gateway's log says which",
            ),
            UpstreamError::CannedOutput(m) => ApiError::upstream("upstream_canned_output", m),
            UpstreamError::Protocol(m) => ApiError::upstream("upstream_bad_response", m),
            UpstreamError::Failed(m) | UpstreamError::Transport(m) => ApiError::upstream("upstream_error", m),
            UpstreamError::Timeout(m) => ApiError::timeout(m),
            UpstreamError::Storage(m) => ApiError::unavailable("media_store_unavailable", m),
        }
    }
}

/// An `ApiError` rendered as the task envelope `{code, message, data}` (task endpoints, their auth).
#[derive(Debug)]
pub struct TaskError(pub ApiError);

impl From<ApiError> for TaskError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl axum::response::IntoResponse for TaskError {
    fn into_response(self) -> axum::response::Response {
        let e = self.0;
        let body = Envelope::<serde_json::Value> { code: e.status.as_u16(), message: e.message.clone(), data: None };
        e.respond(serde_json::to_value(body).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_failures_reach_clients_without_urls_or_proxies() {
        let e = ApiError::from(UpstreamError::Transport(
            "error sending request for url (https://grok.com/rest/app-chat/conversations/new): connection refused"
                .into(),
        ));
        assert_eq!(e.message, "error sending request for url (<url>): connection refused");
        let e = ApiError::from(UpstreamError::ProxyFailed("proxy `http://bob:***@10.0.0.7:3128` refused".into()));
        assert!(!e.message.contains("10.0.0.7") && !e.message.contains("bob"), "{}", e.message);
        let e = ApiError::from(UpstreamError::Timeout("socks5h://u:p@proxy.internal:1080 went quiet".into()));
        assert!(e.message.ends_with("<proxy> went quiet"), "{}", e.message);
        assert!(ApiError::from(UpstreamError::Moderated("blocked".into())).message.ends_with("blocked"));
    }
}

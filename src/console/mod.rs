//! The operators' console at `/admin`: one HTML page, one script and one stylesheet, embedded in the
//! binary (nothing to build, nothing fetched from elsewhere). The page is a client of the JSON admin
//! API — it can do nothing a script with the admin key cannot — so the API stays the one place where
//! rules live. Why a small script and not server-rendered pages: docs/architecture.md. The login,
//! sessions and the admin gate are HTTP: `api::admin::session`.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::api::Path;
use crate::error::ApiError;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/console.js");
const STYLE: &str = include_str!("assets/console.css");

/// Everything comes from this origin; nothing inline; the page is never framed.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn asset(body: String, content_type: &'static str) -> Response {
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
    ];
    (headers, body).into_response()
}

/// The file `name`: the embedded copy, or in debug builds the one in `GROK2API_CONSOLE_DIR` (so the
/// page can be worked on without a rebuild).
fn source(name: &str, embedded: &'static str) -> String {
    #[cfg(debug_assertions)]
    if let Some(dir) = std::env::var_os("GROK2API_CONSOLE_DIR")
        && let Ok(text) = std::fs::read_to_string(std::path::Path::new(&dir).join(name))
    {
        return text;
    }
    let _ = name;
    embedded.to_owned()
}

/// `GET /admin`: the page (its login form shows until a session exists).
pub async fn page() -> Response {
    asset(source("index.html", INDEX), "text/html; charset=utf-8")
}

/// `GET /admin/assets/{name}`.
pub async fn file(Path(name): Path<String>) -> Response {
    match name.as_str() {
        "console.js" => asset(source("console.js", SCRIPT), "text/javascript; charset=utf-8"),
        "console.css" => asset(source("console.css", STYLE), "text/css; charset=utf-8"),
        _ => ApiError::not_found("no such file").into_response(),
    }
}

//! The console's session endpoints: log in with the admin key, log out, and what a session knows.
//! Who may use `/admin` at all is the gate's business (`api::gate`).

use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::api::JsonBody;
use crate::api::gate::{AdminSession, LOGIN_BODY_BYTES, Session, random_token};
use crate::api::state::AppState;
use crate::error::ApiError;
use crate::net::ClientAddr;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct Login {
    /// The admin key (`admin.api_key`).
    key: String,
}

/// A session's CSRF token and end, and what the console needs to know of the gateway.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SessionInfo {
    /// Send as `X-CSRF-Token` on every change; `null` for bearer-key callers, who need none.
    pub csrf_token: Option<String>,
    /// Unix seconds; `null` for bearer-key callers.
    pub expires_at: Option<u64>,
    pub upstream: &'static str,
    pub version: &'static str,
    /// False without a state dir: tokens, keys and usage are lost on restart.
    pub persistent: bool,
    pub models: Vec<&'static str>,
}

fn info(state: &AppState, csrf: Option<String>, expires_ms: Option<u64>) -> SessionInfo {
    SessionInfo {
        csrf_token: csrf,
        expires_at: expires_ms.map(|ms| ms / 1000),
        upstream: state.runner.upstream().name(),
        version: env!("CARGO_PKG_VERSION"),
        persistent: state.cfg.state.dir.is_some(),
        models: crate::catalog::MODELS.iter().map(|(id, _, _)| *id).collect(),
    }
}

#[utoipa::path(post, path = "/admin/login", tag = "admin", request_body = Login, security(()),
    responses((status = 200, body = SessionInfo, description = "Set-Cookie: grok2api_session"), (status = 401, body = crate::error::ErrorBody),
              (status = 404, description = "no admin key configured", body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody)))]
pub async fn login(State(state): State<AppState>, req: Request) -> Response {
    let gate = &state.console;
    let client = ClientAddr::bucket(ClientAddr::of(req.extensions()));
    // The limiter runs before the body is read, and the body is small: an anonymous caller can
    // neither guess quickly nor make the server hold large bodies.
    if let Err(wait) = gate.guesses.admit(client) {
        return crate::auth::too_many_guesses(wait).into_response();
    }
    let headers = req.headers().clone();
    let req = req.map(|b| axum::body::Body::new(http_body_util::Limited::new(b, LOGIN_BODY_BYTES)));
    let body: Login = match JsonBody::from_request(req, &()).await {
        Ok(JsonBody(body)) => body,
        Err(e) => return e.into_response(),
    };
    let mut presented = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {}", body.key.trim())) {
        presented.insert(header::AUTHORIZATION, v);
    }
    if gate.auth.check(&presented).is_err() {
        gate.guesses.failed(client);
        tracing::warn!(%client, "console login refused: wrong admin key");
        return ApiError::key_refused("wrong admin key").into_response();
    }
    gate.guesses.succeeded(client);
    let now = crate::clock::now_ms();
    gate.sessions.retain(|_, s| s.expires_ms > now);
    let (id, csrf) = (random_token(), random_token());
    let expires_ms = now + gate.ttl.as_millis() as u64;
    gate.sessions.insert(Sha256::digest(id.as_bytes()).into(), Session { csrf: csrf.clone(), expires_ms });
    tracing::info!("console login");
    let cookie = gate.cookie(&id, gate.ttl.as_secs(), &headers);
    ([(header::SET_COOKIE, cookie)], Json(info(&state, Some(csrf), Some(expires_ms)))).into_response()
}

#[utoipa::path(post, path = "/admin/logout", tag = "admin", responses((status = 204), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub async fn logout(
    State(state): State<AppState>,
    axum::Extension(session): axum::Extension<AdminSession>,
    headers: HeaderMap,
) -> Response {
    if let AdminSession(Some(digest)) = session {
        state.console.sessions.remove(&digest);
        tracing::info!("console logout");
    }
    let cookie = state.console.cookie("", 0, &headers);
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response()
}

#[utoipa::path(get, path = "/admin/session", tag = "admin", responses((status = 200, body = SessionInfo), (status = 401, body = crate::error::ErrorBody)))]
pub async fn session(
    State(state): State<AppState>,
    axum::Extension(session): axum::Extension<AdminSession>,
) -> Json<SessionInfo> {
    let found = session.0.and_then(|d| state.console.sessions.get(&d).map(|s| (s.csrf.clone(), s.expires_ms)));
    let (csrf, expires) = found.map_or((None, None), |(c, e)| (Some(c), Some(e)));
    Json(info(&state, csrf, expires))
}

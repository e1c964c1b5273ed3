//! Who may use `/admin`: the admin key as a bearer (scripts), or a console session. Logging in with
//! the admin key gives a random session id in an HttpOnly, SameSite=Strict cookie (Secure behind
//! https) and a CSRF token the page sends back on every change. Sessions live in memory only, so a
//! restart or a logout ends them; they also end after `admin.session_ttl_secs`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use dashmap::DashMap;
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::JsonBody;
use crate::app::AppState;
use crate::credentials::Auth;
use crate::error::ApiError;
use crate::limits::GuessLimiter;
use crate::net::ClientAddr;

pub const COOKIE: &str = "grok2api_session";
/// A login body holds one key: a few KB at most.
pub const LOGIN_BODY_BYTES: usize = 4096;
pub const CSRF_HEADER: &str = "x-csrf-token";

struct Session {
    csrf: String,
    expires_ms: u64,
}

pub struct AdminGate {
    auth: Auth,
    /// Keyed by the SHA-256 of the cookie value: the map never holds a usable session id.
    sessions: DashMap<[u8; 32], Session>,
    ttl: Duration,
    /// Wrong admin keys and session cookies, per client address and in all (bearer, cookie and
    /// login together): guessing the admin key stays slow, and one address cannot lock out another.
    guesses: GuessLimiter,
    /// `server.public_base_url` is https: cookies are Secure whatever the request says.
    https: bool,
}

/// How the current admin request was let in: the session (its id digest), or the bearer key.
#[derive(Debug, Clone, Copy)]
pub struct AdminSession(pub Option<[u8; 32]>);

fn random_token() -> String {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

impl AdminGate {
    pub fn new(admin_key: Option<&str>, ttl: Duration, https: bool, guesses: GuessLimiter) -> Self {
        Self { auth: Auth::new(admin_key.map(str::to_owned).as_slice()), sessions: DashMap::new(), ttl, guesses, https }
    }

    /// No admin key configured: neither the admin API nor the console exists.
    pub fn enabled(&self) -> bool {
        !self.auth.is_open()
    }

    /// `check` under the guess limiter of `client`.
    fn limited<T>(&self, client: IpAddr, check: impl FnOnce() -> Result<T, ApiError>) -> Result<T, ApiError> {
        let client = ClientAddr::bucket(client);
        self.guesses.admit(client).map_err(crate::auth::too_many_guesses)?;
        let r = check();
        match &r {
            Ok(_) => self.guesses.succeeded(client),
            Err(e) if e.status == StatusCode::UNAUTHORIZED => self.guesses.failed(client),
            Err(_) => {}
        }
        r
    }

    fn admit(&self, req: &mut Request) -> Result<(), ApiError> {
        let client = ClientAddr::of(req.extensions());
        if crate::credentials::bearer(req.headers()).is_some() {
            self.limited(client, || self.auth.check(req.headers()))?;
            req.extensions_mut().insert(AdminSession(None));
            return Ok(());
        }
        let id = session_cookie(req.headers()).ok_or_else(ApiError::unauthorized)?;
        let digest: [u8; 32] = Sha256::digest(id.as_bytes()).into();
        let csrf = {
            let session = self.limited(client, || self.sessions.get(&digest).ok_or_else(ApiError::unauthorized))?;
            if session.expires_ms <= crate::clock::now_ms() {
                drop(session);
                self.sessions.remove(&digest);
                return Err(ApiError::key_refused("the console session has expired; log in again"));
            }
            session.csrf.clone()
        };
        if !matches!(*req.method(), Method::GET | Method::HEAD) {
            let sent = req.headers().get(CSRF_HEADER).map(HeaderValue::as_bytes).unwrap_or_default();
            if !bool::from(sent.ct_eq(csrf.as_bytes())) {
                return Err(ApiError::forbidden(
                    "csrf_failed",
                    "missing or wrong X-CSRF-Token for this session; reload the console",
                ));
            }
        }
        req.extensions_mut().insert(AdminSession(Some(digest)));
        Ok(())
    }

    fn cookie(&self, value: &str, max_age: u64, headers: &HeaderMap) -> HeaderValue {
        let https = self.https || headers.get("x-forwarded-proto").is_some_and(|p| p.as_bytes() == b"https");
        let secure = if https { "; Secure" } else { "" };
        let cookie = format!("{COOKIE}={value}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
        HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
    }
}

/// The page, its files and the login exist only with an admin key.
pub async fn require_console(State(gate): State<Arc<AdminGate>>, req: Request, next: Next) -> Response {
    if !gate.enabled() {
        return ApiError::not_found("no such route").into_response();
    }
    next.run(req).await
}

/// Guards every admin route but the login and the page's static files.
pub async fn require_admin(State(gate): State<Arc<AdminGate>>, mut req: Request, next: Next) -> Response {
    if !gate.enabled() {
        return ApiError::not_found("no such route").into_response();
    }
    match gate.admit(&mut req) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

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

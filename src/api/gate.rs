//! Who may use `/admin`: the admin key as a bearer (scripts), or a console session. Logging in with
//! the admin key gives a random session id in an HttpOnly, SameSite=Strict cookie (Secure behind
//! https) and a CSRF token the page sends back on every change. Sessions live in memory only, so a
//! restart or a logout ends them; they also end after `admin.session_ttl_secs`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use dashmap::DashMap;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::credentials::Auth;
use crate::error::ApiError;
use crate::limits::GuessLimiter;
use crate::net::ClientAddr;

pub const COOKIE: &str = "grok2api_session";
/// A login body holds one key: a few KB at most.
pub const LOGIN_BODY_BYTES: usize = 4096;
pub const CSRF_HEADER: &str = "x-csrf-token";

pub(in crate::api) struct Session {
    pub(in crate::api) csrf: String,
    pub(in crate::api) expires_ms: u64,
}

pub struct AdminGate {
    pub(in crate::api) auth: Auth,
    /// Keyed by the SHA-256 of the cookie value: the map never holds a usable session id.
    pub(in crate::api) sessions: DashMap<[u8; 32], Session>,
    pub(in crate::api) ttl: Duration,
    /// Wrong admin keys and session cookies, per client address and in all (bearer, cookie and
    /// login together): guessing the admin key stays slow, and one address cannot lock out another.
    pub(in crate::api) guesses: GuessLimiter,
    /// `server.public_base_url` is https: cookies are Secure whatever the request says.
    https: bool,
}

/// How the current admin request was let in: the session (its id digest), or the bearer key.
#[derive(Debug, Clone, Copy)]
pub struct AdminSession(pub Option<[u8; 32]>);

pub(in crate::api) fn random_token() -> String {
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

    pub(in crate::api) fn cookie(&self, value: &str, max_age: u64, headers: &HeaderMap) -> HeaderValue {
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

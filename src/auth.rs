//! Bearer-key auth for `/v1/*`. Keys are kept only as SHA-256 digests and compared in constant time
//! (digest against every configured digest, no early exit), so neither timing nor memory leaks a key.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::limits::RateLimiter;

/// Who is calling: a stable, non-secret id derived from the API key (owner of tasks, rate-limit bucket).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyId(pub Arc<str>);

pub struct Auth {
    /// Each key's digest with its precomputed id, so a request allocates nothing.
    keys: Vec<([u8; 32], KeyId)>,
}

fn anonymous() -> KeyId {
    static ID: std::sync::OnceLock<KeyId> = std::sync::OnceLock::new();
    ID.get_or_init(|| KeyId(Arc::from("anonymous"))).clone()
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl Auth {
    pub fn new(keys: &[String]) -> Self {
        let keys = keys
            .iter()
            .filter(|k| !k.is_empty())
            .map(|k| {
                let d = digest(k);
                (d, KeyId(Arc::from(format!("key-{}", hex::encode(&d[..8])))))
            })
            .collect();
        Self { keys }
    }

    /// No key configured: every request is accepted (loopback demo mode).
    pub fn is_open(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn check(&self, headers: &HeaderMap) -> Result<KeyId, ApiError> {
        if self.is_open() {
            return Ok(anonymous());
        }
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key.trim())
            .ok_or_else(ApiError::unauthorized)?;
        let d = digest(presented);
        // Every digest is compared, match or not, in constant time; only which configured key
        // matched (not secret: the caller holds it) decides the id returned.
        let mut found = None;
        for (known, id) in &self.keys {
            if bool::from(known.ct_eq(&d)) {
                found = Some(id);
            }
        }
        found.cloned().ok_or_else(ApiError::unauthorized)
    }
}

/// What guards `/v1`: the key check, then the key's request rate.
pub struct Guard {
    pub auth: Auth,
    pub limiter: RateLimiter,
}

impl Guard {
    fn admit(&self, req: &mut Request) -> Result<(), ApiError> {
        let id = self.auth.check(req.headers())?;
        self.limiter
            .check(&id)
            .map_err(|wait| ApiError::rate_limited(wait, "request rate limit for this API key exceeded"))?;
        req.extensions_mut().insert(id);
        Ok(())
    }
}

pub async fn require_key(State(guard): State<Arc<Guard>>, mut req: Request, next: Next) -> Response {
    match guard.admit(&mut req) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// `require_key` for the task endpoints: errors come in the `{code, message, data}` envelope.
pub async fn require_key_task(State(guard): State<Arc<Guard>>, mut req: Request, next: Next) -> Response {
    match guard.admit(&mut req) {
        Ok(()) => next.run(req).await,
        Err(e) => crate::error::TaskError(e).into_response(),
    }
}

/// The admin API's own key (`admin.api_key`); without one configured the admin API does not exist.
pub async fn require_admin(State(admin): State<Arc<Auth>>, req: Request, next: Next) -> Response {
    if admin.is_open() {
        return ApiError::not_found("no such route").into_response();
    }
    match admin.check(req.headers()) {
        Ok(_) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn accepts_any_configured_key_and_nothing_else() {
        let auth = Auth::new(&["alpha".into(), "beta".into()]);
        let a = auth.check(&headers("Bearer alpha")).unwrap();
        let b = auth.check(&headers("bearer beta")).unwrap();
        assert_ne!(a, b);
        assert!(auth.check(&headers("Bearer gamma")).is_err());
        assert!(auth.check(&headers("Basic alpha")).is_err());
        assert!(auth.check(&HeaderMap::new()).is_err());
        assert!(Auth::new(&[]).check(&HeaderMap::new()).is_ok());
    }
}

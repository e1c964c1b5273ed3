//! Bearer-key auth for `/v1/*`. Keys are kept only as SHA-256 digests and compared in constant time
//! (digest against every configured digest, no early exit), so neither timing nor memory leaks a key.
//! The guard in front of `/v1` adds the console keys (`keys.rs`), each key's own limits, and usage.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::keys::{Caller, KeyRing};
use crate::limits::{GuessLimiter, RateLimiter};
use crate::net::ClientAddr;
pub use crate::owner::KeyId;
use crate::usage::UsageBook;

pub struct Auth {
    /// Each key's digest with its precomputed id, so a request allocates nothing.
    keys: Vec<([u8; 32], KeyId)>,
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The key a request presents (`Authorization: Bearer <key>`).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim())
}

impl Auth {
    pub fn new(keys: &[String]) -> Self {
        let keys = keys.iter().filter(|k| !k.is_empty()).map(|k| (digest(k), Self::key_id(k))).collect();
        Self { keys }
    }

    /// The owner id of a config key: a digest prefix, stable across restarts.
    pub fn key_id(key: &str) -> KeyId {
        KeyId(Arc::from(format!("key-{}", hex::encode(&digest(key)[..8]))))
    }

    pub fn anonymous() -> KeyId {
        static ID: std::sync::OnceLock<KeyId> = std::sync::OnceLock::new();
        ID.get_or_init(|| KeyId(Arc::from("anonymous"))).clone()
    }

    /// No key configured: every request is accepted (loopback demo mode).
    pub fn is_open(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn check(&self, headers: &HeaderMap) -> Result<KeyId, ApiError> {
        if self.is_open() {
            return Ok(Self::anonymous());
        }
        let presented = bearer(headers).ok_or_else(ApiError::unauthorized)?;
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

/// What guards `/v1`: the key check, then the key's request rate and model allowlist; afterwards the
/// answer is counted in the key's usage.
pub struct Guard {
    pub keys: Arc<KeyRing>,
    pub limiter: RateLimiter,
    pub usage: Arc<UsageBook>,
    /// With several replicas, the request rate is counted in the shared store (one bucket per key for
    /// all of them).
    pub shared: Option<Arc<crate::shared::Shared>>,
    /// Wrong keys per client address and in all.
    pub guesses: GuessLimiter,
}

/// The answer to a client out of failed key checks.
pub fn too_many_guesses(wait: u64) -> ApiError {
    ApiError::rate_limited(wait, "too many wrong API keys from this address; wait before trying again")
}

impl Guard {
    /// Who is calling, or why not; a refusal after the key is known is still counted for that key.
    async fn admit(&self, req: &mut Request) -> Result<KeyId, (Option<KeyId>, ApiError)> {
        let client = ClientAddr::bucket(ClientAddr::of(req.extensions()));
        let presented = bearer(req.headers()).is_some();
        if presented {
            self.guesses.admit(client).map_err(|wait| (None, too_many_guesses(wait)))?;
        }
        let Caller { owner, policy } = match self.keys.check(req.headers()).await {
            Ok(caller) => {
                if presented {
                    self.guesses.succeeded(client);
                }
                caller
            }
            Err(e) => {
                if presented && e.status == axum::http::StatusCode::UNAUTHORIZED {
                    self.guesses.failed(client);
                }
                return Err((None, e));
            }
        };
        let refuse = |e| (Some(owner.clone()), e);
        let rate = policy.as_ref().and_then(|p| p.requests_per_second);
        let limited = match (&self.shared, self.limiter.rate_for(rate)) {
            (Some(shared), Some((rate, burst))) => {
                shared.rate(&owner, rate, burst).await.map_err(|e| refuse(crate::shared::down(e)))?
            }
            _ => self.limiter.check_with(&owner, rate),
        };
        limited.map_err(|wait| refuse(ApiError::rate_limited(wait, "request rate limit for this API key exceeded")))?;
        if let Some(policy) = &policy
            && let Some(model) = crate::catalog::model_of_route(req.method(), req.uri().path())
            && !crate::keys::allows(policy, model)
        {
            return Err(refuse(ApiError::forbidden(
                "model_not_allowed",
                format!("this API key may not use `{model}`; allowed: {}", policy.models.join(", ")),
            )));
        }
        req.extensions_mut().insert(owner.clone());
        // Routes that learn their model from the body (`/v1/responses`) check it against this.
        if let Some(policy) = policy {
            req.extensions_mut().insert(policy);
        }
        Ok(owner)
    }

    async fn run(&self, mut req: Request, next: Next, shape: fn(ApiError) -> Response) -> Response {
        let (owner, resp) = match self.admit(&mut req).await {
            Ok(owner) => (Some(owner), next.run(req).await),
            Err((owner, e)) => (owner, shape(e)),
        };
        if let Some(owner) = owner {
            self.usage.response(&owner, resp.status().as_u16());
        }
        resp
    }
}

pub async fn require_key(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    guard.run(req, next, IntoResponse::into_response).await
}

/// `require_key` for the task endpoints: errors come in the `{code, message, data}` envelope.
pub async fn require_key_task(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    guard.run(req, next, |e| crate::error::TaskError(e).into_response()).await
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

//! The guard in front of `/v1/*`: the presented key checked against the configured keys
//! (`credentials.rs`) and the console keys (`keys.rs`), then each key's own limits; afterwards the
//! answer is counted in the key's usage.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub use crate::credentials::{Auth, bearer};
use crate::error::ApiError;
use crate::keys::{Caller, KeyRing};
use crate::limits::{GuessLimiter, RateLimiter};
use crate::net::ClientAddr;
pub use crate::owner::KeyId;
use crate::usage::UsageBook;

/// What guards `/v1`: the key check, then the key's request rate and model allowlist; afterwards the
/// answer is counted in the key's usage.
pub struct Guard {
    pub keys: Arc<KeyRing>,
    pub limiter: RateLimiter,
    pub usage: Arc<UsageBook>,
    /// With several replicas, the request rate is counted in the shared store (one bucket per key for
    /// all of them).
    pub shared: Option<Arc<crate::shared::SharedStore>>,
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
        {
            crate::keys::check_model(policy, model).map_err(refuse)?;
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

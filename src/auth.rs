//! The guard in front of `/v1/*`: the presented key checked against the configured keys
//! (`credentials.rs`) and the console keys (`keys.rs`), then each key's own limits; afterwards the
//! answer is counted in the key's usage.

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service, ServiceExt};

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

/// A refusal: the key it names, when the key was known, and why.
type Refused = (Option<KeyId>, ApiError);

/// What `Guard::admit_now` leaves to the shared store.
enum Wait {
    /// A console key this replica has not seen: fetch it, then check it.
    Key { client: IpAddr, presented: bool },
    /// A good key with a request rate counted for all replicas.
    Rate(AskRate),
}

/// A good key whose request rate the shared store counts.
struct AskRate {
    shared: Arc<crate::shared::SharedStore>,
    caller: Caller,
    rate: f64,
    burst: f64,
}

impl Guard {
    /// Who is calling, or why not, when that can be told without waiting: with one replica always;
    /// with several, not for a console key this replica has not seen yet nor for a key with a
    /// request rate (both ask the shared store: `admit_waiting`).
    fn admit_now(&self, req: &mut Request) -> Result<Result<KeyId, Refused>, Wait> {
        let client = ClientAddr::bucket(ClientAddr::of(req.extensions()));
        let presented = bearer(req.headers()).is_some();
        if presented && let Err(wait) = self.guesses.admit(client) {
            return Ok(Err((None, too_many_guesses(wait))));
        }
        let caller = match self.keys.check_now(req.headers()) {
            None => return Err(Wait::Key { client, presented }),
            Some(Ok(caller)) => caller,
            Some(Err(e)) => return Ok(Err(self.refused(client, presented, e))),
        };
        self.limit_now(req, caller, client, presented).map_err(Wait::Rate)
    }

    /// The key is good: counted as such, then its request rate when the shared store need not
    /// be asked (`Err`: it must).
    fn limit_now(
        &self,
        req: &mut Request,
        caller: Caller,
        client: IpAddr,
        presented: bool,
    ) -> Result<Result<KeyId, Refused>, AskRate> {
        if presented {
            self.guesses.succeeded(client);
        }
        let own = caller.policy.as_ref().and_then(|p| p.requests_per_second);
        match (&self.shared, self.limiter.rate_for(own)) {
            (Some(shared), Some((rate, burst))) => Err(AskRate { shared: shared.clone(), caller, rate, burst }),
            _ => {
                let limited = self.limiter.check_with(&caller.owner, own);
                Ok(self.admitted(req, caller, limited))
            }
        }
    }

    /// What `admit_now` left to the shared store (`wait`), done.
    async fn admit_waiting(&self, req: &mut Request, wait: Wait) -> Result<KeyId, Refused> {
        let ask = match wait {
            Wait::Rate(ask) => ask,
            Wait::Key { client, presented } => {
                let caller = self.keys.check(req.headers()).await.map_err(|e| self.refused(client, presented, e))?;
                match self.limit_now(req, caller, client, presented) {
                    Ok(done) => return done,
                    Err(ask) => ask,
                }
            }
        };
        let AskRate { shared, caller, rate, burst } = ask;
        let limited = shared
            .rate(&caller.owner, rate, burst)
            .await
            .map_err(|e| (Some(caller.owner.clone()), crate::shared::down(e)))?;
        self.admitted(req, caller, limited)
    }

    /// A failed key check, counted against the client when it presented a wrong key.
    fn refused(&self, client: IpAddr, presented: bool, e: ApiError) -> Refused {
        if presented && e.status == axum::http::StatusCode::UNAUTHORIZED {
            self.guesses.failed(client);
        }
        (None, e)
    }

    /// The key is good: its request rate (`limited`) and model allowlist decide, and the request
    /// carries who is calling (and the key's policy) to the handler.
    fn admitted(&self, req: &mut Request, caller: Caller, limited: Result<(), u64>) -> Result<KeyId, Refused> {
        let Caller { owner, policy } = caller;
        if let Err(wait) = limited {
            return Err((Some(owner), ApiError::rate_limited(wait, "request rate limit for this API key exceeded")));
        }
        if let Some(policy) = &policy
            && let Some(model) = crate::catalog::model_of_route(req.method(), req.uri().path())
            && let Err(e) = crate::keys::check_model(policy, model)
        {
            return Err((Some(owner), e));
        }
        req.extensions_mut().insert(owner.clone());
        // Routes that learn their model from the body (`/v1/responses`) check it against this.
        if let Some(policy) = policy {
            req.extensions_mut().insert(policy);
        }
        Ok(owner)
    }

    /// Counts the answer in the key's usage.
    fn answered(&self, owner: Option<&KeyId>, resp: &Response) {
        if let Some(owner) = owner {
            self.usage.response(owner, resp.status().as_u16());
        }
    }
}

/// Which body a refusal is written in.
#[derive(Debug, Clone, Copy)]
pub enum Refusal {
    /// The OpenAI error shape (`/v1` OpenAI-style endpoints, files, metrics).
    OpenAi,
    /// The `{code, message, data}` envelope of the task endpoints.
    Task,
}

impl Refusal {
    fn response(self, e: ApiError) -> Response {
        match self {
            Refusal::OpenAi => e.into_response(),
            Refusal::Task => crate::error::TaskError(e).into_response(),
        }
    }
}

/// The `/v1` key guard as a tower layer (`route_layer`): a request that passes goes on to the
/// route without a boxed future or an allocation of the guard's own; only a check that has to
/// ask the shared store (several replicas) is boxed.
#[derive(Clone)]
pub struct RequireKey {
    guard: Arc<Guard>,
    refusal: Refusal,
}

impl RequireKey {
    pub fn new(guard: Arc<Guard>, refusal: Refusal) -> Self {
        Self { guard, refusal }
    }
}

impl<S> Layer<S> for RequireKey {
    type Service = KeyGuard<S>;

    fn layer(&self, inner: S) -> KeyGuard<S> {
        KeyGuard { inner, guard: self.guard.clone(), refusal: self.refusal }
    }
}

#[derive(Clone)]
pub struct KeyGuard<S> {
    inner: S,
    guard: Arc<Guard>,
    refusal: Refusal,
}

impl<S> Service<Request> for KeyGuard<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Guarded<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        match self.guard.admit_now(&mut req) {
            Ok(Ok(owner)) => {
                Guarded::Passed { inner: self.inner.call(req), owner: Some(owner), guard: self.guard.clone() }
            }
            Ok(Err((owner, e))) => {
                let resp = self.refusal.response(e);
                self.guard.answered(owner.as_ref(), &resp);
                Guarded::Refused { resp: Some(resp) }
            }
            Err(wait) => {
                // The clone that was made ready goes into the future; this service keeps a fresh one.
                let fresh = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, fresh);
                let (guard, refusal) = (self.guard.clone(), self.refusal);
                Guarded::Waiting {
                    fut: Box::pin(async move {
                        let (owner, resp) = match guard.admit_waiting(&mut req, wait).await {
                            Ok(owner) => (Some(owner), inner.oneshot(req).await.unwrap_or_else(|e| match e {})),
                            Err((owner, e)) => (owner, refusal.response(e)),
                        };
                        guard.answered(owner.as_ref(), &resp);
                        resp
                    }),
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The guard's answer: the route's (counted when it comes), a refusal, or a check that waits.
    #[project = GuardedProj]
    pub enum Guarded<F> {
        Passed { #[pin] inner: F, owner: Option<KeyId>, guard: Arc<Guard> },
        Refused { resp: Option<Response> },
        Waiting { fut: Pin<Box<dyn Future<Output = Response> + Send>> },
    }
}

impl<F> Future for Guarded<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            GuardedProj::Passed { inner, owner, guard } => {
                let Ok(resp) = std::task::ready!(inner.poll(cx));
                guard.answered(owner.take().as_ref(), &resp);
                Poll::Ready(Ok(resp))
            }
            GuardedProj::Refused { resp } => Poll::Ready(Ok(resp
                .take()
                .unwrap_or_else(|| ApiError::internal("answer polled twice").into_response()))),
            GuardedProj::Waiting { fut } => fut.as_mut().poll(cx).map(Ok),
        }
    }
}

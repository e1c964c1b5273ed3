//! CORS for the public API: which origins may call it from a browser, answered by tower-http's
//! `CorsLayer` for requests that carry an `Origin` (every request a browser makes across origins,
//! and every preflight). A request without one (curl, the SDKs, a job queue) gets only `Vary:
//! Origin`, so a cache keeps the two apart: the three CORS headers it does not read were a fifth of
//! a poll's response and about 3 % of the gateway's time.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{HeaderValue, Request, Response, header};
use tower::{Layer, Service};
use tower_http::cors::{Cors, CorsLayer};

use crate::config::Config;

/// Which web origins may call the public API from a browser. Keys are bearer headers, never ambient
/// credentials a browser adds by itself, so with a key configured any origin is as safe as curl: the
/// page must hold a key. A gateway running open (no key, loopback only) answers no origin unless told
/// to: any page the user visits could otherwise spend their upstream quota through `localhost`.
pub(super) fn cors_layer(cfg: &Config) -> Option<WhenAsked> {
    use axum::http::{HeaderName, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins = match &cfg.server.cors_allowed_origins {
        Some(list) => {
            list.iter().map(|o| o.trim().trim_end_matches('/').to_owned()).filter(|o| !o.is_empty()).collect()
        }
        None if cfg.is_keyed() => vec!["*".to_owned()],
        None => Vec::new(),
    };
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| axum::http::HeaderValue::from_str(o).ok()))
    };
    let names = |list: &[&'static str]| list.iter().map(|n| HeaderName::from_static(n)).collect::<Vec<_>>();
    Some(WhenAsked(Arc::new(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::HEAD, Method::POST, Method::DELETE])
            // Range: a simple `bytes=N-M` needs no preflight, but a suffix range (`bytes=-N`) does, and
            // file links answer both.
            .allow_headers(names(&[
                "authorization",
                "content-type",
                "idempotency-key",
                "last-event-id",
                "range",
                "x-request-id",
            ]))
            .expose_headers(names(&[
                "location",
                "operation-location",
                "retry-after",
                "x-request-id",
                "content-range",
                "accept-ranges",
                "content-length",
            ]))
            .max_age(Duration::from_secs(cfg.server.cors_max_age_secs)),
    )))
}

/// `CorsLayer` for requests with an `Origin`. Shared: axum clones a route's service for every
/// request, and a `CorsLayer` clone copies its lists.
#[derive(Clone)]
pub(super) struct WhenAsked(Arc<CorsLayer>);

impl<S> Layer<S> for WhenAsked {
    type Service = OriginOnly<S>;

    fn layer(&self, inner: S) -> OriginOnly<S> {
        OriginOnly { inner, cors: self.0.clone() }
    }
}

#[derive(Clone)]
pub(super) struct OriginOnly<S> {
    inner: S,
    cors: Arc<CorsLayer>,
}

impl<S, B, RB> Service<Request<B>> for OriginOnly<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone,
    RB: Default,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = Answer<<Cors<S> as Service<Request<B>>>::Future, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if req.headers().contains_key(header::ORIGIN) {
            // The service made ready goes to the CORS wrapper; this one keeps a fresh clone.
            let fresh = self.inner.clone();
            let ready = std::mem::replace(&mut self.inner, fresh);
            Answer::Cors { inner: self.cors.layer(ready).call(req) }
        } else {
            Answer::Plain { inner: self.inner.call(req) }
        }
    }
}

pin_project_lite::pin_project! {
    #[project = AnswerProj]
    pub(super) enum Answer<C, P> {
        Cors { #[pin] inner: C },
        Plain { #[pin] inner: P },
    }
}

impl<C, P, RB, E> Future for Answer<C, P>
where
    C: Future<Output = Result<Response<RB>, E>>,
    P: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AnswerProj::Cors { inner } => inner.poll(cx),
            AnswerProj::Plain { inner } => {
                let mut resp = std::task::ready!(inner.poll(cx))?;
                resp.headers_mut().append(header::VARY, HeaderValue::from_static("origin"));
                Poll::Ready(Ok(resp))
            }
        }
    }
}

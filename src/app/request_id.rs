//! The outermost layer: every request leaves with an `x-request-id` (the client's when it is short
//! and plain, else a fresh UUID) that the trace span carries and the response echoes, and its
//! credentials are marked sensitive so no debug output prints them. One pass over the headers,
//! where four tower-http layers each looked the id up again (a poll's profile: 8 % of the gateway).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, Response, header};
use tower::{Layer, Service};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest `x-request-id` kept from a client; a longer or odd one is replaced by our own.
const MAX_REQUEST_ID: usize = 128;

#[derive(Clone, Copy, Default)]
pub struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestId<S>;

    fn layer(&self, inner: S) -> RequestId<S> {
        RequestId { inner }
    }
}

#[derive(Clone)]
pub struct RequestId<S> {
    inner: S,
}

impl<S, B, RB> Service<Request<B>> for RequestId<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = Echo<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let headers = req.headers_mut();
        let id = match kept(headers) {
            Some(id) => id,
            None => {
                let id = fresh();
                headers.insert(REQUEST_ID, id.clone());
                id
            }
        };
        for name in [header::AUTHORIZATION, header::COOKIE] {
            if let header::Entry::Occupied(mut e) = headers.entry(name) {
                e.iter_mut().for_each(|v| v.set_sensitive(true));
            }
        }
        Echo { inner: self.inner.call(req), id: Some(id) }
    }
}

/// The client's id when there is exactly one and it is fit to echo and log; an unfit one is
/// removed. A client's id goes into every log line of the request: a long or odd one could fill
/// the logs or forge their lines.
fn kept(headers: &mut HeaderMap) -> Option<HeaderValue> {
    let mut all = headers.get_all(&REQUEST_ID).iter();
    let first = all.next()?;
    let b = first.as_bytes();
    let fit = all.next().is_none()
        && !b.is_empty()
        && b.len() <= MAX_REQUEST_ID
        && b.iter().all(|c| c.is_ascii_alphanumeric() || b"-_.:/+=@".contains(c));
    if fit {
        return Some(first.clone());
    }
    headers.remove(&REQUEST_ID);
    None
}

/// A fresh UUID v4, formatted without a `String` in between.
fn fresh() -> HeaderValue {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

pin_project_lite::pin_project! {
    /// The response, with the request's id unless the handler set one.
    pub struct Echo<F> {
        #[pin]
        inner: F,
        id: Option<HeaderValue>,
    }
}

impl<F, RB, E> Future for Echo<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut resp = std::task::ready!(this.inner.poll(cx))?;
        if let Some(id) = this.id.take()
            && !resp.headers().contains_key(&REQUEST_ID)
        {
            resp.headers_mut().insert(REQUEST_ID, id);
        }
        Poll::Ready(Ok(resp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_short_id_is_kept_and_any_other_replaced() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_static("trace-42.a:b"));
        assert_eq!(kept(&mut h).unwrap(), "trace-42.a:b");
        for odd in ["line\tbreak", "", "a b"] {
            let mut h = HeaderMap::new();
            h.insert(REQUEST_ID, HeaderValue::from_str(odd).unwrap());
            assert!(kept(&mut h).is_none(), "{odd:?}");
            assert!(!h.contains_key(&REQUEST_ID), "an unfit id is removed");
        }
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_str(&"x".repeat(MAX_REQUEST_ID + 1)).unwrap());
        assert!(kept(&mut h).is_none());
        let mut h = HeaderMap::new();
        h.append(REQUEST_ID, HeaderValue::from_static("a"));
        h.append(REQUEST_ID, HeaderValue::from_static("b"));
        assert!(kept(&mut h).is_none(), "two ids: neither is kept");
        let id = fresh();
        assert_eq!(id.len(), 36);
        assert!(uuid::Uuid::parse_str(id.to_str().unwrap()).is_ok());
    }
}

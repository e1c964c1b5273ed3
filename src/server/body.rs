//! What a request body may cost while it arrives: a client must keep sending (a gap longer than
//! `body_read_timeout` ends the request) at an average of at least `body_min_bytes_per_sec` once that
//! first period is over, and every byte read counts against one budget of body bytes held by the
//! whole server (`max_body_bytes_in_flight`), so a crowd of large bodies cannot take the memory. A
//! body that breaks a rule ends with a [`BodyError`], which the extractors answer 408 or 503.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// The rules for request bodies, shared by every connection.
#[derive(Debug)]
pub struct BodyRules {
    pub read_timeout: Duration,
    pub min_bytes_per_sec: u64,
    /// Bytes of request bodies the server holds at once (permits are bytes).
    pub budget: Arc<Semaphore>,
}

/// Why a body was cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the request body arrived too slowly")]
    TooSlow,
    #[error("the server is reading too many request bodies at once; retry shortly")]
    Busy,
}

impl BodyError {
    /// The `BodyError` behind an extractor's error, if one is there (it arrives boxed in axum's
    /// error, inside the rejection).
    pub fn find(mut err: &(dyn std::error::Error + 'static)) -> Option<Self> {
        loop {
            if let Some(e) = err.downcast_ref::<Self>() {
                return Some(*e);
            }
            err = err.source()?;
        }
    }
}

/// The budget bytes one request holds: released when the request is done with them (the body is
/// gone and its handler has answered), not when the last byte arrived.
#[derive(Default)]
pub struct Ticket {
    held: Mutex<Option<OwnedSemaphorePermit>>,
}

impl Ticket {
    fn take(&self, budget: &Arc<Semaphore>, n: usize) -> Result<(), BodyError> {
        if n == 0 {
            return Ok(());
        }
        let n = u32::try_from(n).map_err(|_| BodyError::Busy)?;
        let permit = budget.clone().try_acquire_many_owned(n).map_err(|_| BodyError::Busy)?;
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        match held.as_mut() {
            Some(p) => p.merge(permit),
            None => *held = Some(permit),
        }
        Ok(())
    }
}

/// A request body under [`BodyRules`].
pub struct GuardedBody<B> {
    inner: B,
    rules: Arc<BodyRules>,
    ticket: Arc<Ticket>,
    started: Option<Instant>,
    received: u64,
    /// Made the first time the body has to wait: a request without a body never needs a timer.
    deadline: Option<Pin<Box<Sleep>>>,
    next: Option<Instant>,
    failed: bool,
}

impl<B> GuardedBody<B> {
    pub fn new(inner: B, rules: Arc<BodyRules>, ticket: Arc<Ticket>) -> Self {
        Self { inner, rules, ticket, started: None, received: 0, deadline: None, next: None, failed: false }
    }

    /// The next moment the body is late: a gap of `read_timeout` since the last piece, or the point
    /// where what arrived so far falls below the minimum rate (which starts counting after the first
    /// `read_timeout`).
    fn next_deadline(&self, now: Instant) -> Instant {
        let gap = now + self.rules.read_timeout;
        let (Some(started), rate) = (self.started, self.rules.min_bytes_per_sec) else { return gap };
        if rate == 0 {
            return gap;
        }
        let earned = Duration::from_secs_f64(self.received as f64 / rate as f64);
        gap.min(started + self.rules.read_timeout + earned)
    }

    fn fail(&mut self, e: BodyError) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.failed = true;
        Poll::Ready(Some(Err(axum::Error::new(e))))
    }
}

impl<B> Body for GuardedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.failed {
            return Poll::Ready(None);
        }
        let now = Instant::now();
        if self.started.is_none() {
            self.started = Some(now);
            self.next = Some(self.next_deadline(now));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len();
                    if let Err(e) = self.ticket.take(&self.rules.budget, n) {
                        return self.fail(e);
                    }
                    self.received += n as u64;
                    let next = self.next_deadline(now);
                    if next <= now {
                        return self.fail(BodyError::TooSlow);
                    }
                    self.next = Some(next);
                    if let Some(d) = self.deadline.as_mut() {
                        d.as_mut().reset(next);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(axum::Error::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let at = self.next.unwrap_or(now + self.rules.read_timeout);
                let deadline = self.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => self.fail(BodyError::TooSlow),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn rules(budget: usize) -> Arc<BodyRules> {
        Arc::new(BodyRules {
            read_timeout: Duration::from_millis(200),
            min_bytes_per_sec: 1000,
            budget: Arc::new(Semaphore::new(budget)),
        })
    }

    type Chunks = StreamBody<futures_util::stream::BoxStream<'static, Result<Frame<Bytes>, std::io::Error>>>;

    /// A body that sends `chunks` of `size` bytes, `every` apart.
    fn trickle(chunks: usize, size: usize, every: Duration) -> Chunks {
        use futures_util::StreamExt;
        let s = futures_util::stream::iter(0..chunks)
            .then(move |_| async move {
                tokio::time::sleep(every).await;
                Ok(Frame::data(Bytes::from(vec![b'x'; size])))
            })
            .boxed();
        StreamBody::new(s)
    }

    async fn read<B>(body: GuardedBody<B>) -> Result<usize, Option<BodyError>>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        match body.collect().await {
            Ok(c) => Ok(c.to_bytes().len()),
            Err(e) => Err(BodyError::find(&e)),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_body_passes_and_a_stalled_one_is_cut() {
        let r = rules(1 << 20);
        let ok = GuardedBody::new(trickle(10, 500, Duration::from_millis(100)), r.clone(), Arc::default());
        assert_eq!(read(ok).await, Ok(5000));
        let stalled = GuardedBody::new(trickle(2, 500, Duration::from_millis(300)), r.clone(), Arc::default());
        assert_eq!(read(stalled).await, Err(Some(BodyError::TooSlow)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_under_the_minimum_rate_is_cut_though_no_gap_is_long() {
        // 10 bytes every 150 ms is 67 B/s against a minimum of 1000 B/s; each gap is under 200 ms.
        let body = GuardedBody::new(trickle(50, 10, Duration::from_millis(150)), rules(1 << 20), Arc::default());
        assert_eq!(read(body).await, Err(Some(BodyError::TooSlow)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_is_shared_and_given_back_when_the_ticket_goes() {
        let r = rules(6000);
        let first = Arc::new(Ticket::default());
        let a = GuardedBody::new(trickle(4, 1000, Duration::from_millis(10)), r.clone(), first.clone());
        assert_eq!(read(a).await, Ok(4000));
        let b = GuardedBody::new(trickle(4, 1000, Duration::from_millis(10)), r.clone(), Arc::default());
        assert_eq!(read(b).await, Err(Some(BodyError::Busy)), "4000 held + 4000 > 6000");
        drop(first);
        assert_eq!(r.budget.available_permits(), 6000, "a dropped ticket gives its bytes back");
    }
}

//! One connection: the service that wraps each request (client address, body rules, in-flight
//! count), the idle watchdog, and a socket with a send timeout.

use std::future::Future as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body::Frame;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use crate::net::ClientAddr;
use crate::server::body::{GuardedBody, Ticket};
use crate::server::{App, ServeOptions, Shutdown};

/// What a connection is doing, for the idle watchdog.
struct Activity {
    born: Instant,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    /// Milliseconds after `born` of the last request start or end.
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            born: Instant::now(),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        self.last_ms.store(self.born.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.touch();
        InFlight(self.clone())
    }

    /// Nothing in flight for longer than the connection may idle: a fresh connection gets
    /// `header_read_timeout` to send its first request, a used one `idle_timeout` between requests.
    fn expired(&self, opts: &ServeOptions) -> bool {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return false;
        }
        let limit =
            if self.requests.load(Ordering::Relaxed) == 0 { opts.header_read_timeout } else { opts.idle_timeout };
        let idle_ms = (self.born.elapsed().as_millis() as u64).saturating_sub(self.last_ms.load(Ordering::Relaxed));
        Duration::from_millis(idle_ms) >= limit
    }
}

/// A request in flight on a connection; ends when its response body is done or dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.touch();
    }
}

/// A response body that keeps its request counted as in flight until it has been sent.
struct TrackedBody {
    inner: Body,
    _request: InFlight,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

pub(super) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    app: impl App,
    opts: Arc<ServeOptions>,
    signals: Shutdown,
) {
    let _open = Open::count(&opts.metrics);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(SendTimeout::new(stream, opts.send_timeout));
    let watched = activity.clone();
    let service_opts = opts.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let request = watched.begin();
        // A request without a body (most GETs) needs no body rules and holds no budget.
        let ticket = (!http_body::Body::is_end_stream(req.body())).then(|| Arc::new(Ticket::default()));
        let mut req = match &ticket {
            Some(t) => {
                let (rules, held) = (service_opts.body.clone(), t.clone());
                req.map(|b| Body::new(GuardedBody::new(b, rules, held)))
            }
            None => req.map(Body::new),
        };
        let client = service_opts.trusted_proxies.client(peer.ip(), req.headers());
        req.extensions_mut().insert(ClientAddr(client));
        let app = app.clone();
        async move {
            let resp = app.oneshot(req).await;
            // The handler has answered: the body bytes it held are free again.
            drop(ticket);
            resp.map(|r| r.map(|inner| TrackedBody { inner, _request: request }))
        }
    });
    let conn = opts.builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let tick =
        (opts.header_read_timeout.min(opts.idle_timeout) / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
    let mut closing: Option<Instant> = None;
    loop {
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    if let Some(reason) = limit_hit(&*e) {
                        opts.metrics.closed(reason);
                    }
                    tracing::debug!(%peer, "connection ended: {e}");
                }
                return;
            }
            _ = signals.stop.cancelled(), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now());
            }
            _ = signals.kill.cancelled() => return,
            _ = tokio::time::sleep(tick) => match closing {
                None if activity.expired(&opts) => {
                    opts.metrics.closed("idle");
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Instant::now());
                }
                // Asked to close while idle and still open: the client ignores it (an HTTP/2 peer
                // that never finishes its handshake or never acknowledges GOAWAY); drop it.
                Some(since)
                    if !signals.stop.is_cancelled()
                        && since.elapsed() > opts.header_read_timeout
                        && activity.in_flight.load(Ordering::Acquire) == 0 =>
                {
                    opts.metrics.closed("ignored_close");
                    return;
                }
                _ => {}
            },
        }
    }
}

/// Counts a connection as open while it lives.
struct Open<'a>(&'a crate::metrics::Metrics);

impl<'a> Open<'a> {
    fn count(metrics: &'a crate::metrics::Metrics) -> Self {
        metrics.connections.fetch_add(1, Ordering::Relaxed);
        Self(metrics)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Which of the server's limits ended a connection, if one did.
fn limit_hit(mut e: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    loop {
        if let Some(h) = e.downcast_ref::<hyper::Error>()
            && h.is_timeout()
        {
            return Some("header_timeout");
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return Some("send_timeout");
        }
        e = e.source()?;
    }
}

/// A socket whose writes fail once they have made no progress for `timeout`: a client that stops
/// reading its answer does not hold the connection (and the answer's buffers) forever.
struct SendTimeout {
    inner: TcpStream,
    timeout: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl SendTimeout {
    fn new(inner: TcpStream, timeout: Duration) -> Self {
        Self { inner, timeout, stalled: None }
    }

    fn watch<T>(&mut self, cx: &mut Context<'_>, r: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        match r {
            Poll::Pending => {
                let timeout = self.timeout;
                let stalled = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match stalled.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client stopped reading the response",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
            done => {
                self.stalled = None;
                done
            }
        }
    }
}

impl AsyncRead for SendTimeout {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendTimeout {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

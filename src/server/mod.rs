//! The accept loop and each connection's life, with the limits a hostile network needs (axum's own
//! `serve` has none): a cap on open connections (at the cap the loop stops accepting, and `accept`
//! errors such as EMFILE back off instead of spinning), a deadline for a request's head (which on
//! HTTP/1 is also how long an idle keep-alive connection may wait), an idle timeout for connections
//! with nothing in flight (HTTP/2, and a fresh connection that never speaks), a send timeout for a
//! client that stops reading, header size limits, HTTP/2 keep-alive pings and a stream cap, and the
//! request-body rules of `body.rs`.

pub mod accept;
pub mod body;
pub(crate) mod conn;

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioTimer;
use hyper_util::server::conn::auto;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use body::BodyRules;

/// What the server serves: the app's service, cloned for every request (cheaply: reference counts).
pub trait App:
    tower::Service<
        axum::extract::Request,
        Response = axum::response::Response,
        Error = std::convert::Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<T> App for T where
    T: tower::Service<
            axum::extract::Request,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

use crate::metrics::Metrics;

/// The server's limits (`[server]` in the config, which documents each; `app` converts).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub send_timeout: Duration,
    pub body_read_timeout: Duration,
    pub body_min_bytes_per_sec: u64,
    pub max_body_bytes_in_flight: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub http2_max_concurrent_streams: u32,
    pub http2_keepalive_interval: Duration,
    pub http2_keepalive_timeout: Duration,
    pub trusted_proxies: Vec<String>,
}

/// Everything a connection needs to know, built once from the limits.
pub struct ServeOptions {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub send_timeout: Duration,
    pub body: Arc<BodyRules>,
    pub trusted_proxies: Arc<crate::net::TrustedProxies>,
    pub metrics: Arc<Metrics>,
    pub(crate) builder: auto::Builder<TrackedExecutor>,
}

impl ServeOptions {
    pub fn new(limits: &Limits, metrics: Arc<Metrics>, streams: &TaskTracker) -> Result<Self, String> {
        let mut builder = auto::Builder::new(TrackedExecutor(streams.clone()));
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            // hyper's floor for its read buffer is 8 KiB.
            .max_buf_size(limits.max_header_bytes.max(8192))
            .max_headers(limits.max_headers.max(16));
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(limits.http2_max_concurrent_streams.max(1))
            .keep_alive_interval(Some(limits.http2_keepalive_interval))
            .keep_alive_timeout(limits.http2_keepalive_timeout)
            // What one connection may have the server buffer before the handlers read it.
            .initial_stream_window_size(256 * 1024)
            .initial_connection_window_size(1024 * 1024)
            .max_send_buf_size(256 * 1024);
        Ok(Self {
            max_connections: limits.max_connections.max(1),
            header_read_timeout: limits.header_read_timeout,
            idle_timeout: limits.idle_timeout,
            send_timeout: limits.send_timeout,
            body: Arc::new(BodyRules {
                read_timeout: limits.body_read_timeout,
                min_bytes_per_sec: limits.body_min_bytes_per_sec,
                budget: Arc::new(Semaphore::new(limits.max_body_bytes_in_flight.min(Semaphore::MAX_PERMITS))),
            }),
            trusted_proxies: Arc::new(crate::net::TrustedProxies::parse(&limits.trusted_proxies)?),
            metrics,
            builder,
        })
    }
}

/// Raises this process's soft limit on open files to its hard limit (as Go's runtime does at start):
/// the default soft limit (often 1024) is far below `max_connections`, and running out of descriptors
/// is what turns a crowd of idle sockets into refused clients. Returns the soft limit now in force.
#[cfg(unix)]
pub fn raise_open_file_limit() -> Option<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    // `rlim_t` is u64 on Linux, not on every unix.
    #[allow(clippy::unnecessary_cast)]
    Some(lim.rlim_cur as u64)
}

#[cfg(not(unix))]
pub fn raise_open_file_limit() -> Option<u64> {
    None
}

/// Descriptors kept free of client connections: the journal, media files, upstream and Redis
/// connections, callbacks.
pub const RESERVED_FILES: u64 = 512;

/// hyper runs each HTTP/2 stream as a task of its own: on the tracker, so shutdown waits for them.
#[derive(Clone)]
pub(crate) struct TrackedExecutor(TaskTracker);

impl<F> hyper::rt::Executor<F> for TrackedExecutor
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        self.0.spawn(fut);
    }
}

/// What the accept loop and the connections watch to end (apart from `tasks::Signals`, which the
/// task queue watches).
#[derive(Clone)]
pub struct Shutdown {
    /// Stop accepting; ask every connection to close once its requests are answered.
    pub stop: CancellationToken,
    /// The grace period is over: drop the connections still open.
    pub kill: CancellationToken,
}

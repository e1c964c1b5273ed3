//! Composition: the state built from the configuration (`build`), the router (`router`), the loops a
//! running gateway keeps (`duties`), and the server `main` and the tests start.

mod build;
mod cors;
mod duties;
mod request_id;
mod router;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::api::state::AppState;
use crate::config::Config;

/// `[server]` as the server module takes it.
fn server_limits(cfg: &crate::config::ServerConfig) -> crate::server::Limits {
    use crate::config::secs;
    crate::server::Limits {
        max_connections: cfg.max_connections,
        header_read_timeout: secs(cfg.header_read_timeout_secs),
        idle_timeout: secs(cfg.idle_timeout_secs),
        send_timeout: secs(cfg.send_timeout_secs),
        body_read_timeout: secs(cfg.body_read_timeout_secs),
        body_min_bytes_per_sec: cfg.body_min_bytes_per_sec,
        // One body at the JSON limit always fits.
        max_body_bytes_in_flight: cfg.max_body_bytes_in_flight.max(cfg.max_json_body_bytes),
        max_header_bytes: cfg.max_header_bytes,
        max_headers: cfg.max_headers,
        http2_max_concurrent_streams: cfg.http2_max_concurrent_streams,
        http2_keepalive_interval: secs(cfg.http2_keepalive_interval_secs),
        http2_keepalive_timeout: secs(cfg.http2_keepalive_timeout_secs),
        trusted_proxies: cfg.trusted_proxies.clone(),
    }
}

/// A gateway serving on a socket: what `main` runs and what tests start on an ephemeral port.
pub struct Server {
    pub addr: SocketAddr,
    pub state: AppState,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    pub fn start(cfg: Config, listener: TcpListener) -> Result<Self, String> {
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let state = AppState::new(cfg)?;
        let shutdown = state.shutdown.clone();
        let app = state.app();
        let tracker = state.tracker.clone();
        let grace = Duration::from_secs(state.cfg.server.shutdown_grace_secs);
        let abort = state.abort.clone();
        let journal = state.tasks.journal().cloned();
        let usage_book = state.guard.usage.clone();
        // Connections and their HTTP/2 streams, apart from the app's background tasks: those must
        // outlive the last request (a task accepted just before shutdown still runs).
        let conns = TaskTracker::new();
        let opts = Arc::new(crate::server::ServeOptions::new(
            &server_limits(&state.cfg.server),
            state.metrics.clone(),
            &conns,
        )?);
        let signals = crate::server::Shutdown { stop: shutdown.clone(), kill: CancellationToken::new() };
        let task = tokio::spawn(async move {
            crate::server::accept::accept_loop(listener, app, opts, signals.clone(), conns.clone()).await;
            // From here on: no new connections; one grace period for requests and running tasks.
            let deadline = tokio::time::Instant::now() + grace;
            conns.close();
            if tokio::time::timeout_at(deadline, conns.wait()).await.is_err() {
                tracing::warn!("grace period over: closing connections still open");
                signals.kill.cancel();
                conns.wait().await;
            }
            tracker.close();
            if tokio::time::timeout_at(deadline, tracker.wait()).await.is_err() {
                tracing::warn!("grace period over: stopping running tasks (they end `interrupted`)");
                abort.cancel();
                tracker.wait().await;
            }
            if let Err(e) = usage_book.flush_now().await {
                tracing::error!("usage not saved at shutdown: {e}");
            }
            if let Some(j) = journal {
                // Joining the writer thread blocks until its last batch is on disk.
                let _ = tokio::task::spawn_blocking(move || j.close()).await;
            }
            Ok(())
        });
        Ok(Self { addr, state, shutdown, task })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stop accepting, finish in-flight requests and tracked tasks, then return.
    pub async fn stop(self) -> std::io::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }

    pub async fn wait(self) -> std::io::Result<()> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

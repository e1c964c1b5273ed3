//! The accept loop: a slot per connection before `accept` (at `max_connections` the loop waits),
//! `accept` errors backed off, and each connection handed to `conn`.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::server::{App, ServeOptions, Shutdown};

/// Accepts until `signals.stop`; each connection runs on `conns`.
pub async fn accept_loop(
    listener: TcpListener,
    app: impl App,
    opts: Arc<ServeOptions>,
    signals: Shutdown,
    conns: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(opts.max_connections));
    let mut backoff = Duration::from_millis(5);
    let mut warned_full: Option<Instant> = None;
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if warned_full.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(max = opts.max_connections, "connection limit reached: not accepting for now");
                    warned_full = Some(Instant::now());
                }
                tokio::select! {
                    _ = signals.stop.cancelled() => return,
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => return,
                    },
                }
            }
        };
        let (stream, peer) = tokio::select! {
            _ = signals.stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => {
                    backoff = Duration::from_millis(5);
                    pair
                }
                Err(e) => {
                    // Out of descriptors (or memory): wait for connections to close instead of
                    // spinning on the same error.
                    if !is_connection_error(&e) {
                        tracing::warn!(retry_in_ms = backoff.as_millis() as u64, "accept error: {e}");
                        tokio::select! {
                            _ = signals.stop.cancelled() => return,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                    continue;
                }
            },
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        let (app, opts, signals) = (app.clone(), opts.clone(), signals.clone());
        conns.spawn(async move {
            crate::server::conn::serve(stream, peer, app, opts, signals).await;
            drop(slot);
        });
    }
}

/// Errors of one connection that are not the listener's problem.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}

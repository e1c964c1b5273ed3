//! grok2api: an OpenAI-compatible HTTP gateway in front of Grok Imagine (image, edit, video).
//! `main.rs` wires these modules into the binary; integration tests drive them over loopback.

pub mod api;
pub mod app;
pub mod auth;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod credentials;
pub mod error;
pub mod jobs;
pub mod keys;
pub mod limits;
pub mod media;
pub mod metrics;
pub mod net;
pub mod owner;
pub mod redb_file;
pub mod runner;
pub mod secret;
pub mod server;
pub mod shared;
pub mod sim;
pub mod state_db;
pub mod tasks;
pub mod upstream;
pub mod usage;

/// A concurrent map read on every request (tasks, key state, usage rows, metrics): dashmap with
/// foldhash instead of SipHash. Keys are the gateway's own random ids, key ids and route templates,
/// and foldhash is seeded per map, so the cheaper hash costs no resistance that matters here.
pub type HotMap<K, V> = dashmap::DashMap<K, V, foldhash::fast::RandomState>;

/// rustls needs one process-wide crypto provider; call before any TLS client is built.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A listener whose connections send small writes (SSE events, WebSocket frames) at once instead of
/// waiting out Nagle's algorithm.
pub fn nodelay(listener: tokio::net::TcpListener) -> impl axum::serve::Listener<Addr = std::net::SocketAddr> {
    use axum::serve::ListenerExt;
    listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
    })
}

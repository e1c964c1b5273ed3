//! grok2api: an OpenAI-compatible HTTP gateway in front of Grok Imagine (image, edit, video).
//! `main.rs` wires these modules into the binary; integration tests drive them over loopback.

pub mod api;
pub mod app;
pub mod auth;
pub mod config;
pub mod error;
pub mod jobs;
pub mod media;
pub mod sim;
pub mod upstream;

/// rustls needs one process-wide crypto provider; call before any TLS client is built.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

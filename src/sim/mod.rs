//! A simulated grok.com: the Imagine WebSocket, uploads, the NDJSON conversation stream, cookie-guarded
//! assets and quota endpoints, on one loopback port. It writes its frames by hand (never with the
//! client's wire types) so a client bug cannot hide behind a shared struct.
//!
//! Faults are chosen per request by tokens in the prompt (see `faults.rs`) and per account by quota.

// It imitates grok.com and the xAI API, whose rejections are theirs: axum's extractors are fine here
// (clippy.toml keeps them out of the gateway's own routes).
#![allow(clippy::disallowed_types)]

mod assets;
pub mod cloudflare;
mod conversation;
mod faults;
pub(crate) mod frontend;
mod imagine;
pub mod ja4;
mod posts;
pub mod render;
pub(crate) mod state;
pub mod tls;
mod video;
mod xai;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use dashmap::DashMap;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::nodelay;

pub use faults::Faults;
use state::{AssetStore, Build, Sim, SimState};
pub use state::{SimConfig, SimStats};
pub use video::canned_clip as video_canned_clip;

fn router(sim: Sim) -> Router {
    Router::new()
        .route("/", get(assets::index_page))
        .route("/_next/static/chunks/{file}", get(frontend::chunk))
        .route("/ws/imagine/listen", any(imagine::upgrade))
        .route("/http/upload-file-v2/direct", post(conversation::upload))
        .route("/rest/app-chat/conversations/new", post(conversation::new_conversation))
        .route("/rest/rate-limits", post(assets::rate_limits))
        .route("/rest/media/imagine/quota_info", post(assets::quota_info))
        .route("/rest/media/post/get", post(posts::get))
        .route("/users/{*path}", get(assets::user_asset))
        .route("/imagine-public/images/{file}", get(assets::public_image))
        .layer(axum::middleware::from_fn_with_state(sim.clone(), cloudflare::gate))
        // Stand-ins for other hosts (example.com images, FlareSolverr), not behind grok.com's Cloudflare.
        .route("/example-assets/{*path}", get(assets::example_image))
        .route("/flaresolverr/v1", post(cloudflare::flaresolverr))
        .route("/sim-signer/sign", post(assets::signer))
        .route("/sim/stats", get(stats))
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024))
        .with_state(sim)
}

/// What the simulated grok.com counted, for tests that run it as a separate process.
async fn stats(axum::extract::State(sim): axum::extract::State<Sim>) -> Response {
    let count = |c: &AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    axum::Json(serde_json::json!({
        "video_starts": count(&sim.stats.video_starts),
        "uploads": count(&sim.stats.uploads),
        "challenged": count(&sim.stats.challenged),
    }))
    .into_response()
}

/// A running simulator.
pub struct SimHandle {
    pub addr: SocketAddr,
    /// PEM of the CA that signed the simulator's certificate (`tls` only).
    pub ca_pem: Option<String>,
    sim: Sim,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl SimHandle {
    /// `https://127.0.0.1:PORT` with `tls`, else `http://...`.
    pub fn base_url(&self) -> String {
        self.sim.base_url.clone()
    }

    /// The WebSocket origin matching `base_url`.
    pub fn ws_url(&self) -> String {
        self.base_url().replacen("http", "ws", 1)
    }

    pub fn challenged(&self) -> u64 {
        self.sim.stats.challenged.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn cf_bm_replayed(&self) -> u64 {
        self.sim.stats.cf_bm_replayed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// (path, JA4, User-Agent) of every request the TLS gate let through.
    pub fn seen(&self) -> Vec<(String, String, String)> {
        self.sim.stats.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A new frontend build: the page's seed and curves, the generator's seed positions and the
    /// chunks' names change; signatures minted for the old build are refused.
    pub fn rotate_statsig_seed(&self) {
        let build = Arc::new(Build::generate());
        tracing::debug!(positions = ?build.positions, "simulator: new frontend build");
        *self.sim.frontend.lock().unwrap_or_else(|p| p.into_inner()) = build;
    }

    /// (page loads, script chunk loads, REST calls refused for their `x-statsig-id`).
    pub fn statsig_traffic(&self) -> (u64, u64, u64) {
        let s = &self.sim.stats;
        let get = |c: &AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        (get(&s.page_loads), get(&s.chunk_loads), get(&s.statsig_refused))
    }

    pub fn video_starts(&self) -> u64 {
        self.sim.stats.video_starts.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn uploads(&self) -> u64 {
        self.sim.stats.uploads.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn solver_requests(&self) -> Vec<serde_json::Value> {
        self.sim.stats.solver_requests.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

/// Serves the simulator on `listener` until the handle is stopped (or dropped along with the runtime).
pub fn spawn(cfg: SimConfig, listener: TcpListener) -> std::io::Result<SimHandle> {
    let addr = listener.local_addr()?;
    let tls = if cfg.tls { Some(tls::SimTls::generate().map_err(std::io::Error::other)?) } else { None };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let sim = Arc::new(SimState {
        cfg,
        base_url: format!("{scheme}://{addr}"),
        quota: DashMap::new(),
        assets: AssetStore::new(4096),
        public_images: AssetStore::new(4096),
        uploads: DashMap::new(),
        posts: DashMap::new(),
        xai_videos: DashMap::new(),
        stats: SimStats::default(),
        clearance_secret: uuid::Uuid::new_v4().to_string(),
        frontend: Mutex::new(Arc::new(Build::generate())),
    });
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let app = match sim.cfg.flavor {
        crate::config::UpstreamKind::GrokWeb => router(sim.clone()),
        crate::config::UpstreamKind::Xai => xai::router(sim.clone()),
    };
    let ca_pem = tls.as_ref().map(|t| t.ca_pem.clone());
    let task = match tls {
        Some(tls) => {
            let listener = tls::listen(&tls, listener, shutdown.clone())?;
            let make = app.into_make_service_with_connect_info::<tls::ConnInfo>();
            tokio::spawn(async move {
                let serve = axum::serve(listener, make).with_graceful_shutdown(async move { stop.cancelled().await });
                if let Err(e) = serve.await {
                    tracing::error!("simulator stopped: {e}");
                }
            })
        }
        None => tokio::spawn(async move {
            let serve =
                axum::serve(nodelay(listener), app).with_graceful_shutdown(async move { stop.cancelled().await });
            if let Err(e) = serve.await {
                tracing::error!("simulator stopped: {e}");
            }
        }),
    };
    Ok(SimHandle { addr, ca_pem, sim, shutdown, task })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    use crate::sim::state::{Signature, statsig_valid, statsig_verdict};

    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
    }

    #[test]
    fn a_signature_must_hash_the_builds_animation_fingerprint() {
        use crate::upstream::grok_web::statsig::mint;
        let build = Build::generate();
        let path = "/rest/media/imagine/quota_info";
        let valid = |sig: &str| statsig_valid(sig, &build.seed, &build.fingerprint, "POST", path);
        // The client's minting with the right fingerprint, and the simulated signer's.
        assert!(valid(&mint(&build.seed, "POST", path, now(), 7, &build.fingerprint)));
        assert!(valid(&assets::sign(&build, "POST", path, now())));
        // Without the fingerprint (what `local` used to send), with another build's, or stale: refused.
        assert!(!valid(&mint(&build.seed, "POST", path, now(), 7, "")));
        let other = Build::generate();
        assert!(!valid(&mint(&build.seed, "POST", path, now(), 7, &other.fingerprint)));
        assert!(!valid(&mint(&build.seed, "POST", path, now() - 3600, 7, &build.fingerprint)));
        assert!(!valid(&mint(&build.seed, "POST", "/rest/rate-limits", now(), 7, &build.fingerprint)));
        // Refused as stale (the page is out of date) when the shape is the web app's; as anti-bot
        // when it is not.
        let verdict = |sig: &str| statsig_verdict(sig, &build.seed, &build.fingerprint, "POST", path);
        assert!(matches!(verdict(&mint(&build.seed, "POST", path, now(), 7, &other.fingerprint)), Signature::Stale));
        assert!(matches!(verdict(&mint(&[1u8; 48], "POST", path, now(), 7, &build.fingerprint)), Signature::Stale));
        assert!(matches!(verdict("not-a-signature"), Signature::Malformed));
        assert!(matches!(verdict(&base64::engine::general_purpose::STANDARD.encode([7u8; 70])), Signature::Malformed));
    }
}

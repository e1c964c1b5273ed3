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
pub mod tls;
mod video;
mod xai;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use bytes::Bytes;
use dashmap::DashMap;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::nodelay;

pub use faults::Faults;

#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Accepted sso tokens; empty = any non-empty token.
    pub tokens: Vec<String>,
    /// Remaining generations per token; tokens not listed get `default_quota`.
    pub quotas: HashMap<String, u32>,
    pub default_quota: u32,
    /// Products (`image`, `imageEdit`, `video`, `video720p`) a token has used up, whatever its quota.
    pub exhausted_products: HashMap<String, Vec<String>>,
    /// Pause between streamed frames.
    pub frame_delay: Duration,
    /// Longer side of generated images, in pixels.
    pub image_long_side: u32,
    /// Which upstream to speak: grok.com's web protocol, or the official xAI API.
    pub flavor: crate::config::UpstreamKind,
    /// Serve HTTPS/WSS with a generated certificate and check every client's fingerprint the way
    /// Cloudflare does (`cloudflare.rs`).
    pub tls: bool,
    /// Challenge every request without a `cf_clearance` from the simulated FlareSolverr.
    pub require_clearance: bool,
    /// The simulated FlareSolverr fails to solve.
    pub solver_fails: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            tokens: Vec::new(),
            quotas: HashMap::new(),
            default_quota: 1_000_000,
            exhausted_products: HashMap::new(),
            frame_delay: Duration::from_millis(40),
            image_long_side: 512,
            flavor: crate::config::UpstreamKind::GrokWeb,
            tls: false,
            require_clearance: false,
            solver_fails: false,
        }
    }
}

/// A generated or uploaded file, owned by one simulated user.
#[derive(Clone)]
pub(crate) struct StoredAsset {
    pub owner: String,
    pub content_type: &'static str,
    pub bytes: Bytes,
}

/// Keeps the newest `cap` assets so a long demo run does not grow without bound.
pub(crate) struct AssetStore {
    map: DashMap<String, StoredAsset>,
    order: Mutex<VecDeque<String>>,
    cap: usize,
}

impl AssetStore {
    fn new(cap: usize) -> Self {
        Self { map: DashMap::new(), order: Mutex::new(VecDeque::new()), cap }
    }

    pub fn put(&self, key: String, asset: StoredAsset) {
        self.map.insert(key.clone(), asset);
        let mut order = self.order.lock().unwrap_or_else(|p| p.into_inner());
        order.push_back(key);
        while order.len() > self.cap {
            if let Some(old) = order.pop_front() {
                self.map.remove(&old);
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<StoredAsset> {
        self.map.get(key).map(|a| a.clone())
    }
}

pub(crate) struct SimState {
    pub cfg: SimConfig,
    /// `http://127.0.0.1:PORT`, for absolute URLs the simulator hands out.
    pub base_url: String,
    quota: DashMap<String, u32>,
    /// Keyed by path under the assets host, e.g. `users/<uid>/generated/<id>/image.png`.
    pub assets: AssetStore,
    /// Keyed by file name under `/imagine-public/images/`.
    pub public_images: AssetStore,
    /// Asset id (an upload's, or a generated image's) → path in `assets`.
    pub uploads: DashMap<String, String>,
    /// Video posts by post id and by video id.
    pub posts: DashMap<String, posts::SimPost>,
    /// xAI flavor: video requests by `request_id`.
    pub xai_videos: DashMap<String, xai::VideoJob>,
    pub stats: SimStats,
    /// Keys the `cf_clearance` values this simulator hands out.
    pub clearance_secret: String,
    /// The frontend build its page and scripts carry: every `x-statsig-id` must embed its seed and
    /// hash its animation fingerprint.
    pub frontend: Mutex<Arc<frontend::Build>>,
}

/// What the simulated Cloudflare saw, for tests.
#[derive(Default)]
pub struct SimStats {
    pub challenged: AtomicU64,
    /// Requests that sent back a `__cf_bm` cookie the simulator had set.
    pub cf_bm_replayed: AtomicU64,
    /// Bodies posted to the simulated FlareSolverr.
    pub solver_requests: Mutex<Vec<serde_json::Value>>,
    /// (path, JA4 of the connection, User-Agent) of every request that passed the gate in TLS mode.
    pub seen: Mutex<Vec<(String, String, String)>>,
    /// Video generations started (each one is billed by the real service).
    pub video_starts: AtomicU64,
    /// Files uploaded (`/http/upload-file-v2/direct`).
    pub uploads: AtomicU64,
    /// Loads of the page and of its script chunks (what a client reads its signing inputs from).
    pub page_loads: AtomicU64,
    pub chunk_loads: AtomicU64,
    /// REST calls refused for their `x-statsig-id` (403 code 7).
    pub statsig_refused: AtomicU64,
}

pub(crate) type Sim = Arc<SimState>;

/// Who a request is from, per its cookie.
pub(crate) struct Account {
    pub token: String,
    pub user_id: String,
}

/// Why the simulated grok.com turned a request away, answered as grok.com does.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Reject {
    NoCookie,
    BadToken,
    AntiBot,
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        match self {
            Self::NoCookie => json_error(StatusCode::UNAUTHORIZED, 16, "Not logged in: missing sso cookie"),
            Self::BadToken => json_error(StatusCode::UNAUTHORIZED, 16, "unauthenticated: invalid sso token"),
            Self::AntiBot => json_error(StatusCode::FORBIDDEN, 7, "Request rejected by anti-bot rules."),
        }
    }
}

impl SimState {
    /// The sso cookie must be present twice (`sso` and `sso-rw`, same value) and name a known token.
    pub fn account(&self, headers: &HeaderMap) -> Result<Account, Reject> {
        let cookies: HashMap<&str, &str> = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .collect();
        let (Some(sso), Some(rw)) = (cookies.get("sso"), cookies.get("sso-rw")) else {
            return Err(Reject::NoCookie);
        };
        if sso.is_empty() || sso != rw || !(self.cfg.tokens.is_empty() || self.cfg.tokens.iter().any(|t| t == sso)) {
            return Err(Reject::BadToken);
        }
        Ok(Account { token: (*sso).to_owned(), user_id: user_id(sso) })
    }

    /// A REST call from the web app: a valid cookie plus an `x-statsig-id` signed for this method and
    /// path with the current build's seed and animation fingerprint, minted within the last ten
    /// minutes. Anything else gets the real service's 403 code 7.
    pub fn rest_account(&self, headers: &HeaderMap, method: &str, path: &str) -> Result<Account, Reject> {
        let account = self.account(headers)?;
        let sig = headers.get("x-statsig-id").and_then(|v| v.to_str().ok()).unwrap_or_default();
        let build = self.build();
        if statsig_valid(sig, &build.seed, &build.fingerprint, method, path) {
            Ok(account)
        } else {
            self.stats.statsig_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err(Reject::AntiBot)
        }
    }

    pub fn build(&self) -> Arc<frontend::Build> {
        self.frontend.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn product_exhausted(&self, token: &str, product: &str) -> bool {
        self.cfg.exhausted_products.get(token).is_some_and(|p| p.iter().any(|x| x == product))
    }

    pub fn remaining(&self, token: &str) -> u32 {
        *self
            .quota
            .entry(token.to_owned())
            .or_insert_with(|| *self.cfg.quotas.get(token).unwrap_or(&self.cfg.default_quota))
    }

    /// Spends one generation of quota; false when there is none left.
    pub fn take_quota(&self, token: &str) -> bool {
        let default = *self.cfg.quotas.get(token).unwrap_or(&self.cfg.default_quota);
        let mut left = self.quota.entry(token.to_owned()).or_insert(default);
        if *left == 0 {
            return false;
        }
        *left -= 1;
        true
    }
}

/// The simulated user behind a token.
pub(crate) fn user_id(token: &str) -> String {
    format!("u-{}", hex::encode(&render::seed_of(&[token.as_bytes()])[..6]))
}

/// Checks an `x-statsig-id` the way the web app builds it (written here from the public description,
/// not with the client's code): 70 bytes behind a key byte, the seed, a recent timestamp, the hash of
/// `METHOD!path!t` + salt + the build's animation fingerprint (`frontend.rs`), 0x03.
fn statsig_valid(sig: &str, seed: &[u8; 48], fingerprint: &str, method: &str, path: &str) -> bool {
    use base64::Engine;
    use sha2::Digest;
    let raw = base64::engine::general_purpose::STANDARD_NO_PAD.decode(sig.trim_end_matches('=')).unwrap_or_default();
    if raw.len() != 70 {
        return false;
    }
    let plain: Vec<u8> = raw[1..].iter().map(|b| b ^ raw[0]).collect();
    let t = u32::from_le_bytes([plain[48], plain[49], plain[50], plain[51]]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let minted = 1_682_924_400 + u64::from(t);
    let digest = sha2::Sha256::digest(format!("{method}!{path}!{t}obfiowerehiring{fingerprint}").as_bytes());
    plain[..48] == seed[..] && minted.abs_diff(now) <= 600 && plain[52..68] == digest[..16] && plain[68] == 3
}

pub(crate) fn json_error(status: StatusCode, code: u32, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({"error": {"code": code, "message": message}}))).into_response()
}

pub(crate) fn rate_limited() -> Response {
    let mut r = json_error(StatusCode::TOO_MANY_REQUESTS, 8, "Too many requests");
    r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("60"));
    r
}

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
        let build = Arc::new(frontend::Build::generate());
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
        frontend: Mutex::new(Arc::new(frontend::Build::generate())),
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

    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
    }

    #[test]
    fn a_signature_must_hash_the_builds_animation_fingerprint() {
        use crate::upstream::grok_web::statsig::mint;
        let build = frontend::Build::generate();
        let path = "/rest/media/imagine/quota_info";
        let valid = |sig: &str| statsig_valid(sig, &build.seed, &build.fingerprint, "POST", path);
        // The client's minting with the right fingerprint, and the simulated signer's.
        assert!(valid(&mint(&build.seed, "POST", path, now(), 7, &build.fingerprint)));
        assert!(valid(&assets::sign(&build, "POST", path, now())));
        // Without the fingerprint (what `local` used to send), with another build's, or stale: refused.
        assert!(!valid(&mint(&build.seed, "POST", path, now(), 7, "")));
        let other = frontend::Build::generate();
        assert!(!valid(&mint(&build.seed, "POST", path, now(), 7, &other.fingerprint)));
        assert!(!valid(&mint(&build.seed, "POST", path, now() - 3600, 7, &build.fingerprint)));
        assert!(!valid(&mint(&build.seed, "POST", "/rest/rate-limits", now(), 7, &build.fingerprint)));
    }
}

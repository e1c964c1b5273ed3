//! The simulator's state: its configuration, the accounts, posts, videos and assets it keeps, the
//! front-end build it serves, and the small answers every handler shares. Handlers (the sibling
//! files) take it; this file names none of them.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use dashmap::DashMap;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicU32;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::time::Instant;

use crate::sim::faults::Faults;

#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Accepted sso tokens; empty = any non-empty token.
    pub tokens: Vec<String>,
    /// Remaining generations per token; tokens not listed get `default_quota`.
    pub quotas: HashMap<String, u32>,
    pub default_quota: u32,
    /// Products (`image`, `imageEdit`, `video`, `video720p`) a token has used up, whatever its quota.
    pub exhausted_products: HashMap<String, Vec<String>>,
    /// Flagged accounts: every image, edit and video they "complete" is the same canned picture or
    /// demo clip, whatever the prompt (chenyme/grok2api #1014, #1053).
    pub flagged: Vec<String>,
    /// Accounts' plans (`basic`, `super`, `heavy`), told by `/rest/rate-limits` as grok.com tells them
    /// (the `auto` model's `totalQueries`: chenyme/grok2api `web/quota.go`); a `basic` (free) account
    /// refuses videos longer than 6 s with 429 (chenyme/grok2api #969). Unlisted accounts answer the
    /// quota the simulator gives them, which names no plan.
    pub plans: HashMap<String, String>,
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
            flagged: Vec::new(),
            plans: HashMap::new(),
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
    pub(crate) fn new(cap: usize) -> Self {
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
    pub(crate) quota: DashMap<String, u32>,
    /// Keyed by path under the assets host, e.g. `users/<uid>/generated/<id>/image.png`.
    pub assets: AssetStore,
    /// Keyed by file name under `/imagine-public/images/`.
    pub public_images: AssetStore,
    /// Asset id (an upload's, or a generated image's) → path in `assets`.
    pub uploads: DashMap<String, String>,
    /// Video posts by post id and by video id.
    pub posts: DashMap<String, SimPost>,
    /// xAI flavor: video requests by `request_id`.
    pub xai_videos: DashMap<String, VideoJob>,
    pub stats: SimStats,
    /// Keys the `cf_clearance` values this simulator hands out.
    pub clearance_secret: String,
    /// The frontend build its page and scripts carry: every `x-statsig-id` must embed its seed and
    /// hash its animation fingerprint.
    pub frontend: Mutex<Arc<Build>>,
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
    /// A signature of the web app's shape, signed with inputs that are not the current build's (or
    /// for another path, or too old).
    StalePage,
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        match self {
            Self::NoCookie => json_error(StatusCode::UNAUTHORIZED, 16, "Not logged in: missing sso cookie"),
            Self::BadToken => json_error(StatusCode::UNAUTHORIZED, 16, "unauthenticated: invalid sso token"),
            Self::AntiBot => json_error(StatusCode::FORBIDDEN, 7, "Request rejected by anti-bot rules."),
            // chenyme/grok2api #1002 (2026-08-24): what grok.com answers a stale path-bound signature.
            Self::StalePage => json_error(StatusCode::FORBIDDEN, 7, "This page is out of date. Reload to continue."),
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
        let refusal = match statsig_verdict(sig, &build.seed, &build.fingerprint, method, path) {
            Signature::Valid => return Ok(account),
            Signature::Stale => Reject::StalePage,
            Signature::Malformed => Reject::AntiBot,
        };
        self.stats.statsig_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Err(refusal)
    }

    pub fn build(&self) -> Arc<Build> {
        self.frontend.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn product_exhausted(&self, token: &str, product: &str) -> bool {
        self.cfg.exhausted_products.get(token).is_some_and(|p| p.iter().any(|x| x == product))
    }

    /// The plan an account has, when the simulator gives it one.
    pub fn plan(&self, token: &str) -> Option<&str> {
        self.cfg.plans.get(token).map(String::as_str)
    }

    pub fn flagged(&self, token: &str) -> bool {
        self.cfg.flagged.iter().any(|t| t == token)
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
    format!("u-{}", hex::encode(&crate::sim::render::seed_of(&[token.as_bytes()])[..6]))
}

/// Checks an `x-statsig-id` the way the web app builds it (written here from the public description,
/// not with the client's code): 70 bytes behind a key byte, the seed, a recent timestamp, the hash of
/// `METHOD!path!t` + salt + the build's animation fingerprint (`frontend.rs`), 0x03.
#[cfg(test)]
pub(crate) fn statsig_valid(sig: &str, seed: &[u8; 48], fingerprint: &str, method: &str, path: &str) -> bool {
    matches!(statsig_verdict(sig, seed, fingerprint, method, path), Signature::Valid)
}

/// What the service makes of an `x-statsig-id`.
pub(crate) enum Signature {
    Valid,
    /// The web app's shape, but not signed with this build's inputs for this path, now.
    Stale,
    /// Not the web app's shape at all.
    Malformed,
}

pub(crate) fn statsig_verdict(sig: &str, seed: &[u8; 48], fingerprint: &str, method: &str, path: &str) -> Signature {
    use base64::Engine;
    use sha2::Digest;
    let raw = base64::engine::general_purpose::STANDARD_NO_PAD.decode(sig.trim_end_matches('=')).unwrap_or_default();
    if raw.len() != 70 || raw[69] ^ raw[0] != 3 {
        return Signature::Malformed;
    }
    let plain: Vec<u8> = raw[1..].iter().map(|b| b ^ raw[0]).collect();
    let t = u32::from_le_bytes([plain[48], plain[49], plain[50], plain[51]]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let minted = 1_682_924_400 + u64::from(t);
    let digest = sha2::Sha256::digest(format!("{method}!{path}!{t}obfiowerehiring{fingerprint}").as_bytes());
    if plain[..48] == seed[..] && minted.abs_diff(now) <= 600 && plain[52..68] == digest[..16] {
        Signature::Valid
    } else {
        Signature::Stale
    }
}

pub(crate) fn json_error(status: StatusCode, code: u32, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({"error": {"code": code, "message": message}}))).into_response()
}

pub(crate) fn rate_limited() -> Response {
    let mut r = json_error(StatusCode::TOO_MANY_REQUESTS, 8, "Too many requests");
    r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("60"));
    r
}

/// A video post as the simulator keeps it.
#[derive(Clone)]
pub(crate) struct SimPost {
    pub owner: String,
    pub video_id: String,
    pub ready_at: Instant,
    pub video_path: String,
    pub thumbnail_path: String,
    pub resolution: String,
    /// Its length in seconds and ratio: an extension starts where it ends, in its shape.
    pub seconds: u64,
    pub ratio: String,
    pub moderated: bool,
    /// `[sim:vanish]`: the post is lost upstream (404), so nothing can be recovered.
    pub vanished: bool,
}

pub(crate) struct VideoJob {
    pub(crate) started: Instant,
    pub(crate) step: Duration,
    pub(crate) faults: Faults,
    pub(crate) xai_faults: XaiFaults,
    /// Polls answered so far.
    pub(crate) polls: AtomicU32,
    pub(crate) ratio: String,
    pub(crate) duration: u64,
    pub(crate) key: String,
}

/// Fault tokens only the xAI flavor knows (the shared ones are `Faults`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct XaiFaults {
    pub(crate) credits: bool,
    pub(crate) moderation_flag: bool,
    pub(crate) empty_data: bool,
    pub(crate) key_urlencoded: bool,
    pub(crate) poll_502: u32,
    pub(crate) poll_empty_202: bool,
}

/// The seed positions the generator reads (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Positions {
    pub group: usize,
    pub segment: usize,
    pub ct: [usize; 3],
}

pub(crate) struct Build {
    pub seed: [u8; 48],
    /// 4 groups of 16 curves: colour pair (6), angle (1), easing (4), each 0..=255.
    pub curves: Vec<Vec<[u8; 11]>>,
    pub positions: Positions,
    /// What a correct client hashes after the salt.
    pub fingerprint: String,
    /// The class name the page's hidden animation group carries; rotates with the build too.
    pub(crate) class: String,
    /// (file name, body), in the order the page links them; the generator last, linked from none.
    pub(crate) chunks: Vec<(String, String)>,
    /// How many of `chunks` the page links.
    pub(crate) linked: usize,
}

//! Simulated asset hosts (cookie-guarded `assets.grok.com/users/...`, open `imagine-public`) and
//! quota endpoints.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::sim::state::{Sim, StoredAsset, json_error};

fn serve(asset: StoredAsset) -> Response {
    let mut r = asset.bytes.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    r
}

pub(super) async fn user_asset(State(sim): State<Sim>, headers: HeaderMap, Path(path): Path<String>) -> Response {
    let account = match sim.account(&headers) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    match sim.assets.get(&format!("users/{path}")) {
        Some(a) if a.owner == account.user_id => serve(a),
        Some(_) => json_error(StatusCode::FORBIDDEN, 7, "permission denied"),
        None => json_error(StatusCode::NOT_FOUND, 5, "asset not found"),
    }
}

pub(super) async fn public_image(State(sim): State<Sim>, Path(file): Path<String>) -> Response {
    match sim.public_images.get(&file) {
        Some(a) => serve(a),
        None => json_error(StatusCode::NOT_FOUND, 5, "image not found"),
    }
}

pub(super) async fn rate_limits(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    let account = match sim.rest_account(&headers, "POST", "/rest/rate-limits") {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let remaining = sim.remaining(&account.token);
    // The `auto` model's window is what tells the plan: 20 queries for Basic (free), 50 for SuperGrok,
    // 150 for Heavy (chenyme/grok2api `web/quota.go`, 2026-08).
    let total = match sim.plan(&account.token) {
        Some("basic") => 20,
        Some("super") => 50,
        Some("heavy") => 150,
        _ => sim.cfg.default_quota,
    };
    axum::Json(json!({"windowSizeSeconds": 72000, "remainingQueries": remaining.min(total),
                      "totalQueries": total, "lowEffortRateLimits": null, "highEffortRateLimits": null}))
    .into_response()
}

pub(super) async fn quota_info(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    let account = match sim.rest_account(&headers, "POST", "/rest/media/imagine/quota_info") {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let remaining = sim.remaining(&account.token);
    let back = humantime::format_rfc3339_nanos(std::time::SystemTime::now() + std::time::Duration::from_secs(3600));
    let product = |key: &str| {
        if remaining == 0 || sim.product_exhausted(&account.token, key) {
            json!({"available": false, "remainingQueries": 0, "windowSizeSeconds": 86400, "nextAvailableAt": back.to_string()})
        } else {
            json!({"available": true, "remainingQueries": remaining, "windowSizeSeconds": 86400})
        }
    };
    // All five keys, always (a grok.com capture of 2026-08-23 shows imagePro with 4 left).
    axum::Json(json!({"image": product("image"), "imagePro": product("imagePro"), "imageEdit": product("imageEdit"),
                      "video": product("video"), "video720p": product("video720p")}))
    .into_response()
}

/// Stand-in for images on documentation domains (example.com, ...) so `--demo` runs examples offline.
pub(crate) async fn example_image(Path(path): Path<String>) -> Response {
    let png = super::render::render_png(&super::render::seed_of(&[path.as_bytes()]), 320, 240, 1.0);
    let mut r = png.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
    r
}

/// grok.com's page: what matters to a client is the meta tag with the anti-bot seed, the build's
/// curves table and the scripts that lead to the generator (`frontend.rs`).
pub(super) async fn index_page(State(sim): State<Sim>) -> Response {
    sim.stats.page_loads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut r = sim.build().page().into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    r
}

/// A stand-in for the external signing services some peers use (`grok.statsig = "signer:<url>"`): it
/// signs with the current build's seed and fingerprint, as a service running grok's own script would.
pub(super) async fn signer(State(sim): State<Sim>, axum::Json(body): axum::Json<serde_json::Value>) -> Response {
    let method = body.get("method").and_then(serde_json::Value::as_str).unwrap_or("POST").to_ascii_uppercase();
    let Some(path) = body.get("path").and_then(serde_json::Value::as_str) else {
        return (axum::http::StatusCode::BAD_REQUEST, "path is required").into_response();
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    axum::Json(json!({"x-statsig-id": sign(&sim.build(), &method, path, now)})).into_response()
}

/// An `x-statsig-id` for `build` at `unix_now`, assembled the way the web app does (the simulator's
/// own code, as `statsig_valid` checks it).
pub(crate) fn sign(build: &crate::sim::state::Build, method: &str, path: &str, unix_now: u64) -> String {
    use base64::Engine;
    use sha2::Digest;
    let t = unix_now.saturating_sub(1_682_924_400) as u32;
    let digest = sha2::Sha256::digest(format!("{method}!{path}!{t}obfiowerehiring{}", build.fingerprint).as_bytes());
    let key = rand::random::<u8>();
    let mut raw = vec![key];
    raw.extend(build.seed.iter().chain(&t.to_le_bytes()).chain(&digest[..16]).chain(&[3u8]).map(|b| b ^ key));
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(raw)
}

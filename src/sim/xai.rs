//! The simulated official xAI API (`grok2api sim --flavor xai`): JSON image generation and edits,
//! asynchronous video with polling, temporary result URLs, and the same prompt fault tokens as the
//! grok.com simulator. Written independently of the client's types.
//!
//! | token | images | video |
//! | --- | --- | --- |
//! | `[sim:fail]` | HTTP 500 | `status: failed` after 30 % |
//! | `[sim:rate-limit]` | HTTP 429 + `Retry-After` | the create answers 429 |
//! | `[sim:slow=MS]` | answer MS later | every progress step MS longer |
//! | `[sim:disconnect]` | connection cut mid-answer | polls cut mid-answer |
//! | `[sim:garbage]` | a non-JSON 200 | polls answer non-JSON |
//! | `[sim:moderated]` | `url` empty | `done` with `respect_moderation: false` |
//! | `[sim:cloudflare]` | HTTP 403 HTML | the create answers 403 HTML |
//! | `[sim:credits]` | HTTP 429 "used all available credits" | the create answers the same |
//! | `[sim:moderation-flag]` | a `url` with `respect_moderation: false` | – |
//! | `[sim:empty-data]` | `{"data": []}` | – |
//! | `[sim:key-urlencoded]` | with a wrong key, the 400 message URL-encoded | the same |
//! | `[sim:poll-502=N]` | – | the first N polls (3 without `=N`) answer 502 |
//! | `[sim:poll-empty-202]` | – | pending polls answer 202 with no body at all |
//! | `[sim:expired]` | – | once finished, polls answer `status: expired` |
//!
//! Models are checked as xAI checks them ([`models`]): an unknown id is a 404, and what a model does
//! not take (`quality`, the 2.0 ratios, a sixth edit image, 1080p, an edit on 1.5) is a 400.
//! `GET /sim/stats` lists every create it was asked for (`requests`: path, model, resolution, …),
//! so tests see what reached "xAI".
//!
//! Pending polls answer 202 with a `pending` body, as xAI does. The tokens above the `credits` row
//! are shared with the grok.com simulator (`faults.rs`); the rest are xAI-only ([`XaiFaults`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRef, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use bytes::Bytes;
use serde_json::{Value, json};

use super::render::{dims_for_ratio, render_png, seed_of};
use crate::sim::faults::Faults;
use crate::sim::state::{Sim, StoredAsset, VideoJob, XaiFaults};

/// Steps a video takes to finish, each `frame_delay` (+ slow) long.
const VIDEO_STEPS: u32 = 6;

impl XaiFaults {
    fn parse(prompt: &str) -> Self {
        let mut f = Self::default();
        let mut rest = prompt;
        while let Some(start) = rest.find("[sim:") {
            let after = &rest[start + 5..];
            let Some(end) = after.find(']') else { break };
            match after[..end].trim() {
                "credits" => f.credits = true,
                "moderation-flag" => f.moderation_flag = true,
                "empty-data" => f.empty_data = true,
                "key-urlencoded" => f.key_urlencoded = true,
                "poll-502" => f.poll_502 = 3,
                "poll-empty-202" => f.poll_empty_202 = true,
                token => {
                    if let Some(n) = token.strip_prefix("poll-502=") {
                        f.poll_502 = n.trim().parse().unwrap_or(3);
                    }
                }
            }
            rest = &after[end + 1..];
        }
        f
    }
}

/// What this flavor counts, for `GET /sim/stats`.
#[derive(Default)]
struct Counters {
    image_requests: AtomicU64,
    video_polls: AtomicU64,
    /// Every create that passed the key check: what it asked for (the last 200).
    requests: Mutex<Vec<Value>>,
    /// What polls of each video request need beyond the shared `VideoJob`.
    video_meta: Mutex<HashMap<String, VideoMeta>>,
}

/// The model a video request was served by; whether its clip must last exactly what was asked
/// (edits and extensions; generations keep the fixtures' 6 s / 10 s); whether it ends `expired`
/// (`[sim:expired]`: xAI's fourth status, which the SDKs treat as terminal — source: xai-sdk-python
/// proto/v6/deferred_pb2.pyi DeferredStatus; docs.x.ai video/extension.md's polling loop).
#[derive(Clone)]
struct VideoMeta {
    model: String,
    exact: bool,
    expired: bool,
}

impl Counters {
    fn note(&self, path: &str, req: &Value) {
        let field = |k: &str| req.get(k).cloned().unwrap_or(Value::Null);
        let images =
            req.get("images").and_then(Value::as_array).map_or(usize::from(req.get("image").is_some()), Vec::len);
        let entry = json!({"path": path, "model": field("model"), "resolution": field("resolution"),
            "quality": field("quality"), "aspect_ratio": field("aspect_ratio"), "duration": field("duration"),
            "images": images});
        let mut log = self.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if log.len() >= 200 {
            log.remove(0);
        }
        log.push(entry);
    }
}

/// The models the simulated API knows and what each takes, as xAI documents them (sources: docs.x.ai
/// images/generation and multi-image-editing, release-notes.md August 2026, migration
/// imagine-image-quality-nov-2.md, video/generation, video/editing, video/extension.md;
/// nextbound/bragi-canvas PR #122 for edits and extensions refused on 1.5). Written apart from the
/// gateway's own table (`upstream::xai_models`) so one cannot hide the other's mistake.
mod models {
    pub const IMAGE_DEFAULT: &str = "grok-imagine-image";
    pub const VIDEO_DEFAULT: &str = "grok-imagine-video";

    /// An image model: (the model that serves it, takes quality, edit sources, takes 21:9 / 5:2).
    pub fn image(model: &str) -> Option<(&'static str, bool, usize, bool)> {
        Some(match model {
            "grok-imagine-image" => ("grok-imagine-image", false, 3, false),
            "grok-imagine-image-2.0" => ("grok-imagine-image-2.0", true, 5, true),
            // Retired 2026-11-02: the slug still resolves and 2.0 serves it at quality low, "request
            // and response shapes unchanged" (its old limits), the answer's `model` naming 2.0.
            "grok-imagine-image-quality" | "grok-imagine-image-pro" => ("grok-imagine-image-2.0", false, 3, false),
            _ => return None,
        })
    }

    /// A video model: (the model that serves it, best resolution without / with reference images,
    /// edits and extends).
    pub fn video(model: &str) -> Option<(&'static str, &'static str, &'static str, bool)> {
        Some(match model {
            "grok-imagine-video" => ("grok-imagine-video", "720p", "720p", true),
            "grok-imagine-video-1.5" | "grok-imagine-video-1.5-preview" => {
                ("grok-imagine-video-1.5", "1080p", "720p", false)
            }
            "grok-imagine-video-1.5-lite" => ("grok-imagine-video-1.5-lite", "1080p", "720p", false),
            _ => return None,
        })
    }
}

fn unknown_model(model: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "Some requested entity was not found",
        &format!("The model {model} does not exist or your team does not have access to it"),
    )
}

/// The router's state: the shared simulator plus this flavor's counters.
#[derive(Clone)]
struct XaiSim {
    sim: Sim,
    counters: Arc<Counters>,
}

impl FromRef<XaiSim> for Sim {
    fn from_ref(s: &XaiSim) -> Sim {
        s.sim.clone()
    }
}

pub(super) fn router(sim: Sim) -> Router {
    let state = XaiSim { sim, counters: Arc::default() };
    Router::new()
        .route("/v1/images/generations", post(images_generate))
        .route("/v1/images/edits", post(images_edit))
        .route("/v1/videos/generations", post(video_create))
        .route("/v1/videos/edits", post(video_edit))
        .route("/v1/videos/extensions", post(video_extend))
        .route("/v1/videos/{id}", get(video_poll))
        .route("/xai-tmp/{file}", get(temp_file))
        .route("/sim/stats", get(stats))
        .route("/example-assets/{*path}", get(super::assets::example_image))
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024))
        .with_state(state)
}

/// `s` percent-encoded except for unreserved characters, as some xAI answers carry their messages.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, axum::Json(json!({"code": code, "error": message}))).into_response()
}

/// Bearer key check, then a JSON body: what xAI checks before anything else.
/// Errors are boxed: a `Response` is large and this is the cold path.
fn admit(sim: &Sim, headers: &HeaderMap, body: &Bytes) -> Result<(String, Value), Box<Response>> {
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            Box::new(error(StatusCode::UNAUTHORIZED, "Unauthenticated", "Missing or invalid authorization header"))
        })?;
    if !(sim.cfg.tokens.is_empty() || sim.cfg.tokens.iter().any(|t| t == key)) {
        let shown: String = key.chars().take(2).collect();
        let mut message =
            format!("Incorrect API key provided: {shown}***. You can obtain an API key from https://console.x.ai.");
        if String::from_utf8_lossy(body).contains("[sim:key-urlencoded]") {
            message = url_encode(&message);
        }
        return Err(Box::new(error(StatusCode::BAD_REQUEST, "Client specified an invalid argument", &message)));
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    if !is_json || body.is_empty() {
        return Err(Box::new(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported media type",
            "expected application/json",
        )));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| Box::new(error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid request", "body is not valid JSON")))?;
    Ok((key.to_owned(), v))
}

fn cloudflare() -> Response {
    let mut r = (StatusCode::FORBIDDEN, "<!DOCTYPE html><html><title>Attention Required! | Cloudflare</title></html>")
        .into_response();
    r.headers_mut().insert(header::SERVER, HeaderValue::from_static("cloudflare"));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    r
}

/// xAI's billing stop, as it words it (a 429, without `Retry-After`: waiting does not help).
fn out_of_credits(key: &str) -> Response {
    let team: String = key.chars().filter(char::is_ascii_alphanumeric).take(8).collect();
    error(
        StatusCode::TOO_MANY_REQUESTS,
        "Some resource has been exhausted",
        &format!(
            "Your team {team} has either used all available credits or reached its monthly spending limit. \
             To continue making API requests, please purchase more credits or raise your spending limit."
        ),
    )
}

fn rate_limited() -> Response {
    let mut r = error(StatusCode::TOO_MANY_REQUESTS, "Too many requests", "rate limit exceeded for this team");
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// A 200 whose body stops halfway: the connection is cut.
fn cut() -> Response {
    let stream = futures_util::stream::iter(vec![
        Ok::<Bytes, std::io::Error>(Bytes::from_static(b"{\"data\":[{\"url\":")),
        Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "simulated disconnect")),
    ]);
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn garbage() -> Response {
    (StatusCode::OK, "<html><body>upstream hiccup</body></html>").into_response()
}

/// Faults that end a create before any work; `None` = go ahead.
fn early_fault(sim: &Sim, key: &str, faults: &Faults, xai_faults: &XaiFaults) -> Option<Response> {
    if faults.cloudflare {
        return Some(cloudflare());
    }
    if xai_faults.credits {
        return Some(out_of_credits(key));
    }
    if faults.rate_limit || !sim.take_quota(key) {
        return Some(rate_limited());
    }
    None
}

fn temp_url(sim: &Sim, file: &str) -> String {
    format!("{}/xai-tmp/{file}", sim.base_url)
}

async fn images(sim: Sim, key: String, req: Value, inputs: Vec<Bytes>) -> Response {
    let prompt = req.get("prompt").and_then(Value::as_str).unwrap_or_default().to_owned();
    let invalid = |m: &str| error(StatusCode::BAD_REQUEST, "Client specified an invalid argument", m);
    if prompt.is_empty() {
        return invalid("prompt is required");
    }
    if req.get("size").is_some() {
        return invalid("Argument not supported: size");
    }
    let asked = req.get("model").and_then(Value::as_str).unwrap_or(models::IMAGE_DEFAULT);
    let Some((served_by, takes_quality, max_sources, wide)) = models::image(asked) else {
        return unknown_model(asked);
    };
    match req.get("quality").and_then(Value::as_str) {
        None => {}
        Some(_) if !takes_quality => return invalid(&format!("Argument not supported on {asked}: quality")),
        Some("low" | "medium" | "auto") => {}
        Some(q) => return invalid(&format!("quality must be one of low, medium, auto, got {q}")),
    }
    let ratio = req.get("aspect_ratio").and_then(Value::as_str).unwrap_or("auto");
    if ["21:9", "5:2"].contains(&ratio) && !wide {
        return invalid(&format!("aspect_ratio {ratio} is not supported by {asked}"));
    }
    // xAI's ratios (docs.x.ai images/generation, 2026-08): anything else is refused.
    const RATIOS: [&str; 16] = [
        "auto", "1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "2:1", "1:2", "19.5:9", "9:19.5", "20:9", "9:20",
        "21:9", "5:2",
    ];
    if !RATIOS.contains(&ratio) {
        return invalid(&format!("aspect_ratio {ratio} is not one of {}", RATIOS.join(", ")));
    }
    if inputs.len() > max_sources {
        return invalid(&format!("{asked} takes at most {max_sources} images"));
    }
    let faults = Faults::parse(&prompt);
    let xai_faults = XaiFaults::parse(&prompt);
    if let Some(r) = early_fault(&sim, &key, &faults, &xai_faults) {
        return r;
    }
    tokio::time::sleep(sim.cfg.frame_delay + faults.slow.unwrap_or_default()).await;
    if faults.fail {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "Internal error", "image generation failed");
    }
    if faults.garbage {
        return garbage();
    }
    if faults.disconnect {
        return cut();
    }
    if xai_faults.empty_data {
        return axum::Json(json!({"data": [], "usage": {"cost_in_usd_ticks": 0}})).into_response();
    }
    let n = req.get("n").and_then(Value::as_u64).unwrap_or(1).clamp(1, 10);
    let ratio = req.get("aspect_ratio").and_then(Value::as_str).filter(|r| *r != "auto").unwrap_or("1:1");
    let (w, h) = dims_for_ratio(ratio, sim.cfg.image_long_side);
    let b64 = req.get("response_format").and_then(Value::as_str) == Some("b64_json");
    let mut data = Vec::new();
    for i in 0..n {
        if faults.moderated {
            data.push(json!({"url": "", "b64_json": null, "mime_type": "image/png", "revised_prompt": ""}));
            continue;
        }
        let index = i.to_le_bytes();
        let mut parts: Vec<&[u8]> = vec![prompt.as_bytes(), &index];
        parts.extend(inputs.iter().map(|b| b.as_ref()));
        // A flagged key gets the one canned picture whatever it asks (as grok.com's flagged accounts).
        let png = if sim.flagged(&key) {
            super::render::canned_png()
        } else {
            Bytes::from(render_png(&seed_of(&parts), w, h, 1.0))
        };
        if b64 {
            data.push(json!({"url": null, "b64_json": base64::engine::general_purpose::STANDARD.encode(&png),
                             "mime_type": "image/png", "respect_moderation": !xai_faults.moderation_flag}));
        } else {
            let file = format!("xai-tmp-imgen-{}.png", uuid::Uuid::new_v4().simple());
            sim.public_images
                .put(file.clone(), StoredAsset { owner: String::new(), content_type: "image/png", bytes: png });
            data.push(json!({"url": temp_url(&sim, &file), "b64_json": null, "mime_type": "image/png",
                             "revised_prompt": "", "respect_moderation": !xai_faults.moderation_flag}));
        }
    }
    axum::Json(json!({"data": data, "model": served_by, "usage": {"cost_in_usd_ticks": 200_000_000u64 * n}}))
        .into_response()
}

/// Decodes `{url: data:...}` image inputs; anything else is an invalid argument.
fn decode_input(v: &Value) -> Option<Bytes> {
    let url = v.get("url")?.as_str()?;
    let (meta, data) = url.strip_prefix("data:")?.split_once(',')?;
    if !meta.ends_with(";base64") {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD.decode(data).ok()?;
    let ok = bytes.starts_with(b"\x89PNG")
        || bytes.starts_with(&[0xFF, 0xD8, 0xFF])
        || (bytes.len() > 12 && &bytes[8..12] == b"WEBP");
    ok.then(|| Bytes::from(bytes))
}

async fn images_generate(State(state): State<XaiSim>, headers: HeaderMap, body: Bytes) -> Response {
    state.counters.image_requests.fetch_add(1, Ordering::Relaxed);
    let sim = state.sim;
    match admit(&sim, &headers, &body) {
        Ok((key, req)) => {
            state.counters.note("/v1/images/generations", &req);
            images(sim, key, req, Vec::new()).await
        }
        Err(r) => *r,
    }
}

async fn images_edit(State(state): State<XaiSim>, headers: HeaderMap, body: Bytes) -> Response {
    state.counters.image_requests.fetch_add(1, Ordering::Relaxed);
    let sim = state.sim;
    let (key, req) = match admit(&sim, &headers, &body) {
        Ok(pair) => pair,
        Err(r) => return *r,
    };
    state.counters.note("/v1/images/edits", &req);
    let sources: Vec<&Value> = match (req.get("image"), req.get("images").and_then(Value::as_array)) {
        (Some(one), None) => vec![one],
        // The model's own limit (3 or 5) is checked with the model, in `images`.
        (None, Some(many)) if (1..=5).contains(&many.len()) => many.iter().collect(),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "Client specified an invalid argument",
                "give `image` or 1-5 `images`",
            );
        }
    };
    let mut inputs = Vec::new();
    for s in sources {
        match decode_input(s) {
            Some(b) => inputs.push(b),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Client specified an invalid argument",
                    "image must be a JPEG, PNG or WebP data URL",
                );
            }
        }
    }
    images(sim, key, req, inputs).await
}

async fn video_create(State(state): State<XaiSim>, headers: HeaderMap, body: Bytes) -> Response {
    let sim = state.sim.clone();
    let (key, req) = match admit(&sim, &headers, &body) {
        Ok(pair) => pair,
        Err(r) => return *r,
    };
    state.counters.note("/v1/videos/generations", &req);
    let asked = req.get("model").and_then(Value::as_str).unwrap_or(models::VIDEO_DEFAULT);
    let Some((served_by, best, best_with_references, _)) = models::video(asked) else {
        return unknown_model(asked);
    };
    let prompt = req.get("prompt").and_then(Value::as_str).unwrap_or_default().to_owned();
    let duration = req.get("duration").and_then(Value::as_u64).unwrap_or(8);
    if !(1..=15).contains(&duration) {
        return error(StatusCode::BAD_REQUEST, "Client specified an invalid argument", "duration must be 1-15");
    }
    let invalid = |m: &str| error(StatusCode::BAD_REQUEST, "Client specified an invalid argument", m);
    if let Some(image) = req.get("image")
        && decode_input(image).is_none()
    {
        return invalid("image must be a JPEG, PNG or WebP data URL");
    }
    // As xAI's reference says: up to 7 references, at most 10 s, not with `image`, and a prompt is
    // required except for image-to-video.
    let references = req.get("reference_images").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    if references.len() > 7 {
        return invalid("at most 7 reference_images");
    }
    if !references.is_empty() && req.get("image").is_some() {
        return invalid("reference_images cannot be combined with image");
    }
    if !references.is_empty() && duration > 10 {
        return invalid("reference-to-video is at most 10 seconds");
    }
    if references.iter().any(|r| decode_input(r).is_none()) {
        return invalid("reference_images must be JPEG, PNG or WebP data URLs");
    }
    if prompt.trim().is_empty() && req.get("image").is_none() {
        return invalid("prompt is required");
    }
    // 1080p: 1.5 for text- and image-to-video only; reference-to-video at most 720p, and the classic
    // model at most 720p (docs.x.ai video/generation).
    let best = if references.is_empty() { best } else { best_with_references };
    match req.get("resolution").and_then(Value::as_str) {
        None | Some("480p" | "720p") => {}
        Some("1080p") if best == "1080p" => {}
        Some("1080p") => return invalid(&format!("resolution 1080p is not supported by {asked} in this mode")),
        Some(r) => return invalid(&format!("resolution must be one of 480p, 720p, 1080p, got {r}")),
    }
    let ratio = req.get("aspect_ratio").and_then(Value::as_str).unwrap_or("16:9").to_owned();
    start_video(&state, key, &prompt, (served_by, false), ratio, duration)
}

/// Accepts a video request (after the early faults): it runs from now, and polls see it.
fn start_video(
    state: &XaiSim,
    key: String,
    prompt: &str,
    model: (&str, bool),
    ratio: String,
    duration: u64,
) -> Response {
    let sim = &state.sim;
    let faults = Faults::parse(prompt);
    let xai_faults = XaiFaults::parse(prompt);
    if let Some(r) = early_fault(sim, &key, &faults, &xai_faults) {
        return r;
    }
    let id = uuid::Uuid::new_v4().to_string();
    let step = sim.cfg.frame_delay + faults.slow.unwrap_or_default();
    let job =
        VideoJob { started: Instant::now(), step, faults, xai_faults, polls: AtomicU32::new(0), ratio, duration, key };
    sim.xai_videos.insert(id.clone(), job);
    state.counters.video_meta.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(
        id.clone(),
        VideoMeta { model: model.0.to_owned(), exact: model.1, expired: prompt.contains("[sim:expired]") },
    );
    axum::Json(json!({"request_id": id})).into_response()
}

/// An input video as xAI takes it here: `{url: data:video/mp4;base64,…}`, with its length and the
/// aspect ratio nearest its frame.
fn decode_video(v: &Value) -> Option<(f64, &'static str)> {
    let url = v.get("url")?.as_str()?;
    let (meta, data) = url.strip_prefix("data:")?.split_once(',')?;
    if !meta.ends_with(";base64") {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD.decode(data).ok()?;
    let info = crate::media::mp4::info(&bytes)?;
    let (w, h) = info.size.unwrap_or((16, 9));
    let shape = f64::from(w) / f64::from(h.max(1));
    let ratio = [("16:9", 16.0 / 9.0), ("9:16", 9.0 / 16.0), ("3:2", 1.5), ("2:3", 2.0 / 3.0), ("1:1", 1.0)]
        .into_iter()
        .min_by(|a, b| (a.1 - shape).abs().total_cmp(&(b.1 - shape).abs()))
        .map_or("16:9", |(r, _)| r);
    Some((info.seconds, ratio))
}

/// What edits and extensions share: the key, the model (xAI offers both on `grok-imagine-video`
/// only), a prompt and a readable MP4. Errors are boxed, as in `admit`.
fn video_input(
    state: &XaiSim,
    path: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(String, Value, f64, &'static str), Box<Response>> {
    let (key, req) = admit(&state.sim, headers, body)?;
    state.counters.note(path, &req);
    let invalid = |m: &str| Box::new(error(StatusCode::BAD_REQUEST, "Client specified an invalid argument", m));
    let asked = req.get("model").and_then(Value::as_str).unwrap_or(models::VIDEO_DEFAULT);
    let Some((_, _, _, edits)) = models::video(asked) else {
        return Err(Box::new(unknown_model(asked)));
    };
    if !edits {
        return Err(invalid(&format!("{asked} does not support video editing or extension")));
    }
    if req.get("prompt").and_then(Value::as_str).is_none_or(|p| p.trim().is_empty()) {
        return Err(invalid("prompt is required"));
    }
    let Some((seconds, ratio)) = req.get("video").and_then(decode_video) else {
        return Err(invalid("video must be an MP4 data URL"));
    };
    Ok((key, req, seconds, ratio))
}

/// `POST /v1/videos/edits`: the input at most 8.7 s; the result keeps its length (source:
/// docs.x.ai video/editing; xai-sdk-ts types.ts EditVideoRequest has no duration).
async fn video_edit(State(state): State<XaiSim>, headers: HeaderMap, body: Bytes) -> Response {
    let (key, req, seconds, ratio) = match video_input(&state, "/v1/videos/edits", &headers, &body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    if seconds > 8.7 {
        let m = format!("input video is {seconds:.1}s; edits take at most 8.7s");
        return error(StatusCode::BAD_REQUEST, "Client specified an invalid argument", &m);
    }
    let prompt = req.get("prompt").and_then(Value::as_str).unwrap_or_default();
    start_video(&state, key, prompt, (models::VIDEO_DEFAULT, true), ratio.to_owned(), seconds.round().max(1.0) as u64)
}

/// `POST /v1/videos/extensions`: the input 2–15 s, `duration` (the added part) 2–10, default 6; the
/// result is the input followed by the new part (source: xai-sdk-ts types.ts ExtendVideoRequest;
/// docs.x.ai video/extension.md).
async fn video_extend(State(state): State<XaiSim>, headers: HeaderMap, body: Bytes) -> Response {
    let (key, req, seconds, ratio) = match video_input(&state, "/v1/videos/extensions", &headers, &body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let invalid = |m: &str| error(StatusCode::BAD_REQUEST, "Client specified an invalid argument", m);
    if !(2.0..=15.0).contains(&seconds) {
        return invalid(&format!("input video is {seconds:.1}s; extensions take 2-15s"));
    }
    let added = req.get("duration").and_then(Value::as_u64).unwrap_or(6);
    if !(2..=10).contains(&added) {
        return invalid("duration must be 2-10");
    }
    let prompt = req.get("prompt").and_then(Value::as_str).unwrap_or_default();
    let total = seconds.round().max(1.0) as u64 + added;
    start_video(&state, key, prompt, (models::VIDEO_DEFAULT, true), ratio.to_owned(), total)
}

async fn video_poll(State(state): State<XaiSim>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    state.counters.video_polls.fetch_add(1, Ordering::Relaxed);
    let sim = state.sim;
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let Some(job) = sim.xai_videos.get(&id) else {
        return error(StatusCode::NOT_FOUND, "Not found", "unknown request_id");
    };
    let VideoMeta { model, exact, expired } = state
        .counters
        .video_meta
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&id)
        .cloned()
        .unwrap_or_else(|| VideoMeta { model: models::VIDEO_DEFAULT.to_owned(), exact: false, expired: false });
    if job.key != key {
        return error(StatusCode::NOT_FOUND, "Not found", "unknown request_id");
    }
    // A passing failure in front of the API: the video itself carries on regardless.
    if job.polls.fetch_add(1, Ordering::Relaxed) < job.xai_faults.poll_502 {
        return (StatusCode::BAD_GATEWAY, "upstream connect error or disconnect/reset before headers").into_response();
    }
    if job.faults.disconnect {
        return cut();
    }
    if job.faults.garbage {
        return garbage();
    }
    let total = job.step * VIDEO_STEPS;
    let elapsed = job.started.elapsed();
    let progress = ((elapsed.as_secs_f64() / total.as_secs_f64().max(1e-3)) * 100.0).min(100.0) as u64;
    if job.faults.fail && progress >= 30 {
        return axum::Json(json!({"status": "failed", "progress": 0, "model": model,
            "error": {"code": "internal_error", "message": "generation failed"}}))
        .into_response();
    }
    if elapsed < total {
        if job.xai_faults.poll_empty_202 {
            return StatusCode::ACCEPTED.into_response();
        }
        let body = json!({"status": "pending", "progress": progress, "model": model});
        return (StatusCode::ACCEPTED, axum::Json(body)).into_response();
    }
    if expired {
        return axum::Json(json!({"status": "expired", "model": model})).into_response();
    }
    if job.faults.moderated {
        return axum::Json(json!({"status": "done", "progress": 100, "model": model,
            "video": {"url": null, "duration": job.duration, "respect_moderation": false}}))
        .into_response();
    }
    let file = format!("xai-video-{id}.mp4");
    if sim.public_images.get(&file).is_none() {
        // CLIProxyAPI #5221: the API answered an unrelated clip, marked done; a flagged key does here.
        let clip = match sim.flagged(key) {
            true => super::video::canned_clip(),
            false => super::video::clip(&job.ratio, job.duration, &seed_of(&[id.as_bytes()])),
        };
        let bytes = if exact { Bytes::from(super::video::with_duration(clip.to_vec(), job.duration)) } else { clip };
        sim.public_images.put(file.clone(), StoredAsset { owner: String::new(), content_type: "video/mp4", bytes });
    }
    axum::Json(json!({"status": "done", "progress": 100, "model": model,
        "video": {"url": temp_url(&sim, &file), "duration": job.duration, "respect_moderation": true},
        "usage": {"cost_in_usd_ticks": 500_000_000u64 * job.duration}}))
    .into_response()
}

/// Test hook: how many video creates the simulator accepted (a resumed task must not add one), and
/// how many image requests (accepted or not) and video polls it answered.
async fn stats(State(state): State<XaiSim>) -> Response {
    axum::Json(json!({
        "video_creates": state.sim.xai_videos.len(),
        "image_requests": state.counters.image_requests.load(Ordering::Relaxed),
        "video_polls": state.counters.video_polls.load(Ordering::Relaxed),
        "requests": *state.counters.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
    }))
    .into_response()
}

async fn temp_file(State(sim): State<Sim>, Path(file): Path<String>) -> Response {
    match sim.public_images.get(&file) {
        Some(a) => {
            let mut r = a.bytes.into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(a.content_type));
            r
        }
        None => error(StatusCode::NOT_FOUND, "Not found", "expired or unknown file"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_xai_fault_tokens() {
        let f = XaiFaults::parse("a [sim:credits] b [sim:poll-502=5] [sim:poll-empty-202] [sim:fail]");
        assert_eq!(f, XaiFaults { credits: true, poll_502: 5, poll_empty_202: true, ..XaiFaults::default() });
        assert_eq!(XaiFaults::parse("[sim:poll-502]").poll_502, 3);
        assert_eq!(XaiFaults::parse("plain [sim:"), XaiFaults::default());
        assert_eq!(url_encode("Incorrect API key: xa***."), "Incorrect%20API%20key%3A%20xa%2A%2A%2A.");
    }

    #[test]
    fn knows_the_models_xai_serves_and_what_each_takes() {
        assert_eq!(models::image("grok-imagine-image-2.0"), Some(("grok-imagine-image-2.0", true, 5, true)));
        assert_eq!(models::image("grok-imagine-image"), Some(("grok-imagine-image", false, 3, false)));
        // Retired, still served by 2.0.
        assert_eq!(models::image("grok-imagine-image-quality").map(|m| m.0), Some("grok-imagine-image-2.0"));
        assert_eq!(models::image("grok-2-image"), None);
        assert_eq!(models::video("grok-imagine-video-1.5"), Some(("grok-imagine-video-1.5", "1080p", "720p", false)));
        assert_eq!(models::video("grok-imagine-video-1.5-preview").map(|m| m.0), Some("grok-imagine-video-1.5"));
        assert_eq!(models::video("grok-imagine-video"), Some(("grok-imagine-video", "720p", "720p", true)));
        assert_eq!(models::video("sora-2"), None);
    }

    #[test]
    fn a_clip_can_be_made_to_last_what_was_asked() {
        let clip = super::super::video::clip("16:9", 10, &[1; 32]);
        let longer = super::super::video::with_duration(clip.to_vec(), 12);
        assert_eq!(crate::media::mp4::info(&longer).map(|i| i.seconds.round()), Some(12.0));
        assert_eq!(super::super::video::with_duration(b"not an mp4".to_vec(), 3), b"not an mp4");
    }
}

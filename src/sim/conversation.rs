//! Simulated uploads (`/http/upload-file-v2/direct`) and the NDJSON conversation stream
//! (`/rest/app-chat/conversations/new`) for `mediaGenInput.imageToImage` edits.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use super::render::{dims_for_ratio, render_png, seed_of};
use crate::sim::faults::Faults;
use crate::sim::state::{Sim, StoredAsset, json_error};

fn sniff_image(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

pub(super) async fn upload(State(sim): State<Sim>, headers: HeaderMap, mut multipart: Multipart) -> Response {
    // The web app does not sign uploads; a client that does is not behaving like it (our strictness:
    // grok.com's answer to a signed upload is not known).
    if headers.contains_key("x-statsig-id") {
        return json_error(StatusCode::BAD_REQUEST, 3, "unexpected x-statsig-id on an upload");
    }
    let account = match sim.account(&headers) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let mut file: Option<Bytes> = None;
    while let Ok(Some(field)) = multipart.next_field().await {
        if field.name() == Some("file") {
            match field.bytes().await {
                Ok(b) => file = Some(b),
                Err(_) => return json_error(StatusCode::BAD_REQUEST, 3, "unreadable upload"),
            }
        }
    }
    let Some(bytes) = file else { return json_error(StatusCode::BAD_REQUEST, 3, "missing file part") };
    let Some(content_type) = sniff_image(&bytes) else {
        return axum::Json(json!({"uploadId": null, "fileMetadata": null,
            "terminalError": {"code": "UNSUPPORTED_FILE_TYPE", "message": "only images can be uploaded"}}))
        .into_response();
    };
    sim.stats.uploads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let id = uuid::Uuid::new_v4().to_string();
    let path = format!("users/{}/{id}/content", account.user_id);
    sim.assets.put(path.clone(), StoredAsset { owner: account.user_id.clone(), content_type, bytes });
    sim.uploads.insert(id.clone(), path.clone());
    axum::Json(json!({
        "uploadId": format!("up_{}", &id[..8]),
        "fileMetadata": {"fileMetadataId": id, "fileUri": path},
        "terminalError": null
    }))
    .into_response()
}

/// One step of a scripted response stream.
enum Step {
    Line(String),
    Pause(Duration),
    /// Cut the connection without finishing the body.
    Cut,
}

/// The first two frames of every conversation stream: its id, then the user turn's.
fn opening() -> Vec<Step> {
    vec![
        ndjson(json!({"result":{"conversation":{"conversationId":uuid::Uuid::new_v4().to_string()}}})),
        ndjson(json!({"result":{"response":{"userResponse":{"responseId":uuid::Uuid::new_v4().to_string()}}}})),
    ]
}

fn ndjson(frame: Value) -> Step {
    Step::Line(format!("{frame}\n"))
}

fn stream_response(steps: Vec<Step>) -> Response {
    let stream = futures_util::stream::unfold(steps.into_iter(), |mut steps| async move {
        loop {
            match steps.next()? {
                Step::Pause(d) => tokio::time::sleep(d).await,
                Step::Line(l) => return Some((Ok::<Bytes, std::io::Error>(Bytes::from(l)), steps)),
                Step::Cut => {
                    return Some((
                        Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "simulated disconnect")),
                        steps,
                    ));
                }
            }
        }
    });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

pub(super) async fn new_conversation(State(sim): State<Sim>, headers: HeaderMap, body: Bytes) -> Response {
    let account = match sim.rest_account(&headers, "POST", "/rest/app-chat/conversations/new") {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return json_error(StatusCode::BAD_REQUEST, 3, "request body is not JSON");
    };
    if let Some(cfg) = extension_config(&req) {
        return extend(&sim, &account, &req, cfg);
    }
    let media = req.get("mediaGenInput");
    let (kind, input) = match ["imageToImage", "textToVideo", "imageToVideo", "referenceToVideo"]
        .into_iter()
        .find_map(|k| media.and_then(|m| m.get(k)).map(|v| (k, v)))
    {
        Some(found) => found,
        None => return json_error(StatusCode::BAD_REQUEST, 3, "unsupported conversation request"),
    };
    if kind != "imageToImage"
        && ["temporary", "parentPostId", "videoGenModelConfig"].iter().any(|k| req.get(*k).is_some())
    {
        return json_error(StatusCode::BAD_REQUEST, 3, "mediaGenInput video requests must not carry legacy fields");
    }
    let prompt = input.get("prompt").and_then(Value::as_str).unwrap_or_default().to_owned();
    if kind != "imageToImage"
        && let Err(why) = check_video_request(kind, &req, input)
    {
        return json_error(StatusCode::BAD_REQUEST, 3, &why);
    }
    // Free accounts make videos of at most 6 s; longer ones are refused as a rate limit (chenyme/grok2api
    // #969: 5-6 s answered, 7, 8 and 15 s "429 Too many requests").
    let seconds = input.get("duration").and_then(Value::as_u64).unwrap_or(6);
    if kind != "imageToImage" && seconds > 6 && sim.plan(&account.token) == Some("basic") {
        return super::state::rate_limited();
    }
    let faults = Faults::parse(&prompt);
    if faults.cloudflare {
        let page = "<!DOCTYPE html><html><head><title>Just a moment...</title></head>\
                    <body><script src=\"/cdn-cgi/challenge-platform/h/b/orchestrate/jsch/v1\"></script></body></html>";
        let mut r = (StatusCode::FORBIDDEN, page).into_response();
        r.headers_mut().insert(header::SERVER, HeaderValue::from_static("cloudflare"));
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        return r;
    }
    let inputs: Vec<String> = input
        .get("inputAssets")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    if kind != "textToVideo" && inputs.is_empty() {
        return json_error(StatusCode::BAD_REQUEST, 3, &format!("{kind} needs inputAssets"));
    }
    let mut input_bytes = Vec::new();
    for id in &inputs {
        let path = sim.uploads.get(id).map(|p| p.value().clone());
        // `[sim:uploads-only]`: this account takes only uploaded files as inputs, not generated ones.
        if faults.uploads_only && path.as_deref().is_some_and(|p| p.contains("/generated/")) {
            return json_error(StatusCode::BAD_REQUEST, 5, &format!("input asset {id} not found"));
        }
        match path.and_then(|p| sim.assets.get(&p)) {
            Some(a) if a.owner == account.user_id => input_bytes.push(a.bytes),
            _ => return json_error(StatusCode::BAD_REQUEST, 5, &format!("input asset {id} not found")),
        }
    }

    let mut steps = opening();
    if faults.rate_limit {
        steps.push(ndjson(json!({"error":{"code":8,"message":"Too many requests"}})));
        return stream_response(steps);
    }
    if faults.garbage {
        steps.push(Step::Line("<html>upstream hiccup</html>\n".into()));
        return stream_response(steps);
    }
    // Each product is metered on its own; an exhausted one answers in-band, as an error object.
    let product = match kind {
        "imageToImage" => "imageEdit",
        _ if input.get("resolutionName").and_then(Value::as_str) == Some("720p") => "video720p",
        _ => "video",
    };
    if sim.product_exhausted(&account.token, product) {
        let what = if product == "imageEdit" { "image editing" } else { "video generation" };
        steps.push(ndjson(json!({"result":{"response":{"modelResponse":{"responseId":uuid::Uuid::new_v4().to_string(),
            "message":"","streamErrors":[{"code":"RESOURCE_EXHAUSTED","message":format!("You have reached your usage limit for {what}.")}]}}}})));
        return stream_response(steps);
    }
    if !sim.take_quota(&account.token) {
        return crate::sim::state::rate_limited();
    }
    let flagged = sim.flagged(&account.token);
    let ctx = Ctx {
        sim: &sim,
        user: &account.user_id,
        prompt: &prompt,
        input,
        inputs: &input_bytes,
        faults: &faults,
        flagged,
        exact: false,
    };
    if kind == "imageToImage" {
        edit_steps(&ctx, &mut steps)
    } else {
        video_steps(&ctx, &mut steps)
    }
    stream_response(steps)
}

/// What the web app sends for a video, enforced (public clients, 2026-08/09: chenyme/grok2api
/// `video.go` `videoCreatePayload`, SentDz/grok2api `video.go` `videoV15CreatePayload` and
/// `videoExtensionPayload`): whole seconds 1–15; with a prompt the message is `<prompt> --mode=custom`,
/// without one `prompt` is left out and the message is just `--mode=<preset>`; one input asset for
/// image-to-video (which also names its `mode`), 2–7 for reference-to-video, which needs a prompt.
fn check_video_request(kind: &str, req: &Value, input: &Value) -> Result<(), String> {
    const PRESET_MODES: [&str; 3] = ["normal", "extremely-crazy", "extremely-spicy-or-crazy"];
    match input.get("duration").and_then(Value::as_u64) {
        Some(1..=15) => {}
        _ => return Err(format!("duration must be a whole number of seconds from 1 to 15, got {}", input["duration"])),
    }
    if !matches!(input.get("resolutionName").and_then(Value::as_str), Some("480p" | "720p")) {
        return Err("resolutionName must be 480p or 720p".into());
    }
    let assets = input.get("inputAssets").and_then(Value::as_array).map_or(0, Vec::len);
    let message = req.get("message").and_then(Value::as_str).unwrap_or_default();
    let prompt = match input.get("prompt") {
        None => None,
        Some(Value::String(p)) if !p.trim().is_empty() => Some(p.as_str()),
        Some(_) => return Err("prompt must be left out rather than sent empty".into()),
    };
    let mode = match prompt {
        Some(p) if message == format!("{p} --mode=custom") => "custom",
        Some(_) => return Err("with a prompt the message is `<prompt> --mode=custom`".into()),
        None => match message.strip_prefix("--mode=") {
            Some(m) if PRESET_MODES.contains(&m) => m,
            _ => return Err(format!("without a prompt the message is `--mode=<{}>`", PRESET_MODES.join("|"))),
        },
    };
    match kind {
        "textToVideo" if prompt.is_none() => Err("textToVideo needs a prompt".into()),
        "textToVideo" if assets > 0 => Err("textToVideo takes no inputAssets".into()),
        "imageToVideo" if assets != 1 => Err("imageToVideo takes exactly one input asset".into()),
        "imageToVideo" if input.get("mode").and_then(Value::as_str) != Some(mode) => {
            Err(format!("imageToVideo mode must match the message's ({mode})"))
        }
        "referenceToVideo" if !(2..=7).contains(&assets) => Err("referenceToVideo takes 2 to 7 input assets".into()),
        "referenceToVideo" if prompt.is_none() => Err("referenceToVideo needs a prompt".into()),
        _ => Ok(()),
    }
}

/// The video settings of an extension request, when it is one: the web app's extend flow sends no
/// `mediaGenInput` but the older `videoGenModelConfig` with `isVideoExtension` (a HAR of 2026-06
/// pinned by public clients: CrisLIUning/grok2api 3a836af, 2026-07-16, and its payload test).
fn extension_config(req: &Value) -> Option<&Value> {
    let cfg = req.pointer("/responseMetadata/modelConfigOverride/modelMap/videoGenModelConfig")?;
    (cfg.get("isVideoExtension") == Some(&Value::Bool(true))).then_some(cfg)
}

/// What the web app sends to extend a video, enforced: `temporary`, the video model, the source post
/// as `extendPostId` = `parentPostId`, the first video as `originalPostId`, stitched, the extension
/// reference type, a start time inside the source, and 1–10 more seconds. The source must be this
/// account's post (else 403 `invalid-parent-post`, as grok.com answers another account's). The answer
/// is the whole stitched video, streamed like a new one.
fn extend(sim: &Sim, account: &crate::sim::state::Account, req: &Value, cfg: &Value) -> Response {
    let text = |k: &str| cfg.get(k).and_then(Value::as_str).unwrap_or_default();
    let bad = |why: &str| json_error(StatusCode::BAD_REQUEST, 3, why);
    if req.get("temporary") != Some(&Value::Bool(true))
        || req.get("modelName").and_then(Value::as_str) != Some("imagine-video-gen")
    {
        return bad("an extension is a temporary imagine-video-gen conversation");
    }
    let source = text("extendPostId");
    if source.is_empty() || text("parentPostId") != source || text("originalPostId").is_empty() {
        return bad("extendPostId, parentPostId (the same) and originalPostId are required");
    }
    if cfg.get("stitchWithExtendPostId") != Some(&Value::Bool(true))
        || text("originalRefType") != "ORIGINAL_REF_TYPE_VIDEO_EXTENSION"
    {
        return bad("an extension is stitched to its source (ORIGINAL_REF_TYPE_VIDEO_EXTENSION)");
    }
    let mode = text("mode");
    let message = req.get("message").and_then(Value::as_str).unwrap_or_default();
    if mode.is_empty() || !message.ends_with(&format!("--mode={mode}")) {
        return bad("the message must end with the config's --mode");
    }
    let Some(post) = sim.posts.get(source).map(|p| p.clone()) else {
        return json_error(StatusCode::NOT_FOUND, 5, "post not found");
    };
    if post.owner != account.user_id {
        return json_error(StatusCode::FORBIDDEN, 7, "invalid-parent-post");
    }
    let start = cfg.get("videoExtensionStartTime").and_then(Value::as_f64).unwrap_or(0.0);
    let more = cfg.get("videoLength").and_then(Value::as_u64).unwrap_or(0);
    if !(1.0..=post.seconds as f64 + 1.0).contains(&start) || !(1..=10).contains(&more) {
        return bad("videoExtensionStartTime must fall inside the source and videoLength be 1-10");
    }
    if !sim.take_quota(&account.token) {
        return crate::sim::state::rate_limited();
    }
    let prompt = message.trim_end_matches(&format!("--mode={mode}")).trim().to_owned();
    let faults = Faults::parse(&prompt);
    let input = json!({"aspectRatio": post.ratio, "resolutionName": post.resolution,
                       "duration": start.floor() as u64 + more});
    let source_video = sim.assets.get(&post.video_path).map(|a| a.bytes).into_iter().collect::<Vec<_>>();
    let ctx = Ctx {
        sim,
        user: &account.user_id,
        prompt: &prompt,
        input: &input,
        inputs: &source_video,
        faults: &faults,
        flagged: sim.flagged(&account.token),
        exact: true,
    };
    let mut steps = opening();
    if faults.rate_limit {
        steps.push(ndjson(json!({"error":{"code":8,"message":"Too many requests"}})));
        return stream_response(steps);
    }
    video_steps(&ctx, &mut steps);
    stream_response(steps)
}

struct Ctx<'a> {
    sim: &'a Sim,
    user: &'a str,
    prompt: &'a str,
    input: &'a Value,
    inputs: &'a [Bytes],
    faults: &'a Faults,
    /// The account answers with canned media whatever was asked.
    flagged: bool,
    /// The clip must last exactly `duration` (an extension: the source plus the added part).
    exact: bool,
}

impl Ctx<'_> {
    fn delay(&self) -> Duration {
        self.sim.cfg.frame_delay + self.faults.slow.unwrap_or_default()
    }

    /// Appends the failure a fault asks for at this point; true when the stream must end here.
    fn fail_midway(&self, steps: &mut Vec<Step>) -> bool {
        if self.faults.disconnect {
            steps.push(Step::Pause(self.delay()));
            steps.push(Step::Cut);
            return true;
        }
        if self.faults.fail {
            steps.push(ndjson(json!({"error":{"code":13,"message":"generation failed"}})));
            return true;
        }
        false
    }

    fn ratio(&self, default: &'static str) -> String {
        self.input.get("aspectRatio").and_then(Value::as_str).unwrap_or(default).to_owned()
    }
}

fn edit_steps(ctx: &Ctx<'_>, steps: &mut Vec<Step>) {
    let (w, h) = dims_for_ratio(&ctx.ratio("1:1"), ctx.sim.cfg.image_long_side);
    let ids: Vec<String> = (0..2).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let user = ctx.user;
    for (stage, pct) in [(0, 30), (1, 70)] {
        for (index, id) in ids.iter().enumerate() {
            steps.push(Step::Pause(ctx.delay()));
            steps.push(ndjson(json!({"result":{"response":{"streamingImageGenerationResponse":{
                "imageIndex":index,"progress":pct,"imageUrl":format!("users/{user}/generated/{id}-part-0/image.png")}}}})));
        }
        if stage == 0 && ctx.fail_midway(steps) {
            return;
        }
    }
    let mut finals = Vec::new();
    for (index, id) in ids.iter().enumerate() {
        steps.push(Step::Pause(ctx.delay()));
        if ctx.faults.moderated {
            steps.push(ndjson(json!({"result":{"response":{"streamingImageGenerationResponse":{
                "imageIndex":index,"progress":100,"moderated":true}}}})));
            continue;
        }
        let mut parts: Vec<&[u8]> = vec![ctx.prompt.as_bytes(), id.as_bytes()];
        parts.extend(ctx.inputs.iter().map(|b| b.as_ref()));
        let png = if ctx.flagged {
            super::render::canned_png()
        } else {
            Bytes::from(render_png(&seed_of(&parts), w, h, 1.0))
        };
        let path = format!("users/{user}/generated/{id}/image.png");
        ctx.sim.assets.put(path.clone(), StoredAsset { owner: user.to_owned(), content_type: "image/png", bytes: png });
        ctx.sim.uploads.insert(id.clone(), path.clone());
        steps.push(ndjson(json!({"result":{"response":{"streamingImageGenerationResponse":{
            "imageIndex":index,"progress":100,"imageUrl":path,"assetId":id,"moderated":false}}}})));
        finals.push(path);
    }
    let stream_errors: Vec<&str> = if ctx.faults.moderated { vec!["content moderated"] } else { vec![] };
    steps.push(ndjson(json!({"result":{"response":{"modelResponse":{"responseId":uuid::Uuid::new_v4().to_string(),
        "message":"","generatedImageUrls":finals,"fileAttachments":ids,"streamErrors":stream_errors}}}})));
    steps.push(ndjson(json!({"result":{"response":{"token":"","isSoftStop":true}}})));
}

fn video_steps(ctx: &Ctx<'_>, steps: &mut Vec<Step>) {
    ctx.sim.stats.video_starts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let ratio = ctx.ratio("2:3");
    let duration = ctx.input.get("duration").and_then(Value::as_u64).unwrap_or(6);
    let resolution = ctx.input.get("resolutionName").and_then(Value::as_str).unwrap_or("720p");
    let (video_id, post_id) = (uuid::Uuid::new_v4().to_string(), uuid::Uuid::new_v4().to_string());
    let user = ctx.user;
    let video_path = format!("users/{user}/generated/{video_id}/generated_video.mp4");
    let thumb_path = format!("users/{user}/generated/{video_id}/preview_image.png");
    // The video is made upstream whatever becomes of this stream: it is ready when the stream would
    // have delivered it, and its post says so.
    let post = crate::sim::state::SimPost {
        owner: user.to_owned(),
        video_id: video_id.clone(),
        ready_at: std::time::Instant::now() + ctx.delay() * 8,
        video_path: video_path.clone(),
        thumbnail_path: thumb_path.clone(),
        resolution: resolution.to_owned(),
        seconds: duration,
        ratio: ratio.clone(),
        moderated: ctx.faults.moderated,
        vanished: ctx.faults.vanish,
    };
    ctx.sim.posts.insert(post_id.clone(), post.clone());
    ctx.sim.posts.insert(video_id.clone(), post);
    if !ctx.faults.moderated && !ctx.faults.fail {
        let (w, h) = dims_for_ratio(&ratio, ctx.sim.cfg.image_long_side);
        let mut parts: Vec<&[u8]> = vec![ctx.prompt.as_bytes(), video_id.as_bytes()];
        parts.extend(ctx.inputs.iter().map(|b| b.as_ref()));
        let bytes = if ctx.flagged {
            super::video::canned_clip()
        } else {
            super::video::clip(&ratio, duration, &seed_of(&parts))
        };
        let bytes = if ctx.exact { Bytes::from(super::video::with_duration(bytes.to_vec(), duration)) } else { bytes };
        ctx.sim
            .assets
            .put(video_path.clone(), StoredAsset { owner: user.to_owned(), content_type: "video/mp4", bytes });
        let poster = Bytes::from(render_png(&seed_of(&parts), w, h, 1.0));
        ctx.sim
            .assets
            .put(thumb_path.clone(), StoredAsset { owner: user.to_owned(), content_type: "image/png", bytes: poster });
    }
    for (i, pct) in [1, 12, 27, 45, 64, 83, 95].into_iter().enumerate() {
        steps.push(Step::Pause(ctx.delay()));
        let mut frame = json!({"videoId":video_id,"videoPostId":post_id,"progress":pct});
        if i == 0 {
            frame["resolutionName"] = json!(resolution);
        }
        steps.push(ndjson(json!({"result":{"response":{"streamingVideoGenerationResponse":frame}}})));
        if i == 2 && ctx.fail_midway(steps) {
            return;
        }
    }
    steps.push(Step::Pause(ctx.delay()));
    if ctx.faults.moderated {
        steps.push(ndjson(json!({"result":{"response":{"streamingVideoGenerationResponse":{
            "videoId":video_id,"videoPostId":post_id,"progress":100,"moderated":true}}}})));
        steps
            .push(ndjson(json!({"result":{"response":{"modelResponse":{"responseId":uuid::Uuid::new_v4().to_string(),
            "fileAttachments":[],"streamErrors":["video moderated"]}}}})));
        return;
    }
    steps.push(ndjson(json!({"result":{"response":{"streamingVideoGenerationResponse":{
        "videoId":video_id,"videoPostId":post_id,"progress":100,"assetId":video_id,"moderated":false,
        "videoUrl":video_path,"thumbnailImageUrl":thumb_path}}}})));
    steps.push(ndjson(json!({"result":{"response":{"modelResponse":{"responseId":uuid::Uuid::new_v4().to_string(),
        "fileAttachments":[video_path],"streamErrors":[]}}}})));
    steps.push(ndjson(json!({"result":{"response":{"token":"I generated a video","isSoftStop":true}}})));
    if ctx.faults.keep_open {
        // The real stream sometimes stays open after the final URL.
        steps.push(Step::Pause(Duration::from_secs(600)));
    }
}

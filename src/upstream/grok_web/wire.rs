//! grok.com wire shapes as the client reads and writes them. Upstream names drift; they live here only.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::jobs::{VideoInput, VideoJob, VideoPreset};
use crate::upstream::grok_web::token_pool::{Plan, Product};

pub const IMAGINE_WS_PATH: &str = "/ws/imagine/listen";
pub const UPLOAD_PATH: &str = "/http/upload-file-v2/direct";
pub const CONVERSATION_PATH: &str = "/rest/app-chat/conversations/new";
pub const QUOTA_INFO_PATH: &str = "/rest/media/imagine/quota_info";
pub const RATE_LIMITS_PATH: &str = "/rest/rate-limits";
pub const MEDIA_POST_PATH: &str = "/rest/media/post/get";
pub const UPLOAD_FILE_SOURCE: &str = "IMAGINE_SELF_UPLOAD_FILE_SOURCE";
pub const EDIT_MODEL: &str = "imagine-image-edit";
pub const VIDEO_MODEL: &str = "imagine-video-gen";

/// The frame that clears the Imagine session before a new request.
pub fn imagine_reset() -> Value {
    json!({"type": "conversation.item.create", "timestamp": crate::clock::now_ms(),
           "item": {"type": "message", "content": [{"type": "reset"}]}})
}

/// Images the web app asks for per Imagine request; more are more requests on the same socket.
pub const IMAGES_PER_ROUND: usize = 2;

/// The ratios Imagine offers in fast mode, and in quality mode (`enable_pro`), as a grok.com capture
/// of 2026-08-23 lists them (chenyme/grok2api 05528aca, d8d5c24d model quality mode the same way).
pub const FAST_RATIOS: [&str; 5] = ["1:1", "2:3", "3:2", "16:9", "9:16"];
pub const QUALITY_RATIOS: [&str; 8] = ["1:1", "2:3", "3:2", "16:9", "9:16", "4:3", "21:9", "5:2"];

/// One Imagine request; `pro` is the web app's quality mode (`enable_pro`, metered as `imagePro`).
pub fn imagine_request(prompt: &str, aspect_ratio: &str, n: usize, nsfw: bool, pro: bool) -> Value {
    json!({
        "type": "conversation.item.create",
        "timestamp": crate::clock::now_ms(),
        "item": {"type": "message", "content": [{
            "requestId": uuid::Uuid::new_v4().to_string(),
            "text": prompt,
            "type": "input_text",
            "properties": {
                "section_count": 0, "is_kids_mode": false, "enable_nsfw": nsfw, "skip_upsampler": false,
                "enable_side_by_side": true, "is_initial": false, "aspect_ratio": aspect_ratio,
                "enable_pro": pro, "num_generations": n, "enable_watermark": false
            }
        }]}
    })
}

/// A server frame on the Imagine WebSocket, read field by field: the real frames carry the same
/// identity twice (`job_id` and `id`, `grid_index` and `order`) and fields we do not know, so a typed
/// decoder with aliases would reject them as duplicates. Unknown fields are ignored.
#[derive(Debug, PartialEq)]
pub enum ImagineFrame {
    Status(ImagineStatus),
    Image(ImagineImage),
    Error { err_code: Option<String>, err_msg: Option<String> },
    Other,
}

#[derive(Debug, PartialEq)]
pub struct ImagineStatus {
    pub current_status: Option<String>,
    pub image_id: Option<String>,
    pub order: Option<u32>,
    pub moderated: Option<bool>,
}

#[derive(Debug, PartialEq)]
pub struct ImagineImage {
    pub url: Option<String>,
    pub image_id: Option<String>,
    pub blob: Option<String>,
    /// `None` for the early previews that carry `percentage_complete: null`.
    pub percentage_complete: Option<f64>,
    pub order: Option<u32>,
}

/// The first of `keys` holding a non-empty string (or a number, as text).
fn text_of(v: &Value, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| match v.get(*k)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

fn number_of(v: &Value, keys: &[&str]) -> Option<f64> {
    keys.iter().find_map(|k| match v.get(*k)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().trim_end_matches('%').parse().ok(),
        _ => None,
    })
}

/// `None` when the text is not a JSON object at all.
pub fn parse_imagine_frame(text: &str) -> Option<ImagineFrame> {
    let v: Value = serde_json::from_str(text).ok()?;
    if !v.is_object() {
        return None;
    }
    // Status frames may send `image_id: null` next to `job_id`.
    let id = |v: &Value| text_of(v, &["image_id", "job_id", "id"]);
    let order = |v: &Value| number_of(v, &["side_by_side_index", "order", "grid_index"]).map(|n| n as u32);
    Some(match v.get("type").and_then(Value::as_str) {
        Some("json") => ImagineFrame::Status(ImagineStatus {
            current_status: text_of(&v, &["current_status"]),
            image_id: id(&v),
            order: order(&v),
            moderated: v.get("moderated").and_then(Value::as_bool),
        }),
        Some("image") => ImagineFrame::Image(ImagineImage {
            url: text_of(&v, &["url"]),
            image_id: id(&v),
            blob: text_of(&v, &["blob"]),
            percentage_complete: number_of(&v, &["percentage_complete"]),
            order: order(&v),
        }),
        Some("error") => ImagineFrame::Error {
            err_code: text_of(&v, &["err_code", "code"]),
            err_msg: text_of(&v, &["err_msg", "message"]),
        },
        _ => ImagineFrame::Other,
    })
}

impl ImagineImage {
    /// Identity of the image this frame belongs to: explicit id, else the URL's file stem.
    pub fn identity(&self) -> Option<String> {
        self.image_id.clone().or_else(|| {
            let url = self.url.as_deref()?;
            let file = url.split(['?', '#']).next()?.rsplit('/').next()?;
            Some(file.split('.').next().unwrap_or(file).to_owned())
        })
    }

    /// Final only at 100 % with something to keep; a null or lower percentage is a preview.
    pub fn is_final(&self) -> bool {
        self.percentage_complete.is_some_and(|p| p >= 100.0) && (self.blob.is_some() || self.url.is_some())
    }
}

/// The image-edit request body (newest `mediaGenInput` form).
pub fn edit_request(prompt: &str, asset_ids: &[String], aspect_ratio: Option<&str>) -> Value {
    let mut input = json!({"prompt": prompt, "inputAssets": asset_ids});
    if let Some(ar) = aspect_ratio {
        input["aspectRatio"] = json!(ar);
    }
    json!({
        "modelName": EDIT_MODEL,
        "message": prompt,
        "enableImageStreaming": true,
        "enableSideBySide": true,
        "sendFinalMetadata": true,
        "mediaGenInput": {"imageToImage": input}
    })
}

/// The body that asks `/rest/rate-limits` for the `auto` model's window, whose size tells the plan.
pub fn rate_limits_request() -> String {
    json!({"modelName": "auto"}).to_string()
}

/// The plan `/rest/rate-limits` implies for the `auto` model: its `totalQueries` is 7 or 20 on Basic
/// (free), 50 on SuperGrok, 150 on Heavy (chenyme/grok2api `web/quota.go`, 2026-08, the newest public
/// client that tells them apart; grok.com names no plan in that answer). Another total says nothing.
pub fn parse_plan(v: &Value) -> Option<Plan> {
    match v.get("totalQueries").and_then(Value::as_u64)? {
        7 | 20 => Some(Plan::Basic),
        50 => Some(Plan::SuperGrok),
        150 => Some(Plan::Heavy),
        _ => None,
    }
}

/// One product of `POST /rest/media/imagine/quota_info`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductQuota {
    pub available: bool,
    /// `None` when the answer does not say: unknown, not zero.
    pub remaining: Option<u32>,
    pub window_secs: Option<u64>,
    pub next_available_at: Option<std::time::SystemTime>,
}

/// quota_info's answer for the products we use (read under `Product::key`); a `null` (or missing)
/// product is `None`.
pub fn parse_quota_info(v: &Value) -> Result<Vec<(Product, Option<ProductQuota>)>, String> {
    if !v.is_object() {
        return Err(format!(
            "quota_info answer is not an object: {}",
            v.to_string().chars().take(120).collect::<String>()
        ));
    }
    Ok(Product::ALL
        .into_iter()
        .map(|product| {
            let q = v.get(product.key()).filter(|q| q.is_object()).map(|q| {
                let available = q.get("available").and_then(Value::as_bool).unwrap_or(true);
                let remaining =
                    q.get("remainingQueries").and_then(Value::as_u64).map(|n| n.min(u32::MAX as u64) as u32);
                ProductQuota {
                    available,
                    remaining: remaining.or((!available).then_some(0)),
                    window_secs: q.get("windowSizeSeconds").and_then(Value::as_u64),
                    next_available_at: q
                        .get("nextAvailableAt")
                        .and_then(Value::as_str)
                        .and_then(|t| humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).ok()),
                }
            });
            (product, q)
        })
        .collect())
}

/// The `--mode=` suffix grok.com reads from the message for a video preset.
pub fn video_mode(preset: VideoPreset) -> &'static str {
    match preset {
        VideoPreset::Normal => "normal",
        VideoPreset::Fun => "extremely-crazy",
        VideoPreset::Spicy => "extremely-spicy-or-crazy",
        VideoPreset::Custom => "custom",
    }
}

/// The video request body (`mediaGenInput` form): `textToVideo`, `imageToVideo` (one asset, its first
/// frame) or `referenceToVideo` (several). With a prompt the message is `<prompt> --mode=custom`; without
/// one `prompt` is left out and the message is `--mode=<preset>`, as the web app sends them. Must not
/// carry `temporary`, `parentPostId` or `videoGenModelConfig` (the legacy form).
pub fn video_request(job: &VideoJob, input_assets: &[String]) -> Value {
    let mode = video_mode(job.effective_preset());
    let mut input =
        json!({"aspectRatio": job.aspect_ratio, "duration": job.duration, "resolutionName": job.resolution});
    let message = if job.prompt.is_empty() {
        format!("--mode={mode}")
    } else {
        input["prompt"] = json!(job.prompt);
        format!("{} --mode={mode}", job.prompt)
    };
    let media = match job.input() {
        VideoInput::Text => json!({"textToVideo": input}),
        VideoInput::FirstFrame => {
            input["inputAssets"] = json!(input_assets);
            input["mode"] = json!(mode);
            json!({"imageToVideo": input})
        }
        VideoInput::References => {
            input["inputAssets"] = json!(input_assets);
            json!({"referenceToVideo": input})
        }
    };
    json!({
        "modelName": VIDEO_MODEL,
        "message": message,
        "enableImageStreaming": true,
        "enableSideBySide": true,
        "sendFinalMetadata": true,
        "responseMetadata": {"experiments": [], "modelConfigOverride": {"modelMap": {}}},
        "mediaGenInput": media,
        "kind": "CONVERSATION_KIND_IMAGINE"
    })
}

/// What an extension continues: a video post of the same account, its length, shape and the first
/// video of its chain.
pub struct ExtensionSource<'a> {
    pub post: &'a str,
    pub original_post: &'a str,
    pub seconds: f64,
    pub aspect_ratio: &'a str,
    pub resolution: &'a str,
}

/// The body that extends a video by `more` seconds: the web app's extend flow, which still sends the
/// older `videoGenModelConfig` form (a grok.com HAR of 2026-06 pinned by public clients'
/// tests: CrisLIUning/grok2api 3a836af, 2026-07-16, `TestBuildVideoExtensionPayloadMatchesHARShape`;
/// no public capture shows an extension in the `mediaGenInput` form). The start time is just past the
/// source's end (one frame at 24 fps); the answer is the stitched video, source and extension.
pub fn video_extension_request(prompt: &str, source: &ExtensionSource<'_>, more: u32) -> Value {
    let mode = if prompt.trim().is_empty() { "normal" } else { "custom" };
    let message = if mode == "custom" { format!("{} --mode={mode}", prompt.trim()) } else { format!("--mode={mode}") };
    let start = ((source.seconds + 1.0 / 24.0) * 1e6).round() / 1e6;
    json!({
        "temporary": true,
        "modelName": VIDEO_MODEL,
        "message": message,
        "fileAttachments": [],
        "enableSideBySide": true,
        "responseMetadata": {"experiments": [], "modelConfigOverride": {"modelMap": {"videoGenModelConfig": {
            "isVideoExtension": true,
            "videoExtensionStartTime": start,
            "extendPostId": source.post,
            "stitchWithExtendPostId": true,
            "originalPostId": source.original_post,
            "originalRefType": "ORIGINAL_REF_TYPE_VIDEO_EXTENSION",
            "mode": mode,
            "aspectRatio": source.aspect_ratio,
            "videoLength": more,
            "resolutionName": source.resolution,
            "isVideoEdit": false,
            "parentPostId": source.post
        }}}}
    })
}

/// `POST /rest/media/post/get`'s answer for a video post, as far as recovering the video goes.
#[derive(Debug, Default, PartialEq)]
pub struct VideoPost {
    /// Empty until the video is ready.
    pub video_url: Option<String>,
    pub thumbnail_url: Option<String>,
    pub moderated: bool,
}

/// Reads a media post; the HD rendition first, as the web app plays it (SentDz/grok2api `video.go`,
/// `fetchMediaPostVideo`: `hdMediaUrl`, then `mediaUrl`, then `hd1080MediaUrl`).
pub fn parse_video_post(v: &Value) -> Option<VideoPost> {
    let post = v.get("post")?;
    let url = |key: &str| post.get(key).and_then(Value::as_str).map(str::trim).filter(|u| !u.is_empty());
    Some(VideoPost {
        video_url: ["hdMediaUrl", "mediaUrl", "hd1080MediaUrl"].into_iter().find_map(url).map(str::to_owned),
        thumbnail_url: url("thumbnailImageUrl").map(str::to_owned),
        moderated: post.get("moderated").and_then(Value::as_bool).unwrap_or(false),
    })
}

#[derive(Debug, Deserialize)]
pub struct UploadResponse {
    #[serde(default, rename = "uploadId")]
    pub upload_id: Option<String>,
    #[serde(default, rename = "fileMetadata")]
    pub file_metadata: Option<UploadMetadata>,
    #[serde(default, rename = "fileMetadataId")]
    pub file_metadata_id: Option<String>,
    #[serde(default, rename = "terminalError")]
    pub terminal_error: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct UploadMetadata {
    #[serde(default, rename = "fileMetadataId")]
    pub file_metadata_id: Option<String>,
    #[serde(default, rename = "fileId")]
    pub file_id: Option<String>,
}

impl UploadResponse {
    pub fn asset_id(self) -> Option<String> {
        let meta = self.file_metadata;
        meta.as_ref()
            .and_then(|m| m.file_metadata_id.clone().or_else(|| m.file_id.clone()))
            .or(self.file_metadata_id)
            .or(self.upload_id)
            .filter(|s| !s.is_empty())
    }
}

/// `result.response.streamingImageGenerationResponse` of the conversation stream.
#[derive(Debug, Deserialize)]
pub struct StreamingImage {
    #[serde(default, rename = "imageIndex")]
    pub image_index: Option<u32>,
    #[serde(default, deserialize_with = "lenient_progress")]
    pub progress: Option<f64>,
    #[serde(default, rename = "imageUrl")]
    pub image_url: Option<String>,
    #[serde(default)]
    pub moderated: Option<bool>,
    #[serde(default, rename = "isFinal")]
    pub is_final: Option<bool>,
    #[serde(default, rename = "assetId")]
    pub asset_id: Option<String>,
}

impl StreamingImage {
    /// The account's id for the image: `assetId`, else the `<id>` of `users/<uid>/generated/<id>/...`
    /// (chenyme/grok2api `image.go` fixtures carry only the URL).
    pub fn asset_id(&self) -> Option<String> {
        self.asset_id.clone().filter(|a| !a.is_empty()).or_else(|| {
            let url = self.image_url.as_deref()?;
            let rest = &url[url.find("/generated/")? + "/generated/".len()..];
            rest.split('/').next().filter(|id| !id.is_empty() && !id.contains("-part-")).map(str::to_owned)
        })
    }
}

/// Progress arrives as an integer, float or numeric string depending on the upstream's mood.
fn lenient_progress<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().trim_end_matches('%').parse().ok(),
        _ => None,
    })
}

/// `result.response.streamingVideoGenerationResponse`.
#[derive(Debug, Deserialize)]
pub struct StreamingVideo {
    #[serde(default, deserialize_with = "lenient_progress")]
    pub progress: Option<f64>,
    /// Present from the first frame: once seen, the upstream has started (and will bill) this video.
    #[serde(default, rename = "videoId")]
    pub video_id: Option<String>,
    /// The media post the video belongs to: where it can be collected if the stream breaks.
    #[serde(default, rename = "videoPostId")]
    pub video_post_id: Option<String>,
    #[serde(default, rename = "assetId")]
    pub asset_id: Option<String>,
    #[serde(default, rename = "videoUrl")]
    pub video_url: Option<String>,
    #[serde(default, rename = "thumbnailImageUrl")]
    pub thumbnail_image_url: Option<String>,
    #[serde(default)]
    pub moderated: Option<bool>,
}

/// One decoded conversation-stream frame, reduced to what media jobs need.
#[derive(Debug)]
pub enum ConversationEvent {
    Image(StreamingImage),
    Video(StreamingVideo),
    /// `modelResponse`: final URLs, attachments and stream errors.
    ModelResponse {
        image_urls: Vec<String>,
        file_attachments: Vec<String>,
        stream_errors: Vec<String>,
    },
    Error {
        code: Option<String>,
        message: String,
    },
    Other,
}

pub fn parse_conversation_frame(v: &Value) -> ConversationEvent {
    if let Some(err) = v.get("error").or_else(|| v.pointer("/result/response/error")) {
        let code = err.get("code").map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_owned));
        let message = err.get("message").and_then(Value::as_str).map_or_else(|| err.to_string(), str::to_owned);
        return ConversationEvent::Error { code, message };
    }
    let Some(resp) = v.pointer("/result/response") else { return ConversationEvent::Other };
    if let Some(img) = resp.get("streamingImageGenerationResponse") {
        return match StreamingImage::deserialize(img) {
            Ok(i) => ConversationEvent::Image(i),
            Err(_) => ConversationEvent::Other,
        };
    }
    if let Some(video) = resp.get("streamingVideoGenerationResponse") {
        return match StreamingVideo::deserialize(video) {
            Ok(v) => ConversationEvent::Video(v),
            Err(_) => ConversationEvent::Other,
        };
    }
    if let Some(model) = resp.get("modelResponse") {
        let strings = |key: &str| -> Vec<String> {
            model.get(key).and_then(Value::as_array).map_or_else(Vec::new, |a| {
                a.iter().map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned)).collect()
            })
        };
        let mut image_urls = strings("generatedImageUrls");
        image_urls.extend(strings("imageUrls"));
        return ConversationEvent::ModelResponse {
            image_urls,
            file_attachments: strings("fileAttachments"),
            stream_errors: strings("streamErrors"),
        };
    }
    ConversationEvent::Other
}

#[cfg(test)]
mod tests {
    use crate::upstream::grok_web::wire::*;

    #[test]
    fn imagine_frames_parse() {
        let f = parse_imagine_frame(
            r#"{"type":"image","url":"https://imagine-public.x.ai/imagine-public/images/abc-1.jpg?x=1","blob":"AA==","percentage_complete":40,"order":1}"#,
        )
        .unwrap();
        let ImagineFrame::Image(img) = f else { panic!("not an image frame") };
        assert_eq!(img.identity().as_deref(), Some("abc-1"));
        assert_eq!(img.order, Some(1));
        assert!(!img.is_final());
        let f = parse_imagine_frame(r#"{"type":"error","err_code":429,"err_msg":"slow down"}"#).unwrap();
        assert!(matches!(f, ImagineFrame::Error { err_code: Some(c), .. } if c == "429"));
        assert_eq!(parse_imagine_frame(r#"{"type":"something_new","x":1}"#), Some(ImagineFrame::Other));
        assert_eq!(parse_imagine_frame("<html>"), None);
    }

    const FIXTURE_IMAGINE: &str = include_str!("../../../tests/fixtures/grok-web/imagine-frames.jsonl");
    const FIXTURE_VIDEO: &str = include_str!("../../../tests/fixtures/grok-web/conversation-video.jsonl");
    const FIXTURE_ERRORS: &str = include_str!("../../../tests/fixtures/grok-web/conversation-errors.jsonl");
    const FIXTURE_POST: &str = include_str!("../../../tests/fixtures/grok-web/media-post.jsonl");

    #[test]
    fn every_captured_imagine_frame_parses() {
        let frames: Vec<ImagineFrame> =
            FIXTURE_IMAGINE.lines().map(|l| parse_imagine_frame(l).unwrap_or_else(|| panic!("{l}"))).collect();
        let id = "5b0c3f6e-1d2a-4c8b-9e7f-0a1b2c3d4e5f";
        // A status frame with image_id null is named by its job_id.
        let ImagineFrame::Status(start) = &frames[0] else { panic!() };
        assert_eq!((start.image_id.as_deref(), start.current_status.as_deref()), (Some(id), Some("start_stage")));
        // job_id and id, grid_index and order at once: one image, one position.
        let ImagineFrame::Image(first) = &frames[1] else { panic!() };
        assert_eq!((first.identity().as_deref(), first.order), (Some(id), Some(0)));
        // percentage_complete: null is the earliest preview, not the final image.
        assert_eq!(first.percentage_complete, None);
        assert!(!first.is_final());
        let ImagineFrame::Image(half) = &frames[2] else { panic!() };
        assert!(!half.is_final());
        let ImagineFrame::Image(done) = &frames[4] else { panic!() };
        assert!(done.is_final());
        let ImagineFrame::Status(by_id) = &frames[5] else { panic!() };
        assert_eq!((by_id.image_id.as_deref(), by_id.moderated), (Some("image-1"), Some(true)));
        assert!(matches!(&frames[6], ImagineFrame::Error { err_code: Some(c), .. } if c == "rate_limit_exceeded"));
        assert_eq!(frames[7], ImagineFrame::Other);
    }

    #[test]
    fn every_captured_conversation_line_parses() {
        let events: Vec<ConversationEvent> =
            FIXTURE_VIDEO.lines().map(|l| parse_conversation_frame(&serde_json::from_str(l).unwrap())).collect();
        let ConversationEvent::Video(first) = &events[0] else { panic!("{:?}", events[0]) };
        assert!(first.video_id.is_some(), "videoId comes with the first frame");
        assert!(first.video_post_id.is_some(), "so does the post the video can be collected from");
        assert!(first.video_url.is_none());
        let ConversationEvent::Video(last) = &events[2] else { panic!() };
        assert!(last.video_url.as_deref().is_some_and(|u| u.ends_with(".mp4")));
        assert!(last.asset_id.is_some() && last.thumbnail_image_url.is_some());
        assert!(
            matches!(&events[3], ConversationEvent::ModelResponse { file_attachments, .. } if file_attachments.len() == 1)
        );

        let mut lines = FIXTURE_ERRORS.lines().map(|l| parse_conversation_frame(&serde_json::from_str(l).unwrap()));
        let Some(ConversationEvent::ModelResponse { stream_errors, .. }) = lines.next() else { panic!() };
        // An object, not a string: its message decides (usage limit = quota, not a failure).
        assert!(matches!(
            crate::upstream::grok_web::classify::classify_stream_errors(&stream_errors),
            crate::upstream::error::UpstreamError::RateLimited { .. }
        ));
        assert!(matches!(lines.next(), Some(ConversationEvent::Error { code: Some(c), .. }) if c == "7"));
    }

    /// The fields a grok.com HAR of 2026-06 shows for an extension, as public clients pin them
    /// (CrisLIUning/grok2api 3a836af's `TestBuildVideoExtensionPayloadMatchesHARShape`).
    #[test]
    fn an_extension_is_the_web_apps_extend_request() {
        let src = ExtensionSource {
            post: "post-A",
            original_post: "root-X",
            seconds: 6.0,
            aspect_ratio: "9:16",
            resolution: "720p",
        };
        let v = video_extension_request("", &src, 10);
        assert_eq!(
            (v["temporary"].clone(), v["modelName"].clone(), v["message"].clone()),
            (json!(true), json!("imagine-video-gen"), json!("--mode=normal"))
        );
        assert_eq!(v["enableSideBySide"], true);
        let c = &v["responseMetadata"]["modelConfigOverride"]["modelMap"]["videoGenModelConfig"];
        assert_eq!(c["isVideoExtension"], true);
        assert_eq!(c["videoExtensionStartTime"], 6.041667);
        assert_eq!(
            (c["extendPostId"].clone(), c["parentPostId"].clone(), c["originalPostId"].clone()),
            (json!("post-A"), json!("post-A"), json!("root-X"))
        );
        assert_eq!(c["stitchWithExtendPostId"], true);
        assert_eq!(c["originalRefType"], "ORIGINAL_REF_TYPE_VIDEO_EXTENSION");
        assert_eq!(
            (c["mode"].clone(), c["videoLength"].clone(), c["aspectRatio"].clone(), c["resolutionName"].clone()),
            (json!("normal"), json!(10), json!("9:16"), json!("720p"))
        );
        assert_eq!(c["isVideoEdit"], false);
        // Chat-era fields got such requests refused by the anti-bot rules (the same test's envelope).
        for banned in ["toolOverrides", "imageGenerationCount", "modelMode", "deviceEnvInfo", "isAsyncChat"] {
            assert!(v.get(banned).is_none(), "{banned}");
        }
        let v = video_extension_request(" the boat sails on ", &src, 4);
        assert_eq!(v["message"], "the boat sails on --mode=custom");
    }

    #[test]
    fn the_auto_models_window_tells_the_plan() {
        // chenyme/grok2api web/quota.go (2026-08): auto 7/20 → Basic, 50 → SuperGrok, 150 → Heavy.
        let plan =
            |total: u64| parse_plan(&json!({"windowSizeSeconds": 7200, "remainingQueries": 3, "totalQueries": total}));
        assert_eq!(
            [plan(7), plan(20), plan(50), plan(150)],
            [Some(Plan::Basic), Some(Plan::Basic), Some(Plan::SuperGrok), Some(Plan::Heavy)]
        );
        assert_eq!(plan(1_000_000), None);
        assert_eq!(parse_plan(&json!({"error": "x"})), None);
        assert_eq!(rate_limits_request(), r#"{"modelName":"auto"}"#);
    }

    #[test]
    fn captured_quota_info_parses_per_product() {
        let v: Value = serde_json::from_str(include_str!("../../../tests/fixtures/grok-web/quota-info.json")).unwrap();
        let q = parse_quota_info(&v).unwrap();
        let get = |k: &str| q.iter().find(|(p, _)| p.key() == k).unwrap().1.clone();
        assert_eq!(get("image"), None);
        let v720 = get("video720p").unwrap();
        assert_eq!((v720.available, v720.remaining), (true, Some(0)));
        assert!(v720.next_available_at.is_some(), "nanosecond RFC 3339 must parse");
        // No count and not available: zero. No count but available: unknown, not zero.
        let q = parse_quota_info(&json!({"video": {"available": false}, "image": {"available": true}})).unwrap();
        assert_eq!(q.iter().find(|(p, _)| *p == Product::Video).unwrap().1.as_ref().unwrap().remaining, Some(0));
        assert_eq!(q.iter().find(|(p, _)| *p == Product::Image).unwrap().1.as_ref().unwrap().remaining, None);
    }

    #[test]
    fn conversation_frames_parse() {
        let v = serde_json::json!({"result":{"response":{"streamingImageGenerationResponse":{"imageIndex":1,"progress":"55","imageUrl":"users/u/generated/a-part-0/image.jpg"}}}});
        let ConversationEvent::Image(i) = parse_conversation_frame(&v) else { panic!() };
        assert_eq!((i.image_index, i.progress), (Some(1), Some(55.0)));
        let v = serde_json::json!({"error":{"code":8,"message":"Too many requests"}});
        assert!(matches!(parse_conversation_frame(&v), ConversationEvent::Error { code: Some(c), .. } if c == "8"));
        let v =
            serde_json::json!({"result":{"response":{"modelResponse":{"generatedImageUrls":["a"],"streamErrors":[]}}}});
        assert!(
            matches!(parse_conversation_frame(&v), ConversationEvent::ModelResponse { image_urls, .. } if image_urls == vec!["a"])
        );
    }

    fn video_job(prompt: &str, images: usize, preset: VideoPreset) -> VideoJob {
        let image = crate::jobs::InputImage {
            bytes: bytes::Bytes::from_static(b"x"),
            content_type: "image/png",
            file_name: "a.png".into(),
            origin: None,
        };
        VideoJob {
            prompt: prompt.into(),
            aspect_ratio: "2:3",
            duration: 7,
            resolution: "480p",
            preset,
            images: vec![image; images],
        }
    }

    #[test]
    fn video_requests_have_the_web_apps_shape() {
        let ids = |n: usize| (0..n).map(|i| format!("asset-{i}")).collect::<Vec<_>>();
        // A prompt is the user's direction: custom mode, whatever the preset.
        let t2v = video_request(&video_job("a kite", 0, VideoPreset::Spicy), &[]);
        assert_eq!(t2v["message"], "a kite --mode=custom");
        assert_eq!(
            t2v["mediaGenInput"]["textToVideo"],
            json!({"prompt": "a kite", "aspectRatio": "2:3",
            "duration": 7, "resolutionName": "480p"})
        );
        for legacy in ["temporary", "parentPostId", "videoGenModelConfig"] {
            assert!(t2v.get(legacy).is_none(), "{legacy}");
        }
        let i2v = video_request(&video_job("wind", 1, VideoPreset::Normal), &ids(1));
        assert_eq!(i2v["mediaGenInput"]["imageToVideo"]["inputAssets"], json!(["asset-0"]));
        assert_eq!(i2v["mediaGenInput"]["imageToVideo"]["mode"], "custom");
        // No prompt: `prompt` left out, the preset's mode in the message and the input.
        let bare = video_request(&video_job("", 1, VideoPreset::Fun), &ids(1));
        assert_eq!(bare["message"], "--mode=extremely-crazy");
        assert!(bare["mediaGenInput"]["imageToVideo"].get("prompt").is_none());
        assert_eq!(bare["mediaGenInput"]["imageToVideo"]["mode"], "extremely-crazy");
        let refs = video_request(&video_job("they dance", 3, VideoPreset::Normal), &ids(3));
        assert_eq!(refs["mediaGenInput"]["referenceToVideo"]["inputAssets"], json!(["asset-0", "asset-1", "asset-2"]));
        assert!(refs["mediaGenInput"].get("imageToVideo").is_none());
    }

    #[test]
    fn media_posts_give_the_hd_rendition_once_ready() {
        let posts: Vec<VideoPost> = FIXTURE_POST
            .lines()
            .map(|l| parse_video_post(&serde_json::from_str(l).unwrap()).unwrap_or_else(|| panic!("{l}")))
            .collect();
        assert_eq!(posts[0], VideoPost::default(), "empty URLs: not ready yet");
        assert!(posts[1].video_url.as_deref().is_some_and(|u| u.ends_with("_hd.mp4")), "the HD rendition first");
        assert!(posts[1].thumbnail_url.is_some());
        assert!(posts[2].moderated);
        assert_eq!(parse_video_post(&json!({"error": {"code": 5}})), None);
    }

    #[test]
    fn an_edited_images_asset_id_comes_from_the_frame_or_its_url() {
        let frame = |v: Value| StreamingImage::deserialize(&v).unwrap().asset_id();
        assert_eq!(
            frame(json!({"assetId": "a1", "imageUrl": "users/u/generated/zz/image.jpg"})).as_deref(),
            Some("a1")
        );
        assert_eq!(frame(json!({"imageUrl": "users/u/generated/b2/image.jpg"})).as_deref(), Some("b2"));
        assert_eq!(frame(json!({"imageUrl": "users/u/generated/b2-part-0/image.jpg"})), None);
        assert_eq!(frame(json!({"imageUrl": "https://imagine-public.x.ai/images/x.png"})), None);
    }

    #[test]
    fn upload_id_fallbacks() {
        let r: UploadResponse = serde_json::from_str(r#"{"uploadId":"up","fileMetadata":{"fileId":"f1"}}"#).unwrap();
        assert_eq!(r.asset_id().as_deref(), Some("f1"));
        let r: UploadResponse = serde_json::from_str(r#"{"uploadId":"up"}"#).unwrap();
        assert_eq!(r.asset_id().as_deref(), Some("up"));
    }
}

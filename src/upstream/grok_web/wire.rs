//! grok.com wire shapes as the client reads and writes them. Upstream names drift; they live here only.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::jobs::{VideoJob, VideoPreset};

pub const IMAGINE_WS_PATH: &str = "/ws/imagine/listen";
pub const UPLOAD_PATH: &str = "/http/upload-file-v2/direct";
pub const CONVERSATION_PATH: &str = "/rest/app-chat/conversations/new";
pub const RATE_LIMITS_PATH: &str = "/rest/rate-limits";
pub const UPLOAD_FILE_SOURCE: &str = "IMAGINE_SELF_UPLOAD_FILE_SOURCE";
pub const EDIT_MODEL: &str = "imagine-image-edit";
pub const VIDEO_MODEL: &str = "imagine-video-gen";

fn now_millis() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The frame that clears the Imagine session before a new request.
pub fn imagine_reset() -> Value {
    json!({"type": "conversation.item.create", "timestamp": now_millis(),
           "item": {"type": "message", "content": [{"type": "reset"}]}})
}

pub fn imagine_request(prompt: &str, aspect_ratio: &str, n: usize, nsfw: bool) -> Value {
    json!({
        "type": "conversation.item.create",
        "timestamp": now_millis(),
        "item": {"type": "message", "content": [{
            "requestId": uuid::Uuid::new_v4().to_string(),
            "text": prompt,
            "type": "input_text",
            "properties": {
                "section_count": 0, "is_kids_mode": false, "enable_nsfw": nsfw, "skip_upsampler": false,
                "enable_side_by_side": true, "is_initial": false, "aspect_ratio": aspect_ratio,
                "enable_pro": false, "num_generations": n
            }
        }]}
    })
}

/// A server frame on the Imagine WebSocket.
#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
pub enum ImagineFrame {
    #[serde(rename = "json")]
    Status(ImagineStatus),
    #[serde(rename = "image")]
    Image(ImagineImage),
    #[serde(rename = "error")]
    Error {
        #[serde(default, deserialize_with = "lenient_string")]
        err_code: Option<String>,
        #[serde(default)]
        err_msg: Option<String>,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
pub struct ImagineStatus {
    #[serde(default)]
    pub current_status: Option<String>,
    #[serde(default, alias = "job_id", alias = "id")]
    pub image_id: Option<String>,
    #[serde(default, alias = "side_by_side_index", alias = "grid_index")]
    pub order: Option<u32>,
    #[serde(default)]
    pub moderated: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct ImagineImage {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default, alias = "job_id", alias = "id")]
    pub image_id: Option<String>,
    #[serde(default)]
    pub blob: Option<String>,
    #[serde(default)]
    pub percentage_complete: Option<f64>,
    #[serde(default, alias = "side_by_side_index", alias = "grid_index")]
    pub order: Option<u32>,
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
}

fn lenient_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Null => None,
        Value::String(s) => Some(s),
        other => Some(other.to_string()),
    })
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

pub fn rate_limits_request() -> Value {
    json!({"requestKind": "DEFAULT", "modelName": "grok-3"})
}

/// `POST /rest/rate-limits` answer.
#[derive(Debug, Deserialize)]
pub struct RateLimits {
    #[serde(default, rename = "remainingQueries")]
    pub remaining_queries: Option<u32>,
    #[serde(default, rename = "remainingTokens")]
    pub remaining_tokens: Option<u32>,
    #[serde(default, rename = "windowSizeSeconds")]
    pub window_size_seconds: Option<u64>,
}

impl RateLimits {
    pub fn remaining(&self) -> u32 {
        self.remaining_queries.or(self.remaining_tokens).unwrap_or(0)
    }
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

/// Text-to-video (`mediaGenInput.textToVideo`) or, with an uploaded asset, image-to-video
/// (`mediaGenInput.imageToVideo`). Must not carry `temporary`, `parentPostId` or `videoGenModelConfig`.
pub fn video_request(job: &VideoJob, input_asset: Option<&str>) -> Value {
    let mode = video_mode(job.preset);
    let mut input = json!({"prompt": job.prompt, "aspectRatio": job.aspect_ratio, "duration": job.duration,
                           "resolutionName": job.resolution});
    let media = match input_asset {
        Some(id) => {
            input["inputAssets"] = json!([id]);
            input["mode"] = json!(mode);
            json!({"imageToVideo": input})
        }
        None => json!({"textToVideo": input}),
    };
    json!({
        "modelName": VIDEO_MODEL,
        "message": format!("{} --mode={mode}", job.prompt),
        "enableImageStreaming": true,
        "enableSideBySide": true,
        "sendFinalMetadata": true,
        "responseMetadata": {"experiments": [], "modelConfigOverride": {"modelMap": {}}},
        "mediaGenInput": media,
        "kind": "CONVERSATION_KIND_IMAGINE"
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
    use super::*;

    #[test]
    fn imagine_frames_parse() {
        let f: ImagineFrame = serde_json::from_str(
            r#"{"type":"image","url":"https://imagine-public.x.ai/imagine-public/images/abc-1.jpg?x=1","blob":"AA==","percentage_complete":40,"order":1}"#,
        )
        .unwrap();
        let ImagineFrame::Image(img) = f else { panic!("not an image frame") };
        assert_eq!(img.identity().as_deref(), Some("abc-1"));
        assert_eq!(img.order, Some(1));
        let f: ImagineFrame = serde_json::from_str(r#"{"type":"error","err_code":429,"err_msg":"slow down"}"#).unwrap();
        assert!(matches!(f, ImagineFrame::Error { err_code: Some(c), .. } if c == "429"));
        let f: ImagineFrame = serde_json::from_str(r#"{"type":"something_new","x":1}"#).unwrap();
        assert!(matches!(f, ImagineFrame::Other));
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

    #[test]
    fn upload_id_fallbacks() {
        let r: UploadResponse = serde_json::from_str(r#"{"uploadId":"up","fileMetadata":{"fileId":"f1"}}"#).unwrap();
        assert_eq!(r.asset_id().as_deref(), Some("f1"));
        let r: UploadResponse = serde_json::from_str(r#"{"uploadId":"up"}"#).unwrap();
        assert_eq!(r.asset_id().as_deref(), Some("up"));
    }
}

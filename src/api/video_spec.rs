//! What a video create asks for, whichever API's body it came in (OpenAI's Videos API in `videos.rs`,
//! xAI's in `xai_videos.rs`): sizes, lengths and models checked, and the task submitted.

use std::sync::Arc;

use axum::http::HeaderMap;
use serde_json::Value;

use super::tasks::{NewTask, submit};
use super::{Capability, MODELS, resolve_model, validate_prompt};
use crate::api::state::AppState;
use crate::error::ApiError;
use crate::jobs::{InputImage, Job, VIDEO_SECONDS, VideoJob, VideoPreset};
use crate::owner::KeyId;
use crate::tasks::{TaskApi, TaskKind, VideoRequest};

/// `size` → (aspect ratio, resolution, the size actually made). OpenAI's four sizes first: the two
/// large ones are made at 720p, the most grok.com makes, and the Video object says so.
pub const SIZES: &[(&str, &str, &str, &str)] = &[
    ("720x1280", "9:16", "720p", "720x1280"),
    ("1280x720", "16:9", "720p", "1280x720"),
    ("1024x1792", "9:16", "720p", "720x1280"),
    ("1792x1024", "16:9", "720p", "1280x720"),
    ("1080x720", "3:2", "720p", "1080x720"),
    ("720x1080", "2:3", "720p", "720x1080"),
    ("720x720", "1:1", "720p", "720x720"),
    ("854x480", "16:9", "480p", "854x480"),
    ("480x854", "9:16", "480p", "480x854"),
    ("720x480", "3:2", "480p", "720x480"),
    ("480x720", "2:3", "480p", "480x720"),
    ("480x480", "1:1", "480p", "480x480"),
    // Only where the upstream's model makes 1080p (xAI's grok-imagine-video-1.5): `upstream_limits::check_resolution`.
    ("1920x1080", "16:9", "1080p", "1920x1080"),
    ("1080x1920", "9:16", "1080p", "1080x1920"),
];

/// OpenAI's default size and length.
const DEFAULT_SIZE: &str = "720x1280";
const DEFAULT_SECONDS: u32 = 4;

/// What a video create asks for, validated, whichever API's body it came in.
#[derive(Debug, PartialEq)]
pub struct VideoSpec {
    pub model: &'static str,
    /// Empty only for image-to-video through the xAI shape.
    pub prompt: String,
    pub seconds: u32,
    pub aspect_ratio: &'static str,
    pub resolution: &'static str,
    /// What the task reports as its size: OpenAI's size as made, xAI's aspect ratio.
    pub size: &'static str,
}

impl VideoSpec {
    /// OpenAI's body (JSON fields, or the multipart form's).
    pub fn parse(fields: &serde_json::Map<String, Value>) -> Result<Self, ApiError> {
        let text = |k: &str| fields.get(k).and_then(Value::as_str);
        let prompt = validate_prompt(text("prompt").ok_or_else(|| ApiError::missing_field("prompt"))?)?;
        let (aspect_ratio, resolution, made) = size(text("size"))?;
        Ok(Self {
            model: video_model(text("model"))?,
            prompt,
            seconds: seconds(fields.get("seconds"), "seconds", DEFAULT_SECONDS)?,
            aspect_ratio,
            resolution,
            size: made,
        })
    }
}

/// Creates the video task both video APIs make: `spec` recorded with the task for `api`'s reads,
/// `images` loaded only once the cheap checks (idempotency, limits, callback) have passed.
pub async fn submit_video(
    state: &AppState,
    owner: KeyId,
    headers: &HeaderMap,
    api: TaskApi,
    spec: &VideoSpec,
    body: &serde_json::Map<String, Value>,
    images: impl AsyncFnOnce() -> Result<Vec<InputImage>, ApiError>,
) -> Result<std::sync::Arc<str>, ApiError> {
    let request = Arc::new(VideoRequest {
        model: spec.model.to_owned(),
        prompt: spec.prompt.clone(),
        seconds: spec.seconds,
        size: spec.size.to_owned(),
        resolution: spec.resolution.to_owned(),
        remixed_from: None,
    });
    let new = NewTask { kind: TaskKind::Video, api, request: Some(request), body };
    submit(state, owner, headers, new, async || {
        let job = VideoJob {
            prompt: spec.prompt.clone(),
            aspect_ratio: spec.aspect_ratio,
            duration: spec.seconds,
            resolution: spec.resolution,
            // A prompt is its own direction (custom); only a prompt-less image-to-video uses the preset.
            preset: VideoPreset::Normal,
            images: images().await?,
        };
        Ok((Job::Video(job), false))
    })
    .await
}

/// xAI's own video model ids, as clients written for xAI send them: they name our video model, which
/// the xAI upstream makes with `xai.video_model` whatever the client named.
const XAI_VIDEO_IDS: &[&str] =
    &["grok-imagine-video-1.5", "grok-imagine-video-1.5-preview", "grok-imagine-video-1.5-lite"];

/// The video model for `model` (default: ours); a Sora model gets the list of what we serve.
pub fn video_model(model: Option<&str>) -> Result<&'static str, ApiError> {
    let Some(model) = model.map(str::trim).filter(|m| !m.is_empty()) else {
        return resolve_model("grok-imagine-1.0-video", Capability::Video);
    };
    if XAI_VIDEO_IDS.contains(&model) {
        return resolve_model("grok-imagine-1.0-video", Capability::Video);
    }
    resolve_model(model, Capability::Video).map_err(|mut e| {
        let ours: Vec<&str> = MODELS
            .iter()
            .filter(|(_, _, c)| *c == Capability::Video)
            .flat_map(|(id, alias, _)| [*id, *alias])
            .collect();
        e.message = format!("model `{model}` is not served here; video models: {}", ours.join(", "));
        e
    })
}

/// A video length as the APIs send it (a string, as OpenAI does, or a number): whole seconds the
/// upstreams make. `param` names the field in the error; `default` is the API's own.
pub fn seconds(v: Option<&Value>, param: &str, default: u32) -> Result<u32, ApiError> {
    let bad = |got: &str| {
        ApiError::invalid_param(
            param,
            format!(
                "{param} must be a whole number from {} to {}, got {got}",
                VIDEO_SECONDS.start(),
                VIDEO_SECONDS.end()
            ),
        )
    };
    let n = match v {
        None | Some(Value::Null) => return Ok(default),
        Some(Value::String(s)) => s.trim().parse::<u32>().map_err(|_| bad(&format!("`{s}`")))?,
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| bad(&n.to_string()))?,
        Some(other) => return Err(bad(&other.to_string())),
    };
    if VIDEO_SECONDS.contains(&n) { Ok(n) } else { Err(bad(&n.to_string())) }
}

pub fn size(v: Option<&str>) -> Result<(&'static str, &'static str, &'static str), ApiError> {
    let asked = v.map(str::trim).filter(|s| !s.is_empty()).unwrap_or(DEFAULT_SIZE);
    SIZES.iter().find(|(s, ..)| *s == asked).map(|(_, ratio, res, made)| (*ratio, *res, *made)).ok_or_else(|| {
        let allowed: Vec<&str> = SIZES.iter().map(|(s, ..)| *s).collect();
        ApiError::invalid_param("size", format!("`{asked}` is not one of {}", allowed.join(", ")))
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn openai_sizes_and_lengths_map_or_are_refused_by_name() {
        assert_eq!(size(None).unwrap(), ("9:16", "720p", "720x1280"));
        assert_eq!(size(Some("1792x1024")).unwrap(), ("16:9", "720p", "1280x720"));
        assert_eq!(size(Some("480x480")).unwrap(), ("1:1", "480p", "480x480"));
        // 1080p sizes parse; whether the upstream makes them is `upstream_limits::check_resolution`'s to say.
        assert_eq!(size(Some("1920x1080")).unwrap(), ("16:9", "1080p", "1920x1080"));
        let e = size(Some("2560x1440")).unwrap_err();
        assert!(e.message.contains("1280x720") && e.param.as_deref() == Some("size"), "{}", e.message);
        assert_eq!(seconds(None, "seconds", 4).unwrap(), 4);
        assert_eq!(seconds(Some(&json!("8")), "seconds", 4).unwrap(), 8);
        assert_eq!(seconds(Some(&json!(12)), "seconds", 4).unwrap(), 12);
        for bad in [json!("0"), json!(16), json!("4.5"), json!(true)] {
            assert_eq!(seconds(Some(&bad), "seconds", 4).unwrap_err().param.as_deref(), Some("seconds"), "{bad}");
        }
        let e = video_model(Some("sora-2")).unwrap_err();
        assert!(e.message.contains("grok-imagine-1.0-video"), "{}", e.message);
        assert_eq!(video_model(None).unwrap(), "grok-imagine-1.0-video");
        assert_eq!(video_model(Some("grok-imagine-video")).unwrap(), "grok-imagine-1.0-video");
    }
}

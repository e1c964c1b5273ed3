//! Jobs: what a request asks the upstream for, independent of how it arrived (sync, stream, or task).
//! `JobRunner::run` is the one path every endpoint takes to the upstream and the media store.

pub mod image_output;
mod progress;
pub mod video_op;

use bytes::Bytes;

pub use image_output::{ImageFormat, ImageOutput};
pub use progress::{JobEvent, ProgressSink, ProgressSlots};
pub use video_op::{InputVideo, VideoOp, VideoOpJob};

use crate::media::{StoredMedia, UpstreamOrigin};

/// Text-to-image.
#[derive(Debug, Clone)]
pub struct ImageJob {
    pub prompt: String,
    pub n: usize,
    /// Upstream aspect ratio, e.g. `16:9`.
    pub aspect_ratio: &'static str,
    pub output: ImageOutput,
    /// OpenAI's `quality`, when asked: xAI's 2.0 takes it (`xai_models::xai_quality`), grok.com makes
    /// `High` in its quality mode.
    pub quality: Option<ImageQuality>,
}

/// How good an image is asked to be, as OpenAI's `quality` says it (DALL·E's `hd` and `standard` read
/// as `high` and `auto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageQuality {
    Low,
    Medium,
    High,
    Auto,
}

impl ImageQuality {
    pub fn parse(openai: &str) -> Result<Self, String> {
        Ok(match openai.trim() {
            "low" => Self::Low,
            "medium" => Self::Medium,
            "high" | "hd" => Self::High,
            "auto" | "standard" => Self::Auto,
            other => return Err(format!("`{other}` is not one of low, medium, high, auto, standard, hd")),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Auto => "auto",
        }
    }
}

/// An input image handed to the upstream, already validated.
#[derive(Debug, Clone)]
pub struct InputImage {
    pub bytes: Bytes,
    pub content_type: &'static str,
    pub file_name: String,
    /// Set when the image is one this gateway generated (read back from its media store).
    pub origin: Option<UpstreamOrigin>,
}

/// Image-to-image.
#[derive(Debug, Clone)]
pub struct EditJob {
    pub prompt: String,
    pub n: usize,
    pub aspect_ratio: Option<&'static str>,
    pub images: Vec<InputImage>,
    pub output: ImageOutput,
    /// As `ImageJob::quality`.
    pub quality: Option<ImageQuality>,
}

/// Style presets of Grok Imagine video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoPreset {
    Normal,
    Fun,
    Spicy,
    Custom,
}

/// Reference images a video may take (grok.com's and xAI's reference-to-video limit).
pub const MAX_VIDEO_IMAGES: usize = 7;
/// The longest video made from reference images (xAI's limit, applied to both upstreams).
pub const MAX_REFERENCE_VIDEO_SECONDS: u32 = 10;
/// Video lengths grok.com and xAI accept, in seconds.
pub const VIDEO_SECONDS: std::ops::RangeInclusive<u32> = 1..=15;

/// Text-to-video; image-to-video with one image (its first frame); reference-to-video with several.
#[derive(Debug, Clone)]
pub struct VideoJob {
    /// Empty only when images are given: the upstream then animates them in `preset`'s style.
    pub prompt: String,
    pub aspect_ratio: &'static str,
    /// Seconds, within `VIDEO_SECONDS`.
    pub duration: u32,
    pub resolution: &'static str,
    pub preset: VideoPreset,
    pub images: Vec<InputImage>,
}

/// How the upstream is asked for a video: which input shape, and in which mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoInput {
    Text,
    FirstFrame,
    References,
}

impl VideoJob {
    pub fn input(&self) -> VideoInput {
        match self.images.len() {
            0 => VideoInput::Text,
            1 => VideoInput::FirstFrame,
            _ => VideoInput::References,
        }
    }

    /// The style the upstream is asked for: a prompt is the user's own direction ("custom"), as the
    /// web app sends it; without one the preset decides.
    pub fn effective_preset(&self) -> VideoPreset {
        if self.prompt.trim().is_empty() { self.preset } else { VideoPreset::Custom }
    }
}

#[derive(Debug, Clone)]
pub enum Job {
    Image(ImageJob),
    Edit(EditJob),
    Video(VideoJob),
    /// A video edited or extended (xAI only).
    VideoOp(VideoOpJob),
}

#[derive(Debug)]
pub enum JobOutput {
    Images(Vec<StoredMedia>),
    /// `origin`: where the upstream keeps the video (grok.com extends only its own, by its post).
    Video {
        video: StoredMedia,
        thumbnail: Option<StoredMedia>,
        duration: u32,
        origin: Option<UpstreamOrigin>,
    },
}

/// Every image ratio some upstream makes: grok.com's fast mode (the first five), its quality mode (4:3,
/// 21:9, 5:2; a grok.com capture of 2026-08-23), and xAI's (docs.x.ai images/generation: 3:4, 2:1,
/// 1:2, 19.5:9, 9:19.5, 20:9, 9:20; 21:9 and 5:2 on grok-imagine-image-2.0).
pub const IMAGE_RATIOS: [&str; 15] = [
    "1:1", "16:9", "9:16", "3:2", "2:3", "4:3", "21:9", "5:2", "3:4", "2:1", "1:2", "19.5:9", "9:19.5", "20:9", "9:20",
];

/// OpenAI `size` (or a bare ratio) → the upstream aspect ratio; the error names what is accepted.
pub fn aspect_ratio_for_size(size: &str) -> Result<&'static str, String> {
    Ok(match size.trim() {
        "1024x1024" | "1:1" => "1:1",
        "1280x720" | "16:9" => "16:9",
        "720x1280" | "9:16" => "9:16",
        "1792x1024" | "1536x1024" | "3:2" => "3:2",
        "1024x1792" | "1024x1536" | "2:3" => "2:3",
        // The newer ratios: the API layer refuses each for an upstream (model, mode) that does not make
        // it (`api::images::check_upstream`).
        other => match IMAGE_RATIOS.iter().find(|r| **r == other) {
            Some(r) => r,
            None => {
                return Err(format!(
                    "unsupported size `{other}`; use 1024x1024, 1280x720, 720x1280, 1792x1024, 1024x1792, 1536x1024, \
                     1024x1536, or a ratio: {}",
                    IMAGE_RATIOS.join(", ")
                ));
            }
        },
    })
}

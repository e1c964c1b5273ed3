//! Video edits and extensions: a video in, a video out (xAI's `/v1/videos/edits` and
//! `/v1/videos/extensions`). Limits as xAI documents them (source: xai-sdk-ts src/generated/types.ts
//! EditVideoRequest / ExtendVideoRequest; docs.x.ai developers/model-capabilities/video/editing and
//! video/extension.md).

use bytes::Bytes;

/// The longest video xAI edits, in seconds ("input ≤ 8.7 s").
pub const MAX_EDIT_INPUT_SECONDS: f64 = 8.7;
/// The video lengths xAI extends, in seconds (2–15 per the OpenAPI schema; the Python SDK's
/// docstring says 30: the stricter one holds).
pub const EXTEND_INPUT_SECONDS: std::ops::RangeInclusive<f64> = 2.0..=15.0;
/// The seconds an extension adds (2–10, default 6).
pub const EXTEND_SECONDS: std::ops::RangeInclusive<u32> = 2..=10;
pub const DEFAULT_EXTEND_SECONDS: u32 = 6;

/// What is done to the video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoOp {
    /// Restyle or change it; the result keeps its length (at most 720p).
    Edit,
    /// Continue it by `seconds`; the result is the original followed by the new part.
    Extend { seconds: u32 },
}

/// A video handed to the upstream, already checked (an MP4 of a length the operation takes).
#[derive(Debug, Clone)]
pub struct InputVideo {
    pub bytes: Bytes,
    pub content_type: &'static str,
    /// Its length, read from the file.
    pub seconds: f64,
    /// Set when it is a video this gateway made (read back from its media store): grok.com extends
    /// only its own posts, with the account that made them.
    pub origin: Option<crate::media::UpstreamOrigin>,
}

#[derive(Debug, Clone)]
pub struct VideoOpJob {
    pub op: VideoOp,
    pub prompt: String,
    pub video: InputVideo,
}

impl VideoOpJob {
    /// Whole seconds the result will last: the input's for an edit, input plus the added part for an
    /// extension (what the Video object's `seconds` reports until the result says otherwise).
    pub fn result_seconds(&self) -> u32 {
        let input = self.video.seconds.round().max(1.0) as u32;
        match self.op {
            VideoOp::Edit => input,
            VideoOp::Extend { seconds } => input + seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_extension_lasts_the_original_plus_the_added_part() {
        let video = InputVideo { bytes: Bytes::new(), content_type: "video/mp4", seconds: 6.04, origin: None };
        let job = VideoOpJob { op: VideoOp::Extend { seconds: 4 }, prompt: "p".into(), video };
        assert_eq!(job.result_seconds(), 10);
        assert_eq!(VideoOpJob { op: VideoOp::Edit, ..job }.result_seconds(), 6);
    }
}

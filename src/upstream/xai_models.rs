//! What each xAI model can be asked for, so the gateway refuses up front (with a 400 naming the limit)
//! what xAI would refuse, and offers what the configured model adds. Pure tables; the `[xai]` config
//! names the models. Sources, from /tmp/research-xai.md (issue 23):
//! - images: docs.x.ai developers/model-capabilities/images/generation and multi-image-editing;
//!   docs.x.ai release-notes.md (August 2026: 2.0's `quality`, 5 edit images, ratios 21:9 and 5:2);
//!   docs.x.ai developers/migration/imagine-image-quality-nov-2.md (the `-quality` slug retired
//!   2026-11-02, served by 2.0 at quality low, shapes unchanged).
//! - video: docs.x.ai developers/model-capabilities/video/generation (1.5: native 1080p for text- and
//!   image-to-video, reference-to-video at most 720p; 1.5-lite: 1080p by upscaling; classic
//!   `grok-imagine-video` at most 720p; edits and extensions shown with the classic model), and
//!   nextbound/bragi-canvas PR #122 (2026-08-20: xAI rejects edit and extend on 1.5).

use crate::jobs::ImageQuality;

/// What an xAI image model takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageCaps {
    /// `quality` (`low`/`medium`/`auto`): 2.0 only.
    pub quality: bool,
    /// Source images per edit.
    pub max_edit_images: usize,
    /// The ratios added with 2.0: `21:9` and `5:2`.
    pub wide_ratios: bool,
}

/// The ratios only 2.0 makes.
pub const WIDE_RATIOS: &[&str] = &["21:9", "5:2"];

/// An image model's abilities. An id we do not know is taken as 1.0 (the narrowest), so a
/// misconfigured model never lets through what xAI would refuse.
pub fn image_caps(model: &str) -> ImageCaps {
    match model {
        "grok-imagine-image-2.0" => ImageCaps { quality: true, max_edit_images: 5, wide_ratios: true },
        // Served by 2.0 since 2026-11-02 "with request and response shapes unchanged": what the slug
        // took before (no quality, three sources) is what it is sure to take.
        _ => ImageCaps { quality: false, max_edit_images: 3, wide_ratios: false },
    }
}

/// OpenAI's `quality` → xAI's: `low`, `medium` and `auto` as they are; OpenAI's `high` and DALL·E's
/// `hd` → `medium`, the best xAI offers (its proto has a HIGH, but no document allows it: source
/// xai-sdk-python proto/v6/image_pb2.pyi vs docs.x.ai images/generation); DALL·E's `standard` →
/// `auto` (each API's default). Anything else is an error naming the values.
pub fn xai_quality(q: ImageQuality) -> &'static str {
    match q {
        ImageQuality::Low => "low",
        ImageQuality::Medium | ImageQuality::High => "medium",
        ImageQuality::Auto => "auto",
    }
}

/// The best resolution an xAI video model makes for a generation, with or without reference images.
pub fn max_video_resolution(model: &str, references: bool) -> &'static str {
    match model {
        "grok-imagine-video-1.5" | "grok-imagine-video-1.5-preview" | "grok-imagine-video-1.5-lite" if !references => {
            "1080p"
        }
        _ => "720p",
    }
}

/// Whether an xAI video model edits and extends videos.
pub fn edits_videos(model: &str) -> bool {
    model == "grok-imagine-video"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_say_what_they_take() {
        let two = image_caps("grok-imagine-image-2.0");
        assert!(two.quality && two.wide_ratios && two.max_edit_images == 5);
        for m in ["grok-imagine-image", "grok-imagine-image-quality", "something-new"] {
            assert_eq!(image_caps(m), ImageCaps { quality: false, max_edit_images: 3, wide_ratios: false }, "{m}");
        }
        assert_eq!(max_video_resolution("grok-imagine-video-1.5", false), "1080p");
        assert_eq!(max_video_resolution("grok-imagine-video-1.5", true), "720p");
        assert_eq!(max_video_resolution("grok-imagine-video", false), "720p");
        assert!(edits_videos("grok-imagine-video") && !edits_videos("grok-imagine-video-1.5"));
    }

    #[test]
    fn openai_quality_maps_to_the_best_xai_offers() {
        for (openai, xai) in [
            ("low", "low"),
            ("medium", "medium"),
            ("auto", "auto"),
            ("high", "medium"),
            ("hd", "medium"),
            ("standard", "auto"),
        ] {
            assert_eq!(xai_quality(ImageQuality::parse(openai).unwrap()), xai, "{openai}");
        }
        assert!(ImageQuality::parse("ultra").unwrap_err().contains("low, medium, high"));
    }
}

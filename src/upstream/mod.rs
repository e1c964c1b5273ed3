//! Upstreams turn jobs into media bytes plus progress events. An enum, not a plugin system: each
//! protocol lives in its own folder so an upstream change touches one place.

pub mod grok_web;
pub mod xai;

pub mod assets;
pub mod error;
pub mod tokens;

use crate::jobs::{EditJob, ImageJob, ProgressSink, VideoJob};

pub use self::assets::{Asset, VideoAssets};
pub use self::error::UpstreamError;
/// For the HTTP handlers that still name it here; it is the media room's (`media::kind`).
pub use crate::media::kind::sniff_media_type;

pub enum Upstream {
    GrokWeb(Box<grok_web::GrokWebClient>),
    Xai(xai::XaiClient),
}

impl Upstream {
    pub fn name(&self) -> &'static str {
        match self {
            Self::GrokWeb(_) => "grok-web",
            Self::Xai(_) => "xai",
        }
    }

    pub async fn generate_images(&self, job: &ImageJob, sink: &ProgressSink) -> Result<Vec<Asset>, UpstreamError> {
        match self {
            Self::GrokWeb(c) => c.generate_images(job, sink).await,
            Self::Xai(c) => c.generate_images(job, sink).await,
        }
    }

    pub async fn edit_images(&self, job: &EditJob, sink: &ProgressSink) -> Result<Vec<Asset>, UpstreamError> {
        match self {
            Self::GrokWeb(c) => c.edit_images(job, sink).await,
            Self::Xai(c) => c.edit_images(job, sink).await,
        }
    }

    pub async fn generate_video(&self, job: &VideoJob, sink: &ProgressSink) -> Result<VideoAssets, UpstreamError> {
        match self {
            Self::GrokWeb(c) => c.generate_video(job, sink).await,
            Self::Xai(c) => c.generate_video(job, sink).await,
        }
    }

    /// Picks up a video the upstream already accepted (after a restart): xAI's is polled, grok.com's
    /// collected from its media post.
    pub async fn resume_video(&self, upstream_id: &str, sink: &ProgressSink) -> Result<VideoAssets, UpstreamError> {
        match self {
            Self::Xai(c) => c.poll_video(upstream_id, sink).await,
            Self::GrokWeb(c) => c.resume_video(upstream_id, sink).await,
        }
    }

    /// The grok.com client, for its token pool (admin API, readiness, metrics).
    pub fn grok_web(&self) -> Option<&grok_web::GrokWebClient> {
        match self {
            Self::GrokWeb(c) => Some(c),
            Self::Xai(_) => None,
        }
    }

    /// (usable tokens now, tokens configured) for /readyz.
    pub fn capacity(&self) -> (usize, usize) {
        match self {
            Self::GrokWeb(c) => c.pool().capacity(),
            Self::Xai(c) => c.capacity(),
        }
    }
}

//! What an upstream hands back: media already downloaded.

use bytes::Bytes;

/// One piece of media produced upstream, already downloaded.
#[derive(Debug, Clone)]
pub struct Asset {
    pub bytes: Bytes,
    pub content_type: &'static str,
    /// The upstream's own id for it, when the upstream lets it be fed back as an input.
    pub origin: Option<crate::media::UpstreamOrigin>,
}

/// A finished video and its poster image, downloaded.
#[derive(Debug, Clone)]
pub struct VideoAssets {
    pub video: Asset,
    pub thumbnail: Option<Asset>,
}

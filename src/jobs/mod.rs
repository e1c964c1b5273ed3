//! Jobs: what a request asks the upstream for, independent of how it arrived (sync, stream, or task).
//! `JobRunner::run` is the one path every endpoint takes to the upstream and the media store.

mod progress;

use std::sync::Arc;

use bytes::Bytes;

pub use progress::{JobEvent, ProgressSink, ProgressSlots};

use crate::media::{MediaKind, MediaStore, StoredMedia};
use crate::upstream::{Asset, Upstream, UpstreamError};

/// Text-to-image.
#[derive(Debug, Clone)]
pub struct ImageJob {
    pub prompt: String,
    pub n: usize,
    /// Upstream aspect ratio, e.g. `16:9`.
    pub aspect_ratio: &'static str,
}

/// An input image handed to the upstream, already validated.
#[derive(Debug, Clone)]
pub struct InputImage {
    pub bytes: Bytes,
    pub content_type: &'static str,
    pub file_name: String,
}

/// Image-to-image.
#[derive(Debug, Clone)]
pub struct EditJob {
    pub prompt: String,
    pub n: usize,
    pub aspect_ratio: Option<&'static str>,
    pub images: Vec<InputImage>,
}

/// Style presets of Grok Imagine video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoPreset {
    Normal,
    Fun,
    Spicy,
    Custom,
}

/// Text-to-video, or image-to-video when `image` is set.
#[derive(Debug, Clone)]
pub struct VideoJob {
    pub prompt: String,
    pub aspect_ratio: &'static str,
    /// Seconds.
    pub duration: u32,
    pub resolution: &'static str,
    pub preset: VideoPreset,
    pub image: Option<InputImage>,
}

#[derive(Debug, Clone)]
pub enum Job {
    Image(ImageJob),
    Edit(EditJob),
    Video(VideoJob),
}

#[derive(Debug)]
pub enum JobOutput {
    Images(Vec<StoredMedia>),
    Video { video: StoredMedia, thumbnail: Option<StoredMedia>, duration: u32 },
}

pub struct JobRunner {
    upstream: Upstream,
    media: Arc<MediaStore>,
}

impl JobRunner {
    pub fn new(upstream: Upstream, media: Arc<MediaStore>) -> Self {
        Self { upstream, media }
    }

    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    pub async fn run(&self, job: &Job, sink: &ProgressSink) -> Result<JobOutput, UpstreamError> {
        let output = match job {
            Job::Image(j) => self.store_images(self.upstream.generate_images(j, sink).await?).await?,
            Job::Edit(j) => self.store_images(self.upstream.edit_images(j, sink).await?).await?,
            Job::Video(j) => {
                let result = self.upstream.generate_video(j, sink).await?;
                let video = self.store(MediaKind::Video, result.video).await?;
                let thumbnail = match result.thumbnail {
                    Some(t) => Some(self.store(MediaKind::Image, t).await?),
                    None => None,
                };
                JobOutput::Video { video, thumbnail, duration: j.duration }
            }
        };
        sink.progress(100);
        Ok(output)
    }

    /// Finishes a video the upstream accepted before a restart (`Job::Video` only).
    pub async fn resume(&self, job: &Job, upstream_id: &str, sink: &ProgressSink) -> Result<JobOutput, UpstreamError> {
        let Job::Video(j) = job else {
            return Err(UpstreamError::Failed("only video jobs can be resumed".into()));
        };
        let result = self.upstream.resume_video(upstream_id, sink).await?;
        let video = self.store(MediaKind::Video, result.video).await?;
        let thumbnail = match result.thumbnail {
            Some(t) => Some(self.store(MediaKind::Image, t).await?),
            None => None,
        };
        sink.progress(100);
        Ok(JobOutput::Video { video, thumbnail, duration: j.duration })
    }

    async fn store(&self, kind: MediaKind, asset: Asset) -> Result<StoredMedia, UpstreamError> {
        self.media.put(kind, asset.bytes, asset.content_type).await.map_err(|e| UpstreamError::Storage(e.to_string()))
    }

    async fn store_images(&self, assets: Vec<Asset>) -> Result<JobOutput, UpstreamError> {
        let mut media = Vec::with_capacity(assets.len());
        for asset in assets {
            media.push(self.store(MediaKind::Image, asset).await?);
        }
        Ok(JobOutput::Images(media))
    }
}

//! Jobs: what a request asks the upstream for, independent of how it arrived (sync, stream, or task).
//! `JobRunner::run` is the one path every endpoint takes to the upstream and the media store.

mod progress;

use std::sync::Arc;

use bytes::Bytes;

pub use progress::{JobEvent, ProgressSink, ProgressSlots};

use crate::media::{MediaKind, MediaStore, StoredMedia};
use crate::upstream::{Upstream, UpstreamError};

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

#[derive(Debug, Clone)]
pub enum Job {
    Image(ImageJob),
    Edit(EditJob),
}

#[derive(Debug)]
pub struct JobOutput {
    pub media: Vec<StoredMedia>,
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
        let assets = match job {
            Job::Image(j) => self.upstream.generate_images(j, sink).await?,
            Job::Edit(j) => self.upstream.edit_images(j, sink).await?,
        };
        let mut media = Vec::with_capacity(assets.len());
        for asset in assets {
            let stored = self
                .media
                .put(MediaKind::Image, asset.bytes, asset.content_type)
                .await
                .map_err(|e| UpstreamError::Storage(e.to_string()))?;
            media.push(stored);
        }
        sink.progress(100);
        Ok(JobOutput { media })
    }
}

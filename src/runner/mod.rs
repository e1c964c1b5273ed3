//! The one job path: every endpoint (sync, stream, task) hands a `Job` to the `JobRunner`, which asks
//! the upstream for media and keeps it in the media store. It sits above both `jobs` (what a job is)
//! and `upstream` (who makes it), so neither has to know the other's caller.

pub mod queue;
pub mod service;

use std::sync::Arc;

use crate::jobs::{ImageOutput, Job, JobOutput, ProgressSink, VideoOpJob};
use crate::media::{MediaKind, MediaStore, StoredMedia};
use crate::owner::KeyId;
use crate::upstream::{Asset, Upstream, UpstreamError, VideoAssets};
use crate::usage::UsageBook;

pub struct JobRunner {
    upstream: Upstream,
    media: Arc<MediaStore>,
    /// What each key was delivered, counted here because every path passes through.
    usage: Arc<UsageBook>,
}

impl JobRunner {
    pub fn new(upstream: Upstream, media: Arc<MediaStore>, usage: Arc<UsageBook>) -> Self {
        Self { upstream, media, usage }
    }

    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// Runs `job` for `owner`, whose usage gains what it delivers.
    pub async fn run(&self, owner: &KeyId, job: &Job, sink: &ProgressSink) -> Result<JobOutput, UpstreamError> {
        self.upstream.admit(job)?;
        let output = match job {
            Job::Image(j) => self.store_images(self.upstream.generate_images(j, sink).await?, j.output).await?,
            Job::Edit(j) => self.store_images(self.upstream.edit_images(j, sink).await?, j.output).await?,
            Job::Video(j) => self.store_video(self.upstream.generate_video(j, sink).await?, j.duration).await?,
            Job::VideoOp(j) => self.store_video_op(self.upstream.video_op(j, sink).await?, j).await?,
        };
        sink.progress(100);
        self.count(owner, &output);
        Ok(output)
    }

    /// A task that failed after its 202: an error in its owner's usage.
    pub fn task_failed(&self, owner: &KeyId) {
        self.usage.task_failed(owner);
    }

    fn count(&self, owner: &KeyId, output: &JobOutput) {
        match output {
            JobOutput::Images(media) => self.usage.delivered(owner, media.len() as u64, 0),
            JobOutput::Video { duration, .. } => self.usage.delivered(owner, 0, u64::from(*duration)),
        }
    }

    /// Finishes a video the upstream accepted before a restart (video jobs only).
    pub async fn resume(
        &self,
        owner: &KeyId,
        job: &Job,
        upstream_id: &str,
        sink: &ProgressSink,
    ) -> Result<JobOutput, UpstreamError> {
        let output = match job {
            Job::Video(j) => self.store_video(self.upstream.resume_video(upstream_id, sink).await?, j.duration).await?,
            // An edit or extension is polled like a generation.
            Job::VideoOp(j) => self.store_video_op(self.upstream.resume_video(upstream_id, sink).await?, j).await?,
            _ => return Err(UpstreamError::Failed("only video jobs can be resumed".into())),
        };
        sink.progress(100);
        self.count(owner, &output);
        Ok(output)
    }

    async fn store(&self, kind: MediaKind, asset: Asset) -> Result<StoredMedia, UpstreamError> {
        self.media
            .put(kind, asset.bytes, asset.content_type, asset.origin)
            .await
            .map_err(|e| UpstreamError::Storage(e.to_string()))
    }

    /// The video and its thumbnail, kept.
    async fn store_video(&self, made: VideoAssets, duration: u32) -> Result<JobOutput, UpstreamError> {
        let origin = made.video.origin.clone();
        let video = self.store(MediaKind::Video, made.video).await?;
        let thumbnail = match made.thumbnail {
            Some(t) => Some(self.store(MediaKind::Image, t).await?),
            None => None,
        };
        Ok(JobOutput::Video { video, thumbnail, duration, origin })
    }

    /// An edited or extended video, with the length it really has (read from the file; the
    /// expected one when it cannot be read): an extension's is the original's plus the added part.
    async fn store_video_op(&self, made: VideoAssets, job: &VideoOpJob) -> Result<JobOutput, UpstreamError> {
        let measured = crate::media::mp4::info(&made.video.bytes).map(|i| i.seconds.round().max(1.0) as u32);
        self.store_video(made, measured.unwrap_or_else(|| job.result_seconds())).await
    }

    async fn store_images(&self, assets: Vec<Asset>, output: ImageOutput) -> Result<JobOutput, UpstreamError> {
        let mut media = Vec::with_capacity(assets.len());
        for mut asset in assets {
            if output != ImageOutput::default() {
                // Re-encoding is CPU work: off the async workers.
                let (bytes, content_type) = (asset.bytes.clone(), asset.content_type);
                let converted = tokio::task::spawn_blocking(move || output.apply(bytes, content_type))
                    .await
                    .map_err(|e| UpstreamError::Storage(format!("image conversion stopped: {e}")))?
                    .map_err(UpstreamError::Protocol)?;
                (asset.bytes, asset.content_type) = converted;
            }
            media.push(self.store(MediaKind::Image, asset).await?);
        }
        Ok(JobOutput::Images(media))
    }
}

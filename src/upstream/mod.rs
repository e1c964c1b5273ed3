//! Upstreams turn jobs into media bytes plus progress events. An enum, not a plugin system: each
//! protocol lives in its own folder (`grok_web/`, `xai.rs`) so an upstream change touches one place,
//! and this file is where the gateway chooses between them: `Upstream` for jobs, `TokenPool` for the
//! operators' view of an upstream's credentials. What every upstream shares lives beside it, each in
//! its own file (`error.rs`, `assets.rs`, `tokens.rs`), so no upstream's folder imports this one.

pub mod grok_web;
pub mod xai;
pub mod xai_models;

pub mod assets;
pub mod error;
pub mod pace;
pub mod quality;
pub mod tokens;

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, UpstreamKind};
use crate::jobs::{EditJob, ImageJob, Job, ProgressSink, VideoJob, VideoOpJob};
use crate::metrics::Metrics;

pub use self::assets::{Asset, VideoAssets};
pub use self::error::UpstreamError;
use self::tokens::{
    ExportedToken, ImportReport, InFlightCounts, Observer, TokenBook, TokenChangeError, TokenEvent, TokenInfo,
    TokenPatch,
};

/// What an upstream (with its configured models) can be asked for beyond what both make: the API
/// layer refuses the rest with a 400 naming the limit, before any task is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// `grok-web` or `xai`, for messages.
    pub name: &'static str,
    /// Video edits (and remixes), and video extensions.
    pub video_edits: bool,
    pub video_extensions: bool,
    /// The best resolution of a text- or image-to-video, and of a reference-to-video.
    pub max_video_resolution: &'static str,
    pub max_reference_video_resolution: &'static str,
    /// Text-to-image and edits (quality, ratios, sources per edit).
    pub image: xai_models::ImageCaps,
    pub edit: xai_models::ImageCaps,
    /// The text-to-image ratios of each mode, where the upstream names them (grok.com); `None`: those
    /// of `jobs::IMAGE_RATIOS` the image model makes (xAI).
    pub image_ratios: Option<RatioModes>,
}

/// The ratios an upstream makes in its fast mode and in its quality mode (`quality: high`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RatioModes {
    pub fast: &'static [&'static str],
    pub quality: &'static [&'static str],
}

/// Who makes the media: one arm per upstream, each a folder (or file) of this module.
pub enum Upstream {
    GrokWeb(Box<grok_web::GrokWebClient>),
    Xai(Box<xai::XaiClient>),
}

impl Upstream {
    /// The upstream `upstream.kind` names: grok.com, with the tokens a previous run added at run
    /// time when there is a state dir (and no shared store, which keeps them then), or xAI's API.
    pub fn from_config(cfg: &Config, metrics: Arc<Metrics>) -> Result<Upstream, String> {
        Ok(match cfg.upstream.kind {
            UpstreamKind::GrokWeb => {
                let client = grok_web::GrokWebClient::new(cfg.grok.clone(), metrics)?;
                // With a shared store, console-made tokens live there for every replica (`TokenBook`).
                let client = match (&cfg.state.dir, &cfg.store.url) {
                    (Some(dir), None) => client.with_saved_tokens(dir)?,
                    _ => client,
                };
                Self::GrokWeb(Box::new(client))
            }
            UpstreamKind::Xai => Self::Xai(Box::new(xai::XaiClient::new(cfg.xai.clone(), metrics)?)),
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::GrokWeb(_) => "grok-web",
            Self::Xai(_) => "xai",
        }
    }

    /// Whether the upstream can make `job` at all with what it has (grok.com: free accounts make short
    /// videos only); checked when a job is accepted, so a task that cannot succeed is refused with a
    /// 400 instead of failing after its 202.
    pub fn admit(&self, job: &Job) -> Result<(), UpstreamError> {
        match (self, job) {
            (Self::GrokWeb(c), Job::Video(v)) => c.video_fit(v).map(|_| ()),
            (Self::GrokWeb(c), Job::VideoOp(v)) => c.can_extend(v),
            _ => Ok(()),
        }
    }

    /// What this upstream makes. grok.com: what its web app offers (720p video at most, three edit
    /// sources, five ratios, no edits of videos); xAI: what the configured models take.
    pub fn caps(&self) -> Caps {
        match self {
            Self::GrokWeb(_) => {
                // Quality mode (`quality: high`) makes 4:3, 21:9 and 5:2 too: `check_upstream` knows.
                let image = xai_models::ImageCaps { quality: true, max_edit_images: 3, wide_ratios: true };
                let edit = xai_models::ImageCaps { quality: false, max_edit_images: 3, wide_ratios: false };
                Caps {
                    name: self.name(),
                    // The web app's extend flow; it has no edit.
                    video_edits: false,
                    video_extensions: true,
                    max_video_resolution: "720p",
                    max_reference_video_resolution: "720p",
                    image,
                    edit,
                    image_ratios: Some(RatioModes {
                        fast: &grok_web::wire::FAST_RATIOS,
                        quality: &grok_web::wire::QUALITY_RATIOS,
                    }),
                }
            }
            Self::Xai(c) => {
                let cfg = c.config();
                Caps {
                    name: self.name(),
                    video_edits: xai_models::edits_videos(&cfg.video_edit_model),
                    video_extensions: xai_models::edits_videos(&cfg.video_edit_model),
                    max_video_resolution: xai_models::max_video_resolution(&cfg.video_model, false),
                    max_reference_video_resolution: xai_models::max_video_resolution(&cfg.video_model, true),
                    image: xai_models::image_caps(&cfg.image_model),
                    edit: xai_models::image_caps(&cfg.edit_model),
                    image_ratios: None,
                }
            }
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

    /// Edits or extends a video. Only xAI does; the API layer refuses it on grok.com before a task
    /// is made, so this arm is a guard, not a path.
    pub async fn video_op(&self, job: &VideoOpJob, sink: &ProgressSink) -> Result<VideoAssets, UpstreamError> {
        match self {
            Self::GrokWeb(c) => c.extend_video(job, sink).await,
            Self::Xai(c) => c.video_op(job, sink).await,
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

    /// The upstream's token pool (admin API, console, readiness, metrics, replica news); `None` for
    /// an upstream that has no pool to administer (xAI: one API key from the config).
    pub fn tokens(&self) -> Option<TokenPool<'_>> {
        match self {
            Self::GrokWeb(c) => Some(TokenPool::GrokWeb(c)),
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

/// An upstream's token pool, whichever upstream it is: what the operators see and change, and the
/// news replicas share about it. Tokens are named by id (`token_id`) and shown masked.
#[derive(Clone, Copy)]
pub enum TokenPool<'a> {
    GrokWeb(&'a grok_web::GrokWebClient),
}

impl TokenPool<'_> {
    /// Every token, masked, in the pool's order.
    pub fn snapshot(&self) -> Vec<TokenInfo> {
        match self {
            Self::GrokWeb(c) => c.pool().snapshot(),
        }
    }

    /// How many tokens are in each health state (`active`, `cooling`, `expired`, `disabled`).
    pub fn health(&self) -> Vec<(&'static str, usize)> {
        match self {
            Self::GrokWeb(c) => c.pool().health(),
        }
    }

    /// Adds tokens (`TOKEN` or `TOKEN|PROXY_URL`), kept across restarts when there is a state dir;
    /// returns how many became usable.
    pub async fn add_tokens(&self, entries: Vec<String>) -> Result<usize, String> {
        match self {
            Self::GrokWeb(c) => c.add_tokens(entries).await,
        }
    }

    /// Takes a token out of rotation (and out of the state dir); `false` when there is no such token.
    pub async fn remove_token(&self, id: &str) -> Result<bool, String> {
        match self {
            Self::GrokWeb(c) => c.remove_token(id).await,
        }
    }

    /// Imports a token file, entry by entry.
    pub async fn import_tokens(&self, content: &str, filename: Option<&str>) -> Result<ImportReport, String> {
        match self {
            Self::GrokWeb(c) => c.import_tokens(content, filename).await,
        }
    }

    /// Every token with its full value, for the operator's backup.
    pub fn export(&self) -> Vec<ExportedToken> {
        match self {
            Self::GrokWeb(c) => c.pool().export(),
        }
    }

    /// Changes a token added at run time.
    pub async fn update_token(&self, id: &str, patch: TokenPatch) -> Result<(), TokenChangeError> {
        match self {
            Self::GrokWeb(c) => c.update_token(id, patch).await,
        }
    }

    /// Asks the upstream for one token's quota now: `None` when there is no such token, else whether
    /// the upstream answered (when not, the token's `last_error` says why).
    pub async fn refresh_token(&self, id: &str) -> Option<bool> {
        match self {
            Self::GrokWeb(c) => c.refresh_token(id).await,
        }
    }

    /// Asks the upstream for every token's quota (at most `grok.quota_refresh_per_sec` a second);
    /// returns how many tokens answered.
    pub async fn refresh_quotas(&self) -> usize {
        match self {
            Self::GrokWeb(c) => c.refresh_quotas().await,
        }
    }

    /// Like `refresh_quotas`, spread evenly over `every` (the periodic refresh).
    pub async fn refresh_quotas_over(&self, every: std::time::Duration) -> usize {
        match self {
            Self::GrokWeb(c) => c.refresh_quotas_over(every).await,
        }
    }

    /// The token `id` names, unless it was removed.
    pub fn info(&self, id: &str) -> Option<TokenInfo> {
        match self {
            Self::GrokWeb(c) => c.pool().info(id),
        }
    }

    /// Tells `observer` of every change upstream answers make to a token from now on (once).
    pub fn observe(&self, observer: Observer) {
        match self {
            Self::GrokWeb(c) => c.pool().observe(observer),
        }
    }

    /// This replica's requests in flight per token (only tokens with some).
    pub fn in_flight_counts(&self) -> InFlightCounts {
        match self {
            Self::GrokWeb(c) => c.pool().in_flight_counts(),
        }
    }

    /// Another replica's requests in flight (`None` only lets lapsed entries go): they count against
    /// each token's concurrency cap here for `lasts`, unless renewed.
    pub fn remote_in_flight(&self, replica: Option<(&str, InFlightCounts)>, lasts: Duration) {
        match self {
            Self::GrokWeb(c) => c.pool().remote_in_flight(replica, lasts),
        }
    }

    /// Applies a change another replica saw.
    pub fn apply(&self, event: &TokenEvent) {
        match self {
            Self::GrokWeb(c) => c.pool().apply(event),
        }
    }

    /// Keeps console-made tokens in `book` (the shared store) from now on.
    pub fn share(&self, book: Arc<dyn TokenBook>) {
        match self {
            Self::GrokWeb(c) => c.share_tokens(book),
        }
    }

    /// Applies console-made tokens another replica put into the shared book or took out.
    pub fn apply_book(&self, put: &[ExportedToken], removed: &[String]) {
        match self {
            Self::GrokWeb(c) => c.apply_book(put, removed),
        }
    }
}

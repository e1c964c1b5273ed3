//! Async tasks: a job accepted now, run by the worker pool, polled by id, announced by signed callback.
//!
//! - `store.rs`: the tasks themselves, the state machine (one place), listing, TTL reaping.
//! - `callbacks.rs`: Standard Webhooks signing and at-least-once delivery with backoff.
//! - `idempotency.rs`: `Idempotency-Key` → first task.
//! - `journal.rs`: the durable record of every task (redb on `--state-dir`), replayed at start.
//! - `fair.rs`: the per-key lanes the runner's queue takes tasks from.
//!
//! What runs them (the queue and its workers) is `runner::queue`: this module is what a task is and
//! how it is kept, and imports nothing that runs jobs.

pub mod callbacks;
pub mod fair;
pub mod idempotency;
pub mod journal;
pub mod store;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::owner::KeyId;

/// Cancellation signals the queue and the callbacks obey.
#[derive(Clone)]
pub struct Signals {
    /// Stop taking new tasks (and stop retrying callbacks: they stay owed).
    pub shutdown: CancellationToken,
    /// Stop running tasks (end of the grace period).
    pub abort: CancellationToken,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskKind {
    Video,
    Image,
}

impl TaskKind {
    /// The path segment: `/v1/video/tasks`, `/v1/images/tasks`.
    pub fn segment(self) -> &'static str {
        match self {
            Self::Video => "video",
            Self::Image => "images",
        }
    }

    pub fn from_segment(s: &str) -> Option<Self> {
        match s {
            "video" => Some(Self::Video),
            "images" => Some(Self::Image),
            _ => None,
        }
    }

    /// The `kind` of a callback event.
    pub fn event_kind(self) -> &'static str {
        match self {
            Self::Video => "video",
            Self::Image => "image",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    Pending,
    Processing,
    Success,
    Failed,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Processing => "processing",
            Self::Success => "success",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "processing" => Some(Self::Processing),
            "success" => Some(Self::Success),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Success | Self::Failed)
    }
}

/// What a finished task produced. Media are kept as names in the media store plus the base URL the
/// creator used, so a stored task stays small and links stay stable.
#[derive(Debug, Clone)]
pub enum Outcome {
    Images {
        base: Arc<str>,
        names: Vec<String>,
        b64: bool,
    },
    /// `origin`: where the upstream keeps the video (journaled and shared: any replica, after any
    /// restart, can have grok.com extend it with the account that made it).
    Video {
        base: Arc<str>,
        video: String,
        thumbnail: Option<String>,
        duration: u32,
        origin: Option<crate::media::UpstreamOrigin>,
    },
    Failed {
        code: String,
        message: String,
    },
}

#[derive(Debug, Clone)]
pub struct CallbackState {
    pub url: String,
    pub delivered: bool,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// Delivery is over (delivered, refused for good, or retries exhausted); false = still owed.
    pub done: bool,
    /// The latest attempts (at most `MAX_ATTEMPTS_KEPT`), oldest first, for the console.
    pub history: Vec<CallbackAttempt>,
}

pub const MAX_ATTEMPTS_KEPT: usize = 20;

/// One delivery attempt: when (unix ms), and the error when it failed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CallbackAttempt {
    pub at_ms: u64,
    pub ok: bool,
    pub error: Option<String>,
}

/// Which API created a task. It decides the form of the id and the shape of every read and callback,
/// so a client only ever sees the API it spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TaskApi {
    /// `/v1/{video,images}/tasks` (the user's document): `{code, message, data}`.
    #[default]
    Native,
    /// `/v1/videos` (OpenAI Videos): ids `video_<hex>`.
    OpenAi,
    /// `/v1/videos/generations` (xAI): ids are UUIDs.
    Xai,
}

impl TaskApi {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::OpenAi => "openai",
            Self::Xai => "xai",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "native" => Some(Self::Native),
            "openai" => Some(Self::OpenAi),
            "xai" => Some(Self::Xai),
            _ => None,
        }
    }

    /// A fresh id in this API's form.
    pub fn new_id(self) -> String {
        let u = uuid::Uuid::new_v4();
        match self {
            Self::Native => u.simple().to_string(),
            Self::OpenAi => format!("video_{}", u.simple()),
            Self::Xai => u.hyphenated().to_string(),
        }
    }

    /// The API an id was made by (ids of the three forms never collide).
    pub fn of_id(id: &str) -> Self {
        if id.starts_with("video_") {
            Self::OpenAi
        } else if id.len() == 36 && id.bytes().filter(|b| *b == b'-').count() == 4 {
            Self::Xai
        } else {
            Self::Native
        }
    }
}

/// What a video task was asked for, as the OpenAI and xAI objects echo it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoRequest {
    pub model: String,
    pub prompt: String,
    pub seconds: u32,
    /// OpenAI `size` (`1280x720`), or for xAI the aspect ratio.
    pub size: String,
    pub resolution: String,
    /// The gateway video an edit, extension or remix was made from (OpenAI's `remixed_from_video_id`).
    pub remixed_from: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Task {
    pub id: Arc<str>,
    pub api: TaskApi,
    /// Set for tasks created through the OpenAI or xAI shapes.
    pub request: Option<Arc<VideoRequest>>,
    pub owner: KeyId,
    pub kind: TaskKind,
    pub status: TaskStatus,
    pub progress: u8,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// Creation order, for listing newest first.
    pub seq: u64,
    pub outcome: Option<Box<Outcome>>,
    pub callback: Option<Box<CallbackState>>,
}

fn rfc3339(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

/// The `data` object of the task endpoints and their callbacks.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskView {
    pub task_id: String,
    /// `pending` → `processing` → `success` | `failed`.
    pub status: &'static str,
    /// 0–100, never decreasing; 100 only on success.
    pub progress: u8,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<TaskResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_msg: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback: Option<CallbackView>,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum TaskResult {
    Video(VideoResult),
    Images(ImagesResult),
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VideoResult {
    pub download_url: String,
    pub thumbnail_url: Option<String>,
    pub duration: u32,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ImagesResult {
    /// Links, or base64 PNG/JPEG when `format` is `b64_json`; `null` for an image the media store has
    /// evicted since.
    pub images: Vec<Option<String>>,
    /// `url` or `b64_json`.
    pub format: &'static str,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallbackView {
    pub delivered: bool,
    pub attempts: u32,
    pub last_error: Option<String>,
}

impl Task {
    /// The task's `data` object. `b64` images are read back from the media store by the caller (see
    /// `api::tasks`), so this stays cheap for polling.
    pub fn view(&self, images: impl FnOnce(&[String], &str) -> Vec<Option<String>>) -> TaskView {
        let (result, error_msg, error_code) = match self.outcome.as_deref() {
            Some(Outcome::Images { base, names, b64 }) => (
                Some(TaskResult::Images(ImagesResult {
                    images: images(names, base),
                    format: if *b64 { "b64_json" } else { "url" },
                })),
                None,
                None,
            ),
            Some(Outcome::Video { base, video, thumbnail, duration, .. }) => (
                Some(TaskResult::Video(VideoResult {
                    download_url: format!("{base}/v1/files/video/{video}"),
                    thumbnail_url: thumbnail.as_ref().map(|t| format!("{base}/v1/files/image/{t}")),
                    duration: *duration,
                })),
                None,
                None,
            ),
            Some(Outcome::Failed { code, message }) => (None, Some(message.clone()), Some(code.clone())),
            None => (None, None, None),
        };
        TaskView {
            task_id: self.id.to_string(),
            status: self.status.as_str(),
            progress: self.progress,
            created_at: rfc3339(self.created_ms),
            updated_at: rfc3339(self.updated_ms),
            result,
            error_msg,
            error_code,
            callback: self.callback.as_deref().map(|cb| CallbackView {
                delivered: cb.delivered,
                attempts: cb.attempts,
                last_error: cb.last_error.clone(),
            }),
        }
    }
}

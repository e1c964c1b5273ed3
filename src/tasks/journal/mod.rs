//! The durable journal behind `--state-dir`: every accepted task (with its job while it is pending) and
//! its callback state. One writer thread appends operations in batches to a log (`log`: one write
//! and one `fdatasync` per batch, group commit): a create waits for its batch to be durable before
//! the client gets 202; later transitions are written behind. A second thread brings the redb
//! tables up to date from the log (`tables`) and deletes what they hold. At start the tables are
//! read after the log's tail is replayed into them. After a crash the records say what to do:
//! pending tasks run again, interrupted ones fail with `interrupted`, undelivered callbacks are
//! delivered.
//!
//! When writes fail (a full disk), creates are refused, the written-behind records are kept in memory
//! (the newest per task) and written again on a backoff until the disk takes them; `Health` tells
//! readiness meanwhile, and `synced` lets a callback wait for its record.

mod log;
mod tables;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::{CallbackState, Outcome, Task, TaskApi, TaskKind, TaskStatus, VideoRequest};
use crate::jobs::{
    ImageFormat, ImageJob, ImageOutput, InputImage, InputVideo, Job, VideoJob, VideoOp, VideoOpJob, VideoPreset,
};
use crate::owner::KeyId;
use crate::redb_file::RedbFile;

#[cfg(test)]
pub(crate) use tables::{LEGACY, TASKS};

const BATCH: usize = 4096;

/// How a pending task's job is kept until a worker starts it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobRecord {
    Image {
        prompt: String,
        n: usize,
        aspect_ratio: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output_format: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output_compression: Option<u8>,
        /// OpenAI's quality, when asked (`ImageQuality::as_str`; older records hold xAI's, read the same).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quality: Option<String>,
    },
    Video {
        prompt: String,
        aspect_ratio: String,
        duration: u32,
        resolution: String,
        preset: String,
        /// The single input image of records written before several were accepted, base64.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        image: Option<String>,
        /// Input images (first frame, or references), base64.
        #[serde(default)]
        images: Vec<String>,
    },
    /// A video edit (`extend_seconds` absent) or extension, with its input video.
    VideoOp {
        prompt: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        extend_seconds: Option<u32>,
        /// The input MP4, base64.
        video: String,
        /// Where the upstream keeps it (account, upstream id): grok.com extends only its own posts.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<(String, String)>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingJob {
    pub job: JobRecord,
    pub base: String,
    pub b64: bool,
    /// The upstream's id for an accepted asynchronous job (xAI `request_id`): resume, never resubmit.
    #[serde(default)]
    pub upstream_ref: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutcomeRecord {
    Images {
        base: String,
        names: Vec<String>,
        b64: bool,
    },
    Video {
        base: String,
        video: String,
        thumbnail: Option<String>,
        duration: u32,
        /// (account, upstream id); absent in records written before it was kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<(String, String)>,
    },
    Failed {
        code: String,
        message: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CallbackRecord {
    url: String,
    delivered: bool,
    attempts: u32,
    last_error: Option<String>,
    done: bool,
    /// Absent in records written before the console showed attempts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    history: Vec<super::CallbackAttempt>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RequestRecord {
    model: String,
    prompt: String,
    seconds: u32,
    size: String,
    resolution: String,
    /// Absent in records written before videos could be remixed, and for new videos.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    remixed_from: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRecord {
    id: String,
    /// Absent in records written before other APIs could create tasks: native.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    api: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    request: Option<RequestRecord>,
    owner: String,
    kind: String,
    status: String,
    progress: u8,
    created_ms: u64,
    updated_ms: u64,
    outcome: Option<OutcomeRecord>,
    callback: Option<CallbackRecord>,
    pending: Option<PendingJob>,
}

fn preset_name(p: VideoPreset) -> &'static str {
    match p {
        VideoPreset::Normal => "normal",
        VideoPreset::Fun => "fun",
        VideoPreset::Spicy => "spicy",
        VideoPreset::Custom => "custom",
    }
}

impl JobRecord {
    /// Only async-capable jobs are journaled (text-to-image and video).
    pub fn from_job(job: &Job) -> Option<Self> {
        Some(match job {
            Job::Image(j) => Self::Image {
                prompt: j.prompt.clone(),
                n: j.n,
                aspect_ratio: j.aspect_ratio.into(),
                output_format: j.output.format.map(|f| f.content_type().trim_start_matches("image/").to_owned()),
                output_compression: j.output.compression,
                quality: j.quality.map(|q| q.as_str().to_owned()),
            },
            Job::Video(j) => Self::Video {
                prompt: j.prompt.clone(),
                aspect_ratio: j.aspect_ratio.into(),
                duration: j.duration,
                resolution: j.resolution.into(),
                preset: preset_name(j.preset).into(),
                image: None,
                images: j.images.iter().map(|i| base64::engine::general_purpose::STANDARD.encode(&i.bytes)).collect(),
            },
            Job::VideoOp(j) => Self::VideoOp {
                prompt: j.prompt.clone(),
                extend_seconds: match j.op {
                    VideoOp::Edit => None,
                    VideoOp::Extend { seconds } => Some(seconds),
                },
                video: base64::engine::general_purpose::STANDARD.encode(&j.video.bytes),
                origin: j.video.origin.as_ref().map(|o| (o.account.clone(), o.asset_id.clone())),
            },
            Job::Edit(_) => return None,
        })
    }

    pub fn to_job(&self) -> Result<Job, String> {
        let ratio = crate::jobs::aspect_ratio_for_size;
        Ok(match self {
            Self::Image { prompt, n, aspect_ratio, output_format, output_compression, quality } => {
                Job::Image(ImageJob {
                    prompt: prompt.clone(),
                    n: *n,
                    aspect_ratio: ratio(aspect_ratio)?,
                    output: ImageOutput {
                        format: output_format.as_deref().and_then(ImageFormat::parse),
                        compression: *output_compression,
                    },
                    quality: quality.as_deref().and_then(|q| crate::jobs::ImageQuality::parse(q).ok()),
                })
            }
            Self::Video { prompt, aspect_ratio, duration, resolution, preset, image, images } => {
                let images = image
                    .iter()
                    .chain(images)
                    .map(|b64| {
                        let bytes = Bytes::from(
                            base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| e.to_string())?,
                        );
                        let content_type =
                            crate::media::kind::sniff_media_type(&bytes).ok_or("journaled image is not an image")?;
                        Ok(InputImage { bytes, content_type, file_name: "input".into(), origin: None })
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                Job::Video(VideoJob {
                    prompt: prompt.clone(),
                    aspect_ratio: ratio(aspect_ratio)?,
                    duration: *duration,
                    resolution: match resolution.as_str() {
                        "1080p" => "1080p",
                        "720p" => "720p",
                        _ => "480p",
                    },
                    preset: match preset.as_str() {
                        "fun" => VideoPreset::Fun,
                        "spicy" => VideoPreset::Spicy,
                        "custom" => VideoPreset::Custom,
                        _ => VideoPreset::Normal,
                    },
                    images,
                })
            }
            Self::VideoOp { prompt, extend_seconds, video, origin } => {
                let bytes =
                    Bytes::from(base64::engine::general_purpose::STANDARD.decode(video).map_err(|e| e.to_string())?);
                let seconds = crate::media::mp4::info(&bytes).ok_or("journaled video is not a readable MP4")?.seconds;
                Job::VideoOp(VideoOpJob {
                    op: extend_seconds.map_or(VideoOp::Edit, |seconds| VideoOp::Extend { seconds }),
                    prompt: prompt.clone(),
                    video: InputVideo {
                        bytes,
                        content_type: "video/mp4",
                        seconds,
                        origin: origin
                            .clone()
                            .map(|(account, asset_id)| crate::media::UpstreamOrigin { account, asset_id }),
                    },
                })
            }
        })
    }
}

impl TaskRecord {
    pub fn meta(&self) -> PutMeta {
        let terminal = matches!(self.status.as_str(), "success" | "failed");
        let owed = self.callback.as_ref().is_some_and(|c| !c.done);
        let pending = self.status == "pending";
        PutMeta { owner: self.owner.clone(), created_ms: self.created_ms, terminal, owed, pending }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn created_ms(&self) -> u64 {
        self.created_ms
    }

    pub fn from_task(task: &Task, pending: Option<PendingJob>) -> Self {
        Self {
            id: task.id.to_string(),
            api: (task.api != TaskApi::Native).then(|| task.api.as_str().to_owned()),
            request: task.request.as_deref().map(|r| RequestRecord {
                model: r.model.clone(),
                prompt: r.prompt.clone(),
                seconds: r.seconds,
                size: r.size.clone(),
                resolution: r.resolution.clone(),
                remixed_from: r.remixed_from.clone(),
            }),
            owner: task.owner.0.to_string(),
            kind: task.kind.segment().into(),
            status: task.status.as_str().into(),
            progress: task.progress,
            created_ms: task.created_ms,
            updated_ms: task.updated_ms,
            outcome: task.outcome.as_deref().map(|o| match o {
                Outcome::Images { base, names, b64 } => {
                    OutcomeRecord::Images { base: base.to_string(), names: names.clone(), b64: *b64 }
                }
                Outcome::Video { base, video, thumbnail, duration, origin } => OutcomeRecord::Video {
                    base: base.to_string(),
                    video: video.clone(),
                    thumbnail: thumbnail.clone(),
                    duration: *duration,
                    origin: origin.as_ref().map(|o| (o.account.clone(), o.asset_id.clone())),
                },
                Outcome::Failed { code, message } => {
                    OutcomeRecord::Failed { code: code.clone(), message: message.clone() }
                }
            }),
            callback: task.callback.as_deref().map(|c| CallbackRecord {
                url: c.url.clone(),
                delivered: c.delivered,
                attempts: c.attempts,
                last_error: c.last_error.clone(),
                done: c.done,
                history: c.history.clone(),
            }),
            pending,
        }
    }

    /// The task (seq is assigned by the store on restore) and its pending job, if any.
    pub fn into_task(self) -> Result<(Task, Option<PendingJob>), String> {
        let kind = TaskKind::from_segment(&self.kind).ok_or_else(|| format!("unknown kind {}", self.kind))?;
        let status = TaskStatus::parse(&self.status).ok_or_else(|| format!("unknown status {}", self.status))?;
        let api = match self.api.as_deref() {
            None => TaskApi::Native,
            Some(a) => TaskApi::parse(a).ok_or_else(|| format!("unknown api {a}"))?,
        };
        let task = Task {
            id: Arc::from(self.id),
            api,
            request: self.request.map(|r| {
                Arc::new(VideoRequest {
                    model: r.model,
                    prompt: r.prompt,
                    seconds: r.seconds,
                    size: r.size,
                    resolution: r.resolution,
                    remixed_from: r.remixed_from,
                })
            }),
            owner: KeyId(Arc::from(self.owner)),
            kind,
            status,
            progress: self.progress,
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
            seq: 0,
            outcome: self.outcome.map(|o| {
                Box::new(match o {
                    OutcomeRecord::Images { base, names, b64 } => Outcome::Images { base: Arc::from(base), names, b64 },
                    OutcomeRecord::Video { base, video, thumbnail, duration, origin } => Outcome::Video {
                        base: Arc::from(base),
                        video,
                        thumbnail,
                        duration,
                        origin: origin.map(|(account, asset_id)| crate::media::UpstreamOrigin { account, asset_id }),
                    },
                    OutcomeRecord::Failed { code, message } => Outcome::Failed { code, message },
                })
            }),
            callback: self.callback.map(|c| {
                Box::new(CallbackState {
                    url: c.url,
                    delivered: c.delivered,
                    attempts: c.attempts,
                    last_error: c.last_error,
                    done: c.done,
                    history: c.history,
                })
            }),
        };
        Ok((task, self.pending))
    }
}

/// One write for the writer thread. `Put` carries what a shared store indexes besides the record,
/// and for a create the sender its 202 waits on; `Remove` the task's id and creation time (half of
/// its journal key). `Synced` is answered once every operation queued before it is written (or, by
/// a writer that drops what it could not write, given up).
pub enum Op {
    Put(String, Vec<u8>, PutMeta, Option<oneshot::Sender<Result<(), String>>>),
    Remove(String, u64),
    Synced(oneshot::Sender<()>),
}

impl Op {
    /// The task a record operation is about.
    fn task(&self) -> Option<&str> {
        match self {
            Op::Put(id, ..) | Op::Remove(id, _) => Some(id),
            Op::Synced(_) => None,
        }
    }
}

/// A record's owner, creation time and whether the task has finished.
#[derive(Debug, Clone)]
pub struct PutMeta {
    pub owner: String,
    pub created_ms: u64,
    pub terminal: bool,
    /// A callback is still owed (finished or not): whoever takes the task over must deliver it.
    pub owed: bool,
    /// Not started yet: with several replicas, any of them may take it.
    pub pending: bool,
}

/// Whether the journal's last write went through, for readiness.
#[derive(Debug, Default)]
pub struct Health {
    failing: AtomicBool,
}

impl Health {
    pub fn writable(&self) -> bool {
        !self.failing.load(Ordering::Relaxed)
    }

    /// Logs when writes start failing and when they work again, not every failed batch: a full disk
    /// fails every create.
    /// `kept`: records of earlier failed batches this write carried.
    fn record(&self, result: &Result<(), String>, kept: usize) {
        match result {
            Ok(()) if self.failing.swap(false, Ordering::Relaxed) => {
                tracing::warn!(
                    records = kept,
                    "task journal writes work again; the records kept meanwhile are written"
                );
            }
            Ok(()) => {}
            Err(e) if !self.failing.swap(true, Ordering::Relaxed) => {
                tracing::error!("task journal write failed (states are kept in memory and written again): {e}");
            }
            Err(e) => tracing::debug!("task journal write failed again: {e}"),
        }
    }
}

pub struct Journal {
    tx: Mutex<Option<mpsc::Sender<Op>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    health: Arc<Health>,
}

impl Journal {
    /// Opens (or creates) the journal in `dir` (`tasks.redb` and the log in `tasks-log/`), replays the
    /// log's tail into the tables, and returns the journal with every record it holds.
    pub fn open(dir: &Path) -> Result<(Self, Vec<TaskRecord>), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create state dir {}: {e}", dir.display()))?;
        let file = RedbFile::open(&dir.join("tasks.redb"))?;
        file.with(tables::prepare)?;
        let log_dir = dir.join("tasks-log");
        let tail = log::recover(&log_dir)?;
        if tail.torn_bytes > 0 {
            tracing::warn!(
                bytes = tail.torn_bytes,
                "the task log ended in a torn write (a crash during a batch no client was answered for); dropped"
            );
        }
        if !tail.frames.is_empty() {
            file.with(|db| tables::apply(db, &tail.frames))?;
            tracing::info!(batches = tail.frames.len(), "task log replayed into the tables");
        }
        let next_seq = tail.last_seq.map_or(1, |s| s + 1);
        if let Some(last) = tail.last_seq {
            log::remove_before(&log_dir, last + 1);
        }
        let records = file.with(tables::load)?;
        let (frames_tx, frames_rx) = mpsc::channel();
        let tables = tables::start_writer(file, log_dir.clone(), frames_rx)?;
        let mut writer = log::LogWriter::create(&log_dir, next_seq, frames_tx)?;
        let batching = Batching { max: BATCH, keep_failed: true };
        let journal = Self::spawn(move |rx, health| {
            write_batches(rx, batching, &health, |ops| writer.append(ops));
            writer.finish(Some(tables));
        })?;
        Ok((journal, records))
    }

    /// A journal whose writer thread runs `write` over the queued operations (the redb writer here,
    /// the Redis one in `shared`), reporting how its writes go to the health it is given.
    pub fn spawn(write: impl FnOnce(mpsc::Receiver<Op>, Arc<Health>) + Send + 'static) -> Result<Self, String> {
        let (tx, rx) = mpsc::channel::<Op>();
        let health = Arc::new(Health::default());
        let writer_health = health.clone();
        let thread = std::thread::Builder::new()
            .name("grok2api-journal".into())
            .spawn(move || write(rx, writer_health))
            .map_err(|e| format!("cannot start journal writer: {e}"))?;
        Ok(Self { tx: Mutex::new(Some(tx)), thread: Mutex::new(Some(thread)), health })
    }

    /// False while writes fail (a full disk): creates are refused and states wait in memory.
    pub fn writable(&self) -> bool {
        self.health.writable()
    }

    fn send(&self, op: Op) -> bool {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        tx.as_ref().is_some_and(|tx| tx.send(op).is_ok())
    }

    /// Writes a record behind (batched, not awaited).
    pub fn put(&self, record: &TaskRecord) {
        match serde_json::to_vec(record) {
            Ok(bytes) => {
                if !self.send(Op::Put(record.id.clone(), bytes, record.meta(), None)) {
                    tracing::error!(task = %record.id, "journal closed; task state not persisted");
                }
            }
            Err(e) => tracing::error!(task = %record.id, "cannot encode journal record: {e}"),
        }
    }

    /// Writes a record and waits until it is on disk. A failure is final: the record is not tried
    /// again (the caller refuses the create).
    pub async fn put_durable(&self, record: &TaskRecord) -> Result<(), String> {
        let bytes = serde_json::to_vec(record).map_err(|e| e.to_string())?;
        let (ack, done) = oneshot::channel();
        if !self.send(Op::Put(record.id.clone(), bytes, record.meta(), Some(ack))) {
            return Err("journal is closed".into());
        }
        done.await.map_err(|_| "journal writer stopped".to_string())?
    }

    /// Answered once every record queued so far is written; through a full disk that takes as long
    /// as the disk stays full. An error means the journal closed before.
    pub fn synced(&self) -> oneshot::Receiver<()> {
        let (ack, done) = oneshot::channel();
        // Refused (closed): the sender is dropped with the operation, which answers the receiver.
        self.send(Op::Synced(ack));
        done
    }

    /// Deletes a task's record; `created_ms` is the task's creation time.
    pub fn remove(&self, id: &str, created_ms: u64) {
        self.send(Op::Remove(id.to_owned(), created_ms));
    }

    /// Writes out everything queued and stops the writer. Later writes are refused.
    pub fn close(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take()
            && t.join().is_err()
        {
            tracing::error!("journal writer panicked");
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.close();
    }
}

/// How a writer treats its batches.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// Most operations taken from the queue into one batch.
    pub max: usize,
    /// Keep the written-behind operations of a failed batch (the newest per task) and write them
    /// again, first in the next batch or alone on a backoff, until they are written: a state told
    /// to a client then outlives a full disk as long as the process does. The shared store's writer
    /// drops them instead: written late, a record could overwrite what a replica that took the task
    /// over wrote since.
    pub keep_failed: bool,
}

/// A batch at least this large means writes arrive faster than one commit takes.
const BUSY_BATCH: usize = 8;
/// Under that load, how long a batch waits for more before it is written.
const GATHER: Duration = Duration::from_micros(400);
/// After a failed batch, the first and the longest wait before trying again with nothing new.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(1);
/// When the journal closes, how long what is kept is still tried before it is given up.
const CLOSE_PATIENCE: Duration = Duration::from_secs(3);

/// The loop every journal writer runs: take what is queued (up to `max` operations), `write` it as
/// one batch, and tell each awaited create how its batch went. Ends when the journal closes.
///
/// Under load a batch first gathers for `GATHER`: a commit's fixed cost (the fsync, redb's page and
/// free-list bookkeeping) is most of a create's, and it was being paid for batches of about 15
/// (docs/benchmarks.md). An idle journal writes at once, so a lone create waits for no one.
pub fn write_batches(
    rx: mpsc::Receiver<Op>,
    batching: Batching,
    health: &Health,
    mut write: impl FnMut(&[Op]) -> Result<(), String>,
) {
    let mut kept = Kept::default();
    let mut busy = false;
    let mut retry = RETRY_FIRST;
    loop {
        // While writes fail, wake up to try again even when nothing new arrives.
        let first = match (batching.keep_failed && !health.writable()).then_some(retry) {
            None => match rx.recv() {
                Ok(op) => Some(op),
                Err(_) => break,
            },
            Some(wait) => match rx.recv_timeout(wait) {
                Ok(op) => Some(op),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            },
        };
        let earlier = kept.tasks();
        let mut ops = kept.take();
        busy = first.is_some() && gather(&rx, first, busy, batching.max, &mut ops) >= BUSY_BATCH;
        let result = write(&ops);
        retry = if result.is_ok() { RETRY_FIRST } else { (retry * 2).min(RETRY_MAX) };
        health.record(&result, earlier);
        settle(ops, &result, batching.keep_failed, &mut kept);
    }
    close_out(kept, health, &mut write);
}

/// Appends `first` and what else is queued (up to `max` in all) to `ops`; under load (`busy`)
/// waits up to `GATHER` for more. Returns how many it took.
fn gather(rx: &mpsc::Receiver<Op>, first: Option<Op>, busy: bool, max: usize, ops: &mut Vec<Op>) -> usize {
    let Some(first) = first else { return 0 };
    ops.push(first);
    let mut taken = 1;
    let until = busy.then(|| Instant::now() + GATHER);
    while taken < max {
        let next = match until {
            Some(t) => rx.recv_timeout(t.saturating_duration_since(Instant::now())).ok(),
            None => rx.try_recv().ok(),
        };
        let Some(op) = next else { break };
        ops.push(op);
        taken += 1;
    }
    taken
}

/// Answers each create and `Synced` of a written batch. Of a failed one, the creates hear the
/// error (their clients get a 503; they are not tried again) and the rest is kept or dropped.
fn settle(ops: Vec<Op>, result: &Result<(), String>, keep_failed: bool, kept: &mut Kept) {
    for op in ops {
        match op {
            Op::Put(_, _, _, Some(ack)) => {
                let _ = ack.send(result.clone());
            }
            Op::Synced(ack) if result.is_ok() || !keep_failed => {
                let _ = ack.send(());
            }
            op if result.is_err() && keep_failed => kept.keep(op),
            _ => {}
        }
    }
}

/// The journal closed with operations still kept: tries them for a little longer (a shutdown must
/// end), then says how many tasks' last states are lost.
fn close_out(mut kept: Kept, health: &Health, write: &mut impl FnMut(&[Op]) -> Result<(), String>) {
    let deadline = Instant::now() + CLOSE_PATIENCE;
    let mut retry = RETRY_FIRST;
    while !kept.is_empty() {
        let earlier = kept.tasks();
        let ops = kept.take();
        let result = write(&ops);
        health.record(&result, earlier);
        settle(ops, &result, true, &mut kept);
        if kept.is_empty() {
            return;
        }
        if Instant::now() + retry > deadline {
            tracing::error!(
                tasks = kept.tasks(),
                "task journal closed before it could write these tasks' last states: after a restart they \
                 show what was written before writes failed"
            );
            return;
        }
        std::thread::sleep(retry);
        retry = (retry * 2).min(RETRY_MAX);
    }
}

/// What failed batches left to write: the newest operation per task (an older record of a task is
/// worthless once a newer one exists), plus the `Synced` waiting for them.
#[derive(Default)]
struct Kept {
    ops: Vec<Op>,
    /// Task id → its operation's index in `ops`.
    slots: HashMap<String, usize>,
}

impl Kept {
    fn keep(&mut self, op: Op) {
        let slot = op.task().map(|id| self.slots.get(id).copied().ok_or_else(|| id.to_owned()));
        match slot {
            Some(Ok(i)) => self.ops[i] = op,
            Some(Err(id)) => {
                self.slots.insert(id, self.ops.len());
                self.ops.push(op);
            }
            None => self.ops.push(op),
        }
    }

    fn take(&mut self) -> Vec<Op> {
        self.slots.clear();
        std::mem::take(&mut self.ops)
    }

    fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    fn tasks(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (task id, record) of each `Put` written.
    type Written = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

    /// A journal whose writer fails while `full` is set and otherwise records what it writes.
    fn flaky(keep_failed: bool) -> (Journal, Arc<AtomicBool>, Written) {
        let full = Arc::new(AtomicBool::new(false));
        let written = Arc::new(Mutex::new(Vec::new()));
        let (f, w) = (full.clone(), written.clone());
        let journal = Journal::spawn(move |rx, health| {
            write_batches(rx, Batching { max: BATCH, keep_failed }, &health, |ops| {
                if f.load(Ordering::SeqCst) {
                    return Err("No space left on device".into());
                }
                for op in ops {
                    if let Op::Put(id, bytes, ..) = op {
                        w.lock().unwrap().push((id.clone(), bytes.clone()));
                    }
                }
                Ok(())
            })
        })
        .unwrap();
        (journal, full, written)
    }

    fn put(j: &Journal, id: &str, bytes: &[u8]) {
        let meta = PutMeta { owner: "k".into(), created_ms: 1, terminal: false, owed: false, pending: false };
        j.send(Op::Put(id.into(), bytes.to_vec(), meta, None));
    }

    fn create(j: &Journal, id: &str) -> oneshot::Receiver<Result<(), String>> {
        let meta = PutMeta { owner: "k".into(), created_ms: 1, terminal: false, owed: false, pending: true };
        let (ack, done) = oneshot::channel();
        j.send(Op::Put(id.into(), b"new".to_vec(), meta, Some(ack)));
        done
    }

    #[test]
    fn a_failed_batch_is_kept_newest_per_task_and_written_when_writes_work_again() {
        let (j, full, written) = flaky(true);
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        full.store(true, Ordering::SeqCst);
        put(&j, "a", b"processing");
        put(&j, "a", b"failed");
        put(&j, "b", b"success");
        let mut synced = j.synced();
        let refused = rt.block_on(create(&j, "c")).unwrap();
        assert!(refused.is_err(), "a create hears at once that it failed");
        assert!(!j.writable());
        std::thread::sleep(Duration::from_millis(300));
        assert!(synced.try_recv().is_err(), "nothing is synced while writes fail");
        assert!(written.lock().unwrap().is_empty());

        full.store(false, Ordering::SeqCst);
        let started = Instant::now();
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(3), synced).await }).unwrap().unwrap();
        assert!(
            started.elapsed() <= RETRY_MAX + Duration::from_millis(200),
            "retried on the backoff, nothing new needed"
        );
        assert!(j.writable());
        let mut got = written.lock().unwrap().clone();
        got.sort();
        assert_eq!(
            got,
            [("a".to_string(), b"failed".to_vec()), ("b".to_string(), b"success".to_vec())],
            "the newest record of each task; the refused create is not written"
        );
    }

    #[test]
    fn a_writer_that_drops_failed_batches_answers_synced_anyway() {
        let (j, full, written) = flaky(false);
        full.store(true, Ordering::SeqCst);
        put(&j, "a", b"processing");
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(1), j.synced()).await }).unwrap().unwrap();
        assert!(!j.writable());
        full.store(false, Ordering::SeqCst);
        put(&j, "b", b"success");
        rt.block_on(j.synced()).unwrap();
        assert_eq!(*written.lock().unwrap(), [("b".to_string(), b"success".to_vec())], "a was dropped");
        assert!(j.writable());
    }

    #[test]
    fn closing_writes_what_is_kept_when_it_can() {
        let (j, full, written) = flaky(true);
        full.store(true, Ordering::SeqCst);
        put(&j, "a", b"failed");
        let synced = j.synced();
        let f = full.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            f.store(false, Ordering::SeqCst);
        });
        j.close();
        assert_eq!(*written.lock().unwrap(), [("a".to_string(), b"failed".to_vec())]);
        assert!(synced.blocking_recv().is_ok());
    }

    /// A pending image task's record, as the store writes it.
    fn record(id: &str, created_ms: u64) -> TaskRecord {
        TaskRecord {
            id: id.into(),
            api: None,
            request: None,
            owner: "k".into(),
            kind: "images".into(),
            status: "pending".into(),
            progress: 0,
            created_ms,
            updated_ms: created_ms,
            outcome: None,
            callback: None,
            pending: None,
        }
    }

    fn put_op(r: &TaskRecord) -> Op {
        Op::Put(r.id.clone(), serde_json::to_vec(r).unwrap(), r.meta(), None)
    }

    fn ids(records: &[TaskRecord]) -> Vec<String> {
        let mut ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
        ids.sort();
        ids
    }

    fn segments_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    /// A crash can cut the log anywhere in the batch being written. Whatever the cut, a restart finds
    /// every record of the batches before it (each was acknowledged once its sync returned), and the
    /// last batch whole or not at all (its sync had not returned: no client heard of it).
    #[test]
    fn truncating_the_log_at_every_byte_of_its_last_batch_keeps_every_acknowledged_record() {
        let scratch = tempfile::tempdir().unwrap();
        let (tx, _frames) = mpsc::channel();
        let mut writer = log::LogWriter::create(scratch.path(), 1, tx).unwrap();
        let (a, b, c, d) = (record("task_a", 1), record("task_b", 2), record("task_c", 3), record("task_d", 4));
        writer.append(&[put_op(&a)]).unwrap();
        writer.append(&[put_op(&b), put_op(&c)]).unwrap();
        let before_last = std::fs::metadata(scratch.path().join(format!("{:020}.log", 1))).unwrap().len() as usize;
        let mut done_a = record("task_a", 1);
        done_a.status = "success".into();
        writer.append(&[put_op(&d), put_op(&done_a), Op::Remove("task_b".into(), 2)]).unwrap();
        let log = std::fs::read(scratch.path().join(format!("{:020}.log", 1))).unwrap();
        assert!(log.len() > before_last + 100);

        for cut in before_last..=log.len() {
            let dir = tempfile::tempdir().unwrap();
            let log_dir = dir.path().join("tasks-log");
            std::fs::create_dir_all(&log_dir).unwrap();
            std::fs::write(log_dir.join(format!("{:020}.log", 1)), &log[..cut]).unwrap();
            let (j, records) = Journal::open(dir.path()).unwrap();
            if cut == log.len() {
                assert_eq!(ids(&records), ["task_a", "task_c", "task_d"], "cut at {cut}: the whole log");
                let a = records.iter().find(|r| r.id == "task_a").unwrap();
                assert_eq!(a.status, "success", "the later record of a task wins");
            } else {
                assert_eq!(ids(&records), ["task_a", "task_b", "task_c"], "cut at {cut} of {}", log.len());
                assert!(records.iter().all(|r| r.status == "pending"));
            }
            // Replayed into the tables: the old segment is gone, and the journal writes on.
            assert_eq!(segments_in(&log_dir), [format!("{:020}.log", 2)], "cut at {cut}");
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(j.put_durable(&record("task_e", 5))).unwrap();
            drop(j);
            let (_j, again) = Journal::open(dir.path()).unwrap();
            assert_eq!(again.len(), records.len() + 1, "cut at {cut}");
        }
    }

    /// The tables catch up behind the log and the log is deleted as they do: segments while a storm
    /// goes on, the last one when the journal closes.
    #[test]
    fn the_log_is_deleted_once_the_tables_hold_it() {
        let dir = tempfile::tempdir().unwrap();
        let log_dir = dir.path().join("tasks-log");
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        // Records of 1 MiB: 24 of them fill three segments.
        let big = "x".repeat(1 << 20);
        let mut want = Vec::new();
        {
            let (j, records) = Journal::open(dir.path()).unwrap();
            assert!(records.is_empty());
            for i in 0..24u64 {
                let mut r = record(&format!("task_{i:02}"), 10 + i);
                r.status = "failed".into();
                r.outcome = Some(OutcomeRecord::Failed { code: "x".into(), message: big.clone() });
                rt.block_on(j.put_durable(&r)).unwrap();
                want.push(r.id.clone());
            }
            rt.block_on(j.synced()).unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            while segments_in(&log_dir).len() > 1 {
                assert!(Instant::now() < deadline, "applied segments stay: {:?}", segments_in(&log_dir));
                std::thread::sleep(Duration::from_millis(20));
            }
            j.close();
        }
        assert!(segments_in(&log_dir).is_empty(), "a closed journal leaves no log: {:?}", segments_in(&log_dir));
        let (_j, records) = Journal::open(dir.path()).unwrap();
        assert_eq!(ids(&records), want);
    }

    /// A video's upstream origin (grok.com extends a video by its post, with the account that made it)
    /// is kept with the outcome; records written before it was kept read as having none.
    #[test]
    fn a_videos_origin_is_kept_and_older_records_have_none() {
        let origin = crate::media::UpstreamOrigin { account: "0123456789ab".into(), asset_id: "post-2@post-1".into() };
        let record = OutcomeRecord::Video {
            base: "http://x".into(),
            video: "v.mp4".into(),
            thumbnail: None,
            duration: 10,
            origin: Some((origin.account.clone(), origin.asset_id.clone())),
        };
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["origin"], serde_json::json!(["0123456789ab", "post-2@post-1"]));
        let back: OutcomeRecord = serde_json::from_value(json).unwrap();
        assert!(
            matches!(back, OutcomeRecord::Video { origin: Some((a, p)), .. } if a == origin.account && p == origin.asset_id)
        );
        let old = serde_json::json!({"type": "video", "base": "http://x", "video": "v.mp4", "thumbnail": null, "duration": 6});
        let old: OutcomeRecord = serde_json::from_value(old).unwrap();
        assert!(matches!(old, OutcomeRecord::Video { origin: None, .. }));
        let none =
            OutcomeRecord::Video { base: "b".into(), video: "v".into(), thumbnail: None, duration: 6, origin: None };
        assert!(serde_json::to_value(&none).unwrap().get("origin").is_none(), "the shape is unchanged without one");
    }

    #[test]
    fn video_records_of_the_single_image_layout_still_load() {
        let old = serde_json::json!({"type": "video", "prompt": "", "aspect_ratio": "1:1", "duration": 6,
            "resolution": "480p", "preset": "fun", "image": base64::engine::general_purpose::STANDARD.encode(b"\x89PNG\r\n\x1a\nx")});
        let record: JobRecord = serde_json::from_value(old).unwrap();
        let Job::Video(v) = record.to_job().unwrap() else { panic!("not video") };
        assert_eq!((v.images.len(), v.preset), (1, VideoPreset::Fun));
    }

    #[test]
    fn video_edits_and_extensions_survive_a_restart_with_their_video() {
        let clip = Bytes::from_static(include_bytes!("../../sim/fixtures/video-16x9-6s.mp4"));
        // A grok.com extension queued when the process died still knows whose post it continues.
        let origin = Some(crate::media::UpstreamOrigin { account: "0123456789ab".into(), asset_id: "p2@p1".into() });
        let video = InputVideo { bytes: clip.clone(), content_type: "video/mp4", seconds: 6.0, origin };
        for op in [VideoOp::Edit, VideoOp::Extend { seconds: 4 }] {
            let job = Job::VideoOp(VideoOpJob { op, prompt: "night".into(), video: video.clone() });
            let json = serde_json::to_value(JobRecord::from_job(&job).unwrap()).unwrap();
            let record: JobRecord = serde_json::from_value(json).unwrap();
            let Job::VideoOp(back) = record.to_job().unwrap() else { panic!("not a video op") };
            assert_eq!((back.op, back.prompt.as_str(), &back.video.bytes), (op, "night", &clip));
            assert!((back.video.seconds - 6.0).abs() < 0.1);
            assert_eq!(back.video.origin, video.origin);
        }
        // 1080p is kept as asked (records of 1.5 videos).
        let record = JobRecord::Video {
            prompt: "p".into(),
            aspect_ratio: "16:9".into(),
            duration: 6,
            resolution: "1080p".into(),
            preset: "normal".into(),
            image: None,
            images: Vec::new(),
        };
        let Job::Video(v) = record.to_job().unwrap() else { panic!("not video") };
        assert_eq!(v.resolution, "1080p");
    }
}

//! The durable journal behind `--state-dir`: every accepted task (with its job while it is pending) and
//! its callback state, in an embedded redb database. One writer thread applies operations in batches
//! (group commit, fsync per batch): a create waits for its batch to be durable before the client gets
//! 202; later transitions are written behind. After a crash the records say what to do: pending tasks
//! run again, interrupted ones fail with `interrupted`, undelivered callbacks are delivered.

use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::{CallbackState, Outcome, Task, TaskApi, TaskKind, TaskStatus, VideoRequest};
use crate::auth::KeyId;
use crate::jobs::{ImageFormat, ImageJob, ImageOutput, InputImage, Job, VideoJob, VideoPreset};

/// Records keyed by (creation time, id): new tasks land at the right edge of the B-tree, so a batch
/// of creates rewrites a few pages instead of one random page per task (unthrottled creates with
/// the journal went from 15 % to 22 % of the machine's ceiling, docs/benchmarks.md).
const TASKS: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("tasks_by_created");
/// The layout before: keyed by id alone. Moved into `TASKS` when such a journal is opened.
const LEGACY: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");
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
    Images { base: String, names: Vec<String>, b64: bool },
    Video { base: String, video: String, thumbnail: Option<String>, duration: u32 },
    Failed { code: String, message: String },
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
            Job::Edit(_) => return None,
        })
    }

    pub fn to_job(&self) -> Result<Job, String> {
        let ratio = crate::jobs::aspect_ratio_for_size;
        Ok(match self {
            Self::Image { prompt, n, aspect_ratio, output_format, output_compression } => Job::Image(ImageJob {
                prompt: prompt.clone(),
                n: *n,
                aspect_ratio: ratio(aspect_ratio)?,
                output: ImageOutput {
                    format: output_format.as_deref().and_then(ImageFormat::parse),
                    compression: *output_compression,
                },
            }),
            Self::Video { prompt, aspect_ratio, duration, resolution, preset, image, images } => {
                let images = image
                    .iter()
                    .chain(images)
                    .map(|b64| {
                        let bytes = Bytes::from(
                            base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| e.to_string())?,
                        );
                        let content_type =
                            crate::upstream::sniff_media_type(&bytes).ok_or("journaled image is not an image")?;
                        Ok(InputImage { bytes, content_type, file_name: "input".into(), origin: None })
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                Job::Video(VideoJob {
                    prompt: prompt.clone(),
                    aspect_ratio: ratio(aspect_ratio)?,
                    duration: *duration,
                    resolution: if resolution == "720p" { "720p" } else { "480p" },
                    preset: match preset.as_str() {
                        "fun" => VideoPreset::Fun,
                        "spicy" => VideoPreset::Spicy,
                        "custom" => VideoPreset::Custom,
                        _ => VideoPreset::Normal,
                    },
                    images,
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
                Outcome::Video { base, video, thumbnail, duration } => OutcomeRecord::Video {
                    base: base.to_string(),
                    video: video.clone(),
                    thumbnail: thumbnail.clone(),
                    duration: *duration,
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
                    OutcomeRecord::Video { base, video, thumbnail, duration } => {
                        Outcome::Video { base: Arc::from(base), video, thumbnail, duration }
                    }
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

/// One write for the writer thread. `Put` carries what a shared store indexes besides the record;
/// `Remove` the task's id and creation time (half of its journal key).
pub enum Op {
    Put(String, Vec<u8>, PutMeta, Option<oneshot::Sender<Result<(), String>>>),
    Remove(String, u64),
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

pub struct Journal {
    tx: Mutex<Option<mpsc::Sender<Op>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Journal {
    /// Opens (or creates) `<dir>/tasks.redb` and returns the journal with every record it holds.
    pub fn open(dir: &Path) -> Result<(Self, Vec<TaskRecord>), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create state dir {}: {e}", dir.display()))?;
        let path = dir.join("tasks.redb");
        let db = Database::create(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let mut records = Vec::new();
        {
            let txn = db.begin_write().map_err(|e| e.to_string())?;
            {
                let mut table = txn.open_table(TASKS).map_err(|e| e.to_string())?;
                let moved = move_legacy_records(&txn, &mut table)?;
                if moved > 0 {
                    tracing::info!(records = moved, "journal records moved to the creation-ordered layout");
                }
            }
            txn.commit().map_err(|e| e.to_string())?;
            let read = db.begin_read().map_err(|e| e.to_string())?;
            let table = read.open_table(TASKS).map_err(|e| e.to_string())?;
            for row in table.iter().map_err(|e| e.to_string())? {
                let (k, v) = row.map_err(|e| e.to_string())?;
                match serde_json::from_slice::<TaskRecord>(v.value()) {
                    Ok(r) => records.push(r),
                    Err(e) => tracing::error!(task = k.value().1, "unreadable journal record skipped: {e}"),
                }
            }
        }
        Ok((Self::spawn(move |rx| writer(db, rx))?, records))
    }

    /// A journal whose writer thread runs `write` over the queued operations (the redb writer here,
    /// the Redis one in `shared`).
    pub fn spawn(write: impl FnOnce(mpsc::Receiver<Op>) + Send + 'static) -> Result<Self, String> {
        let (tx, rx) = mpsc::channel::<Op>();
        let thread = std::thread::Builder::new()
            .name("grok2api-journal".into())
            .spawn(move || write(rx))
            .map_err(|e| format!("cannot start journal writer: {e}"))?;
        Ok(Self { tx: Mutex::new(Some(tx)), thread: Mutex::new(Some(thread)) })
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

    /// Writes a record and waits until it is on disk.
    pub async fn put_durable(&self, record: &TaskRecord) -> Result<(), String> {
        let bytes = serde_json::to_vec(record).map_err(|e| e.to_string())?;
        let (ack, done) = oneshot::channel();
        if !self.send(Op::Put(record.id.clone(), bytes, record.meta(), Some(ack))) {
            return Err("journal is closed".into());
        }
        done.await.map_err(|_| "journal writer stopped".to_string())?
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

/// A batch at least this large means writes arrive faster than one commit takes.
const BUSY_BATCH: usize = 8;
/// Under that load, how long a batch waits for more before it is written.
const GATHER: Duration = Duration::from_micros(400);

/// The loop every journal writer runs: take what is queued (up to `max` operations), `write` it as
/// one batch, and tell each awaited create how its batch went. Ends when the journal closes.
///
/// Under load a batch first gathers for `GATHER`: a commit's fixed cost (the fsync, redb's page and
/// free-list bookkeeping) is most of a create's, and it was being paid for batches of about 15
/// (docs/benchmarks.md). An idle journal writes at once, so a lone create waits for no one.
pub fn write_batches(rx: mpsc::Receiver<Op>, max: usize, mut write: impl FnMut(&[Op]) -> Result<(), String>) {
    let mut busy = false;
    while let Ok(first) = rx.recv() {
        let mut ops = vec![first];
        let until = busy.then(|| Instant::now() + GATHER);
        while ops.len() < max {
            let next = match until {
                Some(t) => rx.recv_timeout(t.saturating_duration_since(Instant::now())).ok(),
                None => rx.try_recv().ok(),
            };
            match next {
                Some(op) => ops.push(op),
                None => break,
            }
        }
        busy = ops.len() >= BUSY_BATCH;
        let result = write(&ops);
        if let Err(e) = &result {
            tracing::error!("task journal write failed: {e}");
        }
        for op in ops {
            if let Op::Put(_, _, _, Some(ack)) = op {
                let _ = ack.send(result.clone());
            }
        }
    }
}

/// Moves the records of a journal keyed by id alone into `table`, and drops the old table. An
/// unreadable record keeps its bytes (under creation time 0), to be reported like any other.
fn move_legacy_records(
    txn: &redb::WriteTransaction,
    table: &mut redb::Table<(u64, &str), &[u8]>,
) -> Result<usize, String> {
    let exists = txn.list_tables().map_err(|e| e.to_string())?.any(|t| t.name() == LEGACY.name());
    if !exists {
        return Ok(0);
    }
    let mut moved = 0;
    {
        let legacy = txn.open_table(LEGACY).map_err(|e| e.to_string())?;
        for row in legacy.iter().map_err(|e| e.to_string())? {
            let (k, v) = row.map_err(|e| e.to_string())?;
            let created = serde_json::from_slice::<TaskRecord>(v.value()).map_or(0, |r| r.created_ms);
            table.insert((created, k.value()), v.value()).map_err(|e| e.to_string())?;
            moved += 1;
        }
    }
    txn.delete_table(LEGACY).map_err(|e| e.to_string())?;
    Ok(moved)
}

fn writer(db: Database, rx: mpsc::Receiver<Op>) {
    write_batches(rx, BATCH, |ops| {
        let txn = db.begin_write().map_err(|e| e.to_string())?;
        {
            let mut table = txn.open_table(TASKS).map_err(|e| e.to_string())?;
            for op in ops {
                match op {
                    Op::Put(id, bytes, meta, _) => {
                        table.insert((meta.created_ms, id.as_str()), bytes.as_slice()).map_err(|e| e.to_string())?;
                    }
                    Op::Remove(id, created_ms) => {
                        table.remove((*created_ms, id.as_str())).map_err(|e| e.to_string())?;
                    }
                }
            }
        }
        txn.commit().map_err(|e| e.to_string())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let job = Job::Video(VideoJob {
            prompt: "waves".into(),
            aspect_ratio: "9:16",
            duration: 10,
            resolution: "720p",
            preset: VideoPreset::Spicy,
            images: vec![InputImage {
                bytes: Bytes::from_static(b"\x89PNG\r\n\x1a\nrest"),
                content_type: "image/png",
                file_name: "a.png".into(),
                origin: None,
            }],
        });
        let store = super::super::store::TaskStore::new();
        let id = store.create(KeyId(Arc::from("k")), TaskKind::Video, Some("https://h.example/x".into()));
        let task = store.get(&id, TaskKind::Video, None).unwrap();
        let pending = PendingJob {
            job: JobRecord::from_job(&job).unwrap(),
            base: "http://gw".into(),
            b64: false,
            upstream_ref: None,
        };
        {
            let (j, recs) = Journal::open(dir.path()).unwrap();
            assert!(recs.is_empty());
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(j.put_durable(&TaskRecord::from_task(&task, Some(pending))))
                .unwrap();
            j.close();
        }
        let (_j, recs) = Journal::open(dir.path()).unwrap();
        assert_eq!(recs.len(), 1);
        let (restored, pending) = recs.into_iter().next().unwrap().into_task().unwrap();
        assert_eq!((&*restored.id, restored.status), (&*id, TaskStatus::Pending));
        assert_eq!(restored.callback.unwrap().url, "https://h.example/x");
        let Job::Video(v) = pending.unwrap().job.to_job().unwrap() else { panic!("not video") };
        assert_eq!((v.aspect_ratio, v.duration, v.resolution, v.preset), ("9:16", 10, "720p", VideoPreset::Spicy));
        assert_eq!(v.images.len(), 1);
        assert_eq!(v.images[0].content_type, "image/png");
    }

    #[test]
    fn a_journal_keyed_by_id_alone_is_moved_to_the_creation_ordered_layout() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::store::TaskStore::new();
        let (old, new) = (
            store.create(KeyId(Arc::from("k")), TaskKind::Image, None),
            store.create(KeyId(Arc::from("k")), TaskKind::Image, None),
        );
        let bytes = |id: &str| {
            serde_json::to_vec(&TaskRecord::from_task(&store.get(id, TaskKind::Image, None).unwrap(), None)).unwrap()
        };
        {
            let db = Database::create(dir.path().join("tasks.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn.open_table(LEGACY).unwrap();
                t.insert(&*old, bytes(&old).as_slice()).unwrap();
                t.insert("garbled", b"{not json".as_slice()).unwrap();
            }
            txn.commit().unwrap();
        }
        let (j, recs) = Journal::open(dir.path()).unwrap();
        assert_eq!(
            recs.iter().map(|r| r.id()).collect::<Vec<_>>(),
            [&*old],
            "the unreadable record is reported, not loaded"
        );
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let record = serde_json::from_slice::<TaskRecord>(&bytes(&new)).unwrap();
        rt.block_on(j.put_durable(&record)).unwrap();
        j.remove(&old, recs[0].created_ms());
        j.close();
        drop(j);
        let db = Database::create(dir.path().join("tasks.redb")).unwrap();
        let read = db.begin_read().unwrap();
        assert!(read.list_tables().unwrap().all(|t| t.name() != LEGACY.name()), "the old table is gone");
        let keys: Vec<String> =
            read.open_table(TASKS).unwrap().iter().unwrap().map(|r| r.unwrap().0.value().1.to_owned()).collect();
        assert_eq!(
            keys,
            ["garbled".to_owned(), new.to_string()],
            "old removed by its creation time; the garbled bytes kept"
        );
    }

    #[test]
    fn the_creating_api_and_its_request_survive_a_round_trip() {
        let store = super::super::store::TaskStore::new();
        let request = Arc::new(VideoRequest {
            model: "grok-imagine-1.0-video".into(),
            prompt: "waves".into(),
            seconds: 8,
            size: "1280x720".into(),
            resolution: "720p".into(),
        });
        let id = store.create_for(KeyId(Arc::from("k")), TaskKind::Video, None, TaskApi::OpenAi, Some(request.clone()));
        let task = store.get(&id, TaskKind::Video, None).unwrap();
        let json = serde_json::to_vec(&TaskRecord::from_task(&task, None)).unwrap();
        let (back, _) = serde_json::from_slice::<TaskRecord>(&json).unwrap().into_task().unwrap();
        assert_eq!((back.api, back.request.as_deref()), (TaskApi::OpenAi, Some(&*request)));
        // Records written before tasks knew their API are the task endpoints'.
        let native = store.create(KeyId(Arc::from("k")), TaskKind::Video, None);
        let record = TaskRecord::from_task(&store.get(&native, TaskKind::Video, None).unwrap(), None);
        let json = serde_json::to_value(&record).unwrap();
        assert!(json.get("api").is_none());
        let (back, _) = serde_json::from_value::<TaskRecord>(json).unwrap().into_task().unwrap();
        assert_eq!((back.api, back.request), (TaskApi::Native, None));
    }

    #[test]
    fn video_records_of_the_single_image_layout_still_load() {
        let old = serde_json::json!({"type": "video", "prompt": "", "aspect_ratio": "1:1", "duration": 6,
            "resolution": "480p", "preset": "fun", "image": base64::engine::general_purpose::STANDARD.encode(b"\x89PNG\r\n\x1a\nx")});
        let record: JobRecord = serde_json::from_value(old).unwrap();
        let Job::Video(v) = record.to_job().unwrap() else { panic!("not video") };
        assert_eq!((v.images.len(), v.preset), (1, VideoPreset::Fun));
    }
}

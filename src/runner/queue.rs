//! The bounded task queue and its worker pool. A slot is reserved before a task is created, so a full
//! queue answers 429 without leaving a task behind, and the backlog can never grow without bound.
//! Workers run tasks through the same `JobRunner` as the sync endpoints; upstream progress is written
//! into the task as it arrives; cancelling a task drops its job future, which closes the upstream
//! request and frees its token.
//!
//! Shutdown has two steps: `shutdown` stops workers from taking new tasks (queued ones stay pending,
//! journaled when there is a journal); `abort`, after the grace period, stops the running ones, which
//! fail with `interrupted`.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::JobRunner;
use crate::HotMap;
use crate::error::ApiError;
use crate::jobs::{Job, JobEvent, JobOutput, ProgressSink};
use crate::owner::KeyId;
use crate::tasks::callbacks::{self, CallbackSettings};
use crate::tasks::fair::{FairQueue, Full};
use crate::tasks::journal::{JobRecord, PendingJob, TaskRecord};
use crate::tasks::store::{TaskStore, Transition};
use crate::tasks::{Outcome, Task, TaskStatus};

pub struct QueuedTask {
    pub id: Arc<str>,
    pub job: Job,
    /// Base URL for result links, as the creator reached us.
    pub base: Arc<str>,
    pub b64: bool,
    /// Set for a task recovered after the upstream had accepted it: poll this id, do not resubmit.
    pub resume: Option<String>,
}

#[derive(Clone)]
pub struct TaskQueue {
    queue: Arc<FairQueue<QueuedTask>>,
    ctx: Arc<WorkerCtx>,
}

pub struct Settings {
    pub capacity: usize,
    /// Places one key may hold (0 = half the queue).
    pub per_key: usize,
    /// Tasks expected at once (sizes the cancellation map like the store).
    pub expected_tasks: usize,
    pub workers: usize,
    pub job_timeout: Duration,
    pub callbacks: Option<CallbackSettings>,
    /// With several replicas: a task is started only while it is still this replica's (a replica
    /// that fell silent too long may have lost it to another).
    pub shared: Option<Arc<crate::shared::SharedStore>>,
}

/// A finished task's callback body, in the shape of the API that made it (b64 images are read from
/// media).
pub type Render = Arc<dyn Fn(&Task) -> serde_json::Value + Send + Sync>;

pub use crate::tasks::Signals;

/// How long a worker with nothing queued here waits before it looks at the shared queue.
const STEAL_AFTER: Duration = Duration::from_millis(250);

impl TaskQueue {
    pub fn start(
        settings: Settings,
        store: Arc<TaskStore>,
        runner: Arc<JobRunner>,
        render: Render,
        tracker: &TaskTracker,
        signals: Signals,
    ) -> Self {
        let queue = Arc::new(FairQueue::new(settings.capacity, settings.per_key));
        let ctx = Arc::new(WorkerCtx {
            store,
            runner,
            render,
            running: HotMap::with_capacity_and_hasher(
                settings.expected_tasks.min(settings.capacity.saturating_add(1)),
                Default::default(),
            ),
            job_timeout: settings.job_timeout,
            callbacks: settings.callbacks,
            tracker: tracker.clone(),
            signals: signals.clone(),
            shared: settings.shared,
        });
        for _ in 0..settings.workers.max(1) {
            let (queue, ctx, shutdown) = (queue.clone(), ctx.clone(), signals.shutdown.clone());
            tracker.spawn(async move {
                loop {
                    let next = tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => return,
                        next = queue.pop() => Some(next),
                        _ = tokio::time::sleep(STEAL_AFTER), if ctx.shared.is_some() => None,
                    };
                    match next {
                        Some(task) => ctx.run(task).await,
                        // With several replicas an idle worker takes queued work from the shared queue.
                        // Never raced against the local queue: a steal dropped half-way would leave a
                        // task claimed in the store and run by no one.
                        None => {
                            if let Some(task) = ctx.steal().await {
                                ctx.run(task).await;
                            }
                        }
                    }
                }
            });
        }
        Self { queue, ctx }
    }

    /// Queued tasks not yet picked up by a worker.
    pub fn depth(&self) -> usize {
        self.queue.len()
    }

    /// Reserves a queue place for `owner`, creates the task with `create`, journals it (durably, with
    /// its job) when there is a journal, and enqueues it. A full queue, or a key holding its whole
    /// share of it, is a 429; a journal failure a 503.
    pub async fn submit(
        &self,
        owner: &KeyId,
        create: impl FnOnce() -> Arc<str>,
        job: Job,
        base: Arc<str>,
        b64: bool,
    ) -> Result<Arc<str>, ApiError> {
        // What the upstream cannot make at all is refused now, not failed after the 202.
        self.ctx.runner.upstream().admit(&job)?;
        let permit = self.queue.reserve(owner).map_err(|full| match full {
            Full::Queue => ApiError::rate_limited(5, "the task queue is full; retry later"),
            Full::Key => ApiError::rate_limited(5, "this API key holds its whole share of the task queue; retry later"),
        })?;
        let id = create();
        if let Some(journal) = self.ctx.store.journal() {
            let task = self.ctx.store.snapshot(&id).ok_or_else(|| ApiError::internal("task vanished at creation"))?;
            let pending = JobRecord::from_job(&job).map(|job| PendingJob {
                job,
                base: base.to_string(),
                b64,
                upstream_ref: None,
            });
            if let Err(e) = journal.put_durable(&TaskRecord::from_task(&task, pending)).await {
                self.ctx.store.remove(&id);
                tracing::error!("cannot journal a new task: {e}");
                return Err(ApiError::unavailable("internal_error", "cannot persist the task right now; retry later"));
            }
        }
        self.ctx.running.insert(id.clone(), CancellationToken::new());
        permit.send(QueuedTask { id: id.clone(), job, base, b64, resume: None });
        Ok(id)
    }

    /// Queues tasks recovered from the journal (or taken over from another replica), each in its
    /// owner's lane; they were accepted before, so they fit whatever the queue holds.
    pub fn requeue(&self, tasks: Vec<QueuedTask>) {
        for t in tasks {
            let Some(owner) = self.ctx.store.snapshot(&t.id).map(|task| task.owner) else { continue };
            self.ctx.running.insert(t.id.clone(), CancellationToken::new());
            self.queue.push_recovered(owner, t);
        }
    }

    /// Forgets a task nobody was told about (it lost an idempotency race): no state change is
    /// announced and no callback fires; a worker that picks it up finds nothing to run.
    pub fn discard(&self, id: &str) {
        if let Some((_, token)) = self.ctx.running.remove(id) {
            token.cancel();
        }
        self.ctx.store.remove(id);
    }

    /// Cancels a pending or processing task: it fails with `cancelled`, its job (if running) stops, and
    /// its callback fires like for any other terminal state.
    pub fn cancel(&self, id: &str) -> Option<Task> {
        self.cancel_because(id, "cancelled by the client")
    }

    /// `cancel`, saying who cancelled (an operator in the console, for one).
    pub fn cancel_because(&self, id: &str, why: &str) -> Option<Task> {
        let task = self.ctx.store.apply(id, Transition::Fail { code: "cancelled".into(), message: why.into() }).ok()?;
        if let Some((_, token)) = self.ctx.running.remove(id) {
            token.cancel();
        }
        self.ctx.finished(&task);
        Some(task)
    }

    /// Fires the callback of a finished task (used for tasks recovered from the journal).
    pub fn announce(&self, task: &Task) {
        self.ctx.finished(task);
    }

    /// Another replica claimed a task this one accepted: its queued copy here is dropped.
    pub fn claimed_elsewhere(&self, id: &str) {
        if self.ctx.store.snapshot(id).is_some_and(|t| t.status == TaskStatus::Pending) {
            self.ctx.forget_queued(id);
        }
    }
}

struct WorkerCtx {
    store: Arc<TaskStore>,
    runner: Arc<JobRunner>,
    render: Render,
    /// Cancellation handles of pending and running tasks.
    running: HotMap<Arc<str>, CancellationToken>,
    job_timeout: Duration,
    callbacks: Option<CallbackSettings>,
    tracker: TaskTracker,
    signals: Signals,
    shared: Option<Arc<crate::shared::SharedStore>>,
}

impl WorkerCtx {
    /// Drops this replica's copy of a queued task another replica runs: nothing is written, no
    /// callback fires here.
    fn forget_queued(&self, id: &str) {
        self.running.remove(id);
        self.store.forget_local(id);
    }

    /// The oldest task of the shared queue, claimed for this replica and
    /// brought into its store; `None` when there is nothing to take.
    async fn steal(&self) -> Option<QueuedTask> {
        let shared = self.shared.as_ref()?;
        let record = match shared.steal().await {
            Ok(r) => r?,
            Err(e) => {
                tracing::debug!("cannot take work from the shared queue: {e}");
                return None;
            }
        };
        let (task, pending) = match record.into_task() {
            Ok(pair) => pair,
            Err(e) => {
                tracing::error!("unusable task record in the shared queue: {e}");
                return None;
            }
        };
        let pending = pending.filter(|_| task.status == TaskStatus::Pending)?;
        let job = match pending.job.to_job() {
            Ok(job) => job,
            Err(e) => {
                tracing::error!(task = %task.id, "unusable job in the shared queue: {e}");
                return None;
            }
        };
        let id = task.id.clone();
        if self.store.snapshot(&id).is_some() {
            // One this replica accepted: it waits in the local queue, which runs it (claimed now).
            return None;
        }
        self.store.restore(task);
        self.running.insert(id.clone(), CancellationToken::new());
        tracing::debug!(task = %id, "task taken from the shared queue");
        Some(QueuedTask { id, job, base: Arc::from(pending.base), b64: pending.b64, resume: pending.upstream_ref })
    }

    async fn run(&self, queued: QueuedTask) {
        let QueuedTask { id, job, base, b64, resume } = queued;
        let Some(cancel) = self.running.get(&id).map(|t| t.clone()) else { return };
        if let Some(shared) = &self.shared {
            match shared.claim_task(&id).await {
                Ok(true) => {}
                Ok(false) => {
                    // Another replica took it from the shared queue first.
                    self.forget_queued(&id);
                    return;
                }
                // The store is away: the task was accepted here, so run it rather than strand it.
                Err(e) => tracing::warn!(task = %id, "cannot claim the task, running it anyway: {e}"),
            }
        }
        // A task cancelled while queued is already failed: nothing to run. A resumed one is already processing.
        let started = match resume {
            None => self.store.apply(&id, Transition::Start).ok(),
            Some(_) => self.store.snapshot(&id),
        };
        let Some(owner) = started.map(|t| t.owner) else {
            self.running.remove(&id);
            return;
        };
        let store = self.store.clone();
        let progress_id = id.clone();
        let pending =
            JobRecord::from_job(&job).map(|job| PendingJob { job, base: base.to_string(), b64, upstream_ref: None });
        let sink = ProgressSink::callback(Arc::new(move |ev| match ev {
            JobEvent::Progress(p) => {
                let _ = store.apply(&progress_id, Transition::Progress(p));
            }
            // Journal the upstream's id (with the job) before anything else happens, so a restart
            // resumes polling instead of paying for a second generation.
            JobEvent::Submitted(upstream_id) => {
                if let (Some(journal), Some(task), Some(p)) = (store.journal(), store.snapshot(&progress_id), &pending)
                {
                    let p = PendingJob { upstream_ref: Some(upstream_id), ..p.clone() };
                    journal.put(&TaskRecord::from_task(&task, Some(p)));
                }
            }
            JobEvent::Preview { .. } => {}
        }));
        let work = async {
            match &resume {
                Some(upstream_id) => self.runner.resume(&owner, &job, upstream_id, &sink).await,
                None => self.runner.run(&owner, &job, &sink).await,
            }
        };
        let result = tokio::select! {
            // cancel() already failed the task and fired its callback; dropping the job stops the upstream.
            _ = cancel.cancelled() => return,
            _ = self.signals.abort.cancelled() => Err(None),
            r = tokio::time::timeout(self.job_timeout, work) => r.map_err(Some),
        };
        self.running.remove(&id);
        let transition = match result {
            Err(None) => Transition::Fail {
                code: "interrupted".into(),
                message: "the gateway shut down while the task was running".into(),
            },
            Err(Some(_)) => {
                tracing::warn!(task = %id, "task failed: no result within {}s", self.job_timeout.as_secs());
                Transition::Fail {
                    code: "timeout".into(),
                    message: format!("the task did not finish within {}s", self.job_timeout.as_secs()),
                }
            }
            Ok(Err(e)) => {
                let api = ApiError::from(e);
                // The sync path logs a server-side failure when it answers; a task's answer is its
                // status, so the log line is written here, once, with the task's id.
                if api.status.is_server_error() {
                    tracing::warn!(task = %id, status = api.status.as_u16(), code = api.code, "task failed: {}", api.message);
                }
                Transition::Fail { code: api.code.into(), message: api.message }
            }
            Ok(Ok(JobOutput::Images(media))) => {
                Transition::Succeed(Outcome::Images { base, names: media.into_iter().map(|m| m.name).collect(), b64 })
            }
            Ok(Ok(JobOutput::Video { video, thumbnail, duration, origin })) => Transition::Succeed(Outcome::Video {
                base,
                video: video.name,
                thumbnail: thumbnail.map(|t| t.name),
                duration,
                origin,
            }),
        };
        match self.store.apply(&id, transition) {
            Ok(task) => {
                if task.status == TaskStatus::Failed {
                    self.runner.task_failed(&owner);
                }
                self.finished(&task)
            }
            Err(e) => tracing::debug!(task = %id, "task changed while running (cancelled?): {e:?}"),
        }
    }

    /// Fires the task's callback, if it has one still owed, for its terminal state, once the journal
    /// holds that state: a receiver must never hear of an end that a restart would undo. With several
    /// replicas, only while this replica still holds the task; a copy another replica took over is
    /// dropped here, so reads go to the store.
    fn finished(&self, task: &Task) {
        debug_assert!(matches!(task.status, TaskStatus::Success | TaskStatus::Failed));
        let still_ours = self.still_ours();
        let durable = self.store.journal().map(|j| j.synced());
        let (Some(cb), Some(settings)) = (task.callback.as_deref(), &self.callbacks) else {
            if let (Some(check), Some(written)) = (still_ours, durable) {
                let (store, id) = (self.store.clone(), task.id.clone());
                self.tracker.spawn(async move {
                    if written.await.is_ok() && !check(id.clone()).await {
                        store.forget_local(&id);
                    }
                });
            }
            return;
        };
        if cb.done {
            return;
        }
        let body = (self.render)(task).to_string().into_bytes();
        callbacks::dispatch(
            &self.tracker,
            self.signals.clone(),
            self.store.clone(),
            settings.clone(),
            callbacks::Delivery {
                task_id: task.id.clone(),
                msg_id: callbacks::message_id(&task.id, task.status.as_str()),
                url: cb.url.clone(),
                body,
                durable,
                still_ours,
            },
        );
    }

    /// With several replicas, whether this replica still holds a task (`SharedStore::holds`); when
    /// the store cannot say, it does (a callback sent twice beats one never sent).
    fn still_ours(&self) -> Option<callbacks::StillOurs> {
        let shared = self.shared.clone()?;
        Some(Arc::new(move |id: Arc<str>| {
            let shared = shared.clone();
            Box::pin(async move {
                shared.holds(&id).await.unwrap_or_else(|e| {
                    tracing::debug!(task = %id, "cannot ask whether the task is still this replica's: {e}");
                    true
                })
            })
        }))
    }
}

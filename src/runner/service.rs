//! The task service: what the task routes ask of tasks — idempotency, unfinished-task slots, reads,
//! cancels, deletes and pages — answered wherever a task is: in this process's store, or, with
//! several replicas, in the shared store. The HTTP layer asks here and never looks at which store
//! holds what; "this replica's copy, else the shared store" is written once, here.

use std::sync::Arc;
use std::time::Duration;

use crate::error::ApiError;
use crate::owner::KeyId;
use crate::runner::queue::TaskQueue;
use crate::shared::{SharedStore, down};
use crate::tasks::idempotency::{Claim, IdempotencyKeys};
use crate::tasks::journal::TaskRecord;
use crate::tasks::store::{Listing, Page, Reservation, Scan, TaskStore};
use crate::tasks::{Task, TaskApi, TaskKind};

pub struct TaskService {
    tasks: Arc<TaskStore>,
    queue: TaskQueue,
    idempotency: IdempotencyKeys,
    shared: Option<Arc<SharedStore>>,
}

/// One unfinished-task slot of a key, held while a task is being made: in the shared store across
/// replicas (given back once the task counts by itself), or in this process's store (handed to the
/// task when it is created).
pub struct Slot {
    shared: Option<String>,
    local: Option<Reservation>,
}

impl Slot {
    /// The local part, for the task's creation to take over (dropping it gives the slot back).
    pub fn take_local(&mut self) -> Option<Reservation> {
        self.local.take()
    }
}

impl TaskService {
    pub fn new(tasks: Arc<TaskStore>, queue: TaskQueue, shared: Option<Arc<SharedStore>>) -> Self {
        Self { tasks, queue, idempotency: IdempotencyKeys::default(), shared }
    }

    /// Tasks may live on other replicas (a shared store is configured).
    pub fn spans_replicas(&self) -> bool {
        self.shared.is_some()
    }

    /// Forgets idempotency keys past their window (the reaper's round).
    pub fn reap_idempotency(&self) {
        self.idempotency.reap();
    }

    /// What an `Idempotency-Key` used with a body of this hash means now.
    pub async fn idem_check(&self, owner: &KeyId, key: &str, hash: &[u8; 32]) -> Result<Claim, ApiError> {
        match &self.shared {
            Some(shared) => shared.idem_check(owner, key, hash).await.map_err(down),
            None => Ok(self.idempotency.check(owner, key, hash)),
        }
    }

    /// Binds an `Idempotency-Key` to the task made for it, unless a concurrent twin got there first.
    pub async fn idem_bind(&self, owner: &KeyId, key: &str, hash: [u8; 32], id: &Arc<str>) -> Result<Claim, ApiError> {
        match &self.shared {
            Some(shared) => shared.idem_bind(owner, key, hash, id).await.map_err(down),
            None => Ok(self.idempotency.bind(owner, key, hash, id.clone())),
        }
    }

    /// One of `owner`'s `max` unfinished-task slots; `None` when all are taken. Across replicas the
    /// slot is reserved atomically in the shared store; in one process, in the store itself, before
    /// the callback lookup and the image fetch.
    pub async fn reserve_slot(&self, owner: &KeyId, max: usize) -> Result<Option<Slot>, ApiError> {
        Ok(match &self.shared {
            Some(shared) => shared
                .reserve_slot(owner, max)
                .await
                .map_err(down)?
                .map(|hold| Slot { shared: Some(hold), local: None }),
            None => self.tasks.reserve(owner, max).map(|r| Slot { shared: None, local: Some(r) }),
        })
    }

    /// Gives a slot back once the task counts by itself (or was not made).
    pub async fn release_slot(&self, owner: &KeyId, slot: Slot) {
        if let (Some(shared), Some(hold)) = (&self.shared, slot.shared)
            && let Err(e) = shared.release_slot(owner, &hold).await
        {
            tracing::warn!("a task slot reservation stays until it lapses: {e}");
        }
    }

    /// A task of `kind` made through `api`, owned by `owner` if one is given: this replica's copy,
    /// else (made or run by another replica) its record in the shared store.
    pub async fn readable(
        &self,
        id: &str,
        kind: TaskKind,
        api: TaskApi,
        owner: Option<&KeyId>,
    ) -> Result<Option<Task>, ApiError> {
        if let Some(t) = self.tasks.get(id, kind, owner) {
            return Ok(Some(t).filter(|t| t.api == api));
        }
        let task = self.elsewhere(id).await.map_err(down)?;
        Ok(task.filter(|t| t.kind == kind && t.api == api && owner.is_none_or(|o| t.owner == *o)))
    }

    /// The task as another replica last wrote it; `None` with one process. The store's error is
    /// the caller's to report: a request turns it into a 503 (`down`), an event stream that polls
    /// this a few times a second just ends.
    pub async fn elsewhere(&self, id: &str) -> Result<Option<Task>, String> {
        match &self.shared {
            Some(shared) => shared.task(id).await,
            None => Ok(None),
        }
    }

    /// Any task by id, whoever owns it (the console): here, or wherever it is.
    pub async fn find(&self, id: &str) -> Result<Option<Task>, ApiError> {
        match self.tasks.snapshot(id) {
            Some(t) => Ok(Some(t)),
            None => self.elsewhere(id).await.map_err(down),
        }
    }

    /// Forgets a finished task here and in the shared store at once (the journal's own delete is
    /// written behind, and a read right after must not find the task).
    pub async fn forget(&self, task: &Task) -> Result<(), ApiError> {
        self.tasks.remove(&task.id);
        if let Some(shared) = &self.shared {
            shared.delete(&task.id, &task.owner).await.map_err(down)?;
        }
        Ok(())
    }

    /// Cancels an unfinished task wherever it runs and returns it as it is then; `None` when it had
    /// already finished (or its replica did not answer within 3 s).
    pub async fn cancel_anywhere(&self, id: &str, why: &str) -> Result<Option<Task>, ApiError> {
        if let Some(task) = self.queue.cancel_because(id, why) {
            return Ok(Some(task));
        }
        let Some(shared) = &self.shared else { return Ok(None) };
        if self.tasks.snapshot(id).is_some() {
            return Ok(None); // ours, and already finished
        }
        // Still waiting in the shared queue: claim it here and cancel it before anyone starts it.
        if shared.claim_task(id).await.map_err(down)?
            && let Some(task) = shared.task(id).await.map_err(down)?
        {
            self.tasks.restore(task);
            if let Some(task) = self.queue.cancel_because(id, why) {
                return Ok(Some(task));
            }
        }
        shared.publish_cancel(id, why).await.map_err(down)?;
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if let Some(task) = shared.task(id).await.map_err(down)?
                && task.status.is_terminal()
            {
                return Ok(Some(task));
            }
        }
        Ok(None)
    }

    /// Every live replica's latest report (none in one process).
    pub async fn replicas(&self) -> Result<Vec<crate::shared::report::ReplicaReport>, ApiError> {
        match &self.shared {
            Some(shared) => shared.reports().await.map_err(down),
            None => Ok(Vec::new()),
        }
    }

    /// This replica's id among several (`None` in one process).
    pub fn replica(&self) -> Option<&str> {
        self.shared.as_deref().map(SharedStore::replica)
    }

    /// Brings in a finished task another replica ran (an operator re-delivers its callback from here):
    /// it is claimed first, so that replica no longer writes it, nor delivers.
    pub async fn adopt(&self, task: Task) -> Result<(), ApiError> {
        if let Some(shared) = &self.shared {
            shared.take_over(&task.id).await.map_err(down)?;
        }
        self.tasks.restore(task);
        Ok(())
    }

    /// One page of `owner`'s tasks: from this replica's store, or with several replicas from the shared one.
    pub async fn page(&self, owner: &KeyId, q: &Listing<'_>) -> Result<Page, ApiError> {
        let Some(shared) = &self.shared else { return Ok(self.tasks.list(owner, q)) };
        let mut pager = Pager::new(&self.tasks, q.limit);
        let wanted = |t: &Task| t.kind == q.kind && t.api == q.api && q.status.is_none_or(|s| s == t.status);
        shared.list(owner, q.oldest_first, q.after, |r| pager.offer(r, wanted)).await.map_err(down)?;
        Ok(pager.page)
    }

    /// `TaskStore::scan` (the console's task list) over this replica's tasks, or every replica's.
    pub async fn scan(&self, f: &Scan<'_>) -> Result<Page, ApiError> {
        let Some(shared) = &self.shared else { return Ok(self.tasks.scan(f)) };
        let mut pager = Pager::new(&self.tasks, f.limit);
        let wanted = |t: &Task| {
            f.owner.is_none_or(|o| &*t.owner.0 == o)
                && f.kind.is_none_or(|k| t.kind == k)
                && f.status.is_none_or(|s| t.status == s)
                && f.since_ms.is_none_or(|s| t.created_ms >= s)
                && f.until_ms.is_none_or(|u| t.created_ms < u)
        };
        shared.list_all(f.after, |r| pager.offer(r, wanted)).await.map_err(down)?;
        Ok(pager.page)
    }

    /// Where tasks are kept, as `/readyz` names it: `redis` (or `redis_unreachable`), `journal` (or
    /// `journal_unwritable`: creates are refused until the disk takes writes again), or `memory`.
    pub async fn store_readiness(&self) -> &'static str {
        match &self.shared {
            Some(shared) => shared.readiness().await,
            None => match self.tasks.journal() {
                Some(j) if j.writable() => "journal",
                Some(_) => "journal_unwritable",
                None => "memory",
            },
        }
    }
}

/// Fills one page from records the shared store walks through (`SharedStore::list`, `list_all`).
struct Pager<'a> {
    tasks: &'a TaskStore,
    limit: usize,
    page: Page,
}

impl<'a> Pager<'a> {
    fn new(tasks: &'a TaskStore, limit: usize) -> Self {
        Self { tasks, limit, page: Page { tasks: Vec::with_capacity(limit.min(100)), has_more: false } }
    }

    /// Takes `record` if `wanted`; false once the page is full (the walk stops). A task this replica
    /// holds is taken from its store: fresher than its written-behind record.
    fn offer(&mut self, record: TaskRecord, wanted: impl Fn(&Task) -> bool) -> bool {
        let task = match self.tasks.snapshot(record.id()) {
            Some(t) => t,
            None => match record.into_task() {
                Ok((t, _)) => t,
                Err(_) => return true,
            },
        };
        if !wanted(&task) {
            return true;
        }
        if self.page.tasks.len() == self.limit {
            self.page.has_more = true;
            return false;
        }
        self.page.tasks.push(task);
        true
    }
}

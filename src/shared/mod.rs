//! State several replicas share (`store.url`): the contract every replica's services use, and one
//! folder per backend (`redis/`, the one there is). A second backend is a folder here and one arm of
//! `SharedStore`; nothing above this module names a backend's types.
//!
//! What is shared: task records and each owner's index (any replica reads any task), the queue of
//! unstarted tasks, idempotency keys, request rates and unfinished-task slots per key, which replica
//! runs which task (a silent replica's tasks are taken over), console keys, console-made tokens (the
//! token book), usage rows, token states, and news between replicas (`News`).

pub mod news;
pub mod redis;
pub mod report;
pub mod totals;

pub use news::{BookNews, InFlight, News, TokenNews};
pub use totals::Totals;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::owner::KeyId;
use crate::tasks::idempotency::Claim;
use crate::tasks::journal::{Health, Op, TaskRecord};
use crate::upstream::tokens::{ExportedToken, TokenBook, TokenEvent};

/// What a request that needs the shared store gets while it is unreachable; `why` is logged once,
/// here. Shaped for `map_err`.
pub fn down(why: String) -> crate::error::ApiError {
    tracing::error!("shared store unreachable: {why}");
    crate::error::ApiError::unavailable(
        "store_unavailable",
        "the shared task store (redis) is unreachable; retry later",
    )
}

/// The shared store, whichever backend holds it.
pub enum SharedStore {
    Redis(redis::RedisStore),
}

/// Each operation of the contract, answered by the backend.
macro_rules! contract {
    ($( $(#[$doc:meta])* fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty; )*) => {
        impl SharedStore {
            $(
                $(#[$doc])*
                pub async fn $name(&self $(, $arg: $ty)*) -> Result<$ret, String> {
                    match self {
                        Self::Redis(s) => s.$name($($arg),*).await,
                    }
                }
            )*
        }
    };
}

contract! {
    /// The store answers.
    fn ping(&self) -> ();
    /// A task as its record says, wherever it runs.
    fn task(&self, id: &str) -> Option<crate::tasks::Task>;
    /// `owner`'s records, newest first (oldest first when asked), after `after`, while `keep` wants more.
    fn list(&self, owner: &KeyId, oldest_first: bool, after: Option<&str>, keep: impl FnMut(TaskRecord) -> bool) -> ();
    /// `list` over every owner's tasks, newest first (the console).
    fn list_all(&self, after: Option<&str>, keep: impl FnMut(TaskRecord) -> bool) -> ();
    /// Forgets a task and its index entries now.
    fn delete(&self, id: &str, owner: &KeyId) -> ();
    /// One request of `key` against its rate across replicas: `Err(ms)` to wait.
    fn rate(&self, key: &KeyId, rate: f64, burst: f64) -> Result<(), u64>;
    /// One unfinished-task slot of `owner`, if one of `max` is free: the hold to give back.
    fn reserve_slot(&self, owner: &KeyId, max: usize) -> Option<String>;
    /// Gives a slot's hold back (the task counts by itself now, or was not made).
    fn release_slot(&self, owner: &KeyId, hold: &str) -> ();
    /// What an `Idempotency-Key` with this body hash means now.
    fn idem_check(&self, owner: &KeyId, key: &str, body: &[u8; 32]) -> Claim;
    /// Binds an `Idempotency-Key` to a task made for it, unless a twin got there first.
    fn idem_bind(&self, owner: &KeyId, key: &str, body: [u8; 32], task: &str) -> Claim;
    /// This replica is alive (for `lease`).
    fn heartbeat(&self) -> ();
    /// Takes over the unfinished tasks of every replica whose heartbeat stopped.
    fn claim_orphans(&self) -> Vec<TaskRecord>;
    /// Takes the ids of finished tasks whose record expired out of the indexes; how many were due.
    fn sweep(&self) -> usize;
    /// Tells the other replicas of a token change, and keeps it for replicas that start later.
    fn publish_token(&self, event: TokenEvent) -> ();
    /// The latest state of every token, as replicas told it.
    fn token_states(&self) -> Vec<TokenEvent>;
    /// Adds usage rows to the shared sums.
    fn usage_add(&self, rows: &[(String, Totals)]) -> ();
    /// Every usage row, summed over replicas.
    fn usage_rows(&self) -> Vec<(String, Totals)>;
    /// A console key's record (JSON).
    fn key_record(&self, id: &str) -> Option<String>;
    /// Every console key's record.
    fn key_records(&self) -> Vec<String>;
    /// Stores a console key's record and tells the replicas.
    fn put_key_record(&self, id: &str, json: &str) -> ();
    /// Claims a queued task for this replica, once; true if it is this replica's to run.
    fn claim_task(&self, id: &str) -> bool;
    /// Takes a task in for this replica whoever held it (its fencing epoch rises).
    fn take_over(&self, id: &str) -> ();
    /// This replica still holds task `id`: no other replica claimed it since, none of its writes was refused.
    fn holds(&self, id: &str) -> bool;
    /// The oldest queued task, claimed for this replica.
    fn steal(&self) -> Option<TaskRecord>;
    /// Tells the others this replica's requests in flight per token.
    fn publish_in_flight(&self, counts: HashMap<String, u32>) -> ();
    /// Asks whichever replica runs `id` to cancel it.
    fn publish_cancel(&self, id: &str, why: &str) -> ();
    /// Every token made in the console, as the book keeps it.
    fn token_book(&self) -> Vec<ExportedToken>;
    /// Keeps console-made tokens in the book and tells the replicas.
    fn put_tokens(&self, tokens: Vec<ExportedToken>) -> ();
    /// Takes tokens out of the book and tells the replicas.
    fn remove_tokens(&self, ids: Vec<String>) -> ();
    /// Whether this replica holds `role` (one replica at a time) for the next `lasts`: taken when
    /// free, kept by renewing it.
    fn lead(&self, role: &str, lasts: Duration) -> bool;
    /// Says what this replica is up to (`report::EVERY`), for the console of any replica.
    fn report(&self, report: &report::ReplicaReport) -> ();
    /// Every live replica's latest report (a report older than `report::LASTS` is dropped).
    fn reports(&self) -> Vec<report::ReplicaReport>;
}

/// The shared store as the token pool's book of console-made tokens.
pub struct SharedTokenBook(pub Arc<SharedStore>);

impl TokenBook for SharedTokenBook {
    fn put(&self, tokens: Vec<ExportedToken>) -> futures_util::future::BoxFuture<'static, Result<(), String>> {
        let store = self.0.clone();
        Box::pin(async move { store.put_tokens(tokens).await })
    }

    fn remove(&self, ids: Vec<String>) -> futures_util::future::BoxFuture<'static, Result<(), String>> {
        let store = self.0.clone();
        Box::pin(async move { store.remove_tokens(ids).await })
    }
}

impl SharedStore {
    /// Opens the store a `store.url` names (connections are made on first use).
    pub fn open(url: &str, lease: Duration, task_ttl: Duration) -> Result<Arc<Self>, String> {
        Ok(Arc::new(Self::Redis(redis::RedisStore::open(url, lease, task_ttl)?)))
    }

    /// This process's id among the replicas (fresh per start).
    pub fn replica(&self) -> &str {
        match self {
            Self::Redis(s) => &s.replica,
        }
    }

    /// How long a replica may stay silent before its tasks are taken over.
    pub fn lease(&self) -> Duration {
        match self {
            Self::Redis(s) => s.lease,
        }
    }

    /// The store as `/readyz` names it: the backend, or `<backend>_unreachable`.
    pub async fn readiness(&self) -> &'static str {
        let (up, down) = match self {
            Self::Redis(_) => ("redis", "redis_unreachable"),
        };
        match self.ping().await {
            Ok(()) => up,
            Err(e) => {
                tracing::warn!("readiness: {e}");
                down
            }
        }
    }

    /// The task journal's writer for this store (runs on the journal's thread; see `Journal::spawn`).
    pub fn journal_writer(
        self: &Arc<Self>,
    ) -> impl FnOnce(std::sync::mpsc::Receiver<Op>, Arc<Health>) + Send + 'static {
        let store = self.clone();
        move |rx, health| match &*store {
            Self::Redis(s) => redis::writer::run(s, rx, &health),
        }
    }

    /// Other replicas' news, handed to `on` as it comes, until `stop`; a lost subscription is made again.
    pub async fn listen(&self, stop: CancellationToken, on: impl FnMut(News)) {
        match self {
            Self::Redis(s) => s.listen(stop, on).await,
        }
    }
}

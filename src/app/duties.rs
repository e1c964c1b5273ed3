//! The loops a running gateway keeps: recovery of journaled tasks, replica duties with a shared store,
//! quota refreshes, usage writes and the reaper.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::keys::KeyRing;
use crate::runner::JobRunner;
use crate::runner::queue::{QueuedTask, TaskQueue};
use crate::runner::service::TaskService;
use crate::shared::{News, SharedStore, SharedTokenBook};
use crate::tasks::TaskStatus;
use crate::tasks::journal::TaskRecord;
use crate::tasks::store::{TaskStore, Transition};
use crate::usage::UsageBook;

/// Puts journaled tasks back: finished ones are readable again (and owed callbacks go out), pending ones
/// run, and ones that were running when the process died fail with `interrupted`.
pub(super) fn recover(mut records: Vec<TaskRecord>, tasks: &Arc<TaskStore>, queue: &TaskQueue) {
    if records.is_empty() {
        return;
    }
    records.sort_by_key(|r| r.created_ms());
    let (mut pending, mut interrupted, mut finished) = (Vec::new(), 0usize, 0usize);
    for record in records {
        let (task, job) = match record.into_task() {
            Ok(pair) => pair,
            Err(e) => {
                tracing::error!("journal record unusable, skipped: {e}");
                continue;
            }
        };
        let id = task.id.clone();
        // Pending tasks run again; a processing one whose upstream had accepted it (a journaled
        // `upstream_ref`) is polled again rather than paid for twice.
        let rerun = task.status == TaskStatus::Pending
            || (task.status == TaskStatus::Processing && job.as_ref().is_some_and(|p| p.upstream_ref.is_some()));
        match task.status {
            _ if rerun => {
                let queued = job.ok_or_else(|| "unfinished task without its job".to_string()).and_then(|p| {
                    Ok(QueuedTask {
                        id: id.clone(),
                        job: p.job.to_job()?,
                        base: Arc::from(p.base),
                        b64: p.b64,
                        resume: p.upstream_ref,
                    })
                });
                tasks.restore(task);
                match queued {
                    Ok(q) => pending.push(q),
                    Err(e) => {
                        let fail =
                            Transition::Fail { code: "interrupted".into(), message: format!("cannot resume: {e}") };
                        if let Ok(t) = tasks.apply(&id, fail) {
                            queue.announce(&t);
                        }
                    }
                }
            }
            TaskStatus::Pending | TaskStatus::Processing => {
                tasks.restore(task);
                let fail = Transition::Fail {
                    code: "interrupted".into(),
                    message: "the gateway stopped while the task was running; create it again".into(),
                };
                if let Ok(t) = tasks.apply(&id, fail) {
                    queue.announce(&t);
                }
                interrupted += 1;
            }
            TaskStatus::Success | TaskStatus::Failed => {
                tasks.restore(task.clone());
                queue.announce(&task);
                finished += 1;
            }
        }
    }
    tracing::info!(pending = pending.len(), interrupted, finished, "tasks recovered from the journal");
    queue.requeue(pending);
}

/// How often a replica tells the others its requests in flight per token, and how long a word lasts.
const IN_FLIGHT_EVERY: Duration = Duration::from_millis(500);
const IN_FLIGHT_LASTS: Duration = Duration::from_secs(2);

/// With a shared store: heart-beat, take over the tasks of replicas that stopped (they resume or fail
/// as after a restart), and cancel tasks this replica runs when another replica is asked to.
pub(super) fn spawn_replica_duties(
    tracker: &TaskTracker,
    shutdown: CancellationToken,
    shared: Arc<SharedStore>,
    (tasks, queue, runner, keys): (Arc<TaskStore>, TaskQueue, Arc<JobRunner>, Arc<KeyRing>),
) {
    let every = (shared.lease() / 3).max(Duration::from_millis(200));
    // Token changes this replica sees go out, in order, through one publisher.
    if let Some(tokens) = runner.upstream().tokens() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tokens.observe(Arc::new(move |event| {
            let _ = tx.send(event);
        }));
        // Requests in flight per token, while there are any (and once more when they drop to none).
        let (teller, stop_telling, counting) = (shared.clone(), shutdown.clone(), runner.clone());
        tracker.spawn(async move {
            let mut said_some = false;
            loop {
                tokio::select! {
                    _ = stop_telling.cancelled() => return,
                    _ = tokio::time::sleep(IN_FLIGHT_EVERY) => {}
                }
                let Some(tokens) = counting.upstream().tokens() else { return };
                tokens.remote_in_flight(None, IN_FLIGHT_LASTS);
                let counts = tokens.in_flight_counts();
                if counts.is_empty() && !said_some {
                    continue;
                }
                said_some = !counts.is_empty();
                if let Err(e) = teller.publish_in_flight(counts).await {
                    tracing::debug!("cannot share requests in flight: {e}");
                }
            }
        });
        let (publisher, stop, pool_runner) = (shared.clone(), shutdown.clone(), runner.clone());
        tokens.share(Arc::new(SharedTokenBook(shared.clone())));
        tracker.spawn(async move {
            // Console-made tokens first (a replica that starts later serves them too), then their rests.
            if let Some(tokens) = pool_runner.upstream().tokens() {
                match publisher.token_book().await {
                    Ok(book) => tokens.apply_book(&book, &[]),
                    Err(e) => tracing::error!("cannot read the console-made tokens from the shared store: {e}"),
                }
            }
            if let (Ok(states), Some(tokens)) = (publisher.token_states().await, pool_runner.upstream().tokens()) {
                states.iter().for_each(|e| tokens.apply(e));
            }
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    event = rx.recv() => match event {
                        Some(event) => {
                            if let Err(e) = publisher.publish_token(event).await {
                                tracing::warn!("cannot share a token change: {e}");
                            }
                        }
                        None => return,
                    },
                }
            }
        });
    }
    let (beat, stop) = (shared.clone(), shutdown.clone());
    let cancel_queue = queue.clone();
    tracker.spawn(async move {
        loop {
            match beat.heartbeat().await {
                Ok(()) => match beat.claim_orphans().await {
                    Ok(records) if !records.is_empty() => recover(records, &tasks, &queue),
                    Ok(_) => {}
                    Err(e) => tracing::warn!("cannot take over stopped replicas' tasks: {e}"),
                },
                Err(e) => tracing::warn!("shared store heartbeat failed: {e}"),
            }
            // Any replica may sweep (the script is atomic): the indexes must not outgrow the records.
            if let Err(e) = beat.sweep().await {
                tracing::debug!("cannot sweep expired tasks from the indexes: {e}");
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    });
    tracker.spawn(async move {
        shared.listen(shutdown, |news| hear(news, &cancel_queue, &runner, &keys)).await;
    });
}

/// One piece of another replica's news: cancel a task this replica runs, drop a queued copy another
/// replica claimed, forget a cached key, or apply a token change or request counts.
fn hear(news: News, queue: &TaskQueue, runner: &JobRunner, keys: &KeyRing) {
    match news {
        News::KeyChanged(id) => keys.forget_cached(&id),
        News::InFlight { replica, counts } => {
            if let Some(tokens) = runner.upstream().tokens() {
                tokens.remote_in_flight(Some((&replica, counts)), IN_FLIGHT_LASTS);
            }
        }
        News::Claimed(id) => queue.claimed_elsewhere(&id),
        News::Cancel { id, why } => {
            if queue.cancel_because(&id, &why).is_some() {
                tracing::info!(task = %id, "task cancelled through another replica");
            }
        }
        News::Token(event) => {
            if let Some(tokens) = runner.upstream().tokens() {
                tokens.apply(&event);
            }
        }
        News::Book { put, removed } => {
            if let Some(tokens) = runner.upstream().tokens() {
                tokens.apply_book(&put, &removed);
            }
        }
    }
}

/// Refreshes every token's quota from the upstream, each round (the first at start) spread over
/// `every` and capped per second (`grok.quota_refresh_per_sec`); a round that the cap makes longer
/// than `every` is followed by the next at once.
pub(super) fn spawn_quota_refresh(
    tracker: &TaskTracker,
    shutdown: CancellationToken,
    runner: Arc<JobRunner>,
    every: Duration,
    shared: Option<Arc<SharedStore>>,
) {
    tracker.spawn(async move {
        // The first round, at start, runs at the cap alone: a small pool knows its quotas at once
        // (a pool of 10,000 still takes 10,000 / quota_refresh_per_sec seconds).
        let mut spread = Duration::ZERO;
        loop {
            let round = tokio::time::Instant::now();
            // With several replicas one of them refreshes (what it learns reaches the others as token
            // news), so the cap per second holds for the cluster, not per replica. The lease outlasts
            // a round that runs long on a loaded machine, so the role does not flap between replicas.
            let mine = match &shared {
                None => true,
                Some(s) => s.lead("refresh", every * 3).await.unwrap_or_else(|e| {
                    tracing::debug!("cannot tell which replica refreshes quotas: {e}");
                    false
                }),
            };
            if let (true, Some(tokens)) = (mine, runner.upstream().tokens()) {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    n = tokens.refresh_quotas_over(spread) => tracing::debug!(answered = n, "token quotas refreshed"),
                }
            }
            spread = every;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(round + every) => {}
            }
        }
    });
}

/// Writes changed usage rows every few seconds; the last write happens at shutdown (`Server`).
pub(super) fn spawn_usage_flush(tracker: &TaskTracker, shutdown: CancellationToken, usage: Arc<UsageBook>) {
    tracker.spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
            if let Err(e) = usage.flush_now().await {
                tracing::error!("usage not saved (kept in memory, retried): {e}");
            }
        }
    });
}

/// Forgets finished tasks after `ttl` or beyond `max_finished`, checking a few times per TTL (at
/// least every 10 s).
pub(super) fn spawn_reaper(
    tracker: &TaskTracker,
    shutdown: CancellationToken,
    tasks: Arc<TaskStore>,
    service: Arc<TaskService>,
    ttl: Duration,
    max_finished: usize,
) {
    let tick = (ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(10));
    tracker.spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(tick) => {}
            }
            let cutoff = crate::clock::now_ms().saturating_sub(ttl.as_millis() as u64);
            let n = tasks.reap(cutoff, max_finished);
            service.reap_idempotency();
            if n > 0 {
                tracing::debug!(reaped = n, "finished tasks past their TTL forgotten");
            }
        }
    });
}

/// With a shared store: says what this replica is up to every `report::EVERY`, for the console of any
/// replica (the cluster's counters, a row per replica).
pub(super) fn spawn_replica_report(
    tracker: &TaskTracker,
    shutdown: CancellationToken,
    shared: Arc<SharedStore>,
    state: crate::api::state::AppState,
) {
    tracker.spawn(async move {
        loop {
            let report = crate::api::admin::overview::replica_report(&state, shared.replica());
            if let Err(e) = shared.report(&report).await {
                tracing::debug!("cannot report to the other replicas: {e}");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(crate::shared::report::EVERY) => {}
            }
        }
    });
}

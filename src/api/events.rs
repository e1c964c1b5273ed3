//! Live task events as server-sent events, so a UI follows a task without polling:
//! `GET /v1/{video,images}/tasks/{id}/events` (task endpoints' `data` objects) and
//! `GET /v1/videos/{id}/events` (OpenAI Video objects, or xAI poll answers, by the id's API).
//!
//! One event per change of status or progress, named for the status, then the terminal event, then
//! the stream ends. Event ids rise with the task's state (status rank × 1000 + progress), so a client
//! reconnecting with `Last-Event-ID` gets the current state at once if it moved on, or waits for the
//! next change if not; changes it missed are folded into that one event. Streams per key are bounded
//! (`limits.max_event_streams`); a disconnect frees the slot and the task's watcher.

use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde_json::Value;

use super::tasks::TaskPath;
use super::{Path, tasks, videos, xai_videos};
use crate::api::state::AppState;
use crate::error::{ApiError, TaskError};
use crate::media::MediaKind;
use crate::owner::KeyId;
use crate::tasks::{Task, TaskApi, TaskKind, TaskStatus};

/// The rising id of a task's current state.
fn event_id(task: &Task) -> u64 {
    let rank = match task.status {
        TaskStatus::Pending => 0,
        TaskStatus::Processing => 1,
        TaskStatus::Success | TaskStatus::Failed => 2,
    };
    rank * 1000 + u64::from(task.progress)
}

/// (event name, data) of a task in the shape of the API that made it.
fn render(state: &AppState, task: &Task) -> (String, Value) {
    match task.api {
        TaskApi::Native => (task.status.as_str().to_owned(), serde_json::json!(tasks::render(task, &state.media))),
        TaskApi::OpenAi => {
            let v = videos::video_object(task);
            (format!("video.{}", v.status.as_str()), serde_json::json!(v))
        }
        TaskApi::Xai => {
            let (_, v) = xai_videos::status_body(task, |n| state.media.get(MediaKind::Video, n).is_some());
            (v.status.as_str().to_owned(), serde_json::json!(v))
        }
    }
}

/// The event for `task` if it moved past `last` (which then advances), else `None`.
fn moved_on(state: &AppState, task: &Task, last: &mut Option<u64>) -> Option<Event> {
    let eid = event_id(task);
    if last.is_some_and(|l| eid <= l) {
        return None;
    }
    *last = Some(eid);
    let (name, data) = render(state, task);
    Some(Event::default().event(name).id(eid.to_string()).data(data.to_string()))
}

/// Holds one of the owner's stream slots and the task's watcher; both are given back on drop, which
/// is when the client goes away.
struct Slot {
    state: AppState,
    owner: KeyId,
    task: std::sync::Arc<str>,
    /// The task's change signal; dropped before the watcher is released, so the store sees nobody
    /// is left following it.
    changes: Option<tokio::sync::watch::Receiver<()>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.changes.take();
        if let Some(mut n) = self.state.event_streams.get_mut(&self.owner) {
            *n = n.saturating_sub(1);
        }
        self.state.event_streams.remove_if(&self.owner, |_, n| *n == 0);
        self.state.tasks.unwatch(&self.task);
    }
}

fn last_event_id(headers: &HeaderMap) -> Option<u64> {
    headers.get("last-event-id")?.to_str().ok()?.trim().parse().ok()
}

/// The stream for `task`, or 429 when `follower` (the caller's key, or an address) has too many open.
fn stream(state: AppState, task: Task, follower: KeyId, last_seen: Option<u64>) -> Result<Response, ApiError> {
    let max = state.cfg.limits.max_event_streams;
    {
        let mut open = state.event_streams.entry(follower.clone()).or_insert(0);
        if max > 0 && *open >= max {
            return Err(ApiError::rate_limited(
                5,
                format!("{max} task event streams are already open for this key; close one first"),
            ));
        }
        *open += 1;
    }
    let mut slot = Slot { state: state.clone(), owner: follower, task: task.id.clone(), changes: None };
    slot.changes = state.tasks.watch(&task.id);
    let keep_alive = KeepAlive::new().interval(Duration::from_secs(15));
    if slot.changes.is_none() {
        // Another replica runs it: its record in the shared store is read a few times a second.
        if !state.service.spans_replicas() {
            return Err(ApiError::not_found("task not found"));
        }
        let events = follow_elsewhere(state, slot, task.id.clone(), last_seen);
        return Ok(Sse::new(events).keep_alive(keep_alive).into_response());
    }
    let events = follow(state, slot, task.id.clone(), task.kind, last_seen);
    Ok(Sse::new(events).keep_alive(keep_alive).into_response())
}

/// `follow` for a task another replica runs: the same events, from its record in the shared store.
fn follow_elsewhere(
    state: AppState,
    slot: Slot,
    id: std::sync::Arc<str>,
    last_seen: Option<u64>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold((slot, last_seen, false), move |(slot, mut last, done)| {
        let (state, id) = (state.clone(), id.clone());
        async move {
            if done {
                return None;
            }
            loop {
                // Gone (deleted, expired) or unreadable: the stream ends; the client polls or reconnects.
                let task = state.service.elsewhere(&id).await.ok()??;
                if let Some(event) = moved_on(&state, &task, &mut last) {
                    return Some((Ok(event), (slot, last, task.status.is_terminal())));
                }
                if task.status.is_terminal() {
                    return None; // resumed after the end: nothing more will come, as in `follow`
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    _ = state.shutdown.cancelled() => return None,
                }
            }
        }
    })
}

fn follow(
    state: AppState,
    slot: Slot,
    id: std::sync::Arc<str>,
    kind: TaskKind,
    last_seen: Option<u64>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold((slot, last_seen, false), move |(mut slot, mut last, done)| {
        let (state, id) = (state.clone(), id.clone());
        async move {
            if done {
                return None;
            }
            loop {
                let changes = slot.changes.as_mut()?;
                changes.borrow_and_update();
                // Gone (deleted, or expired): nothing more will come.
                let task = state.tasks.get(&id, kind, None)?;
                if let Some(event) = moved_on(&state, &task, &mut last) {
                    return Some((Ok(event), (slot, last, task.status.is_terminal())));
                }
                if task.status.is_terminal() {
                    return None;
                }
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { return None },
                    // Shutdown ends every stream, so draining never waits on an idle follower.
                    _ = state.shutdown.cancelled() => return None,
                }
            }
        }
    })
}

/// `GET /v1/{kind}/tasks/{id}/events`.
#[utoipa::path(get, path = "/v1/{kind}/tasks/{id}/events", tag = "tasks",
    params(("kind" = super::schema::TaskSegment, Path), ("id" = String, Path), ("Last-Event-ID" = Option<u64>, Header)),
    responses((status = 200, description = "server-sent events: one per status/progress change, then the terminal one", content_type = "text/event-stream", body = super::schema::TaskEvent),
              (status = 404, body = crate::error::TaskErrorBody), (status = 429, body = crate::error::TaskErrorBody)))]
pub async fn task_events(
    State(state): State<AppState>,
    TaskPath((segment, id)): TaskPath<(String, String)>,
    owner: Option<Extension<KeyId>>,
    client: Option<Extension<crate::net::ClientAddr>>,
    headers: HeaderMap,
) -> Result<Response, TaskError> {
    let task = tasks::lookup(&state, &segment, &id, owner.as_ref().map(|e| &e.0)).await?;
    // With public task reads a follower without a key is counted by address, never against the
    // owner's streams: anyone holding a task id could otherwise use up the owner's slots.
    let follower = match (owner, client) {
        (Some(Extension(key)), _) => key,
        (None, client) => {
            let ip = client.map_or(std::net::IpAddr::from([0, 0, 0, 0]), |Extension(c)| c.0);
            KeyId(std::sync::Arc::from(format!("anonymous@{}", crate::net::ClientAddr::bucket(ip))))
        }
    };
    Ok(stream(state, task, follower, last_event_id(&headers))?)
}

/// `GET /v1/videos/{id}/events`.
#[utoipa::path(get, path = "/v1/videos/{id}/events", tag = "videos",
    params(("id" = String, Path), ("Last-Event-ID" = Option<u64>, Header)),
    responses((status = 200, description = "server-sent events carrying Video objects (or xAI poll answers)", content_type = "text/event-stream", body = super::schema::VideoEvent),
              (status = 404, body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody)))]
pub async fn video_events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Extension(owner): Extension<KeyId>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let api = TaskApi::of_id(&id);
    let task = match api {
        TaskApi::Native => None,
        api => tasks::readable(&state, &id, TaskKind::Video, api, Some(&owner)).await?,
    };
    let task = task.ok_or_else(|| ApiError::not_found(format!("no video `{id}`")))?;
    stream(state, task, owner, last_event_id(&headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_rise_with_status_and_progress() {
        let store = crate::tasks::store::TaskStore::new();
        let id = store.create(KeyId(std::sync::Arc::from("k")), TaskKind::Video, None);
        let get = || store.get(&id, TaskKind::Video, None).unwrap();
        let pending = event_id(&get());
        store.apply(&id, crate::tasks::store::Transition::Start).unwrap();
        let started = event_id(&get());
        store.apply(&id, crate::tasks::store::Transition::Progress(99)).unwrap();
        let late = event_id(&get());
        store.apply(&id, crate::tasks::store::Transition::Fail { code: "x".into(), message: "y".into() }).unwrap();
        let failed = event_id(&get());
        assert!(pending < started && started < late && late < failed, "{pending} {started} {late} {failed}");
    }
}

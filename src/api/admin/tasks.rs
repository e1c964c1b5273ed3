//! `/admin/tasks`: every owner's tasks, with filters, each with its callback attempts; cancel and
//! re-deliver a callback.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use crate::api::Path;
use crate::api::state::AppState;
use crate::error::ApiError;
use crate::tasks::store::Scan;
use crate::tasks::{Outcome, Task, TaskKind, TaskStatus, TaskView};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskQuery {
    /// Owner key id.
    key: Option<String>,
    /// `video` or `image`.
    kind: Option<String>,
    /// `pending`, `processing`, `success` or `failed`.
    status: Option<String>,
    /// Created at or after (unix seconds).
    since: Option<u64>,
    /// Created before (unix seconds).
    until: Option<u64>,
    /// 1–200, default 50.
    limit: Option<usize>,
    /// The last id of the previous page.
    after: Option<String>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TaskFailureView {
    pub code: String,
    pub message: String,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct CallbackAttemptView {
    /// Unix seconds.
    pub at: u64,
    pub ok: bool,
    pub error: Option<String>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct CallbackInfo {
    pub url: String,
    pub delivered: bool,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// No further attempt will be made.
    pub done: bool,
    /// Only in the detail: the latest attempts, oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<CallbackAttemptView>>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AdminTask {
    pub id: String,
    /// `video` or `image`.
    pub kind: &'static str,
    /// The API that made it: `native`, `openai` or `xai`.
    pub api: &'static str,
    /// Owner key id.
    pub key: String,
    pub key_name: Option<String>,
    pub status: &'static str,
    pub progress: u8,
    pub created_at: u64,
    pub updated_at: u64,
    pub error: Option<TaskFailureView>,
    pub callback: Option<CallbackInfo>,
    /// Only in the detail: the task as `GET /v1/{kind}/tasks/{id}` shows it (image results as links).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<TaskView>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AdminTaskList {
    pub object: &'static str,
    pub data: Vec<AdminTask>,
    pub has_more: bool,
}

fn view(state: &AppState, t: &Task, detail: bool) -> AdminTask {
    let error = match t.outcome.as_deref() {
        Some(Outcome::Failed { code, message }) => {
            Some(TaskFailureView { code: code.clone(), message: message.clone() })
        }
        _ => None,
    };
    let callback = t.callback.as_deref().map(|c| CallbackInfo {
        url: c.url.clone(),
        delivered: c.delivered,
        attempts: c.attempts,
        last_error: c.last_error.clone(),
        done: c.done,
        history: detail.then(|| {
            c.history
                .iter()
                .map(|a| CallbackAttemptView { at: a.at_ms / 1000, ok: a.ok, error: a.error.clone() })
                .collect()
        }),
    });
    AdminTask {
        id: t.id.to_string(),
        kind: match t.kind {
            TaskKind::Video => "video",
            TaskKind::Image => "image",
        },
        api: t.api.as_str(),
        key: t.owner.0.to_string(),
        key_name: state.guard.keys.name_of(&t.owner.0),
        status: t.status.as_str(),
        progress: t.progress,
        created_at: t.created_ms / 1000,
        updated_at: t.updated_ms / 1000,
        error,
        callback,
        // Links even for b64 tasks: the console shows where the images are, not their bytes.
        result: detail
            .then(|| t.view(|names, base| names.iter().map(|n| Some(format!("{base}/v1/files/image/{n}"))).collect())),
    }
}

#[utoipa::path(get, path = "/admin/tasks", tag = "admin", params(TaskQuery), responses((status = 200, body = AdminTaskList), (status = 400, body = crate::error::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    crate::api::Params(q): crate::api::Params<TaskQuery>,
) -> Result<Json<AdminTaskList>, ApiError> {
    let kind = match q.kind.as_deref().filter(|k| !k.is_empty()) {
        None => None,
        Some("video") => Some(TaskKind::Video),
        Some("image") | Some("images") => Some(TaskKind::Image),
        Some(other) => return Err(ApiError::invalid_param("kind", format!("`{other}` is not one of video, image"))),
    };
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(TaskStatus::parse(s).ok_or_else(|| {
            ApiError::invalid_param("status", format!("`{s}` is not one of pending, processing, success, failed"))
        })?),
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid_param("limit", "limit must be between 1 and 200"));
    }
    let scan = Scan {
        owner: q.key.as_deref().filter(|k| !k.is_empty()),
        kind,
        status,
        since_ms: q.since.map(|s| s.saturating_mul(1000)),
        until_ms: q.until.map(|s| s.saturating_mul(1000)),
        after: q.after.as_deref().filter(|a| !a.is_empty()),
        limit,
    };
    state.guard.keys.refresh().await?;
    let page = state.service.scan(&scan).await?;
    let data = page.tasks.iter().map(|t| view(&state, t, false)).collect();
    Ok(Json(AdminTaskList { object: "list", data, has_more: page.has_more }))
}

/// The task here, or (several replicas) wherever it is.
async fn find(state: &AppState, id: &str) -> Result<Task, ApiError> {
    state.service.find(id).await?.ok_or_else(|| ApiError::not_found(format!("no task with id `{id}`")))
}

#[utoipa::path(get, path = "/admin/tasks/{id}", tag = "admin", params(("id" = String, Path)), responses((status = 200, body = AdminTask), (status = 404, body = crate::error::ErrorBody)))]
pub async fn detail(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<AdminTask>, ApiError> {
    Ok(Json(view(&state, &find(&state, &id).await?, true)))
}

#[utoipa::path(post, path = "/admin/tasks/{id}/cancel", tag = "admin", params(("id" = String, Path)),
    responses((status = 200, body = AdminTask), (status = 404, body = crate::error::ErrorBody), (status = 409, description = "already finished", body = crate::error::ErrorBody)))]
pub async fn cancel(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<AdminTask>, ApiError> {
    let task = find(&state, &id).await?;
    if task.status.is_terminal() {
        return Err(ApiError::conflict("task_finished", format!("the task already ended: {}", task.status.as_str())));
    }
    let task = state
        .service
        .cancel_anywhere(&id, "cancelled by an operator")
        .await?
        .ok_or_else(|| ApiError::conflict("task_finished", "the task ended while it was being cancelled"))?;
    tracing::info!(task = %id, "task cancelled in the console");
    Ok(Json(view(&state, &task, true)))
}

#[utoipa::path(post, path = "/admin/tasks/{id}/redeliver", tag = "admin", params(("id" = String, Path)),
    responses((status = 200, body = AdminTask), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn redeliver(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<AdminTask>, ApiError> {
    if state.tasks.snapshot(&id).is_none() {
        // Another replica ran it: this one takes the finished task in and delivers from here.
        let task = find(&state, &id).await?;
        if !task.status.is_terminal() {
            return Err(ApiError::conflict("not_redeliverable", "the task has not finished yet"));
        }
        state.service.adopt(task).await?;
    }
    if state.callbacks.is_none() {
        return Err(ApiError::conflict("callbacks_disabled", "callbacks are off: no callbacks.secret is configured"));
    }
    let task = state.tasks.reopen_callback(&id).map_err(|why| ApiError::conflict("not_redeliverable", why))?;
    state.queue.announce(&task);
    tracing::info!(task = %id, "callback re-delivery started in the console");
    Ok(Json(view(&state, &task, true)))
}

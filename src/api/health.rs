//! Liveness and readiness, unauthenticated.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use crate::api::state::AppState;
use crate::metrics::Gauges;

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
}

/// Readiness: whether an upstream token can take a request now.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready` (200) or `not_ready` (503).
    pub status: &'static str,
    /// `grok-web` or `xai`.
    pub upstream: &'static str,
    pub tokens: TokenCounts,
    /// Where tasks live: `memory`, `journal` (the state dir), `journal_unwritable` (the state dir
    /// refuses writes, e.g. a full disk: not ready), `redis` (shared, reachable) or
    /// `redis_unreachable` (not ready).
    pub store: &'static str,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TokenCounts {
    pub usable: usize,
    pub total: usize,
    /// grok.com tokens per state (`active`, `cooling`, `expired`).
    pub by_state: std::collections::BTreeMap<String, usize>,
}

#[utoipa::path(get, path = "/healthz", tag = "operations", security(()), responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations", security((), ("api_key" = [])),
    description = "Open unless `metrics.require_auth` is set.", responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render(&gauges(&state)))
}

/// The point-in-time figures `/metrics` and the console's overview share.
pub fn gauges(state: &AppState) -> Gauges {
    Gauges {
        tasks: state.tasks.counts().iter().map(|(s, n)| (s.as_str(), *n)).collect(),
        queue_depth: state.queue.depth(),
        tokens: state.runner.upstream().tokens().map(|t| t.health()).unwrap_or_default(),
    }
}

/// Ready = an upstream is configured, at least one token can take a request now, and the task store
/// takes writes.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()), responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let upstream = state.runner.upstream();
    let (usable, total) = upstream.capacity();
    let by_state =
        upstream.tokens().map(|t| t.health()).unwrap_or_default().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    let store = state.service.store_readiness().await;
    let ready = usable > 0 && !matches!(store, "redis_unreachable" | "journal_unwritable");
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = Readiness {
        status: if ready { "ready" } else { "not_ready" },
        upstream: upstream.name(),
        tokens: TokenCounts { usable, total, by_state },
        store,
    };
    (status, Json(body))
}

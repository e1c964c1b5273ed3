//! Liveness and readiness, unauthenticated.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::metrics::Gauges;

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let gauges = Gauges {
        tasks: state.tasks.counts().iter().map(|(s, n)| (s.as_str(), *n)).collect(),
        queue_depth: state.queue.depth(),
        tokens: state.runner.upstream().grok_web().map(|c| c.pool().health()).unwrap_or_default(),
    };
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render(&gauges))
}

/// Ready = an upstream is configured and at least one token can take a request now.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let upstream = state.runner.upstream();
    let (usable, total) = upstream.capacity();
    let health: serde_json::Map<String, Value> = upstream
        .grok_web()
        .map(|c| c.pool().health())
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), json!(v)))
        .collect();
    let ready = usable > 0;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (
        status,
        Json(json!({
            "status": if ready { "ready" } else { "not_ready" },
            "upstream": upstream.name(),
            "tokens": {"usable": usable, "total": total, "by_state": health}
        })),
    )
}

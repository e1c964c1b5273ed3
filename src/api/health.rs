//! Liveness and readiness, unauthenticated.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::app::AppState;

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready = an upstream is configured and at least one token can take a request now.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let upstream = state.runner.upstream();
    let (usable, total) = upstream.capacity();
    let ready = usable > 0;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (
        status,
        Json(json!({
            "status": if ready { "ready" } else { "not_ready" },
            "upstream": upstream.name(),
            "tokens": {"usable": usable, "total": total}
        })),
    )
}

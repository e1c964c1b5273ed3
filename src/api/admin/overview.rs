//! `/admin/overview`: the counters `/metrics` exposes, as one JSON sample; the console turns two
//! samples into rates.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;

use crate::api::state::AppState;

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Overview {
    /// When the sample was taken (unix ms).
    pub at: u64,
    pub uptime_secs: u64,
    /// Every HTTP answer so far (the console's own polling included).
    pub requests_total: u64,
    /// 5xx answers.
    pub errors_total: u64,
    /// 4xx answers other than 429.
    pub client_errors_total: u64,
    pub rate_limited_total: u64,
    pub queue_depth: usize,
    pub tasks: BTreeMap<&'static str, usize>,
    pub tokens: BTreeMap<&'static str, usize>,
}

#[utoipa::path(get, path = "/admin/overview", tag = "admin", responses((status = 200, body = Overview), (status = 401, body = crate::error::ErrorBody)))]
pub async fn overview(State(state): State<AppState>) -> Json<Overview> {
    let g = crate::api::health::gauges(&state);
    let t = state.metrics.totals();
    Json(Overview {
        at: crate::clock::now_ms(),
        uptime_secs: state.started.elapsed().as_secs(),
        requests_total: t.requests,
        errors_total: t.server_errors,
        client_errors_total: t.client_errors,
        rate_limited_total: t.rate_limited,
        queue_depth: g.queue_depth,
        tasks: g.tasks.into_iter().collect(),
        tokens: g.tokens.into_iter().collect(),
    })
}

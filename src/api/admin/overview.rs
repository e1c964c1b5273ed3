//! `/admin/overview`: the counters `/metrics` exposes, as one JSON sample; the console turns two
//! samples into rates.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;

use crate::api::state::AppState;
use crate::shared::report::{ClusterTotals, MAX_TOKEN_STATES, ReplicaReport};

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
    /// With several replicas (`store.url`): every live replica's counters summed (the figures above
    /// are this replica's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterTotals>,
    /// With several replicas: each live replica's latest report (every 2 s), this one's included.
    pub replicas: Vec<ReplicaReport>,
    /// This replica's id among them (`null` in one process).
    pub replica: Option<String>,
}

#[utoipa::path(get, path = "/admin/overview", tag = "admin", responses((status = 200, body = Overview), (status = 401, body = crate::error::ErrorBody),
    (status = 503, description = "the shared store is unreachable", body = crate::error::ErrorBody)))]
pub async fn overview(State(state): State<AppState>) -> Result<Json<Overview>, crate::error::ApiError> {
    let g = crate::api::health::gauges(&state);
    let t = state.metrics.totals();
    let replicas = state.service.replicas().await?;
    Ok(Json(Overview {
        at: crate::clock::now_ms(),
        uptime_secs: state.started.elapsed().as_secs(),
        requests_total: t.requests,
        errors_total: t.server_errors,
        client_errors_total: t.client_errors,
        rate_limited_total: t.rate_limited,
        queue_depth: g.queue_depth,
        tasks: g.tasks.into_iter().collect(),
        tokens: g.tokens.into_iter().collect(),
        cluster: (!replicas.is_empty()).then(|| ClusterTotals::of(&replicas)),
        replicas,
        replica: state.service.replica().map(str::to_owned),
    }))
}

/// What this replica says of itself to the others (`ReplicaReport`).
pub fn replica_report(state: &AppState, replica: &str) -> ReplicaReport {
    let g = crate::api::health::gauges(state);
    let t = state.metrics.totals();
    let tokens = state.runner.upstream().tokens();
    let in_flight = tokens.as_ref().map_or(0, |p| p.in_flight_counts().values().sum());
    let token_states = tokens
        .map(|p| {
            p.snapshot()
                .into_iter()
                .filter(|t| t.status != "active")
                .take(MAX_TOKEN_STATES)
                .map(|t| (t.id, t.status.to_owned()))
                .collect()
        })
        .unwrap_or_default();
    ReplicaReport {
        replica: replica.to_owned(),
        at: crate::clock::now_ms(),
        uptime_secs: state.started.elapsed().as_secs(),
        requests_total: t.requests,
        errors_total: t.server_errors,
        client_errors_total: t.client_errors,
        rate_limited_total: t.rate_limited,
        queue_depth: g.queue_depth,
        tasks: g.tasks.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        tokens: g.tokens.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        in_flight,
        token_states,
    }
}

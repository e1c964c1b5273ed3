//! `/admin/overview`: the counters `/metrics` exposes, as one JSON sample; the console turns two
//! samples into rates.

use axum::Json;
use axum::extract::State;

use crate::api::state::AppState;
use crate::shared::report::{ClusterTotals, Figures, MAX_TOKEN_STATES, ReplicaReport};

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Overview {
    /// This replica's figures.
    #[serde(flatten)]
    pub figures: Figures,
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
    let replicas = state.service.replicas().await?;
    Ok(Json(Overview {
        figures: figures(&state),
        cluster: (!replicas.is_empty()).then(|| ClusterTotals::of(&replicas)),
        replicas,
        replica: state.service.replica().map(str::to_owned),
    }))
}

/// This replica's figures: the `/metrics` counters and gauges, now.
fn figures(state: &AppState) -> Figures {
    let g = crate::api::health::gauges(state);
    let t = state.metrics.totals();
    Figures {
        at: crate::clock::now_ms(),
        uptime_secs: state.started.elapsed().as_secs(),
        requests_total: t.requests,
        errors_total: t.server_errors,
        client_errors_total: t.client_errors,
        rate_limited_total: t.rate_limited,
        queue_depth: g.queue_depth,
        tasks: g.tasks.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        tokens: g.tokens.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    }
}

/// What this replica says of itself to the others (`ReplicaReport`).
pub fn replica_report(state: &AppState, replica: &str) -> ReplicaReport {
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
    ReplicaReport { replica: replica.to_owned(), figures: figures(state), in_flight, token_states }
}

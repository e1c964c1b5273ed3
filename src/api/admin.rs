//! `/admin/tokens`: the upstream token pool, seen and changed at run time, behind `admin.api_key`.
//! Tokens are never shown: each has a stable id (a hash prefix) and a masked form.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::JsonBody;
use crate::app::AppState;
use crate::error::ApiError;
use crate::upstream::grok_web::GrokWebClient;

fn client(state: &AppState) -> Result<&GrokWebClient, ApiError> {
    state.runner.upstream().grok_web().ok_or_else(|| ApiError::not_found("this upstream has no token pool"))
}

fn pool_view(client: &GrokWebClient) -> Value {
    let tokens = client.pool().snapshot();
    json!({"object": "list", "data": tokens})
}

pub async fn list_tokens(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(pool_view(client(&state)?)))
}

#[derive(Debug, Deserialize)]
pub struct AddTokens {
    tokens: Vec<String>,
}

pub async fn add_tokens(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<AddTokens>,
) -> Result<Json<Value>, ApiError> {
    let client = client(&state)?;
    if body.tokens.iter().all(|t| t.trim().is_empty()) {
        return Err(ApiError::invalid_param("tokens", "give at least one token"));
    }
    let added = client.pool().add(&body.tokens);
    tracing::info!(added, "tokens added through the admin API");
    let mut view = pool_view(client);
    view["added"] = json!(added);
    Ok(Json(view))
}

pub async fn remove_token(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let client = client(&state)?;
    if !client.pool().remove(&id) {
        return Err(ApiError::not_found(format!("no token with id `{id}`")));
    }
    tracing::info!(token = %id, "token removed through the admin API");
    Ok(Json(pool_view(client)))
}

pub async fn refresh_tokens(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let client = client(&state)?;
    let answered = client.refresh_quotas().await;
    let mut view = pool_view(client);
    view["refreshed"] = json!(answered);
    Ok(Json(view))
}

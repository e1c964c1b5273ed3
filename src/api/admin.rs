//! `/admin/tokens`: the upstream token pool, seen and changed at run time, behind `admin.api_key`.
//! Tokens are never shown: each has a stable id (a hash prefix) and a masked form.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;

use super::JsonBody;
use crate::app::AppState;
use crate::error::ApiError;
use crate::upstream::grok_web::GrokWebClient;
use crate::upstream::grok_web::token_pool::TokenInfo;

fn client(state: &AppState) -> Result<&GrokWebClient, ApiError> {
    state.runner.upstream().grok_web().ok_or_else(|| ApiError::not_found("this upstream has no token pool"))
}

/// The token pool, and what the call changed.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TokenList {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<TokenInfo>,
    /// Tokens the call added (`POST /admin/tokens`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub added: Option<usize>,
    /// Tokens that answered the quota refresh (`POST /admin/tokens/refresh`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refreshed: Option<usize>,
}

fn pool_view(client: &GrokWebClient) -> TokenList {
    TokenList { object: "list", data: client.pool().snapshot(), added: None, refreshed: None }
}

#[utoipa::path(get, path = "/admin/tokens", tag = "admin", responses((status = 200, body = TokenList), (status = 401, body = crate::error::ErrorBody),
    (status = 404, description = "the upstream has no token pool (xai)", body = crate::error::ErrorBody)))]
pub async fn list_tokens(State(state): State<AppState>) -> Result<Json<TokenList>, ApiError> {
    Ok(Json(pool_view(client(&state)?)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct AddTokens {
    /// sso tokens, each optionally `TOKEN|PROXY_URL`.
    tokens: Vec<String>,
}

#[utoipa::path(post, path = "/admin/tokens", tag = "admin", request_body = AddTokens, responses((status = 200, body = TokenList), (status = 400, body = crate::error::ErrorBody),
    (status = 404, description = "the upstream has no token pool (xai)", body = crate::error::ErrorBody)))]
pub async fn add_tokens(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<AddTokens>,
) -> Result<Json<TokenList>, ApiError> {
    let client = client(&state)?;
    if body.tokens.iter().all(|t| t.trim().is_empty()) {
        return Err(ApiError::invalid_param("tokens", "give at least one token"));
    }
    let added = client.add_tokens(body.tokens).await.map_err(|e| ApiError::invalid_param("tokens", e))?;
    tracing::info!(added, "tokens added through the admin API");
    Ok(Json(TokenList { added: Some(added), ..pool_view(client) }))
}

#[utoipa::path(delete, path = "/admin/tokens/{id}", tag = "admin", params(("id" = String, Path)), responses((status = 200, body = TokenList), (status = 404, body = crate::error::ErrorBody)))]
pub async fn remove_token(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<TokenList>, ApiError> {
    let client = client(&state)?;
    if !client.remove_token(&id).await.map_err(ApiError::internal)? {
        return Err(ApiError::not_found(format!("no token with id `{id}`")));
    }
    tracing::info!(token = %id, "token removed through the admin API");
    Ok(Json(pool_view(client)))
}

#[utoipa::path(post, path = "/admin/tokens/refresh", tag = "admin", responses((status = 200, body = TokenList),
    (status = 404, description = "the upstream has no token pool (xai)", body = crate::error::ErrorBody)))]
pub async fn refresh_tokens(State(state): State<AppState>) -> Result<Json<TokenList>, ApiError> {
    let client = client(&state)?;
    let answered = client.refresh_quotas().await;
    Ok(Json(TokenList { refreshed: Some(answered), ..pool_view(client) }))
}

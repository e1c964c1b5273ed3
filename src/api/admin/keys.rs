//! `/admin/keys`: client API keys. Config keys are listed read-only; console keys are made, rotated
//! and revoked here, and the key itself appears only in the answer that made it.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::api::state::AppState;
use crate::api::{JsonBody, Path};
use crate::error::ApiError;
use crate::keys::{IssuedKey, KeyInfo, NewKey};

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct KeyList {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<KeyInfo>,
}

#[utoipa::path(get, path = "/admin/keys", tag = "admin", responses((status = 200, body = KeyList), (status = 401, body = crate::error::ErrorBody)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<KeyList>, ApiError> {
    state.guard.keys.refresh().await?;
    Ok(Json(KeyList { object: "list", data: state.guard.keys.list() }))
}

#[utoipa::path(post, path = "/admin/keys", tag = "admin", request_body = NewKey,
    responses((status = 201, body = IssuedKey), (status = 400, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<NewKey>,
) -> Result<(StatusCode, Json<IssuedKey>), ApiError> {
    Ok((StatusCode::CREATED, Json(state.guard.keys.create(body).await?)))
}

#[utoipa::path(delete, path = "/admin/keys/{id}", tag = "admin", description = "Revokes the key: it answers 401 from then on; its usage stays.",
    params(("id" = String, Path)), responses((status = 200, body = KeyInfo), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn revoke(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<KeyInfo>, ApiError> {
    state.guard.keys.refresh().await?;
    Ok(Json(state.guard.keys.revoke(&id).await?))
}

#[utoipa::path(post, path = "/admin/keys/{id}/rotate", tag = "admin", description = "A new secret for the same key id; the old one stops working.",
    params(("id" = String, Path)), responses((status = 200, body = IssuedKey), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn rotate(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<IssuedKey>, ApiError> {
    state.guard.keys.refresh().await?;
    Ok(Json(state.guard.keys.rotate(&id).await?))
}

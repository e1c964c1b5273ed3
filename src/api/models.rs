//! `GET /v1/models` and `GET /v1/models/{id}` in the OpenAI list shape.

use axum::Json;

use super::{MODELS, Path};
use crate::error::ApiError;

/// A fixed date: the models do not change while we run, and clients cache on `created`.
const CREATED: u64 = 1_767_225_600;

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Model {
    pub id: &'static str,
    /// Always `model`.
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'static str,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ModelList {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<Model>,
}

fn model(id: &'static str) -> Model {
    Model { id, object: "model", created: CREATED, owned_by: "grok2api" }
}

#[utoipa::path(get, path = "/v1/models", tag = "models", responses((status = 200, body = ModelList)))]
pub async fn list() -> Json<ModelList> {
    Json(ModelList { object: "list", data: MODELS.iter().map(|(id, _, _)| model(id)).collect() })
}

#[utoipa::path(get, path = "/v1/models/{id}", tag = "models", params(("id" = String, Path, description = "model id or alias")),
    responses((status = 200, body = Model), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get(Path(id): Path<String>) -> Result<Json<Model>, ApiError> {
    MODELS
        .iter()
        .find(|(canonical, alias, _)| *canonical == id || *alias == id)
        .map(|(canonical, _, _)| Json(model(canonical)))
        .ok_or_else(|| ApiError::not_found(format!("no model `{id}`")))
}

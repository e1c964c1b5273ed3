//! `GET /v1/models` and `GET /v1/models/{id}` in the OpenAI list shape.

use axum::Json;
use axum::extract::Path;
use serde_json::{Value, json};

use super::MODELS;
use crate::error::ApiError;

/// A fixed date: the models do not change while we run, and clients cache on `created`.
const CREATED: u64 = 1_767_225_600;

fn model(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": CREATED, "owned_by": "grok2api"})
}

pub async fn list() -> Json<Value> {
    Json(json!({"object": "list", "data": MODELS.iter().map(|(id, _, _)| model(id)).collect::<Vec<_>>()}))
}

pub async fn get(Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    MODELS
        .iter()
        .find(|(canonical, alias, _)| *canonical == id || *alias == id)
        .map(|(canonical, _, _)| Json(model(canonical)))
        .ok_or_else(|| ApiError::not_found(format!("no model `{id}`")))
}

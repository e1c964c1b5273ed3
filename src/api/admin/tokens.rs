//! `/admin/tokens`: the upstream token pool, seen and changed at run time. Tokens are never shown:
//! each has a stable id (a hash prefix) and a masked form; only an export (a POST, for the
//! operator's backup) carries the values.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::api::state::AppState;
use crate::api::{JsonBody, Path};
use crate::error::ApiError;
use crate::shared::report::ReplicaReport;
use crate::upstream::TokenPool;
use crate::upstream::tokens::{ExportedToken, ImportReport, TokenChangeError, TokenInfo, TokenPatch};

fn pool(state: &AppState) -> Result<TokenPool<'_>, ApiError> {
    state.runner.upstream().tokens().ok_or_else(|| ApiError::not_found("this upstream has no token pool"))
}

/// The token pool (one page of it), and what the call changed.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TokenList {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<TokenInfo>,
    /// Tokens matching the search (`q`), on every page; without a search, every token.
    pub total: usize,
    /// Where this page starts among them.
    pub offset: usize,
    /// Tokens the call added (`POST /admin/tokens`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub added: Option<usize>,
    /// Tokens that answered the quota refresh (`POST /admin/tokens/refresh`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refreshed: Option<usize>,
}

/// How many tokens the answers of the calls that change the pool carry (the first of the pool's
/// order, with `total`): a pool of 10,000 is not sent back whole after each change.
const FIRST_PAGE: usize = 100;

fn pool_view(pool: TokenPool<'_>) -> TokenList {
    let all = pool.snapshot();
    let total = all.len();
    let data = all.into_iter().take(FIRST_PAGE).collect();
    TokenList { object: "list", data, total, offset: 0, added: None, refreshed: None }
}

/// `GET /admin/tokens`: search, sort and paging, done here so the console never loads the whole pool.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Tokens skipped (after search and sort); default 0.
    offset: Option<usize>,
    /// The most tokens returned; default: all of them.
    limit: Option<usize>,
    /// The field to sort by, `-` in front for descending: `id`, `token`, `status`, `plan`, `source`,
    /// `note`, `proxy`, `enabled`, `remaining`, `in_flight`, `fail_count`, `cooldown_secs`,
    /// `checked_at`, `last_error_at`, or a product (`image`, `imageEdit`, `video`, `video720p`,
    /// `imagePro`: its remaining quota). Missing values come first ascending. Default: the pool's
    /// order (the order tokens were added).
    sort: Option<String>,
    /// Text to find (case-insensitive) in the id, masked token, note, proxy (host), status, plan or source.
    q: Option<String>,
}

type Order = Box<dyn Fn(&TokenInfo, &TokenInfo) -> std::cmp::Ordering>;

fn order(field: &str) -> Option<Order> {
    fn by<K: Ord>(key: impl Fn(&TokenInfo) -> K + 'static) -> Option<Order> {
        Some(Box::new(move |a, b| key(a).cmp(&key(b))))
    }
    match field {
        "id" => by(|t| t.id.clone()),
        "token" => by(|t| t.token.clone()),
        "status" => by(|t| t.status),
        "plan" => by(|t| t.plan),
        "source" => by(|t| t.source),
        "note" => by(|t| t.note.as_ref().map(|n| n.to_lowercase())),
        "proxy" => by(|t| t.proxy.clone()),
        "enabled" => by(|t| t.enabled),
        "remaining" => by(|t| t.remaining),
        "in_flight" => by(|t| t.in_flight),
        "fail_count" => by(|t| t.fail_count),
        "cooldown_secs" => by(|t| t.cooldown_secs),
        "checked_at" => by(|t| t.checked_at),
        "last_error_at" => by(|t| t.last_error_at),
        product => {
            let key = crate::upstream::grok_web::Product::ALL.iter().map(|p| p.key()).find(|k| *k == product)?;
            by(move |t| t.products.get(key).and_then(|p| p.remaining))
        }
    }
}

fn matches(t: &TokenInfo, q: &str) -> bool {
    let has = |s: &str| s.to_lowercase().contains(q);
    has(&t.id)
        || has(&t.token)
        || has(t.status)
        || has(t.source)
        || t.plan.is_some_and(has)
        || t.note.as_deref().is_some_and(has)
        || t.proxy.as_deref().is_some_and(has)
}

#[utoipa::path(get, path = "/admin/tokens", tag = "admin", params(ListQuery), responses((status = 200, body = TokenList), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
    (status = 404, description = "the upstream has no token pool (xai)", body = crate::error::ErrorBody)))]
pub async fn list_tokens(
    State(state): State<AppState>,
    crate::api::Params(q): crate::api::Params<ListQuery>,
) -> Result<Json<TokenList>, ApiError> {
    let others = state.service.replicas().await?;
    let sort = match q.sort.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => {
            let (desc, field) = s.strip_prefix('-').map_or((false, s), |f| (true, f));
            let cmp =
                order(field).ok_or_else(|| ApiError::invalid_param("sort", format!("cannot sort by `{field}`")))?;
            Some((desc, cmp))
        }
    };
    let mut rows = pool(&state)?.snapshot();
    if let Some(needle) = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        let needle = needle.to_lowercase();
        rows.retain(|t| matches(t, &needle));
    }
    // Stable: equal keys keep the pool's order, whichever way.
    match sort {
        Some((false, cmp)) => rows.sort_by(|a, b| cmp(a, b)),
        Some((true, cmp)) => rows.sort_by(|a, b| cmp(b, a)),
        None => {}
    }
    let total = rows.len();
    let offset = q.offset.unwrap_or(0).min(total);
    let mut data: Vec<TokenInfo> = rows.into_iter().skip(offset).take(q.limit.unwrap_or(usize::MAX)).collect();
    seen_elsewhere(&state, &others, &mut data);
    Ok(Json(TokenList { object: "list", data, total, offset, added: None, refreshed: None }))
}

/// With several replicas: how the other replicas see each token of the page, where it differs from
/// this one's view (their reports name the tokens they see other than `active`).
fn seen_elsewhere(state: &AppState, reports: &[ReplicaReport], data: &mut [TokenInfo]) {
    let me = state.service.replica();
    for t in data.iter_mut() {
        for r in reports.iter().filter(|r| Some(r.replica.as_str()) != me) {
            let there = r.token_states.get(&t.id).map_or("active", String::as_str);
            if there != t.status {
                t.elsewhere.insert(r.replica.clone(), there.to_owned());
            }
        }
    }
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
    let pool = pool(&state)?;
    if body.tokens.iter().all(|t| t.trim().is_empty()) {
        return Err(ApiError::invalid_param("tokens", "give at least one token"));
    }
    let added = pool.add_tokens(body.tokens).await.map_err(|e| ApiError::invalid_param("tokens", e))?;
    tracing::info!(added, "tokens added through the admin API");
    Ok(Json(TokenList { added: Some(added), ..pool_view(pool) }))
}

#[utoipa::path(delete, path = "/admin/tokens/{id}", tag = "admin", description = "A token from the config comes back on restart.", params(("id" = String, Path)), responses((status = 200, body = TokenList), (status = 404, body = crate::error::ErrorBody)))]
pub async fn remove_token(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<TokenList>, ApiError> {
    let pool = pool(&state)?;
    if !pool.remove_token(&id).await.map_err(ApiError::internal)? {
        return Err(ApiError::not_found(format!("no token with id `{id}`")));
    }
    tracing::info!(token = %id, "token removed through the admin API");
    Ok(Json(pool_view(pool)))
}

#[utoipa::path(post, path = "/admin/tokens/refresh", tag = "admin", responses((status = 200, body = TokenList),
    (status = 404, description = "the upstream has no token pool (xai)", body = crate::error::ErrorBody)))]
pub async fn refresh_tokens(State(state): State<AppState>) -> Result<Json<TokenList>, ApiError> {
    let pool = pool(&state)?;
    let answered = pool.refresh_quotas().await;
    Ok(Json(TokenList { refreshed: Some(answered), ..pool_view(pool) }))
}

fn one(pool: TokenPool<'_>, id: &str) -> Result<TokenInfo, ApiError> {
    pool.info(id).ok_or_else(|| no_token(id))
}

fn no_token(id: &str) -> ApiError {
    ApiError::not_found(format!("no token with id `{id}`"))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ImportFile {
    /// The file's text: txt, json or jsonl (detected).
    content: String,
    /// The file's name, a hint for the format.
    filename: Option<String>,
}

#[utoipa::path(post, path = "/admin/tokens/import", tag = "admin", request_body = ImportFile,
    responses((status = 200, body = ImportReport), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub async fn import_tokens(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<ImportFile>,
) -> Result<Json<ImportReport>, ApiError> {
    let report =
        pool(&state)?.import_tokens(&body.content, body.filename.as_deref()).await.map_err(ApiError::internal)?;
    Ok(Json(report))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `txt` (default: `TOKEN` or `TOKEN|PROXY` per line) or `json`.
    format: Option<String>,
}

#[utoipa::path(post, path = "/admin/tokens/export", tag = "admin", params(ExportQuery),
    description = "The full token values, as a file download. A POST, so that no link or image can start it.",
    responses((status = 200, description = "the tokens: lines of text (`txt`), or a JSON array (`json`)", content(
        (String = "text/plain"), (Vec<Object> = "application/json"))), (status = 400, body = crate::error::ErrorBody)))]
pub async fn export_tokens(
    State(state): State<AppState>,
    crate::api::Params(q): crate::api::Params<ExportQuery>,
) -> Result<Response, ApiError> {
    let tokens = pool(&state)?.export();
    let (body, content_type, ext) = match q.format.as_deref().unwrap_or("txt") {
        "txt" => {
            let lines: Vec<String> = tokens.iter().map(ExportedToken::entry).collect();
            (lines.join("\n") + "\n", "text/plain; charset=utf-8", "txt")
        }
        "json" => {
            let rows: Vec<serde_json::Value> = tokens
                .iter()
                .map(|t| serde_json::json!({"token": t.token, "proxy": t.proxy, "note": t.note, "enabled": t.enabled}))
                .collect();
            (
                serde_json::to_string_pretty(&rows).map_err(|e| ApiError::internal(e.to_string()))?,
                "application/json",
                "json",
            )
        }
        other => return Err(ApiError::invalid_param("format", format!("`{other}` is not one of txt, json"))),
    };
    tracing::info!(tokens = tokens.len(), "tokens exported");
    let disposition = format!("attachment; filename=\"grok2api-tokens.{ext}\"");
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        body,
    )
        .into_response())
}

/// `PATCH /admin/tokens/{id}`: fields left out stay as they are; `null` clears a note or proxy.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenChange {
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    note: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    proxy: Option<Option<String>>,
}

/// A field that is present (even as `null`) is `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

fn change_error(id: &str, e: TokenChangeError) -> ApiError {
    match e {
        TokenChangeError::NotFound => no_token(id),
        TokenChangeError::ReadOnly => {
            ApiError::conflict("read_only", "this token comes from the config; change it there")
        }
        TokenChangeError::Invalid(why) => ApiError::invalid_param("proxy", why),
        TokenChangeError::Storage(why) => ApiError::internal(why),
    }
}

#[utoipa::path(patch, path = "/admin/tokens/{id}", tag = "admin", params(("id" = String, Path)), request_body = TokenChange,
    responses((status = 200, body = TokenInfo), (status = 404, body = crate::error::ErrorBody), (status = 409, description = "a config token", body = crate::error::ErrorBody)))]
pub async fn patch_token(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<TokenChange>,
) -> Result<Json<TokenInfo>, ApiError> {
    let pool = pool(&state)?;
    let note = body.note.map(|n| n.map(|n| n.chars().take(200).collect::<String>()));
    let patch =
        TokenPatch { enabled: body.enabled, note, proxy: body.proxy.map(|p| p.filter(|p| !p.trim().is_empty())) };
    pool.update_token(&id, patch).await.map_err(|e| change_error(&id, e))?;
    tracing::info!(token = %id, "token changed in the console");
    Ok(Json(one(pool, &id)?))
}

#[utoipa::path(post, path = "/admin/tokens/{id}/refresh", tag = "admin", params(("id" = String, Path)),
    responses((status = 200, body = TokenInfo), (status = 404, body = crate::error::ErrorBody)))]
pub async fn refresh_token(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<TokenInfo>, ApiError> {
    let pool = pool(&state)?;
    // A check the upstream did not answer is still a 200: the token's `last_error` says why.
    pool.refresh_token(&id).await.ok_or_else(|| no_token(&id))?;
    Ok(Json(one(pool, &id)?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Bulk {
    /// `enable`, `disable`, `delete` or `refresh`.
    action: String,
    ids: Vec<String>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct BulkResult {
    id: String,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct BulkReport {
    results: Vec<BulkResult>,
    /// The first tokens of the pool's order (as `POST /admin/tokens` answers); `total` counts them all.
    data: Vec<TokenInfo>,
    total: usize,
}

#[utoipa::path(post, path = "/admin/tokens/bulk", tag = "admin", request_body = Bulk,
    responses((status = 200, body = BulkReport), (status = 400, body = crate::error::ErrorBody), (status = 404, description = "the upstream has no token pool (xai)", body = crate::error::ErrorBody)))]
pub async fn bulk(State(state): State<AppState>, JsonBody(body): JsonBody<Bulk>) -> Result<Json<BulkReport>, ApiError> {
    let pool = pool(&state)?;
    if !matches!(body.action.as_str(), "enable" | "disable" | "delete" | "refresh") {
        return Err(ApiError::invalid_param("action", "action must be one of enable, disable, delete, refresh"));
    }
    let mut results = Vec::with_capacity(body.ids.len());
    for id in body.ids {
        let outcome = match body.action.as_str() {
            "enable" | "disable" => {
                let patch = TokenPatch { enabled: Some(body.action == "enable"), ..TokenPatch::default() };
                pool.update_token(&id, patch).await.map_err(|e| change_error(&id, e).message)
            }
            "delete" => match pool.remove_token(&id).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(no_token(&id).message),
                Err(e) => Err(e),
            },
            _ => match pool.refresh_token(&id).await {
                Some(true) => Ok(()),
                Some(false) => Err(pool
                    .info(&id)
                    .and_then(|t| t.last_error)
                    .unwrap_or_else(|| "the upstream did not answer the quota check".into())),
                None => Err(no_token(&id).message),
            },
        };
        results.push(BulkResult { ok: outcome.is_ok(), error: outcome.err(), id });
    }
    tracing::info!(action = %body.action, tokens = results.len(), "bulk token action");
    let TokenList { data, total, .. } = pool_view(pool);
    Ok(Json(BulkReport { results, data, total }))
}

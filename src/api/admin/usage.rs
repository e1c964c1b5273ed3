//! `/admin/usage` and `/admin/usage.csv`: per key per UTC day.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::api::state::AppState;
use crate::error::ApiError;
use crate::usage::{Totals, format_day, parse_day};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// A key id (`k_…`, `key-…`); all keys when absent.
    key: Option<String>,
    /// First day, `YYYY-MM-DD` (UTC), inclusive.
    from: Option<String>,
    /// Last day, inclusive.
    to: Option<String>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct UsageRow {
    pub day: String,
    pub key: String,
    pub name: Option<String>,
    #[serde(flatten)]
    pub totals: Totals,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct UsageList {
    pub object: &'static str,
    pub data: Vec<UsageRow>,
}

fn day(param: &str, v: Option<&str>) -> Result<Option<u32>, ApiError> {
    v.filter(|s| !s.is_empty())
        .map(|s| parse_day(s).ok_or_else(|| ApiError::invalid_param(param, format!("`{s}` is not a date YYYY-MM-DD"))))
        .transpose()
}

async fn rows(state: &AppState, q: &UsageQuery) -> Result<Vec<UsageRow>, ApiError> {
    let (from, to) = (day("from", q.from.as_deref())?, day("to", q.to.as_deref())?);
    let key = q.key.as_deref().filter(|k| !k.is_empty());
    state.guard.keys.refresh().await?;
    let rows = state.guard.usage.rows_now(key, from, to).await.map_err(crate::shared::down)?;
    Ok(rows
        .into_iter()
        .map(|(d, k, totals)| UsageRow {
            day: format_day(d),
            name: state.guard.keys.name_of(&k.0),
            key: k.0.to_string(),
            totals,
        })
        .collect())
}

#[utoipa::path(get, path = "/admin/usage", tag = "admin", params(UsageQuery), responses((status = 200, body = UsageList), (status = 400, body = crate::error::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    crate::api::Params(q): crate::api::Params<UsageQuery>,
) -> Result<Json<UsageList>, ApiError> {
    Ok(Json(UsageList { object: "list", data: rows(&state, &q).await? }))
}

#[utoipa::path(get, path = "/admin/usage.csv", tag = "admin", params(UsageQuery),
    responses((status = 200, description = "`day,key,name,requests,images,video_seconds,errors,rate_limited`", content_type = "text/csv", body = String)))]
pub async fn csv(
    State(state): State<AppState>,
    crate::api::Params(q): crate::api::Params<UsageQuery>,
) -> Result<Response, ApiError> {
    let mut out = format!("day,key,name,{}\n", Totals::NAMES.join(","));
    for r in rows(&state, &q).await? {
        let counts: Vec<String> = r.totals.values().iter().map(u64::to_string).collect();
        let name = csv_field(r.name.as_deref().unwrap_or(""));
        out.push_str(&format!("{},{},{},{}\n", r.day, r.key, name, counts.join(",")));
    }
    let headers = [
        (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
        (header::CONTENT_DISPOSITION, "attachment; filename=\"grok2api-usage.csv\""),
    ];
    Ok((headers, out).into_response())
}

/// RFC 4180 quoting; a leading `=`, `+`, `-` or `@` is defused so a spreadsheet never runs a key name.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_owned() };
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

#[cfg(test)]
mod tests {
    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(super::csv_field("mobile app"), "mobile app");
        assert_eq!(super::csv_field("a,b \"c\""), "\"a,b \"\"c\"\"\"");
        assert_eq!(super::csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
    }
}

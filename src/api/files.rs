//! `GET /v1/files/{image|video}/{name}`: media from the store, with ETag revalidation and byte ranges
//! (so a `<video>` element can seek).

use std::io::SeekFrom;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::Path;
use crate::api::state::AppState;
use crate::error::ApiError;
use crate::media::{MediaKind, RangeRequest, parse_range};

#[utoipa::path(get, path = "/v1/files/{kind}/{name}", tag = "files",
    description = "A link is a capability: no key is needed unless `files.require_auth` is set.",
    security((), ("api_key" = [])),
    params(("kind" = super::schema::FileKind, Path), ("name" = String, Path), super::schema::MediaHeaders),
    responses(super::schema::MediaAnswers, (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_file(
    State(state): State<AppState>,
    Path((kind, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let kind = MediaKind::parse(&kind).ok_or_else(|| ApiError::not_found(format!("no file `{name}`")))?;
    serve(&state, kind, &name, &headers, state.cfg.files.require_auth).await
}

/// Streams one stored file: conditional requests, one byte range, the stored content type. A file
/// behind a key (`private`) may be kept by the client, never by a shared cache on the way.
pub async fn serve(
    state: &AppState,
    kind: MediaKind,
    name: &str,
    headers: &HeaderMap,
    private: bool,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::not_found(format!("no file `{name}`"));
    if let Some(remote) = state.media.remote()
        && let Some(url) = remote.presigned(kind, name).await
    {
        let url = url.map_err(ApiError::internal)?;
        return Ok((StatusCode::FOUND, [(header::LOCATION, url)]).into_response());
    }
    let file = state.media.fetch(kind, name).await.map_err(|e| ApiError::unavailable("media_store_unavailable", e))?;
    let file = file.ok_or_else(not_found)?;

    let mut h = HeaderMap::new();
    let put = |h: &mut HeaderMap, k: header::HeaderName, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    };
    put(&mut h, header::ETAG, &file.etag);
    let cache = if private { "private, max-age=31536000, immutable" } else { "public, max-age=31536000, immutable" };
    put(&mut h, header::CACHE_CONTROL, cache);
    put(&mut h, header::ACCEPT_RANGES, "bytes");
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == file.etag || t.trim() == "*"))
    {
        return Ok((StatusCode::NOT_MODIFIED, h).into_response());
    }
    put(&mut h, header::CONTENT_TYPE, file.content_type);

    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, len) = match parse_range(range, file.size) {
        RangeRequest::Full => (StatusCode::OK, 0, file.size),
        RangeRequest::Partial { start, end } => {
            put(&mut h, header::CONTENT_RANGE, &format!("bytes {start}-{end}/{}", file.size));
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeRequest::Unsatisfiable => {
            // Our error body, with the headers a client needs to ask again (the size, the ETag).
            let size = file.size;
            let mut resp =
                ApiError::range_not_satisfiable(format!("`Range` is outside the file's {size} bytes")).into_response();
            h.remove(header::CONTENT_TYPE);
            put(&mut h, header::CONTENT_RANGE, &format!("bytes */{size}"));
            resp.headers_mut().extend(h);
            return Ok(resp);
        }
    };
    put(&mut h, header::CONTENT_LENGTH, &len.to_string());

    // Evicted between lookup and open: the file is gone, which to the client is a 404.
    let mut f = tokio::fs::File::open(&file.path).await.map_err(|_| not_found())?;
    if start > 0 {
        f.seek(SeekFrom::Start(start)).await.map_err(|e| ApiError::internal(format!("cannot read media: {e}")))?;
    }
    let body = Body::from_stream(ReaderStream::new(f.take(len)));
    Ok((status, h, body).into_response())
}

//! Simulated media posts: every video the conversation stream starts is also a post the owner can
//! read with `POST /rest/media/post/get {"id"}`, as the web app does when it opens
//! `/imagine/post/<id>`. The video finishes upstream whatever happens to the stream that started it,
//! so a client whose stream died can still collect it here (shape: SentDz/grok2api `video.go`,
//! `fetchMediaPostVideo`, 2026-09: `{"post":{"mediaUrl","hdMediaUrl","hd1080MediaUrl","mimeType",
//! "moderated",...}}`, the URL empty until the video is ready).

use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::sim::state::{Sim, json_error};

pub(super) async fn get(State(sim): State<Sim>, headers: HeaderMap, body: Bytes) -> Response {
    let account = match sim.rest_account(&headers, "POST", "/rest/media/post/get") {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let Some(id) = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v.get("id")?.as_str().map(str::to_owned))
    else {
        return json_error(StatusCode::BAD_REQUEST, 3, "id is required");
    };
    let post = match sim.posts.get(&id).map(|p| p.clone()) {
        Some(p) if p.owner == account.user_id && !p.vanished => p,
        _ => return json_error(StatusCode::NOT_FOUND, 5, "post not found"),
    };
    let ready = Instant::now() >= post.ready_at;
    let url = |path: &str| if ready && !post.moderated { format!("{}/{path}", sim.base_url) } else { String::new() };
    let media = url(&post.video_path);
    // The 720p rendition is the "hd" one; a 480p video has only `mediaUrl`.
    let hd = if post.resolution == "720p" { media.clone() } else { String::new() };
    axum::Json(json!({"post": {
        "id": id,
        "userId": account.user_id,
        "mediaType": "MEDIA_POST_TYPE_VIDEO",
        "mimeType": "video/mp4",
        "mediaUrl": media,
        "hdMediaUrl": hd,
        "hd1080MediaUrl": "",
        "thumbnailImageUrl": url(&post.thumbnail_path),
        "originalPostId": post.video_id,
        "moderated": post.moderated && ready,
        "videos": [],
        "childPosts": []
    }}))
    .into_response()
}

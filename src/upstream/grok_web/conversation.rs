//! The conversation channel: upload inputs, open `/rest/app-chat/conversations/new` with a
//! `mediaGenInput` request (image edit, text-to-video, image-to-video), follow the NDJSON stream to the
//! final media URLs, then download them with the same account's cookie.

use std::collections::BTreeMap;

use futures_util::StreamExt;

use super::ndjson::{Frame, FrameDecoder};
use super::wire::{self, ConversationEvent};
use super::{Account, GrokWebClient, classify};
use crate::jobs::{EditJob, InputImage, ProgressSink, ProgressSlots, VideoJob};
use crate::upstream::{Asset, UpstreamError, VideoAssets};
use http::Method;

async fn upload(client: &GrokWebClient, account: &Account, image: &InputImage) -> Result<String, UpstreamError> {
    let part = wreq::multipart::Part::bytes(image.bytes.to_vec())
        .file_name(image.file_name.clone())
        .mime_str(image.content_type)
        .map_err(|e| UpstreamError::Failed(format!("bad upload type: {e}")))?;
    let form = wreq::multipart::Form::new().part("file", part).text("file_source", wire::UPLOAD_FILE_SOURCE);
    // The web app signs REST calls, not uploads.
    let mut headers = client.api_headers(account);
    headers.remove("x-xai-request-id");
    let req = client
        .transport
        .request(&account.egress, Method::POST, &client.url(wire::UPLOAD_PATH), headers)?
        .multipart(form);
    let resp = client.send(account, req, "upload").await?;
    let body = client.read_body(account, resp, 1024 * 1024).await?;
    let parsed: wire::UploadResponse = serde_json::from_slice(&body).map_err(|_| {
        UpstreamError::Protocol(format!("unparseable upload answer: {}", String::from_utf8_lossy(&body)))
    })?;
    if let Some(err) = parsed.terminal_error.as_ref().filter(|e| !e.is_null()) {
        return Err(UpstreamError::Failed(format!("upstream rejected the input image: {err}")));
    }
    parsed.asset_id().ok_or_else(|| UpstreamError::Protocol("upload answer without a file id".into()))
}

#[derive(Default)]
struct Found {
    finals: BTreeMap<u32, String>,
    fallback_urls: Vec<String>,
    moderated: usize,
    stream_errors: Vec<String>,
}

/// Whether the caller has what it came for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    More,
    Done,
}

/// Opens a conversation and feeds every frame to `on_frame` until the stream ends. Transport, framing,
/// idle-timeout and in-band error handling live here once for every kind of conversation.
async fn converse(
    client: &GrokWebClient,
    account: &Account,
    body: serde_json::Value,
    mut on_frame: impl FnMut(ConversationEvent) -> Flow,
) -> Result<(), UpstreamError> {
    let resp = client.signed_post(account, wire::CONVERSATION_PATH, body.to_string(), "conversation").await?;
    let mut decoder = FrameDecoder::default();
    let mut stream = resp.bytes_stream();
    let idle = client.idle_timeout();
    loop {
        let chunk = match tokio::time::timeout(idle, stream.next()).await {
            Err(_) => {
                return Err(UpstreamError::Timeout(format!("conversation stream silent for {}s", idle.as_secs())));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(UpstreamError::Transport(format!("conversation stream broke: {e}"))),
            Ok(Some(Ok(c))) => c,
        };
        decoder.push(&chunk);
        while let Some(frame) = decoder.next_frame() {
            let value = match frame {
                Frame::Json(v) => v,
                Frame::Garbage(line) => return Err(UpstreamError::Protocol(format!("not a stream frame: {line}"))),
            };
            match wire::parse_conversation_frame(&value) {
                ConversationEvent::Error { code, message } => {
                    return Err(classify::classify_in_band(code.as_deref(), &message));
                }
                event => {
                    if on_frame(event) == Flow::Done {
                        // The result is in hand; the upstream may keep the stream open or cut it later.
                        return Ok(());
                    }
                }
            }
        }
    }
    match decoder.remainder() {
        Some(rest) => Err(UpstreamError::Protocol(format!("conversation stream cut mid-frame: {rest}"))),
        None => Ok(()),
    }
}

/// One edit conversation producing up to `want` images, reported as progress slots from `first_slot`.
pub(super) async fn edit(
    client: &GrokWebClient,
    account: Account,
    job: &EditJob,
    want: usize,
    first_slot: usize,
    progress: &ProgressSlots,
) -> Result<Vec<Asset>, UpstreamError> {
    let mut asset_ids = Vec::with_capacity(job.images.len());
    for image in &job.images {
        asset_ids.push(upload(client, &account, image).await?);
    }
    let mut found = Found::default();
    converse(client, &account, wire::edit_request(&job.prompt, &asset_ids, job.aspect_ratio), |event| match event {
        ConversationEvent::Image(img) => {
            let index = img.image_index.unwrap_or(0);
            let pct = img.progress.unwrap_or(0.0);
            let is_final = img.is_final == Some(true) || pct >= 100.0;
            if img.moderated == Some(true) {
                found.moderated += 1;
            } else if is_final && let Some(url) = img.image_url {
                found.finals.insert(index, url);
            }
            if (index as usize) < want {
                progress.set(first_slot + index as usize, pct.min(99.0));
            }
            Flow::More
        }
        ConversationEvent::ModelResponse { image_urls, stream_errors, .. } => {
            found.fallback_urls.extend(image_urls);
            found.stream_errors.extend(stream_errors);
            Flow::More
        }
        _ => Flow::More,
    })
    .await?;

    let mut urls: Vec<String> = found.finals.into_values().collect();
    for url in found.fallback_urls {
        if !urls.contains(&url) && !url.contains("-part-") {
            urls.push(url);
        }
    }
    if urls.len() < want {
        return Err(if found.moderated > 0 {
            UpstreamError::Moderated("the upstream moderated the edited image; rephrase the prompt".into())
        } else if !found.stream_errors.is_empty() {
            classify::classify_stream_errors(&found.stream_errors)
        } else {
            UpstreamError::Protocol(format!("conversation ended with {} of {want} images", urls.len()))
        });
    }
    let mut assets = Vec::with_capacity(want);
    for url in urls.into_iter().take(want) {
        let asset = client.download(&account, &url).await?;
        if !asset.content_type.starts_with("image/") {
            return Err(UpstreamError::Protocol("edited asset is not an image".into()));
        }
        assets.push(asset);
    }
    Ok(assets)
}

/// Text-to-video, or image-to-video after uploading the input image.
pub(super) async fn video(
    client: &GrokWebClient,
    account: Account,
    job: &VideoJob,
    sink: &ProgressSink,
) -> Result<VideoAssets, UpstreamError> {
    let input = match &job.image {
        Some(image) => Some(upload(client, &account, image).await?),
        None => None,
    };
    let body = wire::video_request(job, input.as_deref());
    let mut video_url: Option<String> = None;
    let mut thumbnail_url: Option<String> = None;
    let mut attachments: Vec<String> = Vec::new();
    let mut moderated = false;
    let mut stream_errors = Vec::new();
    let mut started: Option<String> = None;
    let streamed = converse(client, &account, body, |event| match event {
        ConversationEvent::Video(v) => {
            if started.is_none() {
                started = v.video_id.clone().or_else(|| v.asset_id.clone());
            }
            if let Some(p) = v.progress {
                // 100 is the runner's to say, once the file is stored.
                sink.progress((p.clamp(0.0, 100.0) as u8).min(99));
            }
            if v.moderated == Some(true) {
                moderated = true;
            }
            if v.thumbnail_image_url.is_some() {
                thumbnail_url = v.thumbnail_image_url;
            }
            if v.video_url.is_some() {
                video_url = v.video_url;
                // The final URL is the result: take it now rather than wait for a stream that may
                // stay open, or die, after it.
                return Flow::Done;
            }
            Flow::More
        }
        ConversationEvent::ModelResponse { file_attachments, stream_errors: errs, .. } => {
            attachments.extend(file_attachments);
            stream_errors.extend(errs);
            Flow::More
        }
        _ => Flow::More,
    })
    .await;
    if let Err(e) = streamed {
        return Err(match (&started, video_url.is_some()) {
            // The upstream already has (and bills) this video: another token must not make it again.
            (Some(id), false) if e.retry_on_other_token() || matches!(e, UpstreamError::Timeout(_)) => {
                UpstreamError::Failed(format!(
                    "the stream of upstream video {id} broke ({e}); not re-run on another token"
                ))
            }
            _ => e,
        });
    }

    let video_url =
        video_url.or_else(|| attachments.into_iter().find(|a| a.ends_with(".mp4") || a.contains("/content")));
    let Some(video_url) = video_url else {
        return Err(if moderated {
            UpstreamError::Moderated("the upstream moderated the video; rephrase the prompt".into())
        } else if !stream_errors.is_empty() {
            classify::classify_stream_errors(&stream_errors)
        } else {
            UpstreamError::Protocol("video stream ended without a video URL".into())
        });
    };
    let video = client.download(&account, &video_url).await?;
    if !video.content_type.starts_with("video/") {
        return Err(UpstreamError::Protocol("video asset is not a video".into()));
    }
    // The poster is a nicety: a missing or broken one must not fail a finished video.
    let thumbnail = match thumbnail_url {
        Some(url) => match client.download(&account, &url).await {
            Ok(t) if t.content_type.starts_with("image/") => Some(t),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!("video thumbnail download failed: {e}");
                None
            }
        },
        None => None,
    };
    Ok(VideoAssets { video, thumbnail })
}

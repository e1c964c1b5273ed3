//! The conversation channel: upload inputs, open `/rest/app-chat/conversations/new` with a
//! `mediaGenInput` request (image edit, text-to-video, image-to-video), follow the NDJSON stream to the
//! final media URLs, then download them with the same account's cookie.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;

use crate::jobs::{EditJob, InputImage, ProgressSink, ProgressSlots, VideoJob};
use crate::media::UpstreamOrigin;
use crate::upstream::assets::{Asset, VideoAssets};
use crate::upstream::error::UpstreamError;
use crate::upstream::grok_web::ndjson::{Frame, FrameDecoder};
use crate::upstream::grok_web::wire::{self, ConversationEvent};
use crate::upstream::grok_web::{Account, GrokWebClient, classify};
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
    /// Final image URL (and asset id) by position.
    finals: BTreeMap<u32, (String, Option<String>)>,
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

/// One input image as the upstream knows it.
struct InputAsset {
    id: String,
    /// Named by the id this account gave it when it generated the image, not uploaded.
    reused: bool,
}

/// The upstream ids of a job's input images. An image this account generated (read back from the
/// media store) is named by its id instead of being uploaded again, when `reuse`; any other is
/// uploaded.
async fn input_assets(
    client: &GrokWebClient,
    account: &Account,
    images: &[InputImage],
    reuse: bool,
) -> Result<Vec<InputAsset>, UpstreamError> {
    let mut assets = Vec::with_capacity(images.len());
    for image in images {
        let asset = match image.origin.as_ref().filter(|o| reuse && o.account == account.id) {
            Some(origin) => InputAsset { id: origin.asset_id.clone(), reused: true },
            None => InputAsset { id: upload(client, account, image).await?, reused: false },
        };
        assets.push(asset);
    }
    Ok(assets)
}

/// `assets` with every reused id replaced by an upload of its image; uploads already made stay.
async fn upload_reused(
    client: &GrokWebClient,
    account: &Account,
    images: &[InputImage],
    assets: Vec<InputAsset>,
) -> Result<Vec<InputAsset>, UpstreamError> {
    let mut out = Vec::with_capacity(assets.len());
    for (image, asset) in images.iter().zip(assets) {
        out.push(match asset.reused {
            true => InputAsset { id: upload(client, account, image).await?, reused: false },
            false => asset,
        });
    }
    Ok(out)
}

fn ids(assets: &[InputAsset]) -> Vec<String> {
    assets.iter().map(|a| a.id.clone()).collect()
}

/// One edit conversation, for one image: the web app asks for one edit at a time (its side-by-side
/// pair is two takes of the same request; the first is the one it shows), so n images are n calls.
pub(super) async fn edit(
    client: &GrokWebClient,
    account: Account,
    job: &EditJob,
    slot: usize,
    progress: &ProgressSlots,
) -> Result<Asset, UpstreamError> {
    let asset_ids = ids(&input_assets(client, &account, &job.images, false).await?);
    let mut found = Found::default();
    converse(client, &account, wire::edit_request(&job.prompt, &asset_ids, job.aspect_ratio), |event| match event {
        ConversationEvent::Image(img) => {
            let index = img.image_index.unwrap_or(0);
            let pct = img.progress.unwrap_or(0.0);
            let is_final = img.is_final == Some(true) || pct >= 100.0;
            if img.moderated == Some(true) {
                found.moderated += 1;
            } else if is_final && let Some(url) = img.image_url.clone() {
                found.finals.insert(index, (url, img.asset_id()));
            }
            if index == 0 {
                progress.set(slot, pct.min(99.0));
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

    let fallback = found.fallback_urls.into_iter().find(|u| !u.contains("-part-")).map(|u| (u, None));
    let Some((url, asset_id)) = found.finals.into_values().next().or(fallback) else {
        return Err(if found.moderated > 0 {
            UpstreamError::Moderated("the upstream moderated the edited image; rephrase the prompt".into())
        } else if !found.stream_errors.is_empty() {
            classify::classify_stream_errors(&found.stream_errors)
        } else {
            UpstreamError::Protocol("the edit conversation ended without an image".into())
        });
    };
    let mut asset = client.download(&account, &url).await?;
    if !asset.content_type.starts_with("image/") {
        return Err(UpstreamError::Protocol("edited asset is not an image".into()));
    }
    asset.origin = asset_id.map(|asset_id| UpstreamOrigin { account: account.id.clone(), asset_id });
    Ok(asset)
}

/// What a video stream told us before it ended.
#[derive(Default)]
struct VideoStream {
    /// The media post (or, failing that, the video id): once known, the upstream is making the video.
    post: Option<String>,
    video_url: Option<String>,
    thumbnail_url: Option<String>,
    attachments: Vec<String>,
    moderated: bool,
    stream_errors: Vec<String>,
}

/// `root`: the first post of the chain an extension continues, journaled with the new post
/// (`post@root`) so a video collected after a restart can still be extended as part of its chain.
async fn stream_video(
    client: &GrokWebClient,
    account: &Account,
    body: serde_json::Value,
    sink: &ProgressSink,
    root: Option<&str>,
) -> (VideoStream, Result<(), UpstreamError>) {
    let mut seen = VideoStream::default();
    let streamed = converse(client, account, body, |event| match event {
        ConversationEvent::Video(v) => {
            if seen.post.is_none()
                && let Some(post) =
                    v.video_post_id.clone().or_else(|| v.video_id.clone()).or_else(|| v.asset_id.clone())
            {
                // Journaled with the task: after a restart the video is collected, not made again.
                let video = VideoRef { post: post.clone(), root: root.map(str::to_owned) };
                sink.submitted(&format!("{RESUME_PREFIX}{}:{}", account.id, video.asset_id()));
                seen.post = Some(post);
            }
            if let Some(p) = v.progress {
                // 100 is the runner's to say, once the file is stored.
                sink.progress((p.clamp(0.0, 100.0) as u8).min(99));
            }
            if v.moderated == Some(true) {
                seen.moderated = true;
            }
            if v.thumbnail_image_url.is_some() {
                seen.thumbnail_url = v.thumbnail_image_url;
            }
            if v.video_url.is_some() {
                seen.video_url = v.video_url;
                // The final URL is the result: take it now rather than wait for a stream that may
                // stay open, or die, after it.
                return Flow::Done;
            }
            Flow::More
        }
        ConversationEvent::ModelResponse { file_attachments, stream_errors, .. } => {
            seen.attachments.extend(file_attachments);
            seen.stream_errors.extend(stream_errors);
            Flow::More
        }
        _ => Flow::More,
    })
    .await;
    (seen, streamed)
}

/// Prefix of the upstream reference a grok.com video is journaled under: `grok-web:<token id>:<post>`.
pub(super) const RESUME_PREFIX: &str = "grok-web:";

/// A grok.com video as its media origin names it (`UpstreamOrigin::asset_id`): its post, and the first
/// post of its chain when it is an extension (`post@root`): an extension names both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct VideoRef {
    pub post: String,
    pub root: Option<String>,
}

impl VideoRef {
    pub fn parse(asset_id: &str) -> Self {
        match asset_id.split_once('@') {
            Some((post, root)) => Self { post: post.to_owned(), root: Some(root.to_owned()) },
            None => Self { post: asset_id.to_owned(), root: None },
        }
    }

    /// The first video of the chain (itself, when it is no extension).
    pub fn root(&self) -> &str {
        self.root.as_deref().unwrap_or(&self.post)
    }

    pub fn asset_id(&self) -> String {
        match &self.root {
            Some(root) => format!("{}@{root}", self.post),
            None => self.post.clone(),
        }
    }
}

/// Marks a downloaded grok.com video with its account and post, so it can be extended later.
pub(super) fn mark_origin(assets: &mut VideoAssets, account: &Account, video: VideoRef) {
    assets.video.origin =
        Some(crate::media::UpstreamOrigin { account: account.id.clone(), asset_id: video.asset_id() });
}

/// Extends a video this account made: grok.com stitches the source and `more` seconds into a new
/// post, streamed like a generation (and collected from its post the same way if the stream breaks).
pub(super) async fn extend(
    client: &GrokWebClient,
    account: Account,
    prompt: &str,
    source: &wire::ExtensionSource<'_>,
    more: u32,
    sink: &ProgressSink,
) -> Result<VideoAssets, UpstreamError> {
    let (seen, streamed) = stream_video(
        client,
        &account,
        wire::video_extension_request(prompt, source, more),
        sink,
        Some(source.original_post),
    )
    .await;
    finish(client, &account, seen, streamed, sink, Some(source.original_post)).await
}

/// Text-to-video, image-to-video (one image) or reference-to-video (several).
pub(super) async fn video(
    client: &GrokWebClient,
    account: Account,
    job: &VideoJob,
    sink: &ProgressSink,
) -> Result<VideoAssets, UpstreamError> {
    let assets = input_assets(client, &account, &job.images, true).await?;
    let (mut seen, mut streamed) =
        stream_video(client, &account, wire::video_request(job, &ids(&assets)), sink, None).await;
    if assets.iter().any(|a| a.reused) && seen.post.is_none() && matches!(streamed, Err(UpstreamError::Failed(_))) {
        // Refused before it started: the account may not take a generated image's id as an input
        // (reusing it is our reading of the web app, not a documented contract). Upload those instead.
        tracing::info!("grok.com refused reused input ids ({:?}); uploading those images instead", streamed.err());
        let assets = upload_reused(client, &account, &job.images, assets).await?;
        (seen, streamed) = stream_video(client, &account, wire::video_request(job, &ids(&assets)), sink, None).await;
    }
    finish(client, &account, seen, streamed, sink, None).await
}

/// The video a stream made: its final URL, else (the stream broke after the video started) collected
/// from its post, downloaded, and marked with its post (and chain `root`, for an extension).
async fn finish(
    client: &GrokWebClient,
    account: &Account,
    seen: VideoStream,
    streamed: Result<(), UpstreamError>,
    sink: &ProgressSink,
    root: Option<&str>,
) -> Result<VideoAssets, UpstreamError> {
    let video_url = seen
        .video_url
        .clone()
        .or_else(|| seen.attachments.iter().find(|a| a.ends_with(".mp4") || a.contains("/content")).cloned());
    let (video_url, thumbnail_url) = match (video_url, &seen.post, streamed) {
        (Some(url), _, _) => (url, seen.thumbnail_url),
        (None, None, Err(e)) => return Err(e),
        // Started, then the stream died or ended without the result: the video is still being made
        // (and billed) upstream. Collect it with this token; never make it again on another.
        (None, Some(post), result) => {
            let recoverable = match &result {
                Ok(()) => !seen.moderated && seen.stream_errors.is_empty(),
                Err(e) => {
                    matches!(e, UpstreamError::Transport(_) | UpstreamError::Timeout(_) | UpstreamError::Protocol(_))
                }
            };
            if recoverable {
                if let Err(e) = &result {
                    tracing::warn!(post = %post, "video stream broke after the video started ({e}); collecting it from its post");
                }
                recover_video(client, account, post, sink).await.map_err(|e| not_on_another_token(post, e))?
            } else {
                return Err(not_on_another_token(post, video_failure(&seen, result.err())));
            }
        }
        (None, None, Ok(())) => return Err(video_failure(&seen, None)),
    };
    let mut assets = download_video(client, account, &video_url, thumbnail_url.as_deref()).await?;
    if let Some(post) = seen.post {
        mark_origin(&mut assets, account, VideoRef { post, root: root.map(str::to_owned) });
    }
    Ok(assets)
}

/// Why a video stream gave no video.
fn video_failure(seen: &VideoStream, error: Option<UpstreamError>) -> UpstreamError {
    if seen.moderated {
        UpstreamError::Moderated("the upstream moderated the video; rephrase the prompt".into())
    } else if let Some(e) = error {
        e
    } else if !seen.stream_errors.is_empty() {
        classify::classify_stream_errors(&seen.stream_errors)
    } else {
        UpstreamError::Protocol("video stream ended without a video URL".into())
    }
}

/// A failure after the upstream started a video must not send the job to another token, which would
/// make (and bill) it a second time.
fn not_on_another_token(post: &str, e: UpstreamError) -> UpstreamError {
    const NOT_AGAIN: &str = "not re-run on another token";
    match e {
        e if e.retry_on_other_token() => {
            UpstreamError::Failed(format!("upstream video {post} failed after it started ({e}); {NOT_AGAIN}"))
        }
        UpstreamError::Failed(m) => UpstreamError::Failed(format!("{m}; {NOT_AGAIN}")),
        UpstreamError::Timeout(m) => UpstreamError::Timeout(format!("{m}; {NOT_AGAIN}")),
        e => e,
    }
}

/// Polls the video's media post (`POST /rest/media/post/get`) until it has the video, for up to
/// `grok.video_recover_secs`. Answers that did not get through are retried; a post the account cannot
/// see (4xx) is lost.
pub(super) async fn recover_video(
    client: &GrokWebClient,
    account: &Account,
    post: &str,
    sink: &ProgressSink,
) -> Result<(String, Option<String>), UpstreamError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(client.cfg.video_recover_secs);
    let mut wait = Duration::from_millis(250);
    loop {
        let body = serde_json::json!({ "id": post }).to_string();
        let last = match fetch_post(client, account, body).await {
            Ok(p) if p.moderated => {
                return Err(UpstreamError::Moderated("the upstream moderated the video; rephrase the prompt".into()));
            }
            Ok(wire::VideoPost { video_url: Some(url), thumbnail_url, .. }) => {
                sink.progress(99);
                return Ok((url, thumbnail_url));
            }
            Ok(_) => "not ready yet".to_owned(),
            Err(e) if classify::is_transient(&e) => e.to_string(),
            Err(e) => return Err(UpstreamError::Failed(format!("video {post} cannot be collected: {e}"))),
        };
        if tokio::time::Instant::now() + wait > deadline {
            return Err(UpstreamError::Timeout(format!(
                "video {post} not collected within {}s (last answer: {last})",
                client.cfg.video_recover_secs
            )));
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(2));
    }
}

async fn fetch_post(client: &GrokWebClient, account: &Account, body: String) -> Result<wire::VideoPost, UpstreamError> {
    let resp = client.signed_post(account, wire::MEDIA_POST_PATH, body, "media post").await?;
    let bytes = client.read_body(account, resp, 1024 * 1024).await?;
    serde_json::from_slice::<serde_json::Value>(&bytes).ok().as_ref().and_then(wire::parse_video_post).ok_or_else(
        || {
            UpstreamError::Protocol(format!(
                "unreadable media post: {}",
                String::from_utf8_lossy(&bytes).chars().take(120).collect::<String>()
            ))
        },
    )
}

/// Downloads a finished video and, as a nicety, its poster.
pub(super) async fn download_video(
    client: &GrokWebClient,
    account: &Account,
    video_url: &str,
    thumbnail_url: Option<&str>,
) -> Result<VideoAssets, UpstreamError> {
    let video = client.download(account, video_url).await?;
    if !video.content_type.starts_with("video/") {
        return Err(UpstreamError::Protocol("video asset is not a video".into()));
    }
    // A missing or broken poster must not fail a finished video.
    let thumbnail = match thumbnail_url {
        Some(url) => match client.download(account, url).await {
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

#[cfg(test)]
mod tests {
    use crate::upstream::grok_web::conversation::*;

    /// A video's reference names its post, and an extension's the first post of its chain too, so an
    /// extension collected after a restart can still be extended as part of its chain.
    #[test]
    fn a_video_reference_keeps_its_chain_root() {
        let first = VideoRef::parse("post-1");
        assert_eq!((first.post.as_str(), first.root(), first.asset_id()), ("post-1", "post-1", "post-1".to_owned()));
        let ext = VideoRef { post: "post-2".into(), root: Some("post-1".into()) };
        assert_eq!(ext.asset_id(), "post-2@post-1");
        assert_eq!(VideoRef::parse(&ext.asset_id()), ext);
        assert_eq!(ext.root(), "post-1");
    }
}

//! Text-to-image over the Imagine WebSocket: reset + request frames out; per-image status, preview
//! and final frames back, interleaved. An image is done when both its final blob and its
//! `completed` status have arrived, in either order.

use std::collections::HashMap;

use bytes::Bytes;
use futures_util::StreamExt;
use wreq::ws::message::Message;

use crate::jobs::{ImageJob, ProgressSlots};
use crate::media::UpstreamOrigin;
use crate::media::kind::sniff_media_type;
use crate::upstream::assets::Asset;
use crate::upstream::error::UpstreamError;
use crate::upstream::grok_web::browser::WsOpen;
use crate::upstream::grok_web::wire::{self, ImagineFrame};
use crate::upstream::grok_web::{Account, GrokWebClient, classify, decode_blob};

/// Unusable frames in a row after which the stream is given up as not speaking the protocol.
const MAX_UNUSABLE_FRAMES: usize = 32;

#[derive(Default)]
struct Slot {
    order: Option<u32>,
    final_blob: Option<Bytes>,
    final_url: Option<String>,
    /// `Some(moderated)` once the `completed` status arrived.
    completed: Option<bool>,
}

impl Slot {
    fn resolved(&self) -> bool {
        matches!(self.completed, Some(true))
            || (self.completed.is_some() && (self.final_blob.is_some() || self.final_url.is_some()))
    }
}

pub(super) async fn generate(
    client: &GrokWebClient,
    account: Account,
    job: &ImageJob,
    progress: &ProgressSlots,
) -> Result<Vec<Asset>, UpstreamError> {
    let url = format!("{}{}", client.cfg.ws_url.trim_end_matches('/'), wire::IMAGINE_WS_PATH);
    let pro = quality_mode(job);
    let origin = client.cfg.base_url.trim_end_matches('/').to_owned();
    let cookie = client.cookie(&account.token);
    let connect = client.transport.websocket(&account.egress, &url, &origin, &cookie);
    let connect_timeout = std::time::Duration::from_secs(client.cfg.connect_timeout_secs.max(1));
    let mut ws = match tokio::time::timeout(connect_timeout, connect).await {
        Err(_) => return Err(UpstreamError::Timeout("Imagine WebSocket handshake timed out".into())),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(WsOpen::Refused { status, headers })) => {
            client.transport.clearance.observe(&account.token, &headers);
            return Err(classify::classify_http(status, &headers, ""));
        }
        Ok(Ok(WsOpen::Open(ws))) => ws,
    };

    let rounds_needed = job.n.div_ceil(wire::IMAGES_PER_ROUND);
    let mut rounds_sent = 0;
    let mut slots: HashMap<String, Slot> = HashMap::new();
    let mut order_of_arrival: Vec<String> = Vec::new();
    let idle = client.idle_timeout();
    let mut wait = client.first_byte_timeout();
    let mut unusable_in_a_row = 0usize;
    loop {
        let resolved = slots.values().filter(|s| s.resolved()).count();
        let usable = slots.values().filter(|s| s.resolved() && s.completed == Some(false)).count();
        if usable >= job.n || (resolved >= rounds_needed * wire::IMAGES_PER_ROUND && rounds_sent >= rounds_needed) {
            break;
        }
        // The web app asks for two images per request; more images are more requests on this socket,
        // sent once the previous round is resolved.
        if rounds_sent < rounds_needed && resolved >= rounds_sent * wire::IMAGES_PER_ROUND {
            let request = wire::imagine_request(
                &job.prompt,
                job.aspect_ratio,
                wire::IMAGES_PER_ROUND,
                client.cfg.enable_nsfw,
                pro,
            );
            for frame in [wire::imagine_reset(), request] {
                ws.send(Message::text(frame.to_string()))
                    .await
                    .map_err(|e| UpstreamError::Transport(format!("Imagine WebSocket send: {e}")))?;
            }
            rounds_sent += 1;
            wait = client.first_byte_timeout();
        }
        let msg = match tokio::time::timeout(wait, ws.next()).await {
            Err(_) => return Err(UpstreamError::Timeout(format!("no Imagine frame for {}s", wait.as_secs()))),
            Ok(None) | Ok(Some(Ok(Message::Close(_)))) => {
                return Err(UpstreamError::Protocol("Imagine stream closed before every image was final".into()));
            }
            Ok(Some(Err(e))) => return Err(UpstreamError::Transport(format!("Imagine stream broke: {e}"))),
            Ok(Some(Ok(m))) => m,
        };
        wait = idle;
        let text = match &msg {
            Message::Text(t) => t.as_str(),
            _ => continue,
        };
        let Some(frame) = wire::parse_imagine_frame(text) else {
            // One odd frame is the upstream's business; a run of them means we no longer speak its language.
            unusable_in_a_row += 1;
            tracing::debug!(frame = %text.chars().take(120).collect::<String>(), "skipping an unusable Imagine frame");
            if unusable_in_a_row >= MAX_UNUSABLE_FRAMES {
                return Err(UpstreamError::Protocol(format!(
                    "{unusable_in_a_row} unusable Imagine frames in a row, the last: {}",
                    text.chars().take(120).collect::<String>()
                )));
            }
            continue;
        };
        unusable_in_a_row = 0;
        match frame {
            ImagineFrame::Error { err_code, err_msg } => {
                return Err(classify::classify_in_band(
                    err_code.as_deref(),
                    err_msg.as_deref().unwrap_or("Imagine error"),
                ));
            }
            ImagineFrame::Status(s) => {
                let Some(id) = s.image_id else { continue };
                let slot = slot_for(&mut slots, &mut order_of_arrival, id);
                slot.order = slot.order.or(s.order);
                if s.current_status.as_deref() == Some("completed") {
                    slot.completed = Some(s.moderated.unwrap_or(false));
                }
            }
            ImagineFrame::Image(img) => {
                let Some(id) = img.identity() else { continue };
                let index = position(&order_of_arrival, &id);
                let is_final = img.is_final();
                let slot = slot_for(&mut slots, &mut order_of_arrival, id);
                slot.order = slot.order.or(img.order);
                let index = index.unwrap_or(order_of_arrival.len() - 1);
                let pct = img.percentage_complete.unwrap_or(0.0);
                if is_final {
                    slot.final_blob = img.blob.as_deref().and_then(decode_blob);
                    slot.final_url = img.url;
                } else if let Some(blob) = img.blob.as_deref().and_then(decode_blob)
                    && index < job.n
                {
                    progress.sink().preview(index, blob);
                }
                if index < job.n {
                    progress.set(index, pct.min(99.0));
                }
            }
            ImagineFrame::Other => {}
        }
    }
    let _ = ws.close(wreq::ws::message::CloseCode::from(1000), "").await;

    let mut done: Vec<(Option<u32>, usize, String, Slot)> = order_of_arrival
        .iter()
        .enumerate()
        .filter_map(|(i, id)| slots.remove(id).map(|s| (s.order, i, id.clone(), s)))
        .filter(|(_, _, _, s)| s.resolved())
        .collect();
    let moderated = done.iter().filter(|(_, _, _, s)| s.completed == Some(true)).count();
    done.retain(|(_, _, _, s)| s.completed == Some(false));
    if done.len() < job.n {
        return Err(if moderated > 0 {
            UpstreamError::Moderated(format!(
                "the upstream moderated {moderated} of {} generated images; rephrase the prompt",
                done.len() + moderated
            ))
        } else {
            UpstreamError::Protocol(format!("the Imagine stream ended with {} of {} images", done.len(), job.n))
        });
    }
    // Rounds arrive one after another; within a round the upstream's order decides.
    done.sort_by_key(|(order, arrival, _, _)| (arrival / wire::IMAGES_PER_ROUND, order.unwrap_or(u32::MAX), *arrival));
    let mut assets = Vec::with_capacity(job.n);
    for (_, _, id, slot) in done.into_iter().take(job.n) {
        let mut asset = match (slot.final_blob, slot.final_url) {
            (Some(bytes), _) => {
                let content_type = sniff_media_type(&bytes)
                    .filter(|t| t.starts_with("image/"))
                    .ok_or_else(|| UpstreamError::Protocol("final Imagine blob is not an image".into()))?;
                Asset { bytes, content_type, origin: None }
            }
            (None, Some(url)) => client.download(&account, &url).await?,
            (None, None) => return Err(UpstreamError::Protocol("final Imagine frame without image".into())),
        };
        // The image id doubles as the account's asset id (our reading: public clients do not feed
        // Imagine images back; the video path falls back to uploading if grok.com refuses it).
        asset.origin = Some(UpstreamOrigin { account: account.id.clone(), asset_id: id });
        assets.push(asset);
    }
    Ok(assets)
}

/// Whether `job` is made in the web app's quality mode: OpenAI's `quality: high` (or `hd`) asks for it.
pub(super) fn quality_mode(job: &ImageJob) -> bool {
    job.quality == Some(crate::jobs::ImageQuality::High)
}

fn position(order: &[String], id: &str) -> Option<usize> {
    order.iter().position(|x| x == id)
}

fn slot_for<'a>(slots: &'a mut HashMap<String, Slot>, order: &mut Vec<String>, id: String) -> &'a mut Slot {
    if !slots.contains_key(&id) {
        order.push(id.clone());
    }
    slots.entry(id).or_default()
}

//! The simulated Imagine WebSocket (`/ws/imagine/listen`): per request, for every image a
//! `start_stage`, rising previews, a final blob and a `completed` status, images interleaved. Odd
//! images announce `completed` before their final frame, as the real service sometimes does.
//! Frames have the captured shape (tests/fixtures/grok-web/imagine-frames.jsonl): the identity twice
//! (`job_id` and `id`), the position twice (`grid_index` and `order`), `percentage_complete: null` on
//! the first preview, `image_id: null` on some status frames, and fields a client must ignore.

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use serde_json::{Value, json};

use super::render::{dims_for_ratio, render_png, seed_of};
use crate::sim::faults::Faults;
use crate::sim::state::{Sim, StoredAsset};

pub(super) async fn upgrade(State(sim): State<Sim>, headers: HeaderMap, ws: WebSocketUpgrade) -> Response {
    let account = match sim.account(&headers) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    if sim.remaining(&account.token) == 0 {
        return crate::sim::state::rate_limited();
    }
    ws.on_upgrade(move |socket| session(sim, account.token, socket))
}

async fn session(sim: Sim, token: String, mut socket: WebSocket) {
    while let Some(Ok(msg)) = socket.recv().await {
        let Message::Text(text) = msg else {
            if matches!(msg, Message::Close(_)) {
                return;
            }
            continue;
        };
        let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
            let _ =
                send(&mut socket, json!({"type":"error","err_code":"bad_request","err_msg":"frame is not JSON"})).await;
            continue;
        };
        let Some(content) = frame.pointer("/item/content/0") else { continue };
        match content.get("type").and_then(Value::as_str) {
            Some("input_text") => {
                if !generate(&sim, &token, content, &mut socket).await {
                    return;
                }
            }
            _ => continue, // reset and anything else: nothing to answer
        }
    }
}

async fn send(socket: &mut WebSocket, v: Value) -> bool {
    socket.send(Message::text(v.to_string())).await.is_ok()
}

/// Runs one request; false when the connection should end.
async fn generate(sim: &Sim, token: &str, content: &Value, socket: &mut WebSocket) -> bool {
    let prompt = content.get("text").and_then(Value::as_str).unwrap_or_default().to_owned();
    let props = content.get("properties").cloned().unwrap_or(Value::Null);
    let ratio = props.get("aspect_ratio").and_then(Value::as_str).unwrap_or("2:3").to_owned();
    // Without `num_generations` the real service makes a fixed batch of six.
    let n = props.get("num_generations").and_then(Value::as_u64).unwrap_or(6).clamp(1, 10) as usize;
    let faults = Faults::parse(&prompt);
    let delay = sim.cfg.frame_delay + faults.slow.unwrap_or_default();

    if sim.product_exhausted(token, "image") {
        return send(
            socket,
            json!({"type":"error","err_code":"RESOURCE_EXHAUSTED","err_msg":"You have reached your usage limit for image generation."}),
        )
        .await;
    }
    if faults.rate_limit || !sim.take_quota(token) {
        return send(socket, json!({"type":"error","err_code":"rate_limit_exceeded","err_msg":"Too many requests"}))
            .await;
    }
    if faults.cloudflare {
        return send(socket, json!({"type":"error","err_code":"403","err_msg":"Request rejected by anti-bot rules."}))
            .await;
    }
    if faults.garbage {
        // One odd frame is skipped by a tolerant client; a run of them is a protocol it does not speak.
        for _ in 0..64 {
            if socket.send(Message::text("<html><body>502 Bad Gateway</body></html>")).await.is_err() {
                return false;
            }
        }
        return false;
    }

    let request_id = content.get("requestId").and_then(Value::as_str).unwrap_or_default().to_owned();
    let (w, h) = dims_for_ratio(&ratio, sim.cfg.image_long_side);
    let ids: Vec<String> = (0..n).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let public_url = |id: &str| format!("{}/imagine-public/images/{id}.png", sim.base_url);
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);

    for (order, id) in ids.iter().enumerate() {
        tokio::time::sleep(delay).await;
        // The status frame's image_id is sometimes null; job_id always names the image.
        let image_id = if order % 2 == 0 { json!(id) } else { Value::Null };
        if !send(
            socket,
            json!({"type":"json","current_status":"start_stage","job_id":id,"image_id":image_id,"order":order,
                   "width":w,"height":h,"model_name":"imagine_x_1"}),
        )
        .await
        {
            return false;
        }
    }
    let image_frame = |id: &str, order: usize, blob: String, pct: Value| {
        json!({"type":"image","blob":blob,"job_id":id,"grid_index":order,"is_alteration":false,"order":order,
               "section_id":0,"request_id":request_id,"url":public_url(id),"id":id,"prompt":prompt,
               "full_prompt":format!("{prompt}, detailed"),"percentage_complete":pct,"model_name":"imagine_x_1",
               "suggested_moderation_rule":"MODERATION_RULE_DEFAULT","r_rated":false})
    };
    // The first preview has no percentage yet (null), the second says 50.
    for (stage, pct) in [(0usize, Value::Null), (1, json!(50.0))] {
        for (order, id) in ids.iter().enumerate() {
            tokio::time::sleep(delay).await;
            let seed = seed_of(&[prompt.as_bytes(), &order.to_le_bytes()]);
            let preview = render_png(&seed, (w / 4).max(8), (h / 4).max(8), 0.25 + stage as f32 * 0.25);
            let frame = image_frame(id, order, b64(&preview), pct.clone());
            if !send(socket, frame).await {
                return false;
            }
        }
        if stage == 0 && faults.disconnect {
            // Drop the socket without a close frame, like a reset connection.
            return false;
        }
        if stage == 0 && faults.fail {
            return send(
                socket,
                json!({"type":"error","err_code":"internal_error","err_msg":"image generation failed"}),
            )
            .await;
        }
    }
    for (order, id) in ids.iter().enumerate() {
        tokio::time::sleep(delay).await;
        let completed = json!({"type":"json","current_status":"completed","job_id":id,"image_id":id,"order":order,
                               "moderated":faults.moderated,"r_rated":false});
        if faults.moderated {
            if !send(socket, completed).await {
                return false;
            }
            continue;
        }
        let seed = seed_of(&[prompt.as_bytes(), &order.to_le_bytes()]);
        let png = if sim.flagged(token) { super::render::canned_png() } else { Bytes::from(render_png(&seed, w, h, 1.0)) };
        sim.public_images.put(
            format!("{id}.png"),
            StoredAsset { owner: String::new(), content_type: "image/png", bytes: png.clone() },
        );
        // The image is also the account's own asset: its id can be fed back (e.g. image-to-video).
        let user = crate::sim::state::user_id(token);
        let path = format!("users/{user}/generated/{id}/image.png");
        sim.assets.put(path.clone(), StoredAsset { owner: user, content_type: "image/png", bytes: png.clone() });
        sim.uploads.insert(id.clone(), path);
        let final_frame = image_frame(id, order, b64(&png), json!(100.0));
        let frames = if order % 2 == 1 { [completed, final_frame] } else { [final_frame, completed] };
        for f in frames {
            if !send(socket, f).await {
                return false;
            }
        }
    }
    true
}

//! The video APIs the ecosystem speaks, on our task store: OpenAI's Videos API (`/v1/videos`) and xAI's
//! (`/v1/videos/generations` + `GET /v1/videos/{request_id}`), each answered only in its own shape,
//! with OpenAI's webhook event names on callbacks. The xAI shape is driven by this gateway's own xAI
//! client, pointed at the gateway.

mod common;

use std::time::{Duration, Instant};

use common::webhooks::{receiver, verify};
use common::*;
use serde_json::{Value, json};

async fn create(h: &Harness, body: Value) -> (u16, Value) {
    let (status, _, body) = split(h.post("/v1/videos").json(&body).send().await.unwrap()).await;
    (status, body)
}

async fn retrieve(h: &Harness, id: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    split(h.get(&format!("/v1/videos/{id}")).send().await.unwrap()).await
}

/// Polls like `client.videos.poll`: until completed or failed.
async fn wait_video(h: &Harness, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = -1i64;
    loop {
        let (status, headers, v) = retrieve(h, id).await;
        assert_eq!(status, 200, "{v}");
        let progress = v["progress"].as_i64().unwrap();
        assert!(progress >= last, "progress never goes back: {last} → {progress}");
        last = progress;
        match v["status"].as_str().unwrap() {
            "completed" | "failed" => return v,
            "queued" | "in_progress" => assert!(headers.contains_key("openai-poll-after-ms")),
            other => panic!("not an OpenAI status: {other}"),
        }
        assert!(Instant::now() < deadline, "video {id} never finished: {v}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

#[tokio::test]
async fn openai_video_lifecycle_create_poll_download_list_delete() {
    let h = start().await;
    let (status, v) = create(
        &h,
        json!({"model": "grok-imagine-video", "prompt": "a lighthouse", "seconds": "8",
                                          "size": "1280x720"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("video_"), "{id}");
    assert_eq!((v["object"].as_str(), v["status"].as_str()), (Some("video"), Some("queued")));
    assert_eq!((v["seconds"].as_str(), v["size"].as_str()), (Some("8"), Some("1280x720")));
    assert_eq!(v["model"], "grok-imagine-1.0-video");
    assert_eq!(v["prompt"], "a lighthouse");
    assert!(v["created_at"].as_u64().is_some() && v["completed_at"].is_null() && v["error"].is_null());

    let done = wait_video(&h, &id).await;
    assert_eq!((done["status"].as_str(), done["progress"].as_u64()), (Some("completed"), Some(100)), "{done}");
    assert!(done["completed_at"].as_u64() >= done["created_at"].as_u64());

    // The bytes come from /content itself (a relay needs no second hop), with ranges.
    let r = h.get(&format!("/v1/videos/{id}/content")).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["content-type"].to_str().unwrap()), (200, "video/mp4"));
    let full = r.bytes().await.unwrap();
    assert!((mp4_duration_secs(&full) - 10.0).abs() < 0.5 || (mp4_duration_secs(&full) - 8.0).abs() < 0.5);
    let r =
        h.get(&format!("/v1/videos/{id}/content?variant=video")).header("range", "bytes=0-99").send().await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap(), full.slice(..100));
    let thumb = h.get(&format!("/v1/videos/{id}/content?variant=thumbnail")).send().await.unwrap();
    if is_xai() {
        assert_eq!(thumb.status(), 404, "xAI sends no poster");
    } else {
        assert_eq!(thumb.headers()["content-type"], "image/png");
    }
    // The key is needed.
    let anon = h.http.get(h.url(&format!("/v1/videos/{id}/content"))).send().await.unwrap();
    assert_eq!(anon.status(), 401);

    let (_, second) = create(&h, json!({"prompt": "a second one"})).await;
    let second_id = second["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (second["seconds"].as_str(), second["size"].as_str()),
        (Some("4"), Some("720x1280")),
        "OpenAI's defaults"
    );
    let (_, _, list) = split(h.get("/v1/videos?limit=1").send().await.unwrap()).await;
    assert_eq!(list["object"], "list");
    assert_eq!(list["data"][0]["id"], second_id.as_str(), "newest first");
    assert_eq!(list["has_more"], true);
    let (_, _, next) = split(h.get(&format!("/v1/videos?limit=5&after={second_id}")).send().await.unwrap()).await;
    assert_eq!(next["data"][0]["id"], id.as_str());
    let (_, _, asc) = split(h.get("/v1/videos?order=asc").send().await.unwrap()).await;
    assert_eq!((asc["first_id"].as_str(), asc["last_id"].as_str()), (Some(id.as_str()), Some(second_id.as_str())));
    // Tasks of the other APIs are not listed here, and these are not tasks of the task endpoints.
    let (_, _, native) = split(h.get(&format!("/v1/video/tasks/{id}")).send().await.unwrap()).await;
    assert_eq!(native["code"], 404);

    let (status, _, deleted) =
        split(h.http.delete(h.url(&format!("/v1/videos/{id}"))).bearer_auth(KEY).send().await.unwrap()).await;
    assert_eq!((status, deleted), (200, json!({"id": id, "object": "video.deleted", "deleted": true})));
    assert_eq!(retrieve(&h, &id).await.0, 404);
}

#[tokio::test]
async fn an_idempotency_key_returns_the_first_video() {
    let h = start().await;
    let send = |body: Value| h.post("/v1/videos").header("idempotency-key", "once-42").json(&body).send();
    let (_, _, first) = split(send(json!({"prompt": "waves"})).await.unwrap()).await;
    let (status, _, again) = split(send(json!({"prompt": "waves"})).await.unwrap()).await;
    assert_eq!((status, &again["id"]), (200, &first["id"]), "{again}");
    let (status, _, other) = split(send(json!({"prompt": "another"})).await.unwrap()).await;
    assert_eq!((status, other["error"]["code"].as_str()), (422, Some("idempotency_key_reused")), "{other}");
}

#[tokio::test]
async fn openai_create_takes_multipart_with_a_reference_image() {
    let h = start().await;
    let form = reqwest::multipart::Form::new()
        .text("model", "grok-imagine-1.0-video")
        .text("prompt", "the fox runs")
        .text("seconds", "4")
        .text("size", "720x1280")
        .part("input_reference", png_part("ref.png"));
    let (status, _, v) = split(h.post("/v1/videos").multipart(form).send().await.unwrap()).await;
    assert_eq!(status, 200, "{v}");
    let done = wait_video(&h, v["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "completed", "{done}");
    // The reference may also be a URL (here a data URL), as `input_reference[image_url]`.
    let data = format!(
        "data:image/png;base64,{}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, sample_png())
    );
    let form = reqwest::multipart::Form::new().text("prompt", "it runs").text("input_reference[image_url]", data);
    let (status, _, v) = split(h.post("/v1/videos").multipart(form).send().await.unwrap()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(wait_video(&h, v["id"].as_str().unwrap()).await["status"], "completed");
}

#[tokio::test]
async fn openai_requests_we_cannot_honour_are_400s_naming_what_is_allowed() {
    let h = start().await;
    for (body, param, needle) in [
        (json!({"prompt": "x", "model": "sora-2"}), "model", "grok-imagine-1.0-video"),
        (json!({"prompt": "x", "size": "1920x1080"}), "size", "1280x720"),
        (json!({"prompt": "x", "seconds": "20"}), "seconds", "1 to 15"),
        (json!({"prompt": "x", "input_reference": {"file_id": "file_1"}}), "", "file store"),
    ] {
        let (status, v) = create(&h, body.clone()).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(needle), "{body}: {v}");
        if !param.is_empty() {
            assert_eq!(v["error"]["param"], param, "{body}");
        }
    }
    let (status, v) = create(&h, json!({"seconds": "4"})).await;
    assert_eq!((status, v["error"]["param"].as_str()), (422, Some("prompt")), "{v}");
    for path in ["/v1/videos/video_x/remix", "/v1/videos/edits", "/v1/videos/extensions", "/v1/videos/characters"] {
        let (status, _, v) = split(h.post(path).json(&json!({"prompt": "x"})).send().await.unwrap()).await;
        assert_eq!((status, v["error"]["code"].as_str()), (400, Some("unsupported")), "{path}: {v}");
    }
    // Content before completion: 404 in OpenAI's shape.
    let (_, v) = create(&h, json!({"prompt": "slow [sim:slow=200]"})).await;
    let (status, _, e) =
        split(h.get(&format!("/v1/videos/{}/content", v["id"].as_str().unwrap())).send().await.unwrap()).await;
    assert_eq!((status, e["error"]["type"].as_str()), (404, Some("not_found_error")), "{e}");
    // Someone else's video does not exist for this key.
    let other = h
        .http
        .get(h.url(&format!("/v1/videos/{}", v["id"].as_str().unwrap())))
        .bearer_auth(OTHER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
}

#[tokio::test]
async fn openai_failures_carry_an_error_object() {
    let h = start().await;
    let (_, v) = create(&h, json!({"prompt": "x [sim:moderated]"})).await;
    let done = wait_video(&h, v["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["error"]["code"], "content_policy_violation", "{done}");
    assert!(done["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn openai_tasks_call_back_with_openais_event_names() {
    let (rx, hook) = receiver(vec![]).await;
    let h = builder()
        .config(|c| {
            common::webhooks::to_loopback(c);
        })
        .start()
        .await;
    let (_, ok) = create(&h, json!({"prompt": "waves", "callback_url": hook})).await;
    let (_, bad) = create(&h, json!({"prompt": "waves [sim:fail]", "callback_url": hook})).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while rx.got.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "callbacks never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = rx.got.lock().unwrap().clone();
    let mut events: Vec<Value> = got
        .iter()
        .map(|(headers, body)| {
            assert!(verify(headers, body), "Standard Webhooks signature");
            serde_json::from_slice(body).unwrap()
        })
        .collect();
    events.sort_by_key(|e| e["type"].as_str().unwrap().to_owned());
    assert_eq!((events[0]["type"].as_str(), &events[0]["data"]["id"]), (Some("video.completed"), &ok["id"]));
    assert_eq!((events[1]["type"].as_str(), &events[1]["data"]["id"]), (Some("video.failed"), &bad["id"]));
    assert_eq!(events[0]["object"], "event");
    assert!(events[0]["id"].as_str().unwrap().starts_with("evt_"));
}

/// The gateway's own xAI client, aimed at the gateway: a client written for xAI works unchanged.
fn xai_client(h: &Harness) -> grok2api::upstream::xai::XaiClient {
    let cfg = grok2api::config::XaiConfig {
        api_key: Some(KEY.into()),
        base_url: h.base.clone(),
        poll_interval_ms: 20,
        ..Default::default()
    };
    grok2api::upstream::xai::XaiClient::new(cfg, Default::default()).unwrap()
}

#[tokio::test]
async fn an_xai_client_creates_and_polls_through_our_xai_shape() {
    let h = start().await;
    let job = grok2api::jobs::VideoJob {
        prompt: "a kite over the dunes".into(),
        aspect_ratio: "9:16",
        duration: 6,
        resolution: "720p",
        preset: grok2api::jobs::VideoPreset::Normal,
        images: Vec::new(),
    };
    let sink = grok2api::jobs::ProgressSink::none();
    let made = xai_client(&h).generate_video(&job, &sink).await.unwrap();
    assert_eq!(made.video.content_type, "video/mp4");
    assert!((mp4_duration_secs(&made.video.bytes) - 6.0).abs() < 0.5);

    // Raw: 202 while pending, then 200 `done` with the video.
    let (status, _, created) = split(
        h.post("/v1/videos/generations")
            .json(&json!({"prompt": "slow [sim:slow=100]", "duration": 6}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let id = created["request_id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 36, "xAI request ids are UUIDs: {id}");
    let (status, _, pending) = retrieve(&h, &id).await;
    assert_eq!((status, pending["status"].as_str()), (202, Some("pending")), "{pending}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let done = loop {
        let (status, _, v) = retrieve(&h, &id).await;
        if status == 200 {
            break v;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(30)).await;
    };
    assert_eq!((done["status"].as_str(), done["video"]["duration"].as_u64()), (Some("done"), Some(6)), "{done}");
    assert_eq!(done["video"]["respect_moderation"], true);
    // Never shown in the OpenAI shape, never listed there.
    assert!(done.get("object").is_none());
    let (_, _, list) = split(h.get("/v1/videos").send().await.unwrap()).await;
    assert!(list["data"].as_array().unwrap().is_empty(), "{list}");
}

#[tokio::test]
async fn xai_failures_and_moderation_read_as_xai_reports_them() {
    let h = start().await;
    let job = |prompt: &str| grok2api::jobs::VideoJob {
        prompt: prompt.into(),
        aspect_ratio: "16:9",
        duration: 6,
        resolution: "480p",
        preset: grok2api::jobs::VideoPreset::Normal,
        images: Vec::new(),
    };
    let sink = grok2api::jobs::ProgressSink::none();
    let client = xai_client(&h);
    let moderated = client.generate_video(&job("x [sim:moderated]"), &sink).await.unwrap_err();
    assert!(matches!(moderated, grok2api::upstream::UpstreamError::Moderated(_)), "{moderated:?}");
    let failed = client.generate_video(&job("x [sim:fail]"), &sink).await.unwrap_err();
    assert!(failed.to_string().contains("upstream_error"), "{failed}");
    let (status, _, e) = split(
        h.post("/v1/videos/generations").json(&json!({"prompt": "x", "aspect_ratio": "4:3"})).send().await.unwrap(),
    )
    .await;
    assert_eq!((status, e["error"]["param"].as_str()), (400, Some("aspect_ratio")), "{e}");
}

//! Async tasks end to end (contract §4, §5): lifecycle with rising progress, results, failures,
//! ownership, 409-then-200, cancel, TTL, queue limits, idempotency, listing, and signed callbacks to
//! a local receiver.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::webhooks::{SECRET, receiver, verify};
use common::*;
use serde_json::{Value, json};

fn tasks_builder() -> Builder {
    builder().config(|c| {
        c.callbacks.secret = Some(SECRET.into());
        c.callbacks.retry_delays_secs = vec![0.05, 0.05, 0.05];
    })
}

fn video_body(prompt: &str) -> Value {
    json!({"model": "grok-imagine-1.0-video", "messages": [{"role": "user", "content": prompt}],
           "video_config": {"aspect_ratio": "16:9", "video_length": 6}})
}

fn image_body(prompt: &str) -> Value {
    json!({"model": "grok-imagine-1.0", "prompt": prompt, "n": 2, "size": "1024x1024"})
}

async fn create(h: &Harness, path: &str, body: &Value) -> (u16, reqwest::header::HeaderMap, Value) {
    split(h.post(path).json(body).send().await.unwrap()).await
}

async fn create_ok(h: &Harness, path: &str, body: &Value) -> String {
    let (status, headers, resp) = create(h, path, body).await;
    assert_eq!(status, 202, "{resp}");
    assert_eq!(resp["code"], 202);
    assert_eq!(resp["message"], "task accepted");
    let id = resp["data"]["taskId"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32, "128-bit hex id");
    let kind = if path.contains("video") { "video" } else { "images" };
    assert_eq!(headers["location"], format!("/v1/{kind}/tasks/{id}").as_str());
    assert_eq!(headers["operation-location"], format!("/v1/{kind}/tasks/{id}/result").as_str());
    id
}

async fn status(h: &Harness, kind: &str, id: &str) -> (u16, Value) {
    let (s, _, body) = split(h.get(&format!("/v1/{kind}/tasks/{id}")).send().await.unwrap()).await;
    assert_eq!(body["code"], s, "envelope code must equal the HTTP status");
    (s, body)
}

/// Polls until terminal; returns the final data and every (status, progress) seen.
async fn wait_done(h: &Harness, kind: &str, id: &str) -> (Value, Vec<(String, u64)>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        let (code, body) = status(h, kind, id).await;
        assert_eq!(code, 200, "{body}");
        let data = body["data"].clone();
        let st = data["status"].as_str().unwrap().to_owned();
        seen.push((st.clone(), data["progress"].as_u64().unwrap()));
        if st == "success" || st == "failed" {
            return (data, seen);
        }
        assert!(Instant::now() < deadline, "task {id} never finished: {seen:?}");
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}

fn assert_progress_rules(seen: &[(String, u64)]) {
    let mut last = 0;
    for (st, p) in seen {
        assert!(*p >= last, "progress went backwards: {seen:?}");
        last = *p;
        if st != "success" {
            assert!(*p < 100, "100 only on success: {seen:?}");
        }
    }
}

#[tokio::test]
async fn image_task_lifecycle_with_rising_progress() {
    let h = tasks_builder().start().await;
    let id = create_ok(&h, "/v1/images/generations/async", &image_body("a fox [sim:slow=40]")).await;
    let (data, seen) = wait_done(&h, "images", &id).await;
    assert_eq!(data["status"], "success", "{data}");
    assert_eq!(data["progress"], 100);
    // grok.com reports image progress as it renders; the xAI image API answers in one piece.
    if !is_xai() {
        assert!(seen.iter().any(|(s, p)| s == "processing" && *p > 0 && *p < 100), "no rising progress seen: {seen:?}");
    }
    assert_progress_rules(&seen);
    assert_eq!(data["result"]["format"], "url");
    let images = data["result"]["images"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    for url in images {
        let bytes = h.http.get(url.as_str().unwrap()).send().await.unwrap().bytes().await.unwrap();
        png_dims(&bytes);
    }
    assert!(data["createdAt"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn video_task_lifecycle_via_both_paths_and_bare_prompt() {
    let h = tasks_builder().start().await;
    let bare = json!({"model": "grok-imagine-video", "prompt": "waves [sim:slow=30]", "video_length": 10, "aspect_ratio": "9:16"});
    for (path, body, secs) in
        [("/v1/video/generations/async", video_body("sunset [sim:slow=30]"), 6.0), ("/v1/video/tasks", bare, 10.0)]
    {
        let id = create_ok(&h, path, &body).await;
        let (data, seen) = wait_done(&h, "video", &id).await;
        assert_eq!(data["status"], "success", "{data}");
        assert_progress_rules(&seen);
        assert!(seen.iter().filter(|(s, _)| s == "processing").count() >= 2, "{seen:?}");
        let result = &data["result"];
        assert_eq!(result["duration"], secs as u64);
        let mp4 = h.http.get(result["downloadUrl"].as_str().unwrap()).send().await.unwrap();
        assert_eq!(mp4.headers()["content-type"], "video/mp4");
        assert!((mp4_duration_secs(&mp4.bytes().await.unwrap()) - secs).abs() < 0.5);
        if !is_xai() {
            let thumb = h.http.get(result["thumbnailUrl"].as_str().unwrap()).send().await.unwrap();
            png_dims(&thumb.bytes().await.unwrap());
        }
    }
}

#[tokio::test]
async fn b64_image_task_returns_inline_pngs() {
    let h = tasks_builder().start().await;
    let mut body = image_body("a fox");
    body["response_format"] = json!("b64_json");
    body["stream"] = json!(true); // accepted and ignored
    let id = create_ok(&h, "/v1/images/tasks", &body).await;
    let (data, _) = wait_done(&h, "images", &id).await;
    assert_eq!(data["result"]["format"], "b64_json");
    for img in data["result"]["images"].as_array().unwrap() {
        png_dims(&base64::engine::general_purpose::STANDARD.decode(img.as_str().unwrap()).unwrap());
    }
}

#[tokio::test]
async fn result_is_409_with_retry_after_until_finished() {
    let h = tasks_builder().start().await;
    let id = create_ok(&h, "/v1/video/tasks", &video_body("slow [sim:slow=60]")).await;
    let r = h.get(&format!("/v1/video/tasks/{id}/result")).send().await.unwrap();
    assert_eq!(r.status(), 409);
    assert!(r.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], 409);
    assert_eq!(body["message"], "task not finished");
    assert!(["pending", "processing"].contains(&body["data"]["status"].as_str().unwrap()));
    wait_done(&h, "video", &id).await;
    let (s, _, body) = split(h.get(&format!("/v1/video/tasks/{id}/result")).send().await.unwrap()).await;
    assert_eq!((s, body["code"].as_u64()), (200, Some(200)));
    assert_eq!(body["data"]["status"], "success");
}

#[tokio::test]
async fn upstream_faults_fail_the_task_with_a_reason() {
    let h = tasks_builder().start().await;
    for (token, code) in [
        ("[sim:fail]", "upstream_error"),
        ("[sim:garbage]", "upstream_bad_response"),
        ("[sim:moderated]", "content_policy_violation"),
        ("[sim:cloudflare]", "upstream_challenge"),
        ("[sim:disconnect] [sim:vanish]", ""),
    ] {
        for (path, kind, body) in [
            ("/v1/images/tasks", "images", image_body(&format!("x {token}"))),
            ("/v1/video/tasks", "video", video_body(&format!("x {token}"))),
        ] {
            let id = create_ok(&h, path, &body).await;
            let (data, seen) = wait_done(&h, kind, &id).await;
            assert_eq!(data["status"], "failed", "{token} {kind}: {data}");
            assert!(data["errorMsg"].as_str().is_some_and(|m| !m.is_empty()), "{data}");
            if !code.is_empty() {
                assert_eq!(data["errorCode"], code, "{token} {kind}");
            }
            assert!(data.get("result").is_none());
            assert!(seen.iter().all(|(_, p)| *p < 100));
        }
    }
    let (s, body) = status(&h, "video", &create_ok(&h, "/v1/video/tasks", &video_body("fine")).await).await;
    assert_eq!(s, 200, "{body}");
}

#[tokio::test]
async fn unknown_and_foreign_tasks_are_404() {
    let h = tasks_builder().start().await;
    let id = create_ok(&h, "/v1/video/tasks", &video_body("mine")).await;
    for path in [
        "/v1/video/tasks/0123456789abcdef0123456789abcdef",
        "/v1/video/tasks/not-exist",
        &format!("/v1/images/tasks/{id}"),
    ] {
        let (s, _, body) = split(h.get(path).send().await.unwrap()).await;
        assert_eq!((s, body["code"].as_u64(), &body["data"]), (404, Some(404), &Value::Null), "{path}");
    }
    for req in [
        h.http.get(h.url(&format!("/v1/video/tasks/{id}"))),
        h.http.get(h.url(&format!("/v1/video/tasks/{id}/result"))),
        h.http.delete(h.url(&format!("/v1/video/tasks/{id}"))),
    ] {
        let (s, _, body) = split(req.bearer_auth(OTHER_KEY).send().await.unwrap()).await;
        assert_eq!((s, body["code"].as_u64()), (404, Some(404)), "another key must not see the task");
    }
    let (s, _, body) = split(h.http.get(h.url(&format!("/v1/video/tasks/{id}"))).send().await.unwrap()).await;
    assert_eq!((s, body["code"].as_u64(), &body["data"]), (401, Some(401), &Value::Null));
}

#[tokio::test]
async fn public_task_reads_skip_auth_for_status_only() {
    let h = tasks_builder().config(|c| c.auth.public_task_reads = true).start().await;
    let id = create_ok(&h, "/v1/video/tasks", &video_body("public")).await;
    let r = h.http.get(h.url(&format!("/v1/video/tasks/{id}"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(h.http.get(h.url("/v1/video/tasks")).send().await.unwrap().status(), 401);
    let r = h.http.post(h.url("/v1/video/tasks")).json(&video_body("x")).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn cancel_stops_the_upstream_and_frees_the_token() {
    let h = tasks_builder().single_slot().start().await;
    let id = create_ok(&h, "/v1/video/tasks", &video_body("long [sim:slow=500]")).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while status(&h, "video", &id).await.1["data"]["status"] != "processing" {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (s, _, body) =
        split(h.http.delete(h.url(&format!("/v1/video/tasks/{id}"))).bearer_auth(KEY).send().await.unwrap()).await;
    assert_eq!((s, body["code"].as_u64()), (200, Some(200)), "{body}");
    assert_eq!(body["data"]["status"], "failed");
    assert_eq!(body["data"]["errorCode"], "cancelled");
    let (_, body) = status(&h, "video", &id).await;
    assert_eq!(body["data"]["errorCode"], "cancelled");
    // The only token's only slot is free again: a new task runs to success at once.
    let next = create_ok(&h, "/v1/video/tasks", &video_body("next")).await;
    let (data, _) = wait_done(&h, "video", &next).await;
    assert_eq!(data["status"], "success", "{data}");
    // Deleting a finished task forgets it.
    let r = h.http.delete(h.url(&format!("/v1/video/tasks/{next}"))).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(status(&h, "video", &next).await.0, 404);
}

#[tokio::test]
async fn finished_tasks_expire_after_the_ttl() {
    let h = tasks_builder().config(|c| c.tasks.ttl_secs = 1).start().await;
    let id = create_ok(&h, "/v1/images/tasks", &image_body("short-lived")).await;
    wait_done(&h, "images", &id).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while status(&h, "images", &id).await.0 == 200 {
        assert!(Instant::now() < deadline, "task outlived its TTL");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status(&h, "images", &id).await.0, 404);
}

#[tokio::test]
async fn full_queue_is_429_and_nothing_is_left_behind() {
    let h = tasks_builder()
        .config(|c| {
            c.tasks.workers = 1;
            c.tasks.queue_capacity = 1;
        })
        .start()
        .await;
    let running = create_ok(&h, "/v1/video/tasks", &video_body("first [sim:slow=100]")).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while status(&h, "video", &running).await.1["data"]["status"] == "pending" {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let queued = create_ok(&h, "/v1/video/tasks", &video_body("second")).await;
    let (s, headers, body) = create(&h, "/v1/video/tasks", &video_body("third")).await;
    assert_eq!((s, body["code"].as_u64()), (429, Some(429)), "{body}");
    assert!(headers.contains_key("retry-after"));
    let list: Value = h.get("/v1/video/tasks").send().await.unwrap().json().await.unwrap();
    assert_eq!(list["data"]["tasks"].as_array().unwrap().len(), 2, "the refused task must not exist");
    for id in [running, queued] {
        assert_eq!(wait_done(&h, "video", &id).await.0["status"], "success");
    }
}

#[tokio::test]
async fn idempotency_key_returns_the_first_task() {
    let h = tasks_builder().start().await;
    let send = |body: Value, key: &'static str| {
        h.post("/v1/video/generations/async").header("Idempotency-Key", key).json(&body).send()
    };
    let (s1, _, a) = split(send(video_body("same"), "k-1").await.unwrap()).await;
    let (s2, h2, b) = split(send(video_body("same"), "k-1").await.unwrap()).await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(a["data"]["taskId"], b["data"]["taskId"]);
    assert!(h2["location"].to_str().unwrap().ends_with(a["data"]["taskId"].as_str().unwrap()));
    let (s3, _, c) = split(send(video_body("different"), "k-1").await.unwrap()).await;
    assert_eq!((s3, c["code"].as_u64()), (422, Some(422)), "{c}");
    let (s4, _, d) = split(send(video_body("same"), "k-2").await.unwrap()).await;
    assert_eq!(s4, 202);
    assert_ne!(d["data"]["taskId"], a["data"]["taskId"]);
    let list: Value = h.get("/v1/video/tasks").send().await.unwrap().json().await.unwrap();
    assert_eq!(list["data"]["tasks"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn listing_is_per_key_newest_first_and_paged() {
    let h = tasks_builder().start().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(create_ok(&h, "/v1/images/tasks", &image_body(&format!("p{i}"))).await);
    }
    let page: Value = h.get("/v1/images/tasks?limit=2").send().await.unwrap().json().await.unwrap();
    let got: Vec<&str> =
        page["data"]["tasks"].as_array().unwrap().iter().map(|t| t["taskId"].as_str().unwrap()).collect();
    assert_eq!(got, [ids[4].as_str(), ids[3].as_str()]);
    assert_eq!(page["data"]["hasMore"], true);
    let after = page["data"]["nextAfter"].as_str().unwrap();
    let page2: Value =
        h.get(&format!("/v1/images/tasks?limit=10&after={after}")).send().await.unwrap().json().await.unwrap();
    assert_eq!(page2["data"]["tasks"].as_array().unwrap().len(), 3);
    for id in &ids {
        wait_done(&h, "images", id).await;
    }
    let done: Value = h.get("/v1/images/tasks?status=success").send().await.unwrap().json().await.unwrap();
    assert_eq!(done["data"]["tasks"].as_array().unwrap().len(), 5);
    let none: Value =
        h.http.get(h.url("/v1/images/tasks")).bearer_auth(OTHER_KEY).send().await.unwrap().json().await.unwrap();
    assert_eq!(none["data"]["tasks"].as_array().unwrap().len(), 0);
    assert!(
        h.get("/v1/video/tasks").send().await.unwrap().json::<Value>().await.unwrap()["data"]["tasks"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    for bad in ["status=done", "limit=0", "limit=101", "limit=x"] {
        let (s, _, body) = split(h.get(&format!("/v1/images/tasks?{bad}")).send().await.unwrap()).await;
        assert_eq!((s, body["code"].as_u64()), (400, Some(400)), "{bad}");
    }
}

#[tokio::test]
async fn create_errors_use_the_envelope() {
    let h = tasks_builder().start().await;
    let cases: Vec<(reqwest::RequestBuilder, u16)> = vec![
        (
            h.post("/v1/video/tasks").json(&json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]})),
            400,
        ),
        (
            h.post("/v1/video/tasks")
                .json(&json!({"model": "grok-imagine-1.0-video", "video_config": {"video_length": 16}, "prompt": "x"})),
            400,
        ),
        (h.post("/v1/video/tasks").json(&json!({"model": "grok-imagine-1.0-video"})), 422),
        (h.post("/v1/video/tasks").json(&json!({"model": "grok-imagine-1.0-video", "messages": "x"})), 422),
        (h.post("/v1/video/tasks").header("content-type", "application/json").body("{oops"), 422),
        (h.post("/v1/video/tasks").json(&json!([1])), 422),
        (h.post("/v1/images/tasks").json(&json!({"model": "grok-imagine-1.0", "prompt": "x", "n": 50})), 400),
        (h.post("/v1/images/tasks").json(&json!({"prompt": "x"})), 422),
        (h.http.post(h.url("/v1/images/tasks")).json(&image_body("x")), 401),
    ];
    for (req, want) in cases {
        let (s, headers, body) = split(req.send().await.unwrap()).await;
        assert_eq!((s, body["code"].as_u64()), (want, Some(want as u64)), "{body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(body["data"], Value::Null);
        assert!(headers.contains_key("x-request-id"));
    }
}

// ---------- callbacks ----------

async fn wait_callback(h: &Harness, kind: &str, id: &str, attempts: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = status(h, kind, id).await;
        let cb = body["data"]["callback"].clone();
        if cb["attempts"].as_u64() >= Some(attempts)
            && (cb["delivered"] == true || cb["attempts"].as_u64() > Some(attempts))
        {
            return cb;
        }
        if cb["attempts"].as_u64() == Some(attempts) {
            return cb;
        }
        assert!(Instant::now() < deadline, "callback state never reached {attempts} attempts: {cb}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn callback_harness() -> Builder {
    tasks_builder().config(|c| c.callbacks.allow_private = true)
}

#[tokio::test]
async fn callbacks_are_signed_and_carry_the_status_data() {
    let (rx, url) = receiver(vec![]).await;
    let h = callback_harness().start().await;
    let mut body = video_body("sunset");
    body["callback_url"] = json!(url);
    let ok = create_ok(&h, "/v1/video/generations/async", &body).await;
    let mut body = image_body("x [sim:fail]");
    body["callback_url"] = json!(url);
    let failed = create_ok(&h, "/v1/images/generations/async", &body).await;
    let cb = wait_callback(&h, "video", &ok, 1).await;
    assert_eq!((cb["delivered"].as_bool(), cb["attempts"].as_u64()), (Some(true), Some(1)), "{cb}");
    wait_callback(&h, "images", &failed, 1).await;

    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    for (headers, raw) in &got {
        assert!(verify(headers, raw), "signature must verify");
        assert!(headers["webhook-id"].to_str().unwrap().starts_with("msg_"));
        let event: Value = serde_json::from_slice(raw).unwrap();
        let (_, status_body) =
            status(&h, if event["kind"] == "video" { "video" } else { "images" }, event["taskId"].as_str().unwrap())
                .await;
        let data = &event["data"];
        assert_eq!(data["taskId"], event["taskId"]);
        assert_eq!(data["status"], status_body["data"]["status"]);
        if event["taskId"] == ok.as_str() {
            assert_eq!(event["type"], "task.succeeded");
            assert_eq!(event["kind"], "video");
            assert_eq!(data["result"]["downloadUrl"], status_body["data"]["result"]["downloadUrl"]);
        } else {
            assert_eq!(event["type"], "task.failed");
            assert_eq!(event["kind"], "image");
            assert_eq!(data["errorCode"], "upstream_error");
        }
    }
    // A tampered body must not verify.
    let (headers, raw) = &got[0];
    let mut tampered = raw.clone();
    tampered[2] ^= 1;
    assert!(!verify(headers, &tampered));
}

#[tokio::test]
async fn callback_retries_after_a_500_with_the_same_id() {
    let (rx, url) = receiver(vec![500]).await;
    let h = callback_harness().start().await;
    let mut body = image_body("retry me");
    body["callback_url"] = json!(url);
    let id = create_ok(&h, "/v1/images/tasks", &body).await;
    let cb = wait_callback(&h, "images", &id, 2).await;
    assert_eq!((cb["delivered"].as_bool(), cb["attempts"].as_u64()), (Some(true), Some(2)), "{cb}");
    assert_eq!(cb["lastError"], "receiver answered HTTP 500");
    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0["webhook-id"], got[1].0["webhook-id"], "a retry is the same message");
    assert!(got.iter().all(|(hd, b)| verify(hd, b)));
}

#[tokio::test]
async fn callback_gives_up_on_410_and_after_the_schedule() {
    let (gone, gone_url) = receiver(vec![410]).await;
    let (down, down_url) = receiver(vec![503, 503, 503, 503, 503]).await;
    let h = callback_harness().start().await;
    let mut a = image_body("a");
    a["callback_url"] = json!(gone_url);
    let a = create_ok(&h, "/v1/images/tasks", &a).await;
    let mut b = image_body("b");
    b["callback_url"] = json!(down_url);
    let b = create_ok(&h, "/v1/images/tasks", &b).await;
    let cb = wait_callback(&h, "images", &a, 1).await;
    assert_eq!((cb["delivered"].as_bool(), cb["attempts"].as_u64()), (Some(false), Some(1)), "{cb}");
    let cb = wait_callback(&h, "images", &b, 4).await; // 1 try + 3 retries configured
    assert_eq!((cb["delivered"].as_bool(), cb["attempts"].as_u64()), (Some(false), Some(4)), "{cb}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(gone.got.lock().unwrap().len(), 1);
    assert_eq!(down.got.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn cancelled_task_fires_its_callback() {
    let (rx, url) = receiver(vec![]).await;
    let h = callback_harness().start().await;
    let mut body = video_body("long [sim:slow=400]");
    body["callback_url"] = json!(url);
    let id = create_ok(&h, "/v1/video/tasks", &body).await;
    h.http.delete(h.url(&format!("/v1/video/tasks/{id}"))).bearer_auth(KEY).send().await.unwrap();
    wait_callback(&h, "video", &id, 1).await;
    let got = rx.got.lock().unwrap().clone();
    let event: Value = serde_json::from_slice(&got[0].1).unwrap();
    assert_eq!(event["type"], "task.failed");
    assert_eq!(event["data"]["errorCode"], "cancelled");
}

#[tokio::test]
async fn forbidden_callback_targets_are_refused_at_create() {
    let h = tasks_builder().start().await; // callbacks.allow_private = false
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://[::1]:9/hook",
        "http://169.254.169.254/latest",
        "http://10.1.2.3/hook",
        "ftp://example.com/hook",
        "https://user:pw@example.com/hook",
        "not a url",
    ] {
        let mut body = video_body("x");
        body["callback_url"] = json!(url);
        let (s, _, resp) = create(&h, "/v1/video/tasks", &body).await;
        assert_eq!((s, resp["code"].as_u64()), (400, Some(400)), "{url}: {resp}");
        assert!(resp["message"].as_str().unwrap().contains("callback_url"), "{resp}");
    }
    let list: Value = h.get("/v1/video/tasks").send().await.unwrap().json().await.unwrap();
    assert!(list["data"]["tasks"].as_array().unwrap().is_empty(), "refused creates leave no task");

    let no_secret = builder().start().await;
    let mut body = video_body("x");
    body["callback_url"] = json!("https://example.com/hook");
    let (s, _, resp) = create(&no_secret, "/v1/video/tasks", &body).await;
    assert_eq!(s, 400, "{resp}");
}

#[tokio::test]
async fn concurrent_creates_with_one_idempotency_key_make_one_task() {
    let h = tasks_builder().start().await;
    let sends = (0..16).map(|_| {
        h.post("/v1/images/generations/async").header("Idempotency-Key", "burst-1").json(&image_body("burst")).send()
    });
    let mut ids = std::collections::HashSet::new();
    for r in futures_util::future::join_all(sends).await {
        let (s, _, body) = split(r.unwrap()).await;
        assert_eq!(s, 202, "{body}");
        ids.insert(body["data"]["taskId"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1, "every retry must get the first task");
    let list: Value = h.get("/v1/images/tasks").send().await.unwrap().json().await.unwrap();
    assert_eq!(list["data"]["tasks"].as_array().unwrap().len(), 1);
}

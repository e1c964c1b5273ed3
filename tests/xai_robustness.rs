//! The xAI upstream against answers the official API really gives: passing 5xx while a billed video
//! is polled, a billing stop worded as a 429, moderation flags on images, a wrong key URL-encoded,
//! and pending polls as 202 with or without a body. Always runs against the xAI flavor, whatever
//! `GROK2API_TEST_UPSTREAM` says.

mod common;

use std::time::{Duration, Instant};

use common::*;
use grok2api::config::UpstreamKind;
use serde_json::{Value, json};

/// The harness forced onto the xAI flavor (plain HTTP, as xAI's API has no browser-fingerprint gate).
fn xai() -> Builder {
    builder().config(|c| c.upstream.kind = UpstreamKind::Xai).sim(|s| {
        s.flavor = UpstreamKind::Xai;
        s.tls = false;
        s.frame_delay = Duration::from_millis(10);
    })
}

async fn video(h: &Harness, prompt: &str) -> (u16, Value) {
    let body = json!({"model": "grok-imagine-1.0-video", "messages": [{"role": "user", "content": prompt}],
                      "video_config": {"video_length": 6}});
    let (status, _, body) = split(h.post("/v1/chat/completions").json(&body).send().await.unwrap()).await;
    (status, body)
}

async fn sim_stats(h: &Harness) -> Value {
    reqwest::get(format!("{}/sim/stats", h.sim.base_url())).await.unwrap().json().await.unwrap()
}

async fn assert_playable(h: &Harness, body: &Value) {
    let url = body["choices"][0]["message"]["video"]["url"].as_str().unwrap_or_else(|| panic!("no video: {body}"));
    let r = h.http.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!((mp4_duration_secs(&r.bytes().await.unwrap()) - 6.0).abs() < 0.5);
}

#[tokio::test]
async fn passing_502s_while_polling_do_not_end_a_billed_video() {
    let h = xai().start().await;
    let (status, body) = video(&h, "a harbour at dawn [sim:poll-502=4]").await;
    assert_eq!(status, 200, "{body}");
    assert_playable(&h, &body).await;
    let stats = sim_stats(&h).await;
    assert_eq!(stats["video_creates"], 1, "polling retried, the create was not: {stats}");
    assert!(stats["video_polls"].as_u64().unwrap() > 4, "the 502s were polled through: {stats}");
}

#[tokio::test]
async fn poll_retries_stop_at_the_video_timeout() {
    let h = xai().config(|c| c.xai.video_timeout_secs = 2).start().await;
    let started = Instant::now();
    let (status, body) = video(&h, "a harbour at dusk [sim:poll-502=1000000]").await;
    assert_eq!((status, error_code(&body).as_str()), (504, "upstream_timeout"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("HTTP 502"), "names the last failure: {body}");
    assert!(started.elapsed() < Duration::from_secs(10), "bounded by xai.video_timeout_secs");
    assert_eq!(sim_stats(&h).await["video_creates"], 1);
}

#[tokio::test]
async fn pending_polls_are_202_with_or_without_a_body() {
    let h = xai().start().await;
    for prompt in ["a lighthouse", "a lighthouse [sim:poll-empty-202]"] {
        let (status, body) = video(&h, prompt).await;
        assert_eq!(status, 200, "{prompt}: {body}");
        assert_playable(&h, &body).await;
    }
    // Straight to xAI's poll endpoint: the pending answers really were 202, once with a body, once without.
    let http = reqwest::Client::new();
    let create = |prompt: &'static str| {
        http.post(format!("{}/v1/videos/generations", h.sim.base_url()))
            .bearer_auth("tok-alpha-0001")
            .json(&json!({"model": "grok-imagine-video", "prompt": prompt, "duration": 6}))
            .send()
    };
    for (prompt, empty) in [("slow [sim:slow=200]", false), ("slow [sim:slow=200] [sim:poll-empty-202]", true)] {
        let created: Value = create(prompt).await.unwrap().json().await.unwrap();
        let id = created["request_id"].as_str().unwrap();
        let r = http
            .get(format!("{}/v1/videos/{id}", h.sim.base_url()))
            .bearer_auth("tok-alpha-0001")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        assert_eq!(r.bytes().await.unwrap().is_empty(), empty, "{prompt}");
    }
}

#[tokio::test]
async fn out_of_credits_is_a_502_billing_error_not_a_rate_limit() {
    let h = xai().start().await;
    let (status, headers, body) =
        h.generate(json!({"model": "grok-imagine-1.0", "prompt": "a fox [sim:credits]", "n": 1})).await;
    assert_eq!((status, error_code(&body).as_str()), (502, "upstream_credits_exhausted"), "{body}");
    assert!(!headers.contains_key("retry-after"), "waiting does not help: {headers:?}");
    assert_eq!(sim_stats(&h).await["image_requests"], 1, "a billing stop is not retried");

    let (status, body) = video(&h, "a fox running [sim:credits]").await;
    assert_eq!((status, error_code(&body).as_str()), (502, "upstream_credits_exhausted"), "{body}");

    // A real rate limit stays a 429 (and is retried once).
    let (status, _, body) =
        h.generate(json!({"model": "grok-imagine-1.0", "prompt": "a fox [sim:rate-limit]", "n": 1})).await;
    assert_eq!((status, error_code(&body).as_str()), (429, "rate_limit_exceeded"), "{body}");
    assert_eq!(sim_stats(&h).await["image_requests"], 3);
}

#[tokio::test]
async fn images_flagged_by_moderation_or_withheld_are_content_policy_violations() {
    let h = xai().start().await;
    for prompt in ["a fox [sim:moderation-flag]", "a fox [sim:empty-data]"] {
        for format in ["url", "b64_json"] {
            let (status, _, body) = h
                .generate(json!({"model": "grok-imagine-1.0", "prompt": prompt, "n": 2, "response_format": format}))
                .await;
            assert_eq!((status, error_code(&body).as_str()), (400, "content_policy_violation"), "{prompt}: {body}");
        }
    }
    let (status, _, body) = h.generate(json!({"model": "grok-imagine-1.0", "prompt": "a fox", "n": 2})).await;
    assert_eq!(status, 200, "unflagged images still pass: {body}");
}

#[tokio::test]
async fn a_wrong_key_is_recognised_url_encoded_too() {
    let h = xai().credentials(&["tok-alpha-0001"], &["not-the-key"]).start().await;
    for prompt in ["a fox", "a fox [sim:key-urlencoded]"] {
        let (status, _, body) = h.generate(json!({"model": "grok-imagine-1.0", "prompt": prompt})).await;
        assert_eq!((status, error_code(&body).as_str()), (502, "upstream_auth_failed"), "{prompt}: {body}");
    }
    // The simulator really sent the encoded form.
    let r = reqwest::Client::new()
        .post(format!("{}/v1/images/generations", h.sim.base_url()))
        .bearer_auth("not-the-key")
        .json(&json!({"model": "grok-imagine-image", "prompt": "x [sim:key-urlencoded]"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("Incorrect%20API%20key"));
}

/// xAI's `expired` (its fourth status; source: xai-sdk-python proto/v6/deferred_pb2.pyi DeferredStatus,
/// docs.x.ai developers/model-capabilities/video/extension.md) ends the video as a failure naming it,
/// rather than being polled forever.
#[tokio::test]
async fn an_expired_result_ends_the_video_naming_it() {
    let h = xai().start().await;
    let (status, body) = video(&h, "a harbour at noon [sim:expired]").await;
    assert_eq!(status, 502, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("upstream_expired"), "{body}");
    assert_eq!(sim_stats(&h).await["video_creates"], 1);
}

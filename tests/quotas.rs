//! Per-product media quotas (grok.com's quota_info): a token out of video still makes images, an
//! in-band usage-limit error rests that product on that token only, and a refresh rests an exhausted
//! product until grok.com says it is back.

mod common;

use common::*;
use serde_json::{Value, json};

const ADMIN: &str = "admin-secret-key";

async fn tokens(h: &Harness) -> Value {
    h.http.get(h.url("/admin/tokens")).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap()
}

fn product<'a>(tokens: &'a Value, masked_suffix: &str, key: &str) -> &'a Value {
    let t = tokens["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["token"].as_str().unwrap().ends_with(masked_suffix))
        .unwrap();
    &t["products"][key]
}

#[tokio::test]
async fn a_token_out_of_video_rests_for_video_only() {
    if grok_web_only("a_token_out_of_video_rests_for_video_only") {
        return;
    }
    let h = builder()
        .sim(|s| {
            s.exhausted_products.insert("tok-alpha-0001".into(), vec!["video".into()]);
        })
        .config(|c| {
            c.admin.api_key = Some(ADMIN.into());
            // Only alpha at first, so the in-band error is certain to be met.
            c.grok.tokens = vec!["tok-alpha-0001".into()];
        })
        .start()
        .await;
    let video = json!({"model": "grok-imagine-video", "messages": [{"role": "user", "content": "a river"}]});
    let (status, _, body) = split(h.post("/v1/chat/completions").json(&video).send().await.unwrap()).await;
    assert_eq!(status, 429, "usage limit for video is a quota answer, not a failure: {body}");
    let t = tokens(&h).await;
    assert!(product(&t, "0001", "video")["cooldown_secs"].as_u64().is_some(), "{t}");
    assert!(product(&t, "0001", "image")["cooldown_secs"].is_null(), "images are not cooled: {t}");
    // The same token still makes images.
    let (status, _, body) = h.generate(json!({"model": "grok-imagine-image", "prompt": "a river", "n": 1})).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn in_band_usage_limit_moves_the_video_to_another_token_and_refresh_reads_next_available_at() {
    if grok_web_only("in_band_usage_limit_moves_the_video_to_another_token_and_refresh_reads_next_available_at") {
        return;
    }
    let h = builder()
        .sim(|s| {
            s.exhausted_products.insert("tok-alpha-0001".into(), vec!["video".into(), "imageEdit".into()]);
        })
        .config(|c| c.admin.api_key = Some(ADMIN.into()))
        .start()
        .await;
    for prompt in ["a river", "a road", "a bridge"] {
        let video = json!({"model": "grok-imagine-video", "messages": [{"role": "user", "content": prompt}]});
        let (status, _, body) = split(h.post("/v1/chat/completions").json(&video).send().await.unwrap()).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(h.sim.video_starts(), 3, "alpha never started a video");

    let refreshed: Value =
        h.http.post(h.url("/admin/tokens/refresh")).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
    assert_eq!(refreshed["refreshed"], 2, "{refreshed}");
    let video = product(&refreshed, "0001", "video");
    assert_eq!(video["remaining"], 0);
    let cool = video["cooldown_secs"].as_u64().unwrap();
    assert!((3000..=3600).contains(&cool), "rests until nextAvailableAt (an hour in the simulator): {cool}");
    assert!(product(&refreshed, "0001", "imageEdit")["cooldown_secs"].as_u64().is_some());
    assert_eq!(product(&refreshed, "0001", "image")["remaining"], 1_000_000);
    assert!(product(&refreshed, "0002", "video")["cooldown_secs"].is_null());
    let status =
        refreshed["data"].as_array().unwrap().iter().map(|t| t["status"].as_str().unwrap()).collect::<Vec<_>>();
    assert_eq!(status, ["active", "active"], "alpha still serves images");
}

/// Free grok.com accounts refuse videos longer than 6 s with 429 (chenyme/grok2api #969); the plan
/// shows in `/rest/rate-limits`' `auto` window (chenyme/grok2api `web/quota.go`). The gateway learns
/// each account's plan, sends long videos past the free ones, and shows the plan.
#[tokio::test]
async fn long_videos_go_past_free_accounts_to_a_paid_one() {
    if grok_web_only("grok.com account plans") {
        return;
    }
    let h = builder()
        .sim(|s| {
            s.plans.insert("tok-alpha-0001".into(), "basic".into());
            s.plans.insert("tok-bravo-0002".into(), "super".into());
        })
        .config(|c| c.admin.api_key = Some(ADMIN.into()))
        .start()
        .await;
    let r = h.http.post(h.url("/admin/tokens/refresh")).bearer_auth(ADMIN).send().await.unwrap();
    assert!(r.status().is_success());
    let t = tokens(&h).await;
    let plan = |suffix: &str| {
        t["data"].as_array().unwrap().iter().find(|t| t["token"].as_str().unwrap().ends_with(suffix)).unwrap()["plan"]
            .clone()
    };
    assert_eq!((plan("0001"), plan("0002")), (json!("basic"), json!("supergrok")), "{t}");
    for _ in 0..3 {
        let (s, task) = video_task(&h, "a river at dawn", 10).await;
        assert_eq!((s, task["status"].as_str()), (202, Some("success")), "{task}");
    }
    // The free account (first, with as much quota) was never asked for a long one: no 429 spent on it.
    let t = tokens(&h).await;
    assert!(product(&t, "0001", "video")["cooldown_secs"].is_null(), "{t}");
    let alpha = t["data"].as_array().unwrap().iter().find(|t| t["token"].as_str().unwrap().ends_with("0001")).unwrap();
    assert!(alpha["last_error"].is_null(), "{alpha}");
    // A short one may go anywhere.
    assert_eq!(video_task(&h, "a river at dawn", 6).await.1["status"], "success");
}

#[tokio::test]
async fn with_only_free_accounts_a_long_video_is_refused_up_front_naming_the_limit() {
    if grok_web_only("grok.com account plans") {
        return;
    }
    let h = builder()
        .credentials(&["tok-alpha-0001"], &["tok-alpha-0001"])
        .sim(|s| {
            s.plans.insert("tok-alpha-0001".into(), "basic".into());
        })
        .config(|c| c.admin.api_key = Some(ADMIN.into()))
        .start()
        .await;
    // Not known yet: grok.com itself refuses (429), as a free account does.
    let (s, _) = video_task(&h, "a river at dawn", 10).await;
    assert_eq!(s, 202);
    h.http.post(h.url("/admin/tokens/refresh")).bearer_auth(ADMIN).send().await.unwrap();
    // Known: a task is refused before its 202, a sync call answers the OpenAI error shape.
    let (s, body) = video_task(&h, "a river at dawn", 8).await;
    assert_eq!((s, body["code"].as_u64()), (400, Some(400)), "{body}");
    assert!(body["message"].as_str().unwrap().contains("at most 6 seconds"), "{body}");
    let chat = json!({"model": "grok-imagine-video", "messages": [{"role": "user", "content": "a river"}],
                      "video_config": {"video_length": 10}});
    let (s, _, body) = split(h.post("/v1/chat/completions").json(&chat).send().await.unwrap()).await;
    assert_eq!((s, error_code(&body).as_str()), (400, "upstream_plan_limit"), "{body}");
    // Within the limit it is served.
    let (s, task) = video_task(&h, "a river at dawn", 6).await;
    assert_eq!((s, task["status"].as_str()), (202, Some("success")), "{task}");
}

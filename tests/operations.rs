//! Operating the gateway: metrics, the admin token API, quota refresh, per-key limits, upstream
//! timeouts per phase, and auth on every /v1 route.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const ADMIN: &str = "admin-secret-key";

#[tokio::test]
async fn metrics_count_requests_upstream_calls_tasks_and_tokens() {
    let h = builder()
        .config(|c| {
            common::webhooks::to_loopback(c);
        })
        .start()
        .await;
    h.generate(json!({"model": "grok-imagine-1.0", "prompt": "a"})).await;
    h.generate(json!({"model": "grok-imagine-1.0", "prompt": "b [sim:fail]"})).await;
    h.get("/v1/models").send().await.unwrap();
    let r = h
        .post("/v1/images/tasks")
        .json(&json!({"model": "grok-imagine-1.0", "prompt": "t", "callback_url": "http://127.0.0.1:9/x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = h.http.get(h.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = r.text().await.unwrap();
    for line in [
        "grok2api_http_requests_total{route=\"/v1/images/generations\",status=\"200\"} 1",
        "grok2api_http_requests_total{route=\"/v1/images/generations\",status=\"502\"} 1",
        "grok2api_http_requests_total{route=\"/v1/models\",status=\"200\"} 1",
        "grok2api_upstream_calls_total{operation=\"image\",outcome=\"ok\"} 2",
        "grok2api_upstream_calls_total{operation=\"image\",outcome=\"failed\"} 1",
        "grok2api_tasks{state=\"success\"} 1",
        "grok2api_task_queue_depth 0",
        "grok2api_upstream_tokens{state=\"active\"} 2",
        "grok2api_callback_deliveries_total{outcome=\"retry\"} 1",
    ] {
        assert!(text.contains(line), "missing `{line}` in\n{text}");
    }
    assert!(
        text.contains("grok2api_http_request_duration_seconds_bucket{route=\"/v1/images/generations\",le=\"+Inf\"} 2")
    );

    let guarded = builder().config(|c| c.metrics.require_auth = true).start().await;
    assert_eq!(guarded.http.get(guarded.url("/metrics")).send().await.unwrap().status(), 401);
    assert_eq!(guarded.get("/metrics").send().await.unwrap().status(), 200);
    let off = builder().config(|c| c.metrics.enabled = false).start().await;
    assert_eq!(off.http.get(off.url("/metrics")).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn admin_token_api_lists_adds_removes_and_refreshes() {
    let h = builder()
        .sim(|s| {
            s.tokens.push("tok-new-0003".into());
            s.quotas.insert("tok-bravo-0002".into(), 0);
        })
        .config(|c| c.admin.api_key = Some(ADMIN.into()))
        .start()
        .await;
    let admin = |req: reqwest::RequestBuilder| req.bearer_auth(ADMIN);
    assert_eq!(h.http.get(h.url("/admin/tokens")).send().await.unwrap().status(), 401);
    assert_eq!(h.get("/admin/tokens").send().await.unwrap().status(), 401, "a client key is not an admin key");

    let list: Value = admin(h.http.get(h.url("/admin/tokens"))).send().await.unwrap().json().await.unwrap();
    let tokens = list["data"].as_array().unwrap();
    assert_eq!(tokens.len(), 2);
    assert!(!list.to_string().contains("tok-alpha-0001"), "tokens are never shown in full");

    // Refresh asks the simulator's rate-limits endpoint: bravo has no quota left and cools down.
    let refreshed: Value =
        admin(h.http.post(h.url("/admin/tokens/refresh"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(refreshed["refreshed"], 2);
    let states: Vec<(&str, Option<u64>)> = refreshed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["status"].as_str().unwrap(), t["remaining"].as_u64()))
        .collect();
    assert_eq!(states, [("active", Some(1_000_000)), ("cooling", Some(0))]);
    let ready: Value = h.http.get(h.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["tokens"]["usable"], 1);
    assert_eq!(ready["tokens"]["by_state"]["cooling"], 1);

    let added: Value = admin(h.http.post(h.url("/admin/tokens")))
        .json(&json!({"tokens": ["sso=tok-new-0003; Path=/"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(added["added"], 1);
    assert_eq!(added["data"].as_array().unwrap().len(), 3);
    let alpha = tokens[0]["id"].as_str().unwrap();
    let after: Value =
        admin(h.http.delete(h.url(&format!("/admin/tokens/{alpha}")))).send().await.unwrap().json().await.unwrap();
    assert_eq!(after["data"].as_array().unwrap().len(), 2);
    assert_eq!(admin(h.http.delete(h.url(&format!("/admin/tokens/{alpha}")))).send().await.unwrap().status(), 404);
    // Only the new token is usable now, and generation goes through it.
    let (status, _, body) = h.generate(json!({"model": "grok-imagine-1.0", "prompt": "via new token"})).await;
    assert_eq!(status, 200, "{body}");
    let bad = admin(h.http.post(h.url("/admin/tokens"))).json(&json!({"tokens": []})).send().await.unwrap();
    assert_eq!(bad.status(), 400);

    let no_admin = start().await;
    assert_eq!(no_admin.http.get(no_admin.url("/admin/tokens")).bearer_auth("x").send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn per_key_request_rate_is_limited() {
    let h = builder()
        .config(|c| {
            c.limits.requests_per_second = 2.0;
            c.limits.burst = 3;
        })
        .start()
        .await;
    for _ in 0..3 {
        assert_eq!(h.get("/v1/models").send().await.unwrap().status(), 200);
    }
    let r = h.get("/v1/models").send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    let (_, _, body) = split(r).await;
    assert_eq!(error_code(&body), "rate_limit_exceeded");
    let (s, _, body) = split(h.get("/v1/video/tasks").send().await.unwrap()).await;
    assert_eq!((s, body["code"].as_u64()), (429, Some(429)), "task endpoints answer in the envelope");
    // Another key has its own bucket.
    assert_eq!(h.http.get(h.url("/v1/models")).bearer_auth(OTHER_KEY).send().await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(h.get("/v1/models").send().await.unwrap().status(), 200, "the bucket refills");
}

#[tokio::test]
async fn per_key_concurrent_tasks_are_limited() {
    let h = builder().config(|c| c.limits.max_concurrent_tasks = 2).start().await;
    let body = json!({"model": "grok-imagine-1.0-video", "prompt": "slow [sim:slow=200]"});
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (s, _, b) = split(h.post("/v1/video/tasks").json(&body).send().await.unwrap()).await;
        assert_eq!(s, 202);
        ids.push(b["data"]["taskId"].as_str().unwrap().to_owned());
    }
    let (s, headers, b) = split(h.post("/v1/video/tasks").json(&body).send().await.unwrap()).await;
    assert_eq!((s, b["code"].as_u64()), (429, Some(429)));
    assert!(headers.contains_key("retry-after"));
    let r = h.http.post(h.url("/v1/video/tasks")).bearer_auth(OTHER_KEY).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 202, "the limit is per key");
    h.http.delete(h.url(&format!("/v1/video/tasks/{}", ids[0]))).bearer_auth(KEY).send().await.unwrap();
    let r = h.post("/v1/video/tasks").json(&body).send().await.unwrap();
    assert_eq!(r.status(), 202, "a finished task frees its place");
}

#[tokio::test]
async fn upstream_timeouts_per_phase() {
    // First byte: the simulator's first frame comes after 1.5 s, beyond the 1 s first-byte limit.
    let h = builder()
        .config(|c| {
            c.grok.first_byte_timeout_secs = 1;
            c.grok.idle_timeout_secs = 5;
        })
        .start()
        .await;
    let (s, _, body) = h.generate(json!({"model": "grok-imagine-1.0", "prompt": "x [sim:slow=1500]"})).await;
    assert_eq!((s, error_code(&body).as_str()), (504, "upstream_timeout"), "{body}");
    // Total: every frame is in time, but the whole call is not.
    let h = builder()
        .config(|c| {
            c.grok.total_timeout_secs = 1;
            c.grok.idle_timeout_secs = 5;
        })
        .start()
        .await;
    let (s, _, body) = h.generate(json!({"model": "grok-imagine-1.0", "prompt": "x [sim:slow=250]", "n": 2})).await;
    assert_eq!((s, error_code(&body).as_str()), (504, "upstream_timeout"), "{body}");
    let (s, _, _) = h.generate(json!({"model": "grok-imagine-1.0", "prompt": "fast"})).await;
    assert_eq!(s, 200);
}

/// Every /v1 route, with the methods it serves.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/models"),
    ("GET", "/v1/models/grok-imagine-1.0"),
    ("POST", "/v1/images/generations"),
    ("POST", "/v1/images/edits"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/video/generations/async"),
    ("POST", "/v1/video/tasks"),
    ("GET", "/v1/video/tasks"),
    ("POST", "/v1/images/generations/async"),
    ("POST", "/v1/images/tasks"),
    ("GET", "/v1/images/tasks"),
    ("GET", "/v1/video/tasks/0123456789abcdef0123456789abcdef"),
    ("GET", "/v1/video/tasks/0123456789abcdef0123456789abcdef/result"),
    ("DELETE", "/v1/video/tasks/0123456789abcdef0123456789abcdef"),
    ("GET", "/v1/images/tasks/0123456789abcdef0123456789abcdef"),
    ("GET", "/v1/images/tasks/0123456789abcdef0123456789abcdef/result"),
    ("DELETE", "/v1/images/tasks/0123456789abcdef0123456789abcdef"),
];

#[tokio::test]
async fn every_v1_route_rejects_a_missing_or_wrong_key() {
    let h = builder()
        .config(|c| {
            c.files.require_auth = true;
            // Wrong keys on purpose, many times over (tests/hardening.rs tests the limit on them).
            c.limits.wrong_key_burst = 10_000;
        })
        .start()
        .await;
    let mut routes: Vec<(&str, String)> = ROUTES.iter().map(|(m, p)| (*m, p.to_string())).collect();
    routes.push(("GET", "/v1/files/image/0123456789abcdef0123456789abcdef.png".into()));
    for (method, path) in routes {
        for key in [None, Some("wrong"), Some(""), Some("Bearer")] {
            let mut req = h.http.request(method.parse().unwrap(), h.url(&path)).json(&json!({}));
            if let Some(k) = key {
                req = req.header("authorization", format!("Bearer {k}"));
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 401, "{method} {path} with key {key:?}");
        }
        let r = h
            .http
            .request(method.parse().unwrap(), h.url(&path))
            .header("authorization", format!("Basic {KEY}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{method} {path}: only Bearer counts");
    }
}

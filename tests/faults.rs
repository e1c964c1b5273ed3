//! Every simulator fault, on both upstream channels (Imagine WebSocket for generations, conversation
//! stream for edits), produces its documented client-visible error — and the gateway keeps serving.

mod common;

use common::*;
use reqwest::multipart::Form;
use serde_json::json;

async fn generate(h: &Harness, prompt: &str) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    h.generate(json!({"model": "grok-imagine-1.0", "prompt": prompt, "n": 2})).await
}

async fn edit(h: &Harness, prompt: &str) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let image = png_part("in.png");
    h.edit(Form::new().text("model", "grok-imagine-1.0-edit").text("prompt", prompt.to_owned()).part("image", image))
        .await
}

/// (fault token, status, error.code) as documented in README "Errors".
const FAULTS: &[(&str, u16, &str)] = &[
    ("[sim:fail]", 502, "upstream_error"),
    ("[sim:disconnect]", 502, ""),
    ("[sim:garbage]", 502, "upstream_bad_response"),
    ("[sim:moderated]", 400, "content_policy_violation"),
    ("[sim:cloudflare]", 502, "upstream_challenge"),
    ("[sim:rate-limit]", 429, "rate_limit_exceeded"),
];

/// Each fault gives its documented status and code; after it (unless the fault cooled every token)
/// the same gateway serves the same call normally.
async fn check_faults(
    faults: &[(&str, u16, &str)],
    call: impl AsyncFn(&Harness, &str) -> (u16, reqwest::header::HeaderMap, serde_json::Value),
) {
    for &(token, status, code) in faults {
        let h = start().await;
        let (got, headers, body) = call(&h, &format!("a fox {token}")).await;
        assert_eq!(got, status, "{token}: {body}");
        let got_code = error_code(&body);
        if !code.is_empty() {
            assert_eq!(got_code, code, "{token}");
        }
        if status == 429 {
            assert!(headers.contains_key("retry-after"), "{token}: 429 needs Retry-After");
        } else {
            let (ok, _, body) = call(&h, "a fox").await;
            assert_eq!(ok, 200, "after {token}: {body}");
        }
    }
}

#[tokio::test]
async fn faults_on_generations() {
    check_faults(FAULTS, generate).await;
}

#[tokio::test]
async fn faults_on_edits() {
    check_faults(FAULTS, edit).await;
}

async fn video(h: &Harness, prompt: &str) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let body = json!({"model": "grok-imagine-1.0-video", "messages": [{"role": "user", "content": prompt}]});
    split(h.post("/v1/chat/completions").json(&body).send().await.unwrap()).await
}

/// A grok.com video whose stream broke after it started is collected from its media post (see
/// tests/video.rs); it fails only when the post is lost as well.
#[tokio::test]
async fn faults_on_video() {
    let faults: Vec<(&str, u16, &str)> = FAULTS
        .iter()
        .map(|&(token, status, code)| match token {
            "[sim:disconnect]" => ("[sim:disconnect] [sim:vanish]", status, code),
            _ => (token, status, code),
        })
        .collect();
    check_faults(&faults, video).await;
}

#[tokio::test]
async fn stalled_stream_is_504() {
    let h = builder().upstream_timeout(1).start().await;
    let (status, _, body) = generate(&h, "x [sim:slow=1500]").await;
    assert_eq!((status, error_code(&body).as_str()), (504, "upstream_timeout"), "{body}");
    let (status, _, body) = edit(&h, "x [sim:slow=1500]").await;
    assert_eq!((status, error_code(&body).as_str()), (504, "upstream_timeout"), "{body}");
    let (status, _, body) = video(&h, "x [sim:slow=1500]").await;
    assert_eq!((status, error_code(&body).as_str()), (504, "upstream_timeout"), "{body}");
}

#[tokio::test]
async fn exhausted_token_is_skipped_for_a_healthy_one() {
    if grok_web_only("exhausted_token_is_skipped_for_a_healthy_one") {
        return;
    }
    let h = builder()
        .sim(|s| {
            s.quotas.insert("tok-alpha-0001".into(), 0);
        })
        .start()
        .await;
    for _ in 0..3 {
        let (status, _, body) = generate(&h, "a fox").await;
        assert_eq!(status, 200, "{body}");
        let (status, _, body) = edit(&h, "a fox").await;
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test]
async fn all_tokens_exhausted_is_429_with_retry_after() {
    let h = builder()
        .sim(|s| {
            s.quotas.insert("tok-alpha-0001".into(), 0);
            s.quotas.insert("tok-bravo-0002".into(), 0);
        })
        .start()
        .await;
    let (status, headers, body) = generate(&h, "a fox").await;
    assert_eq!((status, error_code(&body).as_str()), (429, "rate_limit_exceeded"), "{body}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    // Both tokens now cool down: the next request fails fast without touching the upstream.
    let (status, _, _) = edit(&h, "a fox").await;
    assert_eq!(status, 429);
    if !is_xai() {
        // Both tokens now cool down, so the pool has nothing usable.
        let ready = h.http.get(h.url("/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), 503);
    }
}

#[tokio::test]
async fn invalid_tokens_are_an_upstream_auth_failure_not_a_client_401() {
    // grok.com: an unknown sso token; xAI: a wrong API key (which xAI answers with a 400).
    let h = builder().credentials(&["tok-alpha-0001"], &["not-a-real-token"]).start().await;
    let (status, _, body) = generate(&h, "a fox").await;
    assert_eq!((status, error_code(&body).as_str()), (502, "upstream_auth_failed"), "{body}");
    let (status, _, body) = edit(&h, "a fox").await;
    assert_eq!((status, error_code(&body).as_str()), (502, "upstream_auth_failed"), "{body}");
}

#[tokio::test]
async fn one_bad_token_among_good_ones_is_routed_around() {
    if grok_web_only("one_bad_token_among_good_ones_is_routed_around") {
        return;
    }
    let h =
        builder().config(|c| c.grok.tokens = vec!["not-a-real-token".into(), "tok-bravo-0002".into()]).start().await;
    for _ in 0..4 {
        let (status, _, body) = generate(&h, "a fox").await;
        assert_eq!(status, 200, "{body}");
    }
}

/// One request that grok.com refuses for its rate on every account rests one account, not the pool
/// (sub2api #7398, 2026-09-20: "a single request can put the whole pool into cooldown", 25 of 26
/// healthy accounts cooling at once). `[sim:rate-limit]` is refused on any account; with three
/// accounts and three attempts, the first account rests, the other two only note the error, the
/// client gets 429 with a Retry-After, and the next request is served at once.
#[tokio::test]
async fn one_rate_limited_request_rests_at_most_one_account() {
    if grok_web_only("grok.com's token pool") {
        return;
    }
    let tokens = ["tok-alpha-0001", "tok-bravo-0002", "tok-charl-0003"];
    let h = builder()
        .credentials(&tokens, &tokens)
        .config(|c| {
            c.grok.max_attempts = 3;
            c.grok.quota_refresh_secs = 0;
        })
        .start()
        .await;
    let pool = || h.server.state.runner.upstream().tokens().unwrap().snapshot();
    let (status, headers, body) = generate(&h, "a fox [sim:rate-limit]").await;
    assert_eq!(status, 429, "{body}");
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&wait), "Retry-After {wait}");
    let resting: Vec<_> = pool().into_iter().filter(|t| t.products["image"].cooldown_secs.is_some()).collect();
    assert_eq!(resting.len(), 1, "one account rests: {:?}", pool());
    let noted = pool().iter().filter(|t| t.last_error.is_some()).count();
    assert_eq!(noted, 3, "every account tried has the error on record: {:?}", pool());
    let (ok, _, body) = generate(&h, "a fox").await;
    assert_eq!(ok, 200, "{body}");
}

//! The quality guard against flagged accounts (issue 23, item 1): a flagged grok.com account
//! "completes" every prompt with the same canned media (chenyme/grok2api #1014, #1053; CLIProxyAPI
//! #5221; sub2api #4578, #6441). The simulator's flagged account does exactly that; the gateway must
//! never deliver its answer once it can tell, flag it, and serve the request from another account.

mod common;

use base64::Engine;
use common::*;
use serde_json::{Value, json};

const FLAGGED: &str = "tok-flagd-0001";
const HEALTHY: &str = "tok-hlthy-0002";
const ADMIN: &str = "admin-secret-key";

/// The flagged account first in the pool, so it serves first; no quota calls to muddle the order.
fn flagged_first() -> Builder {
    builder().credentials(&[FLAGGED, HEALTHY], &[FLAGGED, HEALTHY]).sim(|s| s.flagged = vec![FLAGGED.into()]).config(
        |c| {
            c.grok.quota_refresh_secs = 0;
            c.grok.max_attempts = 2;
            c.admin.api_key = Some(ADMIN.into());
        },
    )
}

async fn images(h: &Harness, prompt: &str, n: u32) -> (u16, Vec<Vec<u8>>, Value) {
    let (status, _, body) =
        h.generate(json!({"model": "grok-imagine-1.0", "prompt": prompt, "n": n, "response_format": "b64_json"})).await;
    let data = body["data"].as_array().cloned().unwrap_or_default();
    let bytes = data
        .iter()
        .map(|d| base64::engine::general_purpose::STANDARD.decode(d["b64_json"].as_str().unwrap()).unwrap())
        .collect();
    (status, bytes, body)
}

/// What a picture shows (its fingerprint): the canned one comes in a new file each time.
fn looks(png: &[u8]) -> [u8; 32] {
    grok2api::media::fingerprint::fingerprint(png, "image/png")
}

fn token(h: &Harness, t: &str) -> grok2api::upstream::tokens::TokenInfo {
    let id = grok2api::upstream::grok_web::token_pool::token_id(t);
    h.server.state.runner.upstream().tokens().unwrap().snapshot().into_iter().find(|i| i.id == id).unwrap()
}

async fn metrics(h: &Harness) -> String {
    h.http.get(h.url("/metrics")).send().await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn a_flagged_accounts_canned_image_is_caught_on_its_second_prompt_and_never_delivered() {
    if grok_web_only("the grok.com quality guard") {
        return;
    }
    let h = flagged_first().start().await;
    let canned = looks(&grok2api::sim::render::canned_png());
    // The first answer cannot be told from a real one: nothing to compare it with yet.
    let (s, first, body) = images(&h, "a red lighthouse", 1).await;
    assert_eq!((s, looks(&first[0])), (200, canned), "{body}");
    // A different prompt, the same picture (in another file): canned. The client gets the healthy
    // account's picture.
    let (s, second, body) = images(&h, "a blue teapot", 1).await;
    assert_eq!(s, 200, "{body}");
    assert_ne!(looks(&second[0]), canned, "the canned picture must not be delivered twice");
    let flagged = token(&h, FLAGGED);
    assert_eq!(flagged.status, "flagged");
    assert!(flagged.last_error.as_deref().unwrap_or_default().contains("canned"), "{flagged:?}");
    assert_eq!(token(&h, HEALTHY).status, "active");
    let m = metrics(&h).await;
    assert!(m.contains(r#"grok2api_upstream_calls_total{operation="image",outcome="canned_output"} 1"#), "{m}");
    assert!(m.contains(r#"grok2api_upstream_tokens{state="flagged"} 1"#), "{m}");
    let overview: Value =
        h.http.get(h.url("/admin/overview")).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
    assert_eq!(overview["tokens"]["flagged"], 1, "{overview}");
    // From now on only the healthy account serves.
    let (s, third, _) = images(&h, "a green field", 1).await;
    assert_eq!(s, 200);
    assert_ne!(looks(&third[0]), canned);
    // Adding the token again is how an operator retries it.
    let r = h
        .http
        .post(h.url("/admin/tokens"))
        .bearer_auth(ADMIN)
        .json(&json!({"tokens": [FLAGGED]}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    assert_eq!(token(&h, FLAGGED).status, "active");
}

#[tokio::test]
async fn a_listed_canned_output_is_refused_the_first_time_and_with_no_other_account_the_client_is_told() {
    if grok_web_only("the grok.com quality guard") {
        return;
    }
    // The operator's way to list it: `grok2api fingerprint FILE`.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("canned.png");
    std::fs::write(&file, grok2api::sim::render::canned_png()).unwrap();
    let out = std::process::Command::new(BIN).arg("fingerprint").arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed = String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_owned();
    assert_eq!(listed, hex::encode(looks(&grok2api::sim::render::canned_png())));
    let h = builder()
        .credentials(&[FLAGGED], &[FLAGGED])
        .sim(|s| s.flagged = vec![FLAGGED.into()])
        .config(move |c| {
            c.grok.quota_refresh_secs = 0;
            c.grok.canned_outputs = vec![listed];
        })
        .start()
        .await;
    let (s, _, body) = images(&h, "a red lighthouse", 1).await;
    assert_eq!(s, 502, "{body}");
    assert_eq!(error_code(&body), "upstream_canned_output");
    assert_eq!(token(&h, FLAGGED).status, "flagged");
    // Nothing is left to serve: the client is told so rather than served canned media.
    let (s, _, body) = images(&h, "a blue teapot", 1).await;
    assert_eq!((s, error_code(&body).as_str()), (502, "upstream_auth_failed"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("flagged"), "{body}");
}

#[tokio::test]
async fn healthy_accounts_never_trip_it() {
    if grok_web_only("the grok.com quality guard") {
        return;
    }
    let h = builder().config(|c| c.grok.quota_refresh_secs = 0).start().await;
    // n = 2 of one prompt, the same prompt again (a client's retry), and other prompts.
    for prompt in ["a cat", "a cat", "a dog", "a cat on a dog"] {
        let (s, got, body) = images(&h, prompt, 2).await;
        assert_eq!((s, got.len()), (200, 2), "{body}");
        assert_ne!(got[0], got[1]);
    }
    for prompt in ["waves", "a storm"] {
        let r = video(&h, prompt).await;
        assert_eq!(r["status"], "success", "{r}");
    }
    let snap = h.server.state.runner.upstream().tokens().unwrap().snapshot();
    assert!(snap.iter().all(|t| t.status == "active"), "{snap:?}");
    assert!(!metrics(&h).await.contains("canned_output"));
}

/// A 6 s video task, polled to its end.
async fn video(h: &Harness, prompt: &str) -> Value {
    let (s, data) = video_task(h, prompt, 6).await;
    assert_eq!(s, 202, "{data}");
    data
}

#[tokio::test]
async fn a_flagged_accounts_demo_clip_is_replaced_by_a_real_video() {
    if grok_web_only("the grok.com quality guard") {
        return;
    }
    let h = flagged_first().start().await;
    let first = video(&h, "waves on a beach").await;
    assert_eq!(first["status"], "success", "{first}");
    let second = video(&h, "a storm over the sea").await;
    assert_eq!(second["status"], "success", "{second}");
    let fetch = async |task: &Value| {
        let url = task["result"]["downloadUrl"].as_str().unwrap().to_owned();
        h.http.get(url).send().await.unwrap().bytes().await.unwrap()
    };
    let (a, b) = (fetch(&first).await, fetch(&second).await);
    let shows = |c: &[u8]| grok2api::media::fingerprint::fingerprint(c, "video/mp4");
    assert_eq!(shows(&a), shows(&grok2api::sim::video_canned_clip()), "the first answer is the demo clip");
    assert_ne!(shows(&a), shows(&b), "the second task must not carry the same demo clip");
    assert_eq!(&b[4..8], b"ftyp");
    assert_eq!(token(&h, FLAGGED).status, "flagged");
    assert!(metrics(&h).await.contains(r#"operation="video",outcome="canned_output"} 1"#));
}

/// The official xAI API has answered with unrelated media marked as done (CLIProxyAPI #5221: an
/// autumn-road clip for `grok-imagine-video-1.5-preview`). With one key there is no other account:
/// the client is told, never served the canned media as a success.
#[tokio::test]
async fn xais_canned_media_is_refused_not_delivered() {
    if !is_xai() {
        eprintln!("xais_canned_media_is_refused_not_delivered: the xAI upstream's guard (grok.com's is above)");
        return;
    }
    let h = builder().sim(|s| s.flagged = vec!["tok-alpha-0001".into()]).start().await;
    let canned = looks(&grok2api::sim::render::canned_png());
    let (s, first, body) = images(&h, "a red lighthouse", 1).await;
    assert_eq!((s, looks(&first[0])), (200, canned), "{body}");
    let (s, _, body) = images(&h, "a blue teapot", 1).await;
    assert_eq!((s, error_code(&body).as_str()), (502, "upstream_canned_output"), "{body}");
    // Known now: even the first prompt, asked again, is not served it.
    let (s, _, body) = images(&h, "a red lighthouse", 1).await;
    assert_eq!((s, error_code(&body).as_str()), (502, "upstream_canned_output"), "{body}");
    assert!(
        metrics(&h).await.contains(r#"grok2api_upstream_calls_total{operation="image",outcome="canned_output"} 2"#)
    );
    // A healthy key's different prompts all pass.
    let h = start().await;
    for prompt in ["a cat", "a dog", "a cat"] {
        let (s, _, body) = images(&h, prompt, 2).await;
        assert_eq!(s, 200, "{body}");
    }
}

//! The grok.com transport against `sim --tls`, whose Cloudflare gate checks fingerprints: every kind of
//! connection (REST, WebSocket, download) carries the profile's recorded JA4, a plain rustls client is
//! challenged, proxies (HTTP and SOCKS5 with auth, global and per token) carry the traffic, a broken
//! proxy is that token's error, and a challenge is cleared through FlareSolverr.

mod common;

use common::*;
use reqwest::multipart::Form;
use serde_json::{Value, json};

/// The recorded ClientHellos of the default profile (chrome_149) without SNI (the simulator is
/// 127.0.0.1), measured with shared/tools/tls_fingerprint.py: page loads and fetches offer h2 + ALPS,
/// the WebSocket's own connection offers only http/1.1 and, like Chrome, no ALPS.
const CHROME_149_REST: &str = "t13i1515h2_8daaf6152771_d8a2da3f94cd";
const CHROME_149_WEBSOCKET: &str = "t13i1514h1_8daaf6152771_0a20fe35d3a5";
const CHROME_146_REST: &str = "t13i1515h2_8daaf6152771_d8a2da3f94cd";
const ADMIN: &str = "admin-secret-key";

fn tls_only(test: &str) -> bool {
    grok_web_only(test)
}

fn image(prompt: &str) -> Value {
    json!({"model": "grok-imagine-image", "prompt": prompt, "n": 1})
}

fn edit_form() -> Form {
    Form::new()
        .text("model", "grok-imagine-1.0-edit")
        .text("prompt", "make it sharper")
        .text("n", "1")
        .part("image", png_part("in.png"))
}

#[tokio::test]
async fn every_connection_kind_carries_the_profiles_hello() {
    if tls_only("every_connection_kind_carries_the_profiles_hello") {
        return;
    }
    let h = builder().config(|c| c.grok.browser = "chrome_149".into()).start().await;
    // WebSocket (text-to-image), then REST (upload + conversation) and downloads (edit, video).
    let (status, _, body) = h.generate(image("a lighthouse")).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = h.edit(edit_form()).await;
    assert_eq!(status, 200, "{body}");
    let video = json!({"model": "grok-imagine-video", "messages": [{"role": "user", "content": "waves"}]});
    let (status, _, body) = split(h.post("/v1/chat/completions").json(&video).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");

    let seen = h.sim.seen();
    let of = |prefix: &str| -> Vec<&(String, String, String)> {
        seen.iter().filter(|(path, _, _)| path.starts_with(prefix)).collect()
    };
    for (kind, prefix, expected) in [
        ("WebSocket", "/ws/imagine/listen", CHROME_149_WEBSOCKET),
        ("upload", "/http/upload-file-v2", CHROME_149_REST),
        ("conversation", "/rest/app-chat/conversations/new", CHROME_149_REST),
        ("download", "/users/", CHROME_149_REST),
    ] {
        let hits = of(prefix);
        assert!(!hits.is_empty(), "no {kind} request reached the simulator: {seen:?}");
        for (_, ja4, ua) in hits {
            assert_eq!(ja4, expected, "{kind} connection's hello");
            assert!(ua.contains("Chrome/149."), "{kind} User-Agent {ua}");
        }
    }
    assert_eq!(h.sim.challenged(), 0);
    // Cloudflare's __cf_bm is kept per token and sent back.
    assert!(h.sim.cf_bm_replayed() > 0, "the client never sent back the __cf_bm cookie it was given");
}

#[tokio::test]
async fn plain_rustls_is_challenged_like_cloudflare_does() {
    if tls_only("plain_rustls_is_challenged_like_cloudflare_does") {
        return;
    }
    let h = start().await;
    let ca = reqwest::Certificate::from_pem(h.sim.ca_pem.as_ref().unwrap().as_bytes()).unwrap();
    let plain = reqwest::Client::builder().add_root_certificate(ca).build().unwrap();
    let chrome_ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/149.0.0.0 Safari/537.36";
    let resp = plain
        .post(format!("{}/rest/rate-limits", h.sim.base_url()))
        .header("user-agent", chrome_ua)
        .header("cookie", "sso=tok-alpha-0001; sso-rw=tok-alpha-0001")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["cf-mitigated"], "challenge");
    let reason = resp.headers()["x-sim-challenge-reason"].to_str().unwrap().to_owned();
    assert!(reason.contains("rustls"), "{reason}");
    assert!(resp.text().await.unwrap().contains("Just a moment"));

    // tokio-tungstenite (what the Imagine client used before): rustls hello, tungstenite header order.
    let url = format!("{}/ws/imagine/listen", h.sim.ws_url());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(h.sim.ca_pem.as_ref().unwrap().as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url.as_str()).unwrap();
    req.headers_mut().insert("user-agent", chrome_ua.parse().unwrap());
    let err = tokio_tungstenite::connect_async_tls_with_config(
        req,
        None,
        false,
        Some(tokio_tungstenite::Connector::Rustls(std::sync::Arc::new(tls))),
    )
    .await
    .unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => {
            assert_eq!(resp.status(), 403);
            assert_eq!(resp.headers()["cf-mitigated"], "challenge");
        }
        other => panic!("expected a challenge, got {other}"),
    }
    assert!(h.sim.challenged() >= 2);
}

#[tokio::test]
async fn a_profile_whose_hello_does_not_match_its_user_agent_is_challenged() {
    if tls_only("a_profile_whose_hello_does_not_match_its_user_agent_is_challenged") {
        return;
    }
    // Chrome 149's hello under a Chrome 156 User-Agent (as if the operator pasted a newer browser's UA
    // and no profile of that version existed): the simulator knows Chrome 156's hello and refuses.
    let ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";
    let h = builder().config(|c| c.grok.user_agent = Some(ua.into())).start().await;
    let (status, _, body) = h.generate(image("a kite")).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(error_code(&body), "upstream_challenge");
    assert!(body["error"]["message"].as_str().unwrap().contains("flaresolverr"), "{body}");
}

#[tokio::test]
async fn global_http_proxy_with_auth_carries_all_grok_traffic() {
    if tls_only("global_http_proxy_with_auth_carries_all_grok_traffic") {
        return;
    }
    let proxy = proxy::http("gw", "s3cret").await;
    let url = proxy.url("http", "gw", "s3cret");
    let h = builder().config(|c| c.grok.proxy = Some(url)).start().await;
    let (status, _, body) = h.generate(image("a tram")).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = h.edit(edit_form()).await;
    assert_eq!(status, 200, "{body}");
    assert!(proxy.tunnels() >= 2, "WebSocket and REST must both tunnel: {}", proxy.tunnels());
    assert_eq!(proxy.refused(), 0);
}

#[tokio::test]
async fn per_token_socks5_proxy_and_a_broken_proxy_cools_only_its_token() {
    if tls_only("per_token_socks5_proxy_and_a_broken_proxy_cools_only_its_token") {
        return;
    }
    let socks = proxy::socks5("acct", "pw").await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let good = format!("tok-alpha-0001|{}", socks.url("socks5h", "acct", "pw"));
    let broken = format!("tok-bravo-0002|socks5://acct:pw@{dead}");
    let h = builder()
        .config(|c| {
            c.grok.tokens = vec![broken.clone(), good.clone()];
            c.admin.api_key = Some(ADMIN.into());
        })
        .start()
        .await;
    for _ in 0..2 {
        let (status, _, body) = h.generate(image("a heron")).await;
        assert_eq!(status, 200, "{body}");
    }
    assert!(socks.tunnels() >= 2, "the working token's traffic goes through its SOCKS5 proxy");
    let tokens: Value =
        h.http.get(h.url("/admin/tokens")).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
    let by_id = |needle: &str| {
        let all = tokens["data"].as_array().unwrap().iter();
        all.clone()
            .find(|t| t["proxy"].as_str().unwrap_or("").contains(needle))
            .cloned()
            .unwrap_or_else(|| panic!("no token with proxy {needle}: {tokens}"))
    };
    let bravo = by_id(&dead.to_string());
    assert_eq!(bravo["status"], "cooling", "{tokens}");
    assert!(bravo["proxy"].as_str().unwrap().contains("***"), "proxy passwords are never shown: {bravo}");
    assert_eq!(by_id(&socks.addr.to_string())["status"], "active", "{tokens}");

    // With only the broken one, the client hears what is wrong.
    let h =
        builder().config(|c| c.grok.tokens = vec![broken.replace("tok-bravo-0002", "tok-alpha-0001")]).start().await;
    let (status, _, body) = h.generate(image("a heron")).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(error_code(&body), "upstream_proxy_failed", "{body}");
    assert!(!body.to_string().contains(":pw@"), "credentials leaked: {body}");
}

#[tokio::test]
async fn wrong_proxy_credentials_are_a_proxy_failure() {
    if tls_only("wrong_proxy_credentials_are_a_proxy_failure") {
        return;
    }
    let proxy = proxy::http("gw", "right").await;
    let url = proxy.url("http", "gw", "wrong");
    let h = builder().config(|c| c.grok.proxy = Some(url)).start().await;
    let (status, _, body) = h.generate(image("a moth")).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(error_code(&body), "upstream_proxy_failed", "{body}");
    assert!(proxy.refused() >= 1);
}

#[tokio::test]
async fn a_challenge_is_cleared_through_flaresolverr_and_the_token_switches_profile() {
    if tls_only("a_challenge_is_cleared_through_flaresolverr_and_the_token_switches_profile") {
        return;
    }
    let socks = proxy::socks5("acct", "p@ss").await;
    let token = format!("tok-alpha-0001|{}", socks.url("socks5", "acct", "p%40ss"));
    let h = builder()
        .sim(|s| s.require_clearance = true)
        .config(move |c| c.grok.tokens = vec![token])
        .config_with_sim(|c, sim| c.grok.flaresolverr_url = Some(format!("{}/flaresolverr", sim.base_url())))
        .start()
        .await;
    for _ in 0..2 {
        let (status, _, body) = h.generate(image("a glacier")).await;
        assert_eq!(status, 200, "{body}");
    }
    let solved = h.sim.solver_requests();
    assert_eq!(solved.len(), 1, "one solve, then the clearance is reused: {solved:?}");
    assert_eq!(solved[0]["cmd"], "request.get");
    assert_eq!(solved[0]["proxy"]["url"], format!("socks5://{}", socks.addr), "solved through the token's proxy");
    assert_eq!(solved[0]["proxy"]["username"], "acct");
    assert_eq!(solved[0]["proxy"]["password"], "p@ss");
    // After the solve, everything that passed carried the solver's User-Agent and the matching hello.
    let ua = grok2api::sim::cloudflare::SOLVER_USER_AGENT;
    let seen = h.sim.seen();
    let ws: Vec<_> = seen.iter().filter(|(p, _, _)| p.starts_with("/ws/")).collect();
    assert!(!ws.is_empty());
    for (path, ja4, seen_ua) in &seen {
        assert_eq!(seen_ua, ua, "{path}");
        if !path.starts_with("/ws/") {
            assert_eq!(ja4, CHROME_146_REST, "{path}");
        }
    }
}

#[tokio::test]
async fn without_a_solver_or_when_it_fails_the_challenge_is_reported_with_advice() {
    if tls_only("without_a_solver_or_when_it_fails_the_challenge_is_reported_with_advice") {
        return;
    }
    let h = builder().sim(|s| s.require_clearance = true).start().await;
    let (status, _, body) = h.generate(image("a dune")).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(error_code(&body), "upstream_challenge");
    assert!(body["error"]["message"].as_str().unwrap().contains("grok.flaresolverr_url"), "{body}");

    let h = builder()
        .sim(|s| {
            s.require_clearance = true;
            s.solver_fails = true;
        })
        .config_with_sim(|c, sim| c.grok.flaresolverr_url = Some(format!("{}/flaresolverr", sim.base_url())))
        .start()
        .await;
    let (status, _, body) = h.generate(image("a dune")).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(error_code(&body), "upstream_challenge");
    assert!(body["error"]["message"].as_str().unwrap().contains("FlareSolverr"), "{body}");
    assert!(!h.sim.solver_requests().is_empty());
}

fn edit_call(h: &Harness) -> impl std::future::Future<Output = (u16, reqwest::header::HeaderMap, Value)> + '_ {
    h.edit(edit_form())
}

#[tokio::test]
async fn statsig_is_minted_from_the_pages_build_and_refreshed_once_when_refused() {
    if tls_only("statsig_is_minted_from_the_pages_build_and_refreshed_once_when_refused") {
        return;
    }
    // No quota refresh at start: the only signed calls are the edits'.
    let h = builder().config(|c| c.grok.quota_refresh_secs = 0).start().await;
    // The simulator takes only signatures that hash its build's animation fingerprint. To mint one the
    // client reads the page (seed, curves), its three scripts, and the generator chunk the third loads.
    let (status, _, body) = edit_call(&h).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(h.sim.statsig_traffic(), (1, 4, 0), "(page loads, chunk loads, refusals)");
    // The inputs are cached: the next call signs without reading the frontend again.
    let (status, _, body) = edit_call(&h).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(h.sim.statsig_traffic(), (1, 4, 0));
    // A new frontend build (seed, curves, seed positions, chunk names): grok.com answers code 7 once,
    // the client reads the page and the new chunks again and signs again, once.
    h.sim.rotate_statsig_seed();
    let (status, _, body) = edit_call(&h).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(h.sim.statsig_traffic(), (2, 8, 1));
}

#[tokio::test]
async fn statsig_modes_off_fixed_and_signer() {
    if tls_only("statsig_modes_off_fixed_and_signer") {
        return;
    }
    // Off, or a value of the right length but not signed (what the client used to send): refused.
    use base64::Engine;
    let random = base64::engine::general_purpose::STANDARD.encode([7u8; 70]);
    for mode in ["off".to_owned(), format!("fixed:{random}")] {
        let h = builder().config(move |c| c.grok.statsig = mode).start().await;
        let (status, _, body) = edit_call(&h).await;
        assert_eq!(status, 502, "{body}");
        assert_eq!(error_code(&body), "upstream_challenge");
        assert!(body["error"]["message"].as_str().unwrap().contains("anti-bot"), "{body}");
    }
    // An external signer.
    let h = builder()
        .config_with_sim(|c, sim| c.grok.statsig = format!("signer:{}/sim-signer/sign", sim.base_url()))
        .start()
        .await;
    let (status, _, body) = edit_call(&h).await;
    assert_eq!(status, 200, "{body}");
    // The image WebSocket is never signed (its upgrade carries Chrome's headers only), so it works in
    // every mode.
    let h = builder().config(|c| c.grok.statsig = "off".into()).start().await;
    let (status, _, body) = h.generate(image("a kite")).await;
    assert_eq!(status, 200, "{body}");
}

/// grok.com's answer to a signature of the right shape signed with stale inputs is 403 code 7 "This
/// page is out of date. Reload to continue." (chenyme/grok2api #1002, 2026-08-24): a re-sign fixes
/// it, another account or a new clearance does not. With a fixed signature nothing can be re-signed:
/// the request fails once, on one account, and says why (it used to move on to the next account,
/// and be refused there too).
#[tokio::test]
async fn a_stale_signature_is_not_taken_to_another_account() {
    if tls_only("a_stale_signature_is_not_taken_to_another_account") {
        return;
    }
    use base64::Engine;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let stale =
        grok2api::upstream::grok_web::statsig::mint(&[9u8; 48], "POST", "/rest/app-chat/upload-file", now, 5, "");
    let raw = base64::engine::general_purpose::STANDARD_NO_PAD.decode(stale.trim_end_matches('=')).unwrap();
    assert_eq!(raw.len(), 70, "the web app's shape");
    // No quota refresh at start: the only signed calls are the edit's.
    let h = builder()
        .config(move |c| {
            c.grok.statsig = format!("fixed:{stale}");
            c.grok.quota_refresh_secs = 0;
        })
        .start()
        .await;
    let (status, _, body) = edit_call(&h).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(error_code(&body), "upstream_challenge");
    assert!(body["error"]["message"].as_str().unwrap().contains("out of date"), "{body}");
    assert_eq!(h.sim.statsig_traffic().2, 1, "refused once, on one account of two");
}

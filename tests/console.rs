//! The operators' console and the JSON admin API behind it: who may call it (admin key or a session
//! with its CSRF token; never a client key), console-made API keys with their own limits, per-key
//! usage, token import/export/settings, and every owner's tasks (filter, cancel, re-deliver).

mod common;

use common::webhooks::receiver;
use common::{KEY, builder};
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{Value, json};

const ADMIN: &str = "console-admin-key";

fn console() -> common::Builder {
    builder().config(|c| {
        c.admin.api_key = Some(ADMIN.into());
        // These tests present wrong keys on purpose, many times over (tests/hardening.rs tests the limit).
        c.admin.wrong_key_burst = 10_000;
        common::webhooks::to_loopback(c);
        c.callbacks.retry_delays_secs = vec![0.05];
    })
}

/// A logged-in console: its cookie header value and CSRF token.
async fn login(h: &common::Harness) -> (String, String) {
    let r = h.http.post(h.url("/admin/login")).json(&json!({"key": ADMIN})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()[SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_owned();
    let body: Value = r.json().await.unwrap();
    (cookie, body["csrf_token"].as_str().unwrap().to_owned())
}

/// Every admin route of the OpenAPI document, with `{id}` filled in.
fn admin_routes() -> Vec<(reqwest::Method, String)> {
    let doc = grok2api::api::openapi::document();
    let doc = serde_json::to_value(doc).unwrap();
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if op["tags"][0] == "admin" && path != "/admin/login" {
                out.push((method.to_uppercase().parse().unwrap(), path.replace("{id}", "abc123")));
            }
        }
    }
    assert!(out.len() >= 20, "the admin surface is in the document: {out:?}");
    out
}

#[tokio::test]
async fn every_admin_route_refuses_no_key_a_client_key_and_a_session_without_csrf() {
    let h = console().start().await;
    let (cookie, _) = login(&h).await;
    for (method, path) in admin_routes() {
        let call = || h.http.request(method.clone(), h.url(&path)).json(&json!({}));
        assert_eq!(call().send().await.unwrap().status(), 401, "{method} {path} without a key");
        assert_eq!(call().bearer_auth(KEY).send().await.unwrap().status(), 401, "{method} {path} with a client key");
        assert_eq!(call().bearer_auth("wrong").send().await.unwrap().status(), 401, "{method} {path}");
        let forged = call().header(COOKIE, "grok2api_session=forged").send().await.unwrap();
        assert_eq!(forged.status(), 401, "{method} {path} with a made-up session");
        if method != reqwest::Method::GET {
            let r = call().header(COOKIE, &cookie).send().await.unwrap();
            assert_eq!(r.status(), 403, "{method} {path} with a session but no CSRF token");
            let r = call().header(COOKIE, &cookie).header("x-csrf-token", "nope").send().await.unwrap();
            assert_eq!(r.status(), 403, "{method} {path} with a wrong CSRF token");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], "csrf_failed");
        }
    }
    // The session works where the key would (GET needs no CSRF token).
    let r = h.http.get(h.url("/admin/keys")).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Without an admin key there is no console and no admin API at all.
    let plain = builder().start().await;
    for (method, path) in admin_routes().into_iter().chain([(reqwest::Method::POST, "/admin/login".to_owned())]) {
        let r = plain.http.request(method.clone(), plain.url(&path)).bearer_auth(KEY).send().await.unwrap();
        assert_eq!(r.status(), 404, "{method} {path} without an admin key configured");
    }
    for page in ["/admin", "/admin/assets/console.js"] {
        assert_eq!(plain.http.get(plain.url(page)).send().await.unwrap().status(), 404, "{page}");
    }
}

#[tokio::test]
async fn login_gives_a_strict_cookie_csrf_guards_changes_and_logout_ends_the_session() {
    let h = console().start().await;
    let wrong = h.http.post(h.url("/admin/login")).json(&json!({"key": KEY})).send().await.unwrap();
    assert_eq!(wrong.status(), 401, "a client key does not open the console");
    let wrong_body = wrong.text().await.unwrap();
    assert!(wrong_body.contains("wrong admin key"), "{wrong_body}");

    let r = h.http.post(h.url("/admin/login")).json(&json!({"key": ADMIN})).send().await.unwrap();
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/admin", "Max-Age=43200"] {
        assert!(set.contains(attr), "{attr} in {set}");
    }
    assert!(!set.contains("Secure"), "plain http on loopback: {set}");
    let behind_tls = h
        .http
        .post(h.url("/admin/login"))
        .header("x-forwarded-proto", "https")
        .json(&json!({"key": ADMIN}))
        .send()
        .await
        .unwrap();
    assert!(behind_tls.headers()[SET_COOKIE].to_str().unwrap().contains("; Secure"));

    let (cookie, csrf) = login(&h).await;
    let session: Value =
        h.http.get(h.url("/admin/session")).header(COOKIE, &cookie).send().await.unwrap().json().await.unwrap();
    assert_eq!(session["csrf_token"], csrf.as_str());
    assert_eq!(session["persistent"], false, "no state dir in this test");
    let change = || h.http.post(h.url("/admin/tokens/refresh")).header(COOKIE, &cookie);
    assert_eq!(change().send().await.unwrap().status(), 403);
    assert_eq!(change().header("x-csrf-token", &csrf).send().await.unwrap().status(), 200);

    let out = h.http.post(h.url("/admin/logout")).header(COOKIE, &cookie).header("x-csrf-token", &csrf).send().await;
    let out = out.unwrap();
    assert_eq!(out.status(), 204);
    assert!(out.headers()[SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    let after = h.http.get(h.url("/admin/session")).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(after.status(), 401, "a session is refused after logout");

    // The page and its files: embedded, same-origin only, never framed.
    let page = h.http.get(h.url("/admin")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(page.text().await.unwrap().contains("/admin/assets/console.js"));
    let js = h.http.get(h.url("/admin/assets/console.js")).send().await.unwrap();
    assert!(js.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
    assert_eq!(h.http.get(h.url("/admin/assets/../../etc/passwd")).send().await.unwrap().status(), 404);
}

async fn make_key(h: &common::Harness, body: Value) -> (String, String) {
    let r = h.http.post(h.url("/admin/keys")).bearer_auth(ADMIN).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    (v["key"].as_str().unwrap().to_owned(), v["id"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn console_keys_carry_their_limits_and_their_usage_is_counted() {
    let h = console().start().await;
    // Rate: one request a second.
    let (slow, slow_id) = make_key(&h, json!({"name": "slow", "requests_per_second": 1})).await;
    let models = || h.http.get(h.url("/v1/models")).bearer_auth(&slow);
    assert_eq!(models().send().await.unwrap().status(), 200);
    assert_eq!(models().send().await.unwrap().status(), 429);

    // Model allowlist: images only.
    let (images_only, images_id) = make_key(&h, json!({"name": "images", "models": ["grok-imagine-image"]})).await;
    let video = h
        .http
        .post(h.url("/v1/video/tasks"))
        .bearer_auth(&images_only)
        .json(&json!({"model": "grok-imagine-1.0-video", "prompt": "a boat"}))
        .send()
        .await
        .unwrap();
    assert_eq!(video.status(), 403);
    assert!(video.text().await.unwrap().contains("may not use `grok-imagine-1.0-video`"));
    let image = h
        .http
        .post(h.url("/v1/images/generations"))
        .bearer_auth(&images_only)
        .json(&json!({"model": "grok-imagine-1.0", "prompt": "a lighthouse", "n": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(image.status(), 200);
    // /v1/responses learns its model from the body, and checks it there.
    let responses = |model: &str| {
        h.http.post(h.url("/v1/responses")).bearer_auth(&images_only).json(&json!({"model": model, "input": "a boat"}))
    };
    let refused = responses("grok-imagine-video").send().await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("model_not_allowed"));
    assert_eq!(responses("grok-imagine-1.0").send().await.unwrap().status(), 200);

    // Concurrent tasks: one at a time.
    let (single, _) = make_key(&h, json!({"name": "single", "max_concurrent_tasks": 1})).await;
    let task = || {
        h.http
            .post(h.url("/v1/video/tasks"))
            .bearer_auth(&single)
            .json(&json!({"model": "grok-imagine-1.0-video", "prompt": "waves [sim:slow=300]"}))
            .send()
    };
    assert_eq!(task().await.unwrap().status(), 202);
    assert_eq!(task().await.unwrap().status(), 429);

    // Usage per key per day: requests, images, errors and 429s; as JSON and as CSV. The flush to disk
    // is not needed for reads.
    let usage: Value = h
        .http
        .get(h.url(&format!("/admin/usage?key={images_id}")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let row = &usage["data"][0];
    // Two images each through /v1/images/generations and /v1/responses (one image), a 403 on each.
    assert_eq!((row["requests"].as_u64(), row["images"].as_u64(), row["errors"].as_u64()), (Some(4), Some(3), Some(2)));
    assert_eq!(row["name"], "images");
    let all: Value = h.http.get(h.url("/admin/usage")).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
    let slow_row = all["data"].as_array().unwrap().iter().find(|r| r["key"] == slow_id.as_str()).unwrap().clone();
    assert_eq!((slow_row["requests"].as_u64(), slow_row["rate_limited"].as_u64()), (Some(2), Some(1)));
    let csv = h.http.get(h.url("/admin/usage.csv")).bearer_auth(ADMIN).send().await.unwrap();
    assert!(csv.headers()["content-disposition"].to_str().unwrap().contains("attachment"));
    let csv = csv.text().await.unwrap();
    assert!(csv.starts_with("day,key,name,requests,images,video_seconds,errors,rate_limited\n"), "{csv}");
    assert!(csv.lines().any(|l| l.contains(&images_id) && l.ends_with(",4,3,0,2,0")), "{csv}");
    let bad = h.http.get(h.url("/admin/usage?from=2026-02-30")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(bad.status(), 400);

    // Rotate: the old key stops, the new one works under the same id; revoke: 401 from then on.
    let rotated: Value = h
        .http
        .post(h.url(&format!("/admin/keys/{images_id}/rotate")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new = rotated["key"].as_str().unwrap();
    assert_eq!(h.http.get(h.url("/v1/models")).bearer_auth(&images_only).send().await.unwrap().status(), 401);
    assert_eq!(h.http.get(h.url("/v1/models")).bearer_auth(new).send().await.unwrap().status(), 200);
    let revoked = h.http.delete(h.url(&format!("/admin/keys/{images_id}"))).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(revoked.json::<Value>().await.unwrap()["status"], "revoked");
    let refused = h.http.get(h.url("/v1/models")).bearer_auth(new).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    assert!(refused.text().await.unwrap().contains("revoked"));

    // The list never shows a key, only its prefix; config keys are read-only.
    let list: Value = h.http.get(h.url("/admin/keys")).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
    let text = list.to_string();
    assert!(!text.contains(&slow) && !text.contains(new) && !text.contains(KEY), "{text}");
    let config_key = list["data"].as_array().unwrap().iter().find(|k| k["source"] == "config").unwrap().clone();
    let r = h.http.delete(h.url(&format!("/admin/keys/{}", config_key["id"].as_str().unwrap()))).bearer_auth(ADMIN);
    assert_eq!(r.send().await.unwrap().status(), 409);
    let r = h.http.post(h.url("/admin/keys")).bearer_auth(ADMIN).json(&json!({"name": "x", "models": ["dall-e-3"]}));
    assert_eq!(r.send().await.unwrap().status(), 400);
}

#[tokio::test]
async fn an_admin_key_closes_a_gateway_that_has_no_client_key_yet() {
    let h = console().config(|c| c.auth.api_keys.clear()).start().await;
    assert_eq!(h.http.get(h.url("/v1/models")).send().await.unwrap().status(), 401);
    let (key, _) = make_key(&h, json!({"name": "first"})).await;
    assert_eq!(h.http.get(h.url("/v1/models")).bearer_auth(&key).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn tokens_import_with_a_report_config_tokens_are_read_only_and_export_is_a_post() {
    if common::grok_web_only("tokens_import") {
        return;
    }
    let h = console().sim(|s| s.tokens.extend(["tok-import-0001".into(), "tok-import-0002".into()])).start().await;
    let admin = |r: reqwest::RequestBuilder| r.bearer_auth(ADMIN);
    let file =
        "tok-import-0001\n# a comment\ntok-import-0002|http://127.0.0.1:3128\ntok import 3\ntok-import-0001\nshort\n";
    let report: Value = admin(h.http.post(h.url("/admin/tokens/import")))
        .json(&json!({"content": file, "filename": "tokens.txt"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((report["format"].as_str(), report["added"].as_u64()), (Some("txt"), Some(2)));
    assert_eq!((report["duplicates"].as_u64(), report["rejected"].as_u64()), (Some(1), Some(2)));
    let lines: Vec<(u64, &str)> = report["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["line"].as_u64().unwrap(), l["result"].as_str().unwrap()))
        .collect();
    assert_eq!(lines, [(1, "added"), (3, "added"), (4, "rejected"), (5, "duplicate"), (6, "rejected")]);
    assert!(!report.to_string().contains("tok-import-0001"), "the report masks tokens");

    let list: Value = admin(h.http.get(h.url("/admin/tokens"))).send().await.unwrap().json().await.unwrap();
    let find = |list: &Value, source: &str| {
        list["data"].as_array().unwrap().iter().find(|t| t["source"] == source).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (config_id, imported) = (find(&list, "config"), find(&list, "admin"));
    let patch = |id: &str, body: Value| admin(h.http.patch(h.url(&format!("/admin/tokens/{id}")))).json(&body).send();
    assert_eq!(patch(&config_id, json!({"enabled": false})).await.unwrap().status(), 409);
    let changed: Value =
        patch(&imported, json!({"enabled": false, "note": "spare"})).await.unwrap().json().await.unwrap();
    assert_eq!((changed["status"].as_str(), changed["note"].as_str()), (Some("disabled"), Some("spare")));
    assert_eq!(patch(&imported, json!({"proxy": "ftp://nope"})).await.unwrap().status(), 400);
    let cleared: Value = patch(&imported, json!({"note": null})).await.unwrap().json().await.unwrap();
    assert!(cleared["note"].is_null() && cleared["enabled"] == false, "{cleared}");
    let checked: Value = admin(h.http.post(h.url(&format!("/admin/tokens/{imported}/refresh"))))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(checked["checked_at"].as_u64().is_some(), "check now asks the upstream: {checked}");

    let bulk: Value = admin(h.http.post(h.url("/admin/tokens/bulk")))
        .json(&json!({"action": "enable", "ids": [imported, config_id, "000000000000"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let oks: Vec<bool> = bulk["results"].as_array().unwrap().iter().map(|r| r["ok"].as_bool().unwrap()).collect();
    assert_eq!(oks, [true, false, false]);
    // A check through a proxy that nothing answers is a failed check, said per token.
    let proxied = grok2api::upstream::grok_web::token_pool::token_id("tok-import-0002");
    let bulk: Value = admin(h.http.post(h.url("/admin/tokens/bulk")))
        .json(&json!({"action": "refresh", "ids": [imported, proxied]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bulk["results"][0]["ok"], true, "{bulk}");
    assert_eq!(bulk["results"][1]["ok"], false, "{bulk}");
    assert!(bulk["results"][1]["error"].as_str().unwrap().contains("proxy"), "{bulk}");

    // Export carries the values (the operator's backup), only through a POST.
    assert_eq!(admin(h.http.get(h.url("/admin/tokens/export"))).send().await.unwrap().status(), 405);
    let txt = admin(h.http.post(h.url("/admin/tokens/export"))).send().await.unwrap().text().await.unwrap();
    assert!(txt.contains("tok-import-0002|http://127.0.0.1:3128\n") && txt.contains("tok-alpha-0001"), "{txt}");
    let json_export: Value =
        admin(h.http.post(h.url("/admin/tokens/export?format=json"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(json_export.as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn admin_tasks_of_every_owner_filter_cancel_and_redeliver() {
    let h = console().start().await;
    let (rx, hook) = receiver(vec![]).await;
    let (mine, mine_id) = make_key(&h, json!({"name": "worker"})).await;
    let slow = h
        .http
        .post(h.url("/v1/video/tasks"))
        .bearer_auth(&mine)
        .json(&json!({"model": "grok-imagine-1.0-video", "prompt": "a long take [sim:slow=400]"}))
        .send()
        .await
        .unwrap();
    let slow: Value = slow.json().await.unwrap();
    let slow_id = slow["data"]["taskId"].as_str().unwrap_or_else(|| panic!("{slow}")).to_owned();
    let quick = h
        .http
        .post(h.url("/v1/images/tasks"))
        .bearer_auth(KEY)
        .json(&json!({"model": "grok-imagine-1.0", "prompt": "a cat", "callback_url": hook}))
        .send()
        .await
        .unwrap();
    let quick_id = quick.json::<Value>().await.unwrap()["data"]["taskId"].as_str().unwrap().to_owned();

    let h = &h;
    let list = |q: String| async move {
        let v: Value = h
            .http
            .get(h.url(&format!("/admin/tasks{q}")))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["data"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(list(String::new()).await, [quick_id.clone(), slow_id.clone()], "every owner's, newest first");
    assert_eq!(list(format!("?key={mine_id}")).await, vec![slow_id.clone()]);
    assert_eq!(list("?kind=image".into()).await, vec![quick_id.clone()]);
    assert_eq!(list("?since=4102444800".into()).await, Vec::<String>::new());
    let page: Value =
        h.http.get(h.url("/admin/tasks?limit=1")).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
    assert_eq!(page["has_more"], true);
    assert_eq!(list(format!("?after={quick_id}")).await, vec![slow_id.clone()]);
    assert_eq!(h.http.get(h.url("/admin/tasks?status=done")).bearer_auth(ADMIN).send().await.unwrap().status(), 400);

    let cancel = || h.http.post(h.url(&format!("/admin/tasks/{slow_id}/cancel"))).bearer_auth(ADMIN).send();
    let cancelled: Value = cancel().await.unwrap().json().await.unwrap();
    assert_eq!(
        (cancelled["status"].as_str(), cancelled["error"]["code"].as_str()),
        (Some("failed"), Some("cancelled"))
    );
    assert_eq!(cancelled["key_name"], "worker");
    assert_eq!(cancelled["error"]["message"], "cancelled by an operator");
    assert_eq!(cancel().await.unwrap().status(), 409);

    // The image task's callback arrives; re-deliver sends it again, and the attempts are listed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while rx.got.lock().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "callback never arrived");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The delivery is recorded just after the receiver answers.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let again =
        h.http.post(h.url(&format!("/admin/tasks/{quick_id}/redeliver"))).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(again.status(), 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while rx.got.lock().unwrap().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "re-delivery never arrived");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let detail: Value = h
        .http
        .get(h.url(&format!("/admin/tasks/{quick_id}")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let history = detail["callback"]["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{detail}");
    assert!(history.iter().all(|a| a["ok"] == true));
    assert!(detail["result"]["result"]["images"][0].as_str().unwrap().contains("/v1/files/image/"));
    let unfinished =
        h.http.post(h.url(&format!("/admin/tasks/{slow_id}/redeliver"))).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(unfinished.status(), 409, "a task without a callback has nothing to re-deliver");
}

/// A pool too large to send whole: `GET /admin/tokens` searches (`q`), sorts (`sort`, `-` for
/// descending) and pages (`offset`, `limit`) on the server and says how many matched (`total`); the
/// calls that change the pool answer with its first 100 tokens and the total.
#[tokio::test]
async fn the_token_list_is_searched_sorted_and_paged_on_the_server() {
    if common::grok_web_only("token paging") {
        return;
    }
    let h = console().start().await;
    let admin = |r: reqwest::RequestBuilder| r.bearer_auth(ADMIN);
    let get = |query: &str| {
        let r = admin(h.http.get(h.url(&format!("/admin/tokens{query}")))).send();
        async move {
            let r = r.await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let ids = |v: &Value| -> Vec<String> {
        v["data"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_owned()).collect()
    };
    let (_, before) = get("").await;
    let base = before["total"].as_u64().unwrap() as usize;
    let tokens: Vec<String> = (0..250).map(|i| format!("tok-page-{i:04}-abcdef")).collect();
    let added: Value = admin(h.http.post(h.url("/admin/tokens")))
        .json(&json!({"tokens": tokens}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let n = base + 250;
    assert_eq!((added["added"].as_u64(), added["total"].as_u64()), (Some(250), Some(n as u64)));
    assert_eq!(added["data"].as_array().unwrap().len(), 100, "the first page, not the whole pool");

    let (_, all) = get("").await;
    assert_eq!((ids(&all).len(), all["total"].as_u64()), (n, Some(n as u64)), "no parameters: every token");
    let (_, page) = get("?offset=5&limit=10").await;
    assert_eq!((ids(&page), page["offset"].as_u64()), (ids(&all)[5..15].to_vec(), Some(5)));
    let (_, past) = get("?offset=100000&limit=10").await;
    assert_eq!((ids(&past).len(), past["total"].as_u64()), (0, Some(n as u64)));

    let mut sorted = ids(&all);
    sorted.sort();
    let (_, by_id) = get("?sort=id&limit=20").await;
    assert_eq!(ids(&by_id), sorted[..20].to_vec());
    let (_, by_id_desc) = get(&format!("?sort=-id&offset={}", n - 20)).await;
    assert_eq!(ids(&by_id_desc), sorted[..20].iter().rev().cloned().collect::<Vec<_>>());

    for (k, note) in [(7, "Needle charlie"), (70, "needle alpha"), (170, "needle bravo")] {
        let id = &ids(&all)[base + k];
        let r = admin(h.http.patch(h.url(&format!("/admin/tokens/{id}")))).json(&json!({"note": note})).send();
        assert_eq!(r.await.unwrap().status(), 200);
    }
    let (_, found) = get("?q=NEEDLE&sort=-note").await;
    let notes: Vec<&str> = found["data"].as_array().unwrap().iter().map(|t| t["note"].as_str().unwrap()).collect();
    assert_eq!((found["total"].as_u64(), notes), (Some(3), vec!["Needle charlie", "needle bravo", "needle alpha"]));
    let (_, second) = get("?q=needle&sort=note&offset=1&limit=1").await;
    assert_eq!((second["total"].as_u64(), second["data"][0]["note"].as_str()), (Some(3), Some("needle bravo")));
    let one = &ids(&all)[base + 123];
    let (_, by_id_text) = get(&format!("?q={}", &one[..10])).await;
    assert!(ids(&by_id_text).contains(one));
    let (_, disabled) = get("?q=disabled").await;
    assert_eq!(disabled["total"].as_u64(), Some(0));

    let (status, bad) = get("?sort=secret").await;
    assert_eq!((status, bad["error"]["param"].as_str()), (400, Some("sort")), "{bad}");
    let (status, _) = get("?limit=ten").await;
    assert_eq!(status, 400);
}

//! Browser pages on other origins (issue 21, item 1): preflights answered before auth on the public
//! API, the headers a front end needs exposed, never credentials, the console same-origin, and no origin
//! at all while the gateway runs open.

mod common;

use common::*;

const PAGE: &str = "http://127.0.0.1:18951";

async fn preflight(h: &Harness, path: &str, origin: &str) -> reqwest::Response {
    h.http
        .request(reqwest::Method::OPTIONS, h.url(path))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization,content-type,idempotency-key")
        .send()
        .await
        .unwrap()
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers().get(name).map_or("", |v| v.to_str().unwrap())
}

#[tokio::test]
async fn with_a_key_any_origin_may_call_the_public_api_and_never_the_console() {
    let h = builder().config(|c| c.admin.api_key = Some("admin-key-9f27c4e1b86d305a".into())).start().await;
    let r = preflight(&h, "/v1/video/generations/async", PAGE).await;
    assert!(r.status().is_success(), "the preflight is answered before auth: {}", r.status());
    assert_eq!(header(&r, "access-control-allow-origin"), "*");
    let allowed = header(&r, "access-control-allow-headers").to_ascii_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("idempotency-key"), "{allowed}");
    // A suffix range (`bytes=-N`) on a file link is not CORS-safelisted: the browser asks first.
    assert!(allowed.split(',').any(|h| h.trim() == "range"), "{allowed}");
    assert!(header(&r, "access-control-allow-methods").contains("POST"));
    assert_eq!(header(&r, "access-control-allow-credentials"), "", "keys are headers, never cookies");
    assert_eq!(header(&r, "access-control-max-age"), "600");

    // The real call carries the headers a page reads.
    let r = h.get("/v1/models").header("origin", PAGE).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), "*");
    let exposed = header(&r, "access-control-expose-headers").to_ascii_lowercase();
    for h in ["location", "retry-after", "x-request-id", "content-range"] {
        assert!(exposed.contains(h), "{h} not exposed: {exposed}");
    }
    // A caller that is no page (curl, an SDK: no `Origin`) gets no CORS headers it would not read,
    // only `Vary: Origin`, so a cache never hands a page the answer made for it.
    let r = h.get("/v1/models").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), "");
    assert_eq!(header(&r, "access-control-expose-headers"), "");
    assert_eq!(header(&r, "vary"), "origin");
    // A refusal too, so the page can read why.
    let r = h.http.get(h.url("/v1/models")).header("origin", PAGE).send().await.unwrap();
    assert_eq!((r.status().as_u16(), header(&r, "access-control-allow-origin")), (401, "*"));
    // Preflights are not usage, and not key checks.
    for _ in 0..30 {
        assert!(preflight(&h, "/v1/images/tasks", PAGE).await.status().is_success());
    }

    // The console and the admin API: no CORS at all.
    for path in ["/admin/login", "/admin/keys"] {
        let r = preflight(&h, path, PAGE).await;
        assert_eq!(header(&r, "access-control-allow-origin"), "", "{path} stays same-origin");
    }
}

#[tokio::test]
async fn an_open_gateway_answers_no_origin_unless_told_and_a_list_is_a_list() {
    let open = builder().config(|c| c.auth.api_keys.clear()).start().await;
    let r = preflight(&open, "/v1/images/generations", PAGE).await;
    assert_eq!(header(&r, "access-control-allow-origin"), "", "no key: no page may spend the quota");

    let listed = builder().config(|c| c.server.cors_allowed_origins = Some(vec![format!("{PAGE}/")])).start().await;
    let r = preflight(&listed, "/v1/images/generations", PAGE).await;
    assert_eq!(header(&r, "access-control-allow-origin"), PAGE);
    let r = preflight(&listed, "/v1/images/generations", "http://evil.example").await;
    assert_eq!(header(&r, "access-control-allow-origin"), "", "an origin not on the list");
}

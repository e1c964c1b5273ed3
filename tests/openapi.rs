//! `GET /openapi.json` describes the whole HTTP surface, and our real responses match it: every
//! JSON answer below is validated against the schema the document gives for its path, method and
//! status (JSON Schema 2020-12, as OpenAPI 3.1 uses it).

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const ADMIN_KEY: &str = "admin-key-openapi";

struct Doc(Value);

impl Doc {
    /// Validates `body` against the documented `application/json` answer of `method template status`.
    fn check(&self, method: &str, template: &str, status: u16, body: &Value) {
        let op = &self.0["paths"][template][method];
        assert!(op.is_object(), "{method} {template} is not documented");
        let response = &op["responses"][status.to_string()];
        assert!(response.is_object(), "{method} {template} does not document {status}: {body}");
        let mut schema = response["content"]["application/json"]["schema"].clone();
        assert!(schema.is_object(), "{method} {template} {status} has no JSON schema");
        schema["components"] = self.0["components"].clone();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> =
            validator.iter_errors(body).map(|e| format!("{} at {}", e, e.instance_path)).collect();
        assert!(errors.is_empty(), "{method} {template} {status}: {errors:?}\n{body}");
    }
}

async fn call(req: reqwest::RequestBuilder) -> (u16, Value) {
    let (status, _, body) = split(req.send().await.unwrap()).await;
    (status, body)
}

#[tokio::test]
async fn the_document_covers_the_surface_and_real_responses_match_it() {
    let h = builder().config(|c| c.admin.api_key = Some(ADMIN_KEY.into())).start().await;
    let (status, doc) = call(h.http.get(h.url("/openapi.json"))).await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/v1/models",
        "/v1/models/{id}",
        "/v1/images/generations",
        "/v1/images/edits",
        "/v1/chat/completions",
        "/v1/video/generations/async",
        "/v1/images/generations/async",
        "/v1/video/tasks",
        "/v1/images/tasks",
        "/v1/{kind}/tasks/{id}",
        "/v1/{kind}/tasks/{id}/result",
        "/v1/{kind}/tasks/{id}/events",
        "/v1/videos",
        "/v1/videos/{id}",
        "/v1/videos/{id}/content",
        "/v1/videos/{id}/events",
        "/v1/videos/generations",
        "/v1/videos/{id}/remix",
        "/v1/videos/edits",
        "/v1/videos/extensions",
        "/v1/videos/characters",
        "/v1/files/{kind}/{name}",
        "/healthz",
        "/readyz",
        "/metrics",
        "/admin/tokens",
        "/admin/tokens/{id}",
        "/admin/tokens/refresh",
        "/openapi.json",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is not in /openapi.json");
    }
    let doc = Doc(doc);

    // Models.
    let (s, b) = call(h.get("/v1/models")).await;
    doc.check("get", "/v1/models", s, &b);
    let (s, b) = call(h.get("/v1/models/grok-imagine-video")).await;
    doc.check("get", "/v1/models/{id}", s, &b);
    let (s, b) = call(h.get("/v1/models/dall-e-3")).await;
    doc.check("get", "/v1/models/{id}", s, &b);

    // Images, edits, chat: success and error bodies.
    for body in [
        json!({"model": "grok-imagine-1.0", "prompt": "a fox"}),
        json!({"model": "grok-imagine-1.0", "prompt": "a fox", "response_format": "b64_json", "output_format": "jpeg"}),
        json!({"model": "grok-imagine-1.0", "prompt": "a fox", "n": 11}),
        json!({"model": "grok-imagine-1.0"}),
        json!({"model": "grok-imagine-1.0", "prompt": "a fox [sim:fail]"}),
    ] {
        let (s, b) = call(h.post("/v1/images/generations").json(&body)).await;
        doc.check("post", "/v1/images/generations", s, &b);
    }
    let (s, b) = call(h.http.post(h.url("/v1/images/generations")).json(&json!({}))).await;
    doc.check("post", "/v1/images/generations", s, &b);
    let form = reqwest::multipart::Form::new()
        .text("model", "grok-imagine-1.0-edit")
        .text("prompt", "make it blue")
        .part("image", png_part("a.png"));
    let (s, b) = call(h.post("/v1/images/edits").multipart(form)).await;
    doc.check("post", "/v1/images/edits", s, &b);
    let chat = json!({"model": "grok-imagine-1.0-video", "messages": [{"role": "user", "content": "waves"}]});
    let (s, b) = call(h.post("/v1/chat/completions").json(&chat)).await;
    doc.check("post", "/v1/chat/completions", s, &b);
    let (s, b) = call(h.post("/v1/chat/completions").json(&json!({"model": "x", "messages": []}))).await;
    doc.check("post", "/v1/chat/completions", s, &b);

    // Task endpoints, through a whole lifecycle.
    let (s, b) =
        call(h.post("/v1/video/generations/async").json(&json!({"model": "grok-imagine-video", "prompt": "waves"})))
            .await;
    doc.check("post", "/v1/video/generations/async", s, &b);
    let id = b["data"]["taskId"].as_str().unwrap().to_owned();
    let (s, b) = call(
        h.post("/v1/images/generations/async")
            .json(&json!({"model": "grok-imagine-1.0", "prompt": "a fox", "response_format": "b64_json"})),
    )
    .await;
    doc.check("post", "/v1/images/generations/async", s, &b);
    let image_task = b["data"]["taskId"].as_str().unwrap().to_owned();
    let (s, b) = call(h.get(&format!("/v1/video/tasks/{id}/result"))).await;
    doc.check("get", "/v1/{kind}/tasks/{id}/result", s, &b);
    let deadline = Instant::now() + Duration::from_secs(20);
    for (kind, task) in [("video", &id), ("images", &image_task)] {
        loop {
            let (s, b) = call(h.get(&format!("/v1/{kind}/tasks/{task}"))).await;
            doc.check("get", "/v1/{kind}/tasks/{id}", s, &b);
            if b["data"]["status"] == "success" {
                break;
            }
            assert!(Instant::now() < deadline, "{b}");
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        let (s, b) = call(h.get(&format!("/v1/{kind}/tasks/{task}/result"))).await;
        doc.check("get", "/v1/{kind}/tasks/{id}/result", s, &b);
    }
    let (s, b) = call(h.get("/v1/video/tasks?limit=5")).await;
    doc.check("get", "/v1/video/tasks", s, &b);
    let (s, b) = call(h.get("/v1/images/tasks?status=bogus")).await;
    doc.check("get", "/v1/images/tasks", s, &b);
    let (s, b) = call(h.http.delete(h.url(&format!("/v1/video/tasks/{id}"))).bearer_auth(KEY)).await;
    doc.check("delete", "/v1/{kind}/tasks/{id}", s, &b);
    let (_, b) =
        call(h.post("/v1/video/tasks").json(&json!({"model": "grok-imagine-video", "prompt": "slow [sim:slow=300]"})))
            .await;
    let slow = b["data"]["taskId"].as_str().unwrap().to_owned();
    let (s, b) = call(h.http.delete(h.url(&format!("/v1/video/tasks/{slow}"))).bearer_auth(KEY)).await;
    doc.check("delete", "/v1/{kind}/tasks/{id}", s, &b);
    let (s, b) = call(h.get("/v1/video/tasks/nope")).await;
    doc.check("get", "/v1/{kind}/tasks/{id}", s, &b);

    // OpenAI Videos and xAI.
    let (s, b) = call(h.post("/v1/videos").json(&json!({"prompt": "waves", "seconds": 4}))).await;
    doc.check("post", "/v1/videos", s, &b);
    let video = b["id"].as_str().unwrap().to_owned();
    let (s, b) = call(h.post("/v1/videos").json(&json!({"prompt": "x", "model": "sora-2"}))).await;
    doc.check("post", "/v1/videos", s, &b);
    let (s, b) =
        call(h.post("/v1/videos/generations").json(&json!({"prompt": "waves [sim:slow=50]", "duration": 2}))).await;
    doc.check("post", "/v1/videos/generations", s, &b);
    let request = b["request_id"].as_str().unwrap().to_owned();
    let (s, b) = call(h.get(&format!("/v1/videos/{request}"))).await;
    assert_eq!(s, 202);
    doc.check("get", "/v1/videos/{id}", s, &b);
    let deadline = Instant::now() + Duration::from_secs(20);
    for id in [&video, &request] {
        loop {
            let (s, b) = call(h.get(&format!("/v1/videos/{id}"))).await;
            doc.check("get", "/v1/videos/{id}", s, &b);
            if b["status"] == "completed" || b["status"] == "done" {
                break;
            }
            assert!(Instant::now() < deadline, "{b}");
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    let (s, b) = call(h.get("/v1/videos?order=asc")).await;
    doc.check("get", "/v1/videos", s, &b);
    let (s, b) = call(h.get("/v1/videos/video_missing/content")).await;
    doc.check("get", "/v1/videos/{id}/content", s, &b);
    let (s, b) = call(h.post("/v1/videos/video_x/remix").json(&json!({"prompt": "x"}))).await;
    doc.check("post", "/v1/videos/{id}/remix", s, &b);
    // Edits, extensions and remixes: made on xAI (200), refused on grok.com (400); both documented.
    let (s, b) = call(h.post(&format!("/v1/videos/{video}/remix")).json(&json!({"prompt": "night"}))).await;
    assert_eq!(s, if is_xai() { 200 } else { 400 }, "{b}");
    doc.check("post", "/v1/videos/{id}/remix", s, &b);
    let form =
        reqwest::multipart::Form::new().text("prompt", "on").text("seconds", "2").text("video[id]", video.clone());
    let (s, b) = call(h.post("/v1/videos/extensions").multipart(form)).await;
    doc.check("post", "/v1/videos/extensions", s, &b);
    let (s, b) = call(h.post("/v1/videos/extensions").json(&json!({"prompt": "on", "video": {"id": request}}))).await;
    doc.check("post", "/v1/videos/extensions", s, &b);
    let (s, b) = call(h.post("/v1/videos/edits").json(&json!({"prompt": "on", "video": {"url": "data:,x"}}))).await;
    assert_eq!(s, 400, "{b}");
    doc.check("post", "/v1/videos/edits", s, &b);
    let (s, b) = call(h.post("/v1/videos/characters").json(&json!({"name": "x"}))).await;
    doc.check("post", "/v1/videos/characters", s, &b);
    let (s, b) = call(h.http.delete(h.url(&format!("/v1/videos/{video}"))).bearer_auth(KEY)).await;
    doc.check("delete", "/v1/videos/{id}", s, &b);
    let (s, b) = call(h.get(&format!("/v1/videos/{video}"))).await;
    doc.check("get", "/v1/videos/{id}", s, &b);

    // Files, operations, admin.
    let (s, b) = call(h.get("/v1/files/image/0123456789abcdef0123456789abcdef.png")).await;
    doc.check("get", "/v1/files/{kind}/{name}", s, &b);
    let (s, b) = call(h.http.get(h.url("/healthz"))).await;
    doc.check("get", "/healthz", s, &b);
    let (s, b) = call(h.http.get(h.url("/readyz"))).await;
    doc.check("get", "/readyz", s, &b);
    let admin = |r: reqwest::RequestBuilder| r.bearer_auth(ADMIN_KEY);
    let (s, b) = call(admin(h.http.get(h.url("/admin/tokens")))).await;
    doc.check("get", "/admin/tokens", s, &b);
    let (s, b) = call(admin(h.http.post(h.url("/admin/tokens"))).json(&json!({"tokens": ["tok-charlie-0003"]}))).await;
    doc.check("post", "/admin/tokens", s, &b);
    let (s, b) = call(admin(h.http.post(h.url("/admin/tokens/refresh")))).await;
    doc.check("post", "/admin/tokens/refresh", s, &b);
    let (s, b) = call(admin(h.http.delete(h.url("/admin/tokens/000000000000")))).await;
    doc.check("delete", "/admin/tokens/{id}", s, &b);

    // The console's admin API.
    let (s, b) = call(h.http.post(h.url("/admin/login")).json(&json!({"key": ADMIN_KEY}))).await;
    doc.check("post", "/admin/login", s, &b);
    let (s, b) = call(admin(h.http.get(h.url("/admin/session")))).await;
    doc.check("get", "/admin/session", s, &b);
    let (s, b) = call(admin(h.http.get(h.url("/admin/overview")))).await;
    doc.check("get", "/admin/overview", s, &b);
    let file = json!({"content": "tok-delta-0004\nbad token\n", "filename": "t.txt"});
    let (s, b) = call(admin(h.http.post(h.url("/admin/tokens/import"))).json(&file)).await;
    doc.check("post", "/admin/tokens/import", s, &b);
    let delta = grok2api::upstream::grok_web::token_pool::token_id("tok-delta-0004");
    let (s, b) = call(admin(h.http.patch(h.url(&format!("/admin/tokens/{delta}")))).json(&json!({"note": "n"}))).await;
    doc.check("patch", "/admin/tokens/{id}", s, &b);
    let (s, b) = call(admin(h.http.post(h.url(&format!("/admin/tokens/{delta}/refresh"))))).await;
    doc.check("post", "/admin/tokens/{id}/refresh", s, &b);
    let (s, b) =
        call(admin(h.http.post(h.url("/admin/tokens/bulk"))).json(&json!({"action": "disable", "ids": [delta]}))).await;
    doc.check("post", "/admin/tokens/bulk", s, &b);
    let (s, b) =
        call(admin(h.http.post(h.url("/admin/keys"))).json(&json!({"name": "doc", "models": ["grok-imagine-1.0"]})))
            .await;
    doc.check("post", "/admin/keys", s, &b);
    let made = b["id"].as_str().unwrap().to_owned();
    let (s, b) = call(admin(h.http.get(h.url("/admin/keys")))).await;
    doc.check("get", "/admin/keys", s, &b);
    let (s, b) = call(admin(h.http.post(h.url(&format!("/admin/keys/{made}/rotate"))))).await;
    doc.check("post", "/admin/keys/{id}/rotate", s, &b);
    // That key may make images only: the guard's 403 on a video route, as documented.
    let secret = b["key"].as_str().unwrap().to_owned();
    let (s, b) = call(h.http.post(h.url("/v1/videos")).bearer_auth(&secret).json(&json!({"prompt": "waves"}))).await;
    assert_eq!(s, 403, "{b}");
    doc.check("post", "/v1/videos", s, &b);
    let (s, b) = call(
        h.http
            .post(h.url("/v1/video/tasks"))
            .bearer_auth(&secret)
            .json(&json!({"model": "grok-imagine-video", "prompt": "w"})),
    )
    .await;
    assert_eq!(s, 403, "{b}");
    doc.check("post", "/v1/video/generations/async", s, &b);
    let (s, b) = call(admin(h.http.delete(h.url(&format!("/admin/keys/{made}"))))).await;
    doc.check("delete", "/admin/keys/{id}", s, &b);
    let (s, b) = call(admin(h.http.get(h.url("/admin/usage")))).await;
    doc.check("get", "/admin/usage", s, &b);
    let (_, task) =
        call(h.post("/v1/video/tasks").json(&json!({"model": "grok-imagine-1.0-video", "prompt": "x [sim:slow=300]"})))
            .await;
    let task = task["data"]["taskId"].as_str().unwrap().to_owned();
    let (s, b) = call(admin(h.http.get(h.url("/admin/tasks")))).await;
    doc.check("get", "/admin/tasks", s, &b);
    let (s, b) = call(admin(h.http.get(h.url(&format!("/admin/tasks/{task}"))))).await;
    doc.check("get", "/admin/tasks/{id}", s, &b);
    let (s, b) = call(admin(h.http.post(h.url(&format!("/admin/tasks/{task}/cancel"))))).await;
    doc.check("post", "/admin/tasks/{id}/cancel", s, &b);
    let (s, b) = call(admin(h.http.post(h.url(&format!("/admin/tasks/{task}/redeliver"))))).await;
    doc.check("post", "/admin/tasks/{id}/redeliver", s, &b);

    // What the layers in front of the handlers answer, as documented: no key (both shapes), a path
    // segment that is not UTF-8, a body of the wrong type, a range past the end of a file.
    let (s, b) = call(h.http.get(h.url("/v1/models"))).await;
    assert_eq!(s, 401);
    doc.check("get", "/v1/models", s, &b);
    let (s, b) = call(h.http.get(h.url("/v1/video/tasks"))).await;
    assert_eq!(s, 401);
    doc.check("get", "/v1/video/tasks", s, &b);
    for (template, path) in [
        ("/v1/videos/{id}", "/v1/videos/%FF"),
        ("/v1/{kind}/tasks/{id}", "/v1/video/tasks/%FF"),
        ("/v1/files/{kind}/{name}", "/v1/files/image/%FF"),
        ("/admin/tasks/{id}", "/admin/tasks/%FF"),
    ] {
        let req = if template.starts_with("/admin") { admin(h.http.get(h.url(path))) } else { h.get(path) };
        let (s, b) = call(req).await;
        assert_eq!(s, 400, "{path}: {b}");
        doc.check("get", template, s, &b);
    }
    let (s, b) = call(h.post("/v1/images/generations").body("prompt=a fox")).await;
    assert_eq!(s, 415);
    doc.check("post", "/v1/images/generations", s, &b);
    let (s, b) = call(h.post("/v1/images/generations/async").body("prompt=a fox")).await;
    assert_eq!(s, 415);
    doc.check("post", "/v1/images/generations/async", s, &b);
    let (_, _, image) = h.generate(json!({"model": "grok-imagine-1.0", "prompt": "a fox"})).await;
    let url = image["data"][0]["url"].as_str().unwrap().to_owned();
    let (s, b) = call(h.http.get(&url).header("range", "bytes=100000000-")).await;
    assert_eq!(s, 416);
    doc.check("get", "/v1/files/{kind}/{name}", s, &b);
}

/// Without an admin key the admin API does not exist: 404, as documented on every `/admin` operation.
#[tokio::test]
async fn the_admin_api_is_a_documented_404_without_an_admin_key() {
    let h = start().await;
    let doc = Doc(call(h.http.get(h.url("/openapi.json"))).await.1);
    for (method, path, template) in [
        ("get", "/admin/tokens", "/admin/tokens"),
        ("post", "/admin/keys", "/admin/keys"),
        ("post", "/admin/login", "/admin/login"),
        ("delete", "/admin/tokens/abc", "/admin/tokens/{id}"),
    ] {
        let (s, b) = call(h.http.request(method.to_uppercase().parse().unwrap(), h.url(path)).bearer_auth(KEY)).await;
        assert_eq!(s, 404, "{method} {path}: {b}");
        doc.check(method, template, s, &b);
    }
}

//! Contract §6: every error row that applies to the image endpoints, with the OpenAI error body.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn auth_rows() {
    let h = start().await;
    for (path, method) in [("/v1/models", "GET"), ("/v1/images/generations", "POST"), ("/v1/images/edits", "POST")] {
        for key in [None, Some("wrong-key"), Some("")] {
            let mut req = h.http.request(method.parse().unwrap(), h.url(path));
            if let Some(k) = key {
                req = req.bearer_auth(k);
            }
            let r = req.json(&json!({})).send().await.unwrap();
            assert!(r.headers().contains_key("x-request-id"));
            let (status, _, body) = split(r).await;
            assert_eq!((status, error_code(&body).as_str()), (401, "invalid_api_key"), "{method} {path} key={key:?}");
            assert_eq!(body["error"]["type"], "authentication_error");
        }
    }
    let r = h.http.get(h.url("/v1/models")).bearer_auth(OTHER_KEY).send().await.unwrap();
    assert_eq!(r.status(), 200, "every configured key works");
}

#[tokio::test]
async fn open_mode_without_keys_accepts_requests() {
    let h = builder().config(|c| c.auth.api_keys.clear()).start().await;
    assert_eq!(h.http.get(h.url("/v1/models")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn body_rows() {
    let h = builder().config(|c| c.server.max_json_body_bytes = 8 * 1024).start().await;
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            h.post("/v1/images/generations").header("content-type", "application/json").body("{not json"),
            422,
            "invalid_json",
        ),
        (
            h.post("/v1/images/generations").header("content-type", "application/json").body(vec![0xff, 0xfe, 0x00]),
            422,
            "invalid_json",
        ),
        (h.post("/v1/images/generations").json(&json!({"prompt": "x"})), 422, "invalid_request_structure"),
        (
            h.post("/v1/images/generations").json(&json!({"model": "grok-imagine-1.0"})),
            422,
            "invalid_request_structure",
        ),
        (h.post("/v1/images/generations").json(&json!({"model": 5, "prompt": "x"})), 422, "invalid_request_structure"),
        (
            h.post("/v1/images/generations").json(&json!({"model": "grok-imagine-1.0", "prompt": "x", "n": "2"})),
            422,
            "invalid_request_structure",
        ),
        (
            h.post("/v1/images/generations").json(&json!({"model": "grok-imagine-1.0", "prompt": "x", "n": 1e300})),
            422,
            "invalid_request_structure",
        ),
        (h.post("/v1/images/generations").json(&json!([1, 2])), 422, "invalid_request_structure"),
        (
            h.post("/v1/images/generations").body("{\"model\":\"grok-imagine-1.0\",\"prompt\":\"x\"}"),
            415,
            "unsupported_media_type",
        ),
        (
            h.post("/v1/images/generations").json(&json!({"model": "grok-imagine-1.0", "prompt": "x".repeat(10_000)})),
            413,
            "payload_too_large",
        ),
    ];
    for (req, want_status, want_code) in cases {
        let (status, headers, body) = split(req.send().await.unwrap()).await;
        assert_eq!((status, error_code(&body).as_str()), (want_status, want_code), "{body}");
        assert!(headers.contains_key("x-request-id"));
    }
    let (_, _, body) = h.generate(json!({"prompt": "x"})).await;
    assert_eq!(body["error"]["param"], "model");
}

#[tokio::test]
async fn invalid_value_rows_name_the_param() {
    let h = start().await;
    let cases = [
        (json!({"model": "dall-e-3", "prompt": "x"}), "model", "model_not_supported"),
        (json!({"model": "grok-imagine-1.0-video", "prompt": "x"}), "model", "model_not_supported"),
        (json!({"model": "grok-imagine-1.0-edit", "prompt": "x"}), "model", "model_not_supported"),
        (json!({"model": "grok-imagine-1.0", "prompt": ""}), "prompt", "invalid_value"),
        (json!({"model": "grok-imagine-1.0", "prompt": "x".repeat(4001)}), "prompt", "invalid_value"),
        (json!({"model": "grok-imagine-1.0", "prompt": "x", "n": 0}), "n", "invalid_value"),
        (json!({"model": "grok-imagine-1.0", "prompt": "x", "n": 11}), "n", "invalid_value"),
        (json!({"model": "grok-imagine-1.0", "prompt": "x", "n": -3}), "n", "invalid_value"),
        (json!({"model": "grok-imagine-1.0", "prompt": "x", "size": "512x512"}), "size", "invalid_value"),
        (
            json!({"model": "grok-imagine-1.0", "prompt": "x", "response_format": "png"}),
            "response_format",
            "invalid_value",
        ),
    ];
    for (body, param, code) in cases {
        let (status, _, resp) = h.generate(body.clone()).await;
        assert_eq!(status, 400, "{body} → {resp}");
        assert_eq!(error_code(&resp), code, "{body}");
        assert_eq!(resp["error"]["param"], param, "{body}");
        assert_eq!(resp["error"]["type"], "invalid_request_error");
    }
}

#[tokio::test]
async fn routing_rows() {
    let h = start().await;
    let (status, _, body) = split(h.get("/v1/nope").send().await.unwrap()).await;
    assert_eq!((status, error_code(&body).as_str()), (404, "not_found"));
    let (status, _, body) = split(h.get("/v1/images/generations").send().await.unwrap()).await;
    assert_eq!((status, error_code(&body).as_str()), (405, "method_not_allowed"));
}

#[tokio::test]
async fn sync_timeout_is_504() {
    let h = builder().config(|c| c.server.request_timeout_secs = 1).start().await;
    let (status, _, body) = h.generate(json!({"model": "grok-imagine-1.0", "prompt": "x [sim:slow=1500]"})).await;
    assert_eq!((status, error_code(&body).as_str()), (504, "upstream_timeout"), "{body}");
}

#[tokio::test]
async fn a_bad_query_string_is_a_400_in_our_shape_not_plain_text() {
    let h = start().await;
    // A repeated parameter: the OpenAI shape on the Videos API ...
    let r = h.get("/v1/videos?limit=1&limit=2").send().await.unwrap();
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let (status, _, body) = split(r).await;
    assert_eq!((status, error_code(&body).as_str()), (400, "invalid_query"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("limit"), "{body}");
    // ... and the envelope on the task endpoints.
    for path in ["/v1/video/tasks?limit=1&limit=2", "/v1/images/tasks?limit=1&limit=2"] {
        let (status, _, body) = split(h.get(path).send().await.unwrap()).await;
        assert_eq!((status, body["code"].as_u64()), (400, Some(400)), "{path}: {body}");
        assert!(body["data"].is_null() && body["message"].as_str().unwrap().contains("limit"), "{body}");
    }
}

/// A path segment the handler cannot read, a route that does not exist, a method a route does not
/// take, a range past the end: our error shape every time (issue 21), never axum's plain text.
#[tokio::test]
async fn path_route_method_and_range_rejections_are_in_our_shape_not_plain_text() {
    let h = start().await;
    let json = |r: &reqwest::Response| {
        let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        assert!(ct.starts_with("application/json"), "{} answered {ct:?}", r.url());
    };
    // Not UTF-8 once percent-decoded: the OpenAI shape on the OpenAI-shaped routes ...
    for path in ["/v1/videos/%FF", "/v1/models/%C3%28", "/v1/videos/%FF/content", "/v1/files/image/%FF.png"] {
        let r = h.get(path).send().await.unwrap();
        json(&r);
        let (status, _, body) = split(r).await;
        assert_eq!((status, error_code(&body).as_str()), (400, "invalid_path"), "{path}: {body}");
    }
    // ... the envelope on the task endpoints.
    for path in ["/v1/video/tasks/%FF", "/v1/images/tasks/%FF/result", "/v1/video/tasks/%FF/events"] {
        let r = h.get(path).send().await.unwrap();
        json(&r);
        let (status, _, body) = split(r).await;
        assert_eq!((status, body["code"].as_u64()), (400, Some(400)), "{path}: {body}");
        assert!(body["data"].is_null() && body["message"].as_str().unwrap().contains("path"), "{body}");
    }
    let r = h.http.delete(h.url("/v1/video/tasks/%FF")).bearer_auth(KEY).send().await.unwrap();
    json(&r);
    assert_eq!(split(r).await.2["code"], 400);

    // No such route, and a method the route does not take.
    let r = h.get("/v1/no-such-route").send().await.unwrap();
    json(&r);
    let (status, _, body) = split(r).await;
    assert_eq!((status, error_code(&body).as_str()), (404, "not_found"), "{body}");
    let r = h.http.put(h.url("/v1/models")).bearer_auth(KEY).send().await.unwrap();
    json(&r);
    let (status, _, body) = split(r).await;
    assert_eq!((status, error_code(&body).as_str()), (405, "method_not_allowed"), "{body}");

    // A range past the end: 416 with `Content-Range: bytes */SIZE`, and a body that says why.
    let (_, _, body) = h.generate(json!({"model": "grok-imagine-1.0", "prompt": "a fox"})).await;
    let url = body["data"][0]["url"].as_str().unwrap().to_owned();
    let size = h.http.get(&url).send().await.unwrap().bytes().await.unwrap().len();
    let r = h.http.get(&url).header("range", format!("bytes={size}-")).send().await.unwrap();
    json(&r);
    assert_eq!(r.headers()["content-range"], format!("bytes */{size}").as_str());
    let (status, _, body) = split(r).await;
    assert_eq!((status, error_code(&body).as_str()), (416, "range_not_satisfiable"), "{body}");
}

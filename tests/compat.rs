//! What stock clients send, in-process on both upstreams and both stores (issue 21): JSON image edits as
//! xAI's clients send them, `size: "auto"`, xAI's `aspect_ratio`, who gets `b64_json` without asking,
//! the edit stream's event names, the Responses API (answers, streams, failures, refusals) and
//! `stream_options.include_usage`. tests/clients.rs drives the real clients themselves.

mod common;

use base64::Engine;
use common::*;
use reqwest::multipart::Form;
use serde_json::{Value, json};

fn data_url(bytes: &[u8]) -> String {
    format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn b64_image(item: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(item["b64_json"].as_str().expect("b64_json")).unwrap()
}

async fn post_json(h: &Harness, path: &str, body: Value) -> (u16, Value) {
    let (status, _, body) = split(h.post(path).json(&body).send().await.unwrap()).await;
    (status, body)
}

#[tokio::test]
async fn json_edits_take_xai_and_openai_image_references() {
    let h = start().await;
    let png = sample_png();
    // @ai-sdk/xai: one image as {url, type}, the image model, b64_json asked for.
    let (status, body) = post_json(
        &h,
        "/v1/images/edits",
        json!({"model": "grok-imagine-image", "prompt": "add a hat", "response_format": "b64_json",
               "image": {"url": data_url(&png), "type": "image_url"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    png_dims(&b64_image(&body["data"][0]));
    // Several images, OpenAI's {image_url} form, and one of our own links.
    let (_, _, made) = h.generate(json!({"model": "grok-imagine-1.0", "prompt": "a source"})).await;
    let own = made["data"][0]["url"].as_str().unwrap().to_owned();
    let (status, body) = post_json(
        &h,
        "/v1/images/edits",
        json!({"model": "grok-imagine-1.0-edit", "prompt": "merge them",
               "images": [{"image_url": data_url(&png)}, {"url": own, "type": "image_url"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["data"][0]["url"].as_str().unwrap().contains("/v1/files/image/"), "{body}");

    // Refusals name the field.
    // One more than the upstream's edit model takes: 3 on grok.com, 5 on xAI's 2.0 (the default).
    let most = if is_xai() { 5 } else { 3 };
    let four: Vec<Value> = (0..=most).map(|_| json!({"url": data_url(&png)})).collect();
    for (bad, want, code, param) in [
        (json!({"images": four}), 400, "invalid_value", "image"),
        (json!({"image": {"file_id": "file-1"}}), 400, "unsupported", ""),
        (json!({"image": {"type": "image_url"}}), 400, "invalid_value", "image"),
        (json!({"image": {"url": "data:image/png;base64,!!"}}), 400, "invalid_image", "image"),
        (json!({"image": {"url": "http://127.0.0.1:9/x.png"}}), 400, "invalid_image", "image"),
        (json!({}), 422, "missing_required_field", "image"),
    ] {
        let mut req = json!({"model": "grok-imagine-1.0-edit", "prompt": "x"});
        req.as_object_mut().unwrap().extend(bad.as_object().unwrap().clone());
        let (status, body) = post_json(&h, "/v1/images/edits", req).await;
        assert_eq!((status, error_code(&body).as_str()), (want, code), "{bad}: {body}");
        if !param.is_empty() {
            assert_eq!(body["error"]["param"], param, "{bad}: {body}");
        }
    }
    let r = h.post("/v1/images/edits").header("content-type", "text/plain").body("x").send().await.unwrap();
    assert_eq!(r.status(), 415);
}

#[tokio::test]
async fn size_auto_and_xai_aspect_ratio() {
    let h = start().await;
    let (status, _, body) = h.generate(json!({"model": "grok-imagine-1.0", "prompt": "a", "size": "auto"})).await;
    assert_eq!(status, 200, "{body}");
    // `auto` is a gpt-image-family value: its clients read b64_json only.
    let (w, hh) = png_dims(&b64_image(&body["data"][0]));
    assert_eq!(w, hh, "auto is square for text-to-image");
    assert_eq!(body["size"], format!("{w}x{hh}"));
    assert_eq!((body["output_format"].as_str(), body["quality"].as_str()), (Some("png"), Some("auto")));
    assert_eq!(body["background"], "opaque");

    let (status, _, body) = h
        .generate(
            json!({"model": "grok-imagine-1.0", "prompt": "a", "aspect_ratio": "16:9", "response_format": "b64_json"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (w, hh) = png_dims(&b64_image(&body["data"][0]));
    assert!(w > hh && (f64::from(w) / f64::from(hh) - 16.0 / 9.0).abs() < 0.02, "{w}x{hh}");
    for bad in [json!({"aspect_ratio": "7:5"}), json!({"aspect_ratio": "9:16", "size": "1280x720"})] {
        let mut req = json!({"model": "grok-imagine-1.0", "prompt": "a"});
        req.as_object_mut().unwrap().extend(bad.as_object().unwrap().clone());
        let (status, _, body) = h.generate(req).await;
        assert_eq!((status, body["error"]["param"].as_str()), (400, Some("aspect_ratio")), "{bad}: {body}");
    }
    // Edits: `auto` keeps the input's shape.
    let form = Form::new()
        .text("model", "grok-imagine-1.0-edit")
        .text("prompt", "x")
        .text("size", "auto")
        .text("response_format", "url")
        .part("image", png_part("a.png"));
    let (status, _, body) = h.edit(form).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn who_gets_b64_json_without_asking_for_it() {
    let h = start().await;
    let ask = |extra: Value, ua: &'static str| {
        let mut body = json!({"model": "grok-imagine-1.0", "prompt": "a"});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        h.post("/v1/images/generations").header("user-agent", ua).json(&body).send()
    };
    let kind = |body: &Value| if body["data"][0]["b64_json"].is_string() { "b64_json" } else { "url" };
    for (extra, ua, want) in [
        (json!({}), "curl/8.5.0", "url"),
        (json!({"output_format": "jpeg"}), "curl/8.5.0", "url"),
        (json!({"quality": "high"}), "OpenAI/Python 2.8.0", "b64_json"),
        (json!({"background": "opaque"}), "curl/8.5.0", "b64_json"),
        (json!({}), "ai/7.0.173 ai-sdk-provider-utils/5.0.81 node.js/v20.20.2", "b64_json"),
        (json!({"response_format": "url"}), "ai/7.0.173 ai-sdk-provider-utils/5.0.81", "url"),
    ] {
        let (status, _, body) = split(ask(extra.clone(), ua).await.unwrap()).await;
        assert_eq!((status, kind(&body)), (200, want), "{extra} {ua}: {body}");
    }
    // An operator whose clients all read b64_json says so once.
    let h = builder()
        .config(|c| c.images.default_response_format = grok2api::config::ImageResponseFormat::B64Json)
        .start()
        .await;
    let (_, _, body) = h.generate(json!({"model": "grok-imagine-1.0", "prompt": "a"})).await;
    assert!(body["data"][0]["b64_json"].is_string(), "{body}");
    let (_, _, body) = h.generate(json!({"model": "grok-imagine-1.0", "prompt": "a", "response_format": "url"})).await;
    assert!(body["data"][0]["url"].is_string(), "{body}");
}

#[tokio::test]
async fn edit_streams_are_image_edit_events() {
    let h = start().await;
    let form = Form::new()
        .text("model", "grok-imagine-1.0-edit")
        .text("prompt", "x")
        .text("stream", "true")
        .part("image", png_part("a.png"));
    let r = h.post("/v1/images/edits").multipart(form).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let events: Vec<Value> = sse_data(&text).iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.last(), Some(&"image_edit.completed"), "{kinds:?}");
    assert!(kinds.iter().all(|k| k.starts_with("image_edit.")), "{kinds:?}");
    assert!(text.contains("event: image_edit.completed"), "{text}");
}

#[tokio::test]
async fn the_responses_api_serves_the_media_models() {
    let h = start().await;
    let (status, body) = post_json(&h, "/v1/responses", json!({"model": "grok-imagine-1.0", "input": "a cat"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["object"].as_str(), body["status"].as_str()), (Some("response"), Some("completed")));
    let part = &body["output"][0]["content"][0];
    let text = part["text"].as_str().unwrap();
    let url = part["annotations"][0]["url"].as_str().unwrap();
    assert!(text.contains(url) && url.contains("/v1/files/image/"), "{body}");
    let image = h.http.get(url).send().await.unwrap().bytes().await.unwrap();
    png_dims(&image);

    // An edit: the image model with an input_image (as a data URL).
    let input = json!([{"role": "user", "content": [
        {"type": "input_text", "text": "make it blue"},
        {"type": "input_image", "image_url": data_url(&sample_png())}]}]);
    let (status, body) =
        post_json(&h, "/v1/responses", json!({"model": "grok-imagine-1.0-edit", "input": input})).await;
    assert_eq!(status, 200, "{body}");

    // Video, streamed.
    let r = h
        .post("/v1/responses")
        .json(&json!({"model": "grok-imagine-video", "input": "waves", "stream": true,
                      "video_config": {"video_length": 2}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let events: Vec<Value> =
        sse_data(&r.text().await.unwrap()).iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"response.created"));
    assert_eq!(kinds.last(), Some(&"response.completed"), "{kinds:?}");
    let seq: Vec<u64> = events.iter().map(|e| e["sequence_number"].as_u64().unwrap()).collect();
    assert_eq!(seq, (0..seq.len() as u64).collect::<Vec<_>>());
    let done = events.last().unwrap();
    assert!(done["response"]["output"][0]["content"][0]["text"].as_str().unwrap().contains("/v1/files/video/"));

    // A failure mid-stream is response.failed with the error's code.
    let r =
        h.post("/v1/responses").json(&json!({"model": "grok-imagine-1.0", "input": "x [sim:fail]", "stream": true}));
    let text = r.send().await.unwrap().text().await.unwrap();
    let last: Value = serde_json::from_str(sse_data(&text).last().unwrap()).unwrap();
    assert_eq!(last["type"], "response.failed", "{text}");
    assert_eq!(last["response"]["error"]["code"], "upstream_error", "{text}");

    // Refusals.
    for (bad, code) in [
        (json!({"model": "gpt-4o", "input": "hi"}), "model_not_supported"),
        (json!({"model": "grok-imagine-1.0-edit", "input": "no image"}), "invalid_value"),
        (json!({"model": "grok-imagine-1.0", "input": 3}), "invalid_value"),
        (json!({"model": "grok-imagine-1.0", "input": [{"role": "system", "content": "x"}]}), "invalid_value"),
    ] {
        let (status, body) = post_json(&h, "/v1/responses", bad.clone()).await;
        assert_eq!((status, error_code(&body).as_str()), (400, code), "{bad}: {body}");
    }
}

#[tokio::test]
async fn chat_streams_report_usage_when_asked() {
    let h = start().await;
    let body = json!({"model": "grok-imagine-1.0-video", "messages": [{"role": "user", "content": "rain"}],
                      "stream": true, "video_config": {"video_length": 2}});
    let mut with_usage = body.clone();
    with_usage["stream_options"] = json!({"include_usage": true});
    let text = h.post("/v1/chat/completions").json(&with_usage).send().await.unwrap().text().await.unwrap();
    let data = sse_data(&text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let usage: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(usage["choices"], json!([]), "{usage}");
    assert_eq!(usage["usage"]["total_tokens"], 0);
    let chunks: Vec<Value> = data[..data.len() - 2].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    assert!(chunks.iter().all(|c| c["usage"].is_null() && c.get("usage").is_some()), "{text}");

    let text = h.post("/v1/chat/completions").json(&body).send().await.unwrap().text().await.unwrap();
    assert!(!text.contains("\"usage\""), "no usage unless asked: {text}");
}

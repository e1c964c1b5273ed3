//! Video through /v1/chat/completions end to end: text-to-video and image-to-video, stream and not,
//! validation, SSRF rules for image URLs, and the downloaded MP4 served with ranges.

mod common;

use base64::Engine;
use common::*;
use serde_json::{Value, json};

fn t2v(prompt: &str, config: Value) -> Value {
    json!({"model": "grok-imagine-1.0-video", "messages": [{"role": "user", "content": prompt}], "video_config": config})
}

fn i2v(url: &str) -> Value {
    json!({"model": "grok-imagine-video", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "让这张图动起来，风吹动头发"},
        {"type": "image_url", "image_url": {"url": url}}
    ]}]})
}

async fn chat(h: &Harness, body: Value) -> (u16, Value) {
    let (status, headers, body) = split(h.post("/v1/chat/completions").json(&body).send().await.unwrap()).await;
    assert!(headers.contains_key("x-request-id"));
    (status, body)
}

/// Checks a completion and its video, returning the video bytes.
async fn check_completion(h: &Harness, body: &Value, seconds: f64) -> Vec<u8> {
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "grok-imagine-1.0-video");
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "stop");
    let msg = &choice["message"];
    assert_eq!(msg["role"], "assistant");
    let video = &msg["video"];
    let url = video["url"].as_str().unwrap();
    assert_eq!(msg["content"], format!("[video]({url})"));
    assert!(url.starts_with(&format!("{}/v1/files/video/", h.base)));
    assert_eq!(video["duration"], seconds as u64);
    let r = h.http.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "video/mp4");
    let bytes = r.bytes().await.unwrap().to_vec();
    assert!((mp4_duration_secs(&bytes) - seconds).abs() < 0.5, "MP4 duration");
    // grok.com sends a poster image with the video; the xAI API does not.
    if is_xai() {
        assert!(video["thumbnail_url"].is_null());
    } else {
        let thumb = h.http.get(video["thumbnail_url"].as_str().unwrap()).send().await.unwrap();
        assert_eq!(thumb.headers()["content-type"], "image/png");
        png_dims(&thumb.bytes().await.unwrap());
    }
    bytes
}

#[tokio::test]
async fn text_to_video_returns_a_playable_mp4() {
    let h = start().await;
    let (status, body) = chat(
        &h,
        t2v(
            "生成一段海边日落视频",
            json!({"aspect_ratio": "3:2", "video_length": 6, "resolution_name": "480p", "preset": "normal"}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    check_completion(&h, &body, 6.0).await;

    let (status, body) =
        chat(&h, t2v("a lighthouse", json!({"video_length": 10, "aspect_ratio": "9:16", "preset": "spicy"}))).await;
    assert_eq!(status, 200, "{body}");
    check_completion(&h, &body, 10.0).await;

    let (status, body) = chat(&h, t2v("defaults", Value::Null)).await;
    assert_eq!(status, 200, "{body}");
    check_completion(&h, &body, 6.0).await;
}

#[tokio::test]
async fn video_file_supports_ranges_for_seeking() {
    let h = start().await;
    let (_, body) = chat(&h, t2v("waves", json!({}))).await;
    let url = body["choices"][0]["message"]["video"]["url"].as_str().unwrap().to_owned();
    let full = h.http.get(&url).send().await.unwrap().bytes().await.unwrap();
    let r = h.http.get(&url).header("range", "bytes=1000-").send().await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], format!("bytes 1000-{}/{}", full.len() - 1, full.len()).as_str());
    assert_eq!(r.bytes().await.unwrap(), full.slice(1000..));
    let r = h.http.get(&url).header("range", "bytes=-16").send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap(), full.slice(full.len() - 16..));
}

#[tokio::test]
async fn image_to_video_from_a_data_url() {
    let h = start().await;
    let data = format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(sample_png()));
    let (status, body) = chat(&h, i2v(&data)).await;
    assert_eq!(status, 200, "{body}");
    check_completion(&h, &body, 6.0).await;
}

#[tokio::test]
async fn image_to_video_from_an_allowed_url() {
    let server = image_server().await;
    let h = builder()
        .config(|c| {
            c.fetch.host_overrides.insert("images.test".into(), format!("http://{server}"));
        })
        .start()
        .await;
    let (status, body) = chat(&h, i2v("https://images.test/img.png")).await;
    assert_eq!(status, 200, "{body}");
    check_completion(&h, &body, 6.0).await;
}

#[tokio::test]
async fn image_urls_aimed_at_internal_addresses_are_refused() {
    let server = image_server().await;
    let h = builder()
        .config(|c| {
            // A trusted name for the test server, so the redirect's first hop is allowed and only the
            // second (to loopback) must be caught.
            c.fetch.host_overrides.insert("redirector.test".into(), format!("http://{server}"));
        })
        .start()
        .await;
    let loopback_target = format!("http://127.0.0.1:{}/img.png", server.port());
    let redirect = format!("https://redirector.test/to?u={}", urlencode(&loopback_target));
    for url in [
        loopback_target.as_str(),
        "http://169.254.169.254/latest/meta-data/",
        &format!("http://[::1]:{}/img.png", server.port()),
        &format!("http://localhost:{}/img.png", server.port()),
        "http://10.0.0.1/img.png",
        redirect.as_str(),
        "file:///etc/passwd",
        "https://user:pw@images.example/x.png",
    ] {
        let (status, body) = chat(&h, i2v(url)).await;
        assert_eq!(status, 400, "{url}: {body}");
        assert_eq!(error_code(&body), "invalid_image", "{url}");
        assert_eq!(body["error"]["param"], "messages");
    }
    // The same redirect to an allowed target works, so the refusal above is the address check.
    let ok = format!("https://redirector.test/to?u={}", urlencode("https://redirector.test/img.png"));
    let (status, body) = chat(&h, i2v(&ok)).await;
    assert_eq!(status, 200, "{body}");
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn bad_images_are_400() {
    let server = image_server().await;
    let h = builder()
        .config(|c| {
            c.fetch.host_overrides.insert("images.test".into(), format!("http://{server}"));
        })
        .start()
        .await;
    for url in [
        "https://images.test/text".to_string(),
        "https://images.test/missing.png".to_string(),
        "data:image/png;base64,not-base64!!".to_string(),
        format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(b"plain text")),
        "data:image/png,raw".to_string(),
    ] {
        let (status, body) = chat(&h, i2v(&url)).await;
        assert_eq!((status, error_code(&body).as_str()), (400, "invalid_image"), "{url}: {body}");
    }
}

#[tokio::test]
async fn every_invalid_video_config_value_names_its_param() {
    let h = start().await;
    for (config, param) in [
        (json!({"aspect_ratio": "4:3"}), "video_config.aspect_ratio"),
        (json!({"aspect_ratio": 1}), "video_config.aspect_ratio"),
        (json!({"video_length": 16}), "video_config.video_length"),
        (json!({"video_length": "6"}), "video_config.video_length"),
        (json!({"video_length": -6}), "video_config.video_length"),
        (json!({"resolution_name": "4k"}), "video_config.resolution_name"),
        (json!({"preset": "wild"}), "video_config.preset"),
        (json!([1]), "video_config"),
    ] {
        let (status, body) = chat(&h, t2v("x", config.clone())).await;
        assert_eq!(status, 400, "{config}: {body}");
        assert_eq!(body["error"]["param"], param, "{config}");
        assert_eq!(error_code(&body), "invalid_value");
    }
}

#[tokio::test]
async fn malformed_messages_are_422_and_empty_prompts_400() {
    let h = start().await;
    for body in [
        json!({"model": "grok-imagine-1.0-video"}),
        json!({"model": "grok-imagine-1.0-video", "messages": "hello"}),
        json!({"model": "grok-imagine-1.0-video", "messages": [{"content": "no role"}]}),
        json!({"model": "grok-imagine-1.0-video", "messages": [{"role": "user", "content": 42}]}),
        json!({"model": "grok-imagine-1.0-video", "messages": [{"role": "user", "content": [{"type": "text"}]}]}),
        json!({"messages": [{"role": "user", "content": "x"}]}),
    ] {
        let (status, resp) = chat(&h, body.clone()).await;
        assert_eq!(status, 422, "{body}: {resp}");
        error_code(&resp);
    }
    for body in [
        json!({"model": "grok-imagine-1.0-video", "messages": []}),
        json!({"model": "grok-imagine-1.0-video", "messages": [{"role": "system", "content": "x"}]}),
        json!({"model": "grok-imagine-1.0-video", "messages": [{"role": "user", "content": "  "}]}),
    ] {
        let (status, resp) = chat(&h, body.clone()).await;
        assert_eq!((status, resp["error"]["param"].as_str()), (400, Some("messages")), "{body}: {resp}");
    }
    for model in ["grok-imagine-1.0", "gpt-4o"] {
        let (status, resp) = chat(&h, json!({"model": model, "messages": [{"role": "user", "content": "x"}]})).await;
        assert_eq!((status, error_code(&resp).as_str()), (400, "model_not_supported"));
    }
}

#[tokio::test]
async fn stream_reports_rising_progress_then_the_link() {
    let h = start().await;
    let mut body = t2v("waves", json!({"video_length": 10}));
    body["stream"] = json!(true);
    let r = h.post("/v1/chat/completions").json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let events = sse_data(&r.text().await.unwrap());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    let id = chunks[0]["id"].as_str().unwrap();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let mut last = 0;
    let mut progress_chunks = 0;
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], id);
        if let Some(p) = c["progress"].as_u64() {
            assert!(p >= last, "progress went backwards: {p} after {last}");
            last = p;
            if c["choices"][0]["delta"]["content"] == "" {
                progress_chunks += 1;
            }
        }
    }
    assert!(progress_chunks >= 3, "expected several progress chunks, got {progress_chunks}");
    let link = &chunks[chunks.len() - 2];
    let video = &link["choices"][0]["delta"]["video"];
    assert_eq!(link["choices"][0]["delta"]["content"], format!("[video]({})", video["url"].as_str().unwrap()));
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "stop");
    let mp4 = h.http.get(video["url"].as_str().unwrap()).send().await.unwrap().bytes().await.unwrap();
    assert!((mp4_duration_secs(&mp4) - 10.0).abs() < 0.5);
}

#[tokio::test]
async fn stream_failure_is_an_error_chunk_then_done() {
    let h = start().await;
    let mut body = t2v("waves [sim:fail]", json!({}));
    body["stream"] = json!(true);
    let text = h.post("/v1/chat/completions").json(&body).send().await.unwrap().text().await.unwrap();
    let events = sse_data(&text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let err: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(err["error"]["code"], "upstream_error");
}

#[tokio::test]
async fn stream_client_disconnect_frees_the_token_slot() {
    let h = builder().single_slot().start().await;
    let mut body = t2v("slow [sim:slow=300]", json!({}));
    body["stream"] = json!(true);
    let mut r = h.post("/v1/chat/completions").json(&body).send().await.unwrap();
    let mut got = String::new();
    while !got.contains("\"progress\"") {
        got.push_str(&String::from_utf8_lossy(&r.chunk().await.unwrap().unwrap()));
    }
    drop(r);
    assert_slot_freed(async || chat(&h, t2v("after", json!({}))).await).await;
}

#[tokio::test]
async fn a_video_whose_stream_died_after_it_started_is_collected_from_its_post() {
    if grok_web_only("a_video_whose_stream_died_after_it_started_is_collected_from_its_post") {
        return;
    }
    let h = start().await;
    let (status, body) = chat(&h, t2v("a stormy sea [sim:disconnect]", json!({}))).await;
    assert_eq!(status, 200, "{body}");
    check_completion(&h, &body, 6.0).await;
    assert_eq!(h.sim.video_starts(), 1, "collected from its post, not made again");
}

#[tokio::test]
async fn a_video_the_upstream_started_is_never_run_again_on_another_token() {
    if grok_web_only("a_video_the_upstream_started_is_never_run_again_on_another_token") {
        return;
    }
    // The stream dies after the videoId and the post is lost too: the video fails, and no other
    // token is asked to make (and pay for) it again.
    let h = start().await;
    let (status, body) = chat(&h, t2v("a stormy sea [sim:disconnect] [sim:vanish]", json!({}))).await;
    assert_eq!(status, 502, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("not re-run"), "{body}");
    assert_eq!(h.sim.video_starts(), 1, "the stream died after its videoId: one upstream video, not one per token");
}

#[tokio::test]
async fn the_result_is_taken_when_the_final_url_arrives_even_if_the_stream_stays_open() {
    if grok_web_only("the_result_is_taken_when_the_final_url_arrives_even_if_the_stream_stays_open") {
        return;
    }
    // The harness's idle timeout is 5 s; the simulator keeps this stream open for 10 minutes.
    let h = start().await;
    let (status, body) = chat(&h, t2v("a calm lake [sim:keep-open]", json!({}))).await;
    assert_eq!(status, 200, "{body}");
    check_completion(&h, &body, 6.0).await;
}

#[tokio::test]
async fn any_whole_length_from_1_to_15_seconds() {
    let h = start().await;
    for secs in [1, 7, 15] {
        let (status, body) = chat(&h, t2v("a kite", json!({ "video_length": secs }))).await;
        assert_eq!(status, 200, "{secs} s: {body}");
        assert_eq!(body["choices"][0]["message"]["video"]["duration"], secs);
    }
    // A fraction is taken to the nearest second; beyond the range is the caller's mistake.
    let (status, body) = chat(&h, t2v("a kite", json!({ "video_length": 6.6 }))).await;
    assert_eq!((status, &body["choices"][0]["message"]["video"]["duration"]), (200, &json!(7)), "{body}");
    for bad in [json!(0), json!(16), json!("6")] {
        let (status, body) = chat(&h, t2v("a kite", json!({ "video_length": bad }))).await;
        assert_eq!((status, body["error"]["param"].as_str()), (400, Some("video_config.video_length")), "{body}");
    }
}

fn data_url(png: &[u8]) -> String {
    format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png))
}

fn with_images(text: Option<&str>, urls: &[String], config: Value) -> Value {
    let mut parts: Vec<Value> = text.map(|t| json!({"type": "text", "text": t})).into_iter().collect();
    parts.extend(urls.iter().map(|u| json!({"type": "image_url", "image_url": {"url": u}})));
    json!({"model": "grok-imagine-1.0-video", "messages": [{"role": "user", "content": parts}], "video_config": config})
}

#[tokio::test]
async fn an_image_without_a_prompt_is_animated_in_the_presets_style() {
    // The simulators check the web app's form: no `prompt`, message `--mode=<preset>` (grok.com); no
    // prompt with a first frame (xAI).
    let h = start().await;
    let image = data_url(&sample_png());
    for preset in ["normal", "fun", "spicy"] {
        let (status, body) =
            chat(&h, with_images(None, std::slice::from_ref(&image), json!({ "preset": preset }))).await;
        assert_eq!(status, 200, "{preset}: {body}");
        check_completion(&h, &body, 6.0).await;
    }
    // `custom` is the prompt's own direction, and text-to-video needs a prompt.
    let (status, body) = chat(&h, with_images(None, &[image], json!({"preset": "custom"}))).await;
    assert_eq!((status, body["error"]["param"].as_str()), (400, Some("video_config.preset")), "{body}");
    let (status, body) = chat(&h, with_images(None, &[], json!({}))).await;
    assert_eq!((status, body["error"]["param"].as_str()), (400, Some("messages")), "{body}");
}

#[tokio::test]
async fn several_images_make_a_video_from_references() {
    let h = start().await;
    let images: Vec<String> = (0..3).map(|_| data_url(&sample_png())).collect();
    let (status, body) = chat(&h, with_images(Some("the two of them dancing"), &images, json!({}))).await;
    assert_eq!(status, 200, "{body}");
    check_completion(&h, &body, 6.0).await;
    // Reference-to-video: a prompt, at most 7 images, at most 10 seconds.
    let (status, body) = chat(&h, with_images(None, &images, json!({}))).await;
    assert_eq!((status, body["error"]["param"].as_str()), (400, Some("messages")), "{body}");
    let eight: Vec<String> = (0..8).map(|_| images[0].clone()).collect();
    let (status, body) = chat(&h, with_images(Some("a crowd"), &eight, json!({}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_image")), "{body}");
    let (status, body) = chat(&h, with_images(Some("a crowd"), &images, json!({"video_length": 12}))).await;
    assert_eq!((status, body["error"]["param"].as_str()), (400, Some("video_config.video_length")), "{body}");
}

#[tokio::test]
async fn an_image_this_gateway_generated_feeds_a_video_without_a_second_upload() {
    if grok_web_only("an_image_this_gateway_generated_feeds_a_video_without_a_second_upload") {
        return;
    }
    // The first token cannot make images, so the second one makes it; the video must then run on that
    // same account, the only one that can name the image by its id.
    let h = builder()
        .sim(|s| {
            s.exhausted_products.insert("tok-alpha-0001".into(), vec!["image".into()]);
        })
        .start()
        .await;
    let (status, _, body) = h.generate(json!({"model": "grok-imagine-1.0", "prompt": "a red fox", "n": 1})).await;
    assert_eq!(status, 200, "{body}");
    let url = body["data"][0]["url"].as_str().unwrap().to_owned();
    assert!(url.contains("/v1/files/image/"), "{url}");
    let (status, body) = chat(&h, with_images(Some("the fox runs"), &[url], json!({}))).await;
    assert_eq!(status, 200, "{body}");
    check_completion(&h, &body, 6.0).await;
    assert_eq!(h.sim.uploads(), 0, "the generated image is named by its upstream id, not uploaded again");
    // An image from anywhere else is uploaded.
    let (status, body) = chat(&h, with_images(Some("it runs"), &[data_url(&sample_png())], json!({}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(h.sim.uploads(), 1);
}

#[tokio::test]
async fn a_refused_generated_id_is_uploaded_once_and_the_other_uploads_are_kept() {
    if grok_web_only("a_refused_generated_id_is_uploaded_once_and_the_other_uploads_are_kept") {
        return;
    }
    // One token, so the generated image is that account's; the simulator refuses generated ids here.
    let h = builder().credentials(&["only-token-0001"], &["only-token-0001"]).start().await;
    let (status, _, body) = h.generate(json!({"model": "grok-imagine-1.0", "prompt": "a red fox", "n": 1})).await;
    assert_eq!(status, 200, "{body}");
    let generated = body["data"][0]["url"].as_str().unwrap().to_owned();
    let images = [generated, data_url(&sample_png())];
    let (status, body) = chat(&h, with_images(Some("the two meet [sim:uploads-only]"), &images, json!({}))).await;
    assert_eq!(status, 200, "{body}");
    check_completion(&h, &body, 6.0).await;
    // The outside image once (first attempt, kept), the generated one once (the retry): not three.
    assert_eq!(h.sim.uploads(), 2);
    assert_eq!(h.sim.video_starts(), 1);
}

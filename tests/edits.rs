//! Image edits end to end: multipart in, upload + conversation stream upstream, PNG links out.

mod common;

use common::*;
use reqwest::multipart::{Form, Part};

fn image_part(bytes: Vec<u8>, name: &str, mime: &str) -> Part {
    Part::bytes(bytes).file_name(name.to_owned()).mime_str(mime).unwrap()
}

fn edit_form(prompt: &str) -> Form {
    Form::new()
        .text("model", "grok-imagine-1.0-edit")
        .text("prompt", prompt.to_owned())
        .part("image", image_part(sample_png(), "input.png", "image/png"))
}

#[tokio::test]
async fn edit_returns_real_pngs() {
    let h = start().await;
    let (status, headers, body) = h.edit(edit_form("把图片变清晰").text("n", "1")).await;
    assert_eq!(status, 200, "{body}");
    assert!(headers.contains_key("x-request-id"));
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    let bytes = h.http.get(data[0]["url"].as_str().unwrap()).send().await.unwrap().bytes().await.unwrap();
    png_dims(&bytes);
}

#[tokio::test]
async fn edit_makes_n_images_across_calls_and_accepts_image_array_and_alias() {
    let h = start().await;
    let form = Form::new()
        .text("model", "grok-imagine-image-edit")
        .text("prompt", "make it purple")
        .text("n", "3")
        .text("size", "16:9")
        .text("response_format", "b64_json")
        .part("image[]", image_part(sample_png(), "a.png", "image/png"))
        .part("image[]", image_part(sample_png(), "b.png", "application/octet-stream"));
    let (status, _, body) = h.edit(form).await;
    assert_eq!(status, 200, "{body}");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    use base64::Engine;
    for d in data {
        let bytes = base64::engine::general_purpose::STANDARD.decode(d["b64_json"].as_str().unwrap()).unwrap();
        let (w, hgt) = png_dims(&bytes);
        assert!(w > hgt, "size 16:9 → landscape");
    }
}

#[tokio::test]
async fn edit_input_validation() {
    let h = start().await;
    // A text file is not an image, whatever it claims to be.
    let form = Form::new()
        .text("model", "grok-imagine-1.0-edit")
        .text("prompt", "x")
        .part("image", image_part(b"hello, not an image".to_vec(), "a.png", "image/png"));
    let (status, _, body) = h.edit(form).await;
    assert_eq!((status, error_code(&body).as_str()), (400, "invalid_value"));
    assert_eq!(body["error"]["param"], "image");

    // One more than the upstream's model edits at once: 3 on grok.com, 5 on xAI's 2.0 (the default).
    let mut form = edit_form("x");
    let most = if is_xai() { 5 } else { 3 };
    for i in 0..most {
        form = form.part("image[]", image_part(sample_png(), &format!("{i}.png"), "image/png"));
    }
    let (status, _, body) = h.edit(form).await;
    assert_eq!(status, 400, "{} images: {body}", most + 1);
    assert!(body["error"]["message"].as_str().unwrap().contains(&format!("at most {most}")), "{body}");

    let form = Form::new().text("model", "grok-imagine-1.0-edit").text("prompt", "x");
    let (status, _, body) = h.edit(form).await;
    assert_eq!((status, body["error"]["param"].as_str()), (422, Some("image")));

    let form = Form::new().text("prompt", "x").part("image", image_part(sample_png(), "a.png", "image/png"));
    let (status, _, body) = h.edit(form).await;
    assert_eq!((status, body["error"]["param"].as_str()), (422, Some("model")));

    let (status, _, body) = h.edit(edit_form("x").text("n", "two")).await;
    assert_eq!((status, body["error"]["param"].as_str()), (400, Some("n")));
    let (status, _, _) = h.edit(edit_form("x").text("n", "11")).await;
    assert_eq!(status, 400);
    let (status, _, body) = h.edit(edit_form("x").text("size", "13x7")).await;
    assert_eq!((status, body["error"]["param"].as_str()), (400, Some("size")));

    // xAI names one model for generations and edits: the image model edits too; the video one cannot.
    let form = Form::new()
        .text("model", "grok-imagine-1.0")
        .text("prompt", "x")
        .part("image", image_part(sample_png(), "a.png", "image/png"));
    let (status, _, body) = h.edit(form).await;
    assert_eq!(status, 200, "{body}");
    let form = Form::new()
        .text("model", "grok-imagine-1.0-video")
        .text("prompt", "x")
        .part("image", image_part(sample_png(), "a.png", "image/png"));
    let (status, _, body) = h.edit(form).await;
    assert_eq!((status, error_code(&body).as_str()), (400, "model_not_supported"));
}

#[tokio::test]
async fn edit_rejects_non_multipart_and_oversized_bodies() {
    let h = builder().config(|c| c.server.max_upload_bytes = 64 * 1024).start().await;
    let r = h.post("/v1/images/edits").header("content-type", "text/plain").body("x").send().await.unwrap();
    let (status, _, body) = split(r).await;
    assert_eq!((status, error_code(&body).as_str()), (415, "unsupported_media_type"));
    // JSON is xAI's form of an edit (tests/compat.rs): this one lacks its prompt and image.
    let r =
        h.post("/v1/images/edits").json(&serde_json::json!({"model": "grok-imagine-1.0-edit"})).send().await.unwrap();
    let (status, _, body) = split(r).await;
    assert_eq!((status, error_code(&body).as_str()), (422, "missing_required_field"));

    let big = Form::new()
        .text("model", "grok-imagine-1.0-edit")
        .text("prompt", "x")
        .part("image", image_part(vec![0x89; 200 * 1024], "big.png", "image/png"));
    let (status, _, body) = h.edit(big).await;
    assert_eq!((status, error_code(&body).as_str()), (413, "payload_too_large"));
}

#[tokio::test]
async fn jpeg_and_webp_inputs_are_accepted() {
    let h = start().await;
    // Minimal files recognised by their signatures; the simulator checks them the same way grok.com does.
    let jpeg = [&[0xFF, 0xD8, 0xFF, 0xE0][..], &[0u8; 64][..]].concat();
    let webp = [&b"RIFF\x24\0\0\0WEBPVP8 "[..], &[0u8; 64][..]].concat();
    for (bytes, name, mime) in [(jpeg, "a.jpg", "image/jpeg"), (webp, "a.webp", "image/webp")] {
        let form = Form::new()
            .text("model", "grok-imagine-1.0-edit")
            .text("prompt", "x")
            .part("image", image_part(bytes, name, mime));
        let (status, _, body) = h.edit(form).await;
        assert_eq!(status, 200, "{name}: {body}");
    }
}

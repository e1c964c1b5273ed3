//! Micro benchmarks of the per-request pure logic: stream framing, auth, range parsing, frame parsing.
//! Run: `cargo bench --bench hot_paths`.

use criterion::{Criterion, criterion_group, criterion_main};
use grok2api::auth::Auth;
use grok2api::jobs::{ImageFormat, ImageOutput};
use grok2api::media::parse_range;
use grok2api::upstream::grok_web::ndjson::FrameDecoder;
use std::hint::black_box;

fn ndjson(c: &mut Criterion) {
    let frame = br#"{"result":{"response":{"streamingImageGenerationResponse":{"imageIndex":0,"progress":55,"imageUrl":"users/u1/generated/8e7d-part-0/image.jpg"}}}}"#;
    let mut stream = Vec::new();
    for _ in 0..100 {
        stream.extend_from_slice(frame);
        stream.push(b'\n');
    }
    c.bench_function("ndjson_decode_100_frames_in_1k_chunks", |b| {
        b.iter(|| {
            let mut d = FrameDecoder::default();
            let mut n = 0;
            for chunk in stream.chunks(1024) {
                d.push(chunk);
                while d.next_frame().is_some() {
                    n += 1;
                }
            }
            black_box(n)
        })
    });
}

fn auth(c: &mut Criterion) {
    let keys: Vec<String> = (0..8).map(|i| format!("sk-key-number-{i}")).collect();
    let auth = Auth::new(&keys);
    let mut headers = axum::http::HeaderMap::new();
    headers.insert("authorization", "Bearer sk-key-number-7".parse().unwrap());
    c.bench_function("auth_check_8_keys", |b| b.iter(|| black_box(auth.check(black_box(&headers)).is_ok())));
}

fn range(c: &mut Criterion) {
    c.bench_function("parse_range", |b| b.iter(|| black_box(parse_range(black_box(Some("bytes=1000-2047")), 1 << 20))));
}

/// Re-encoding one simulated 512 px final (PNG) to the `output_format` a caller asked for.
fn output_format(c: &mut Criterion) {
    let png = bytes::Bytes::from(grok2api::sim::render::render_png(&[7; 32], 512, 512, 1.0));
    for format in [ImageFormat::Jpeg, ImageFormat::Webp] {
        let output = ImageOutput { format: Some(format), compression: Some(80) };
        c.bench_function(
            &format!("reencode_512px_png_to_{}", format.content_type().trim_start_matches("image/")),
            |b| b.iter(|| black_box(output.apply(png.clone(), "image/png").unwrap().0.len())),
        );
    }
}

/// Rendering a task as the OpenAI Video object (every poll and every event).
fn video_object(c: &mut Criterion) {
    let store = grok2api::tasks::store::TaskStore::new();
    let request = std::sync::Arc::new(grok2api::tasks::VideoRequest {
        model: "grok-imagine-1.0-video".into(),
        prompt: "a paper boat on a river".into(),
        seconds: 8,
        size: "1280x720".into(),
        resolution: "720p".into(),
        remixed_from: None,
    });
    let owner = grok2api::auth::KeyId(std::sync::Arc::from("k"));
    let id = store.create_for(
        owner,
        grok2api::tasks::TaskKind::Video,
        None,
        grok2api::tasks::TaskApi::OpenAi,
        Some(request),
    );
    let task = store.get(&id, grok2api::tasks::TaskKind::Video, None).unwrap();
    c.bench_function("openai_video_object_to_json", |b| {
        b.iter(|| black_box(serde_json::to_vec(&grok2api::api::videos::video_object(black_box(&task))).unwrap().len()))
    });
}

/// The quality guard's fingerprint of one output: a 1024 px image (decoded pixels), the simulator's
/// 10 s clip (its video samples), and 8 MiB read as bytes (the per-byte cost of a large video's samples).
fn fingerprint(c: &mut Criterion) {
    use grok2api::media::fingerprint::fingerprint;
    let png = grok2api::sim::render::render_png(&[7; 32], 1024, 1024, 1.0);
    c.bench_function("fingerprint_1024px_png", |b| b.iter(|| black_box(fingerprint(black_box(&png), "image/png"))));
    let jpeg = ImageOutput { format: Some(ImageFormat::Jpeg), compression: Some(85) }
        .apply(bytes::Bytes::from(png.clone()), "image/png")
        .unwrap()
        .0;
    c.bench_function("fingerprint_1024px_jpeg", |b| b.iter(|| black_box(fingerprint(black_box(&jpeg), "image/jpeg"))));
    let clip = grok2api::sim::video_canned_clip();
    c.bench_function("fingerprint_sim_clip_mp4", |b| b.iter(|| black_box(fingerprint(black_box(&clip), "video/mp4"))));
    let big = vec![0x5au8; 8 << 20];
    c.bench_function("fingerprint_8mib_bytes", |b| {
        b.iter(|| black_box(fingerprint(black_box(&big), "application/octet-stream")))
    });
}

criterion_group!(benches, ndjson, auth, range, output_format, video_object, fingerprint);
criterion_main!(benches);

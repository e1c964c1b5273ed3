//! Micro benchmarks of the per-request pure logic: stream framing, auth, range parsing, frame parsing.
//! Run: `cargo bench --bench hot_paths`.

use criterion::{Criterion, criterion_group, criterion_main};
use grok2api::auth::Auth;
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

criterion_group!(benches, ndjson, auth, range);
criterion_main!(benches);

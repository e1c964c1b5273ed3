//! The fault and bad-input suite: simulator faults under concurrent load (every task ends, nothing is
//! stuck, nothing answers 500), and fuzz-style bodies for the JSON and multipart parsers (4xx only).

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// xorshift64*: reproducible randomness without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

const FAULTS: &[&str] = &[
    "",
    "",
    "[sim:fail]",
    "[sim:garbage]",
    "[sim:disconnect]",
    "[sim:moderated]",
    "[sim:slow=40]",
    "[sim:cloudflare]",
];

#[tokio::test]
async fn faults_under_concurrent_load_end_every_task_and_never_500() {
    let h = builder()
        .sim(|s| s.tokens.push("tok-charlie-0003".into()))
        .config(|c| {
            c.grok.tokens.push("tok-charlie-0003".into());
            c.tasks.workers = 8;
            c.grok.idle_timeout_secs = 2;
        })
        .start()
        .await;
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let h = &h;
    let mut creates = Vec::new();
    for i in 0..80 {
        let fault = FAULTS[rng.below(FAULTS.len())];
        let (path, kind, body) = if i % 2 == 0 {
            (
                "/v1/images/tasks",
                "images",
                json!({"model": "grok-imagine-1.0", "prompt": format!("load {i} {fault}"), "n": 1 + rng.below(3)}),
            )
        } else {
            (
                "/v1/video/tasks",
                "video",
                json!({"model": "grok-imagine-1.0-video", "prompt": format!("load {i} {fault}")}),
            )
        };
        creates.push(async move { (kind, split(h.post(path).json(&body).send().await.unwrap()).await) });
    }
    let mut sync = Vec::new();
    for i in 0..30 {
        let fault = FAULTS[rng.below(FAULTS.len())];
        let body = json!({"model": "grok-imagine-1.0", "prompt": format!("sync {i} {fault}")});
        sync.push(async move { h.generate(body).await.0 });
    }
    let (created, sync_statuses) =
        tokio::join!(futures_util::future::join_all(creates), futures_util::future::join_all(sync));
    for s in &sync_statuses {
        assert!([200, 400, 429, 502, 504].contains(s), "sync answered {s}");
    }
    let ids: Vec<(&str, String)> = created
        .into_iter()
        .map(|(kind, (s, _, b))| {
            assert_eq!(s, 202, "{b}");
            (kind, b["data"]["taskId"].as_str().unwrap().to_owned())
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut ok, mut failed) = (0, 0);
    for (kind, id) in &ids {
        loop {
            let (s, _, b) = split(h.get(&format!("/v1/{kind}/tasks/{id}")).send().await.unwrap()).await;
            assert_eq!(s, 200);
            match b["data"]["status"].as_str().unwrap() {
                "success" => {
                    ok += 1;
                    break;
                }
                "failed" => {
                    assert!(b["data"]["errorMsg"].as_str().is_some_and(|m| !m.is_empty()));
                    failed += 1;
                    break;
                }
                _ => {
                    assert!(Instant::now() < deadline, "task {id} stuck: {b}");
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            }
        }
    }
    assert_eq!(ok + failed, 80);
    assert!(ok > 0 && failed > 0, "the mix must produce both outcomes ({ok} ok, {failed} failed)");
    let metrics = h.http.get(h.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("grok2api_tasks{state=\"processing\"} 0"), "{metrics}");
    assert!(metrics.contains("grok2api_tasks{state=\"pending\"} 0"));
    assert!(!metrics.contains("status=\"500\""), "a 500 was served:\n{metrics}");
    eprintln!(
        "fault load: 80 tasks ({ok} succeeded, {failed} failed) and 30 sync requests; statuses {sync_statuses:?}"
    );
}

fn mutations(rng: &mut Rng, valid: &Value) -> Vec<Vec<u8>> {
    let text = valid.to_string().into_bytes();
    let mut out: Vec<Vec<u8>> = (0..text.len()).step_by(3).map(|i| text[..i].to_vec()).collect();
    for _ in 0..40 {
        let n = rng.below(200);
        out.push(rng.bytes(n));
    }
    for _ in 0..40 {
        let mut t = text.clone();
        for _ in 0..1 + rng.below(4) {
            let i = rng.below(t.len());
            t[i] = rng.next() as u8;
        }
        out.push(t);
    }
    let weird = [
        json!(null),
        json!(1e300),
        json!(-1),
        json!(u64::MAX),
        json!(-9_223_372_036_854_775_807i64),
        json!(0.5),
        json!(""),
        json!("x".repeat(50_000)),
        json!([[[[[[]]]]]]),
        json!({"a": {"b": {"c": {}}}}),
        json!(true),
        json!("\u{0000}\u{FFFF}"),
    ];
    if let Value::Object(fields) = valid {
        for key in fields.keys() {
            for w in &weird {
                let mut v = valid.clone();
                v[key] = w.clone();
                out.push(v.to_string().into_bytes());
            }
        }
    }
    out.push(b"{\"model\": \"grok-imagine-1.0\", \"prompt\": \"\\ud800\"}".to_vec());
    out.push(b"{\"model\": \"grok-imagine-1.0\", \"prompt\": \"\xff\xfe\"}".to_vec());
    out.push(b"{\"n\": 1e400}".to_vec());
    out.push(format!("{}{}", "[".repeat(5000), "]".repeat(5000)).into_bytes());
    out
}

#[tokio::test]
async fn json_parsers_answer_4xx_to_garbage() {
    let h = builder().config(|c| c.grok.idle_timeout_secs = 1).start().await;
    let mut rng = Rng(0xfeed_beef_0000_0042);
    let endpoints = [
        (
            "/v1/images/generations",
            json!({"model": "grok-imagine-1.0", "prompt": "a [sim:fail]", "n": 1, "size": "1024x1024", "response_format": "url"}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "grok-imagine-1.0-video", "messages": [{"role": "user", "content": "a [sim:fail]"}], "video_config": {"video_length": 6}}),
        ),
        ("/v1/video/tasks", json!({"model": "grok-imagine-1.0-video", "prompt": "a [sim:fail]", "video_length": 6})),
        ("/v1/images/tasks", json!({"model": "grok-imagine-1.0", "prompt": "a [sim:fail]", "n": 1})),
    ];
    let mut sent = 0;
    for (path, valid) in endpoints {
        for body in mutations(&mut rng, &valid) {
            let r = h.post(path).header("content-type", "application/json").body(body.clone()).send().await.unwrap();
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            assert!(
                status < 500 || status == 502,
                "{path} answered {status} to {:?}: {text}",
                String::from_utf8_lossy(&body)
            );
            assert!(serde_json::from_str::<Value>(&text).is_ok(), "{path}: non-JSON error body {text}");
            sent += 1;
        }
    }
    eprintln!("json fuzz: {sent} bodies, no 5xx from the parsers");
}

#[tokio::test]
async fn multipart_parser_answers_4xx_to_garbage() {
    let h = builder().config(|c| c.server.max_upload_bytes = 256 * 1024).start().await;
    let mut rng = Rng(0x0dd_ba11_5eed_0007);
    let boundary = "XyZzY";
    let png = sample_png();
    let mut valid = Vec::new();
    for (name, value) in [("model", "grok-imagine-1.0-edit"), ("prompt", "x [sim:fail]")] {
        valid.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    valid.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n").as_bytes());
    valid.extend_from_slice(&png);
    valid.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut bodies: Vec<Vec<u8>> = (0..valid.len()).step_by(valid.len() / 60).map(|i| valid[..i].to_vec()).collect();
    for _ in 0..60 {
        let mut t = valid.clone();
        for _ in 0..1 + rng.below(6) {
            let i = rng.below(t.len());
            t[i] = rng.next() as u8;
        }
        bodies.push(t);
    }
    for _ in 0..30 {
        let n = rng.below(4000);
        bodies.push(rng.bytes(n));
    }
    let mut bad_utf8 = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"n\"\r\n\r\n").into_bytes();
    bad_utf8.extend_from_slice(b"\xff\xfe");
    bad_utf8.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    bodies.push(bad_utf8);
    bodies.push(vec![b'a'; 300 * 1024]);
    let mut statuses = std::collections::BTreeMap::new();
    for body in &bodies {
        for ct in
            [format!("multipart/form-data; boundary={boundary}"), "multipart/form-data".into(), "text/plain".into()]
        {
            let r = h.post("/v1/images/edits").header("content-type", ct).body(body.clone()).send().await.unwrap();
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            assert!(status < 500 || status == 502, "edits answered {status}: {text}");
            *statuses.entry(status).or_insert(0) += 1;
        }
    }
    eprintln!("multipart fuzz: {} bodies x 3 content types, statuses {statuses:?}", bodies.len());
}

//! One-image latency: through the gateway (HTTP → client → simulator → media store → JSON) versus the
//! same grok-web client calling the simulator directly. The difference is what the gateway adds.
//! Run: `cargo bench --bench latency` (release build; N=50 by default, `LATENCY_N` to change). The
//! simulator speaks TLS and checks fingerprints as grok.com's Cloudflare does (`LATENCY_TLS=0`: plain
//! HTTP, to separate the cost of TLS from the rest).

use std::time::{Duration, Instant};

use grok2api::app::Server;
use grok2api::config::Config;
use grok2api::jobs::{ImageJob, ProgressSink, VideoJob, VideoPreset};
use grok2api::sim::{self, SimConfig};
use grok2api::upstream::grok_web::GrokWebClient;
use tokio::net::TcpListener;

fn stats(name: &str, mut v: Vec<Duration>) -> f64 {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = ms(v[v.len() / 2]);
    println!(
        "{name:<28} n={:<3} min={:>7.2} ms  median={:>7.2} ms  p90={:>7.2} ms  max={:>7.2} ms",
        v.len(),
        ms(v[0]),
        median,
        ms(v[v.len() * 9 / 10]),
        ms(v[v.len() - 1])
    );
    median
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` probes harness=false benches
    }
    grok2api::install_crypto_provider();
    // `cargo test --benches` runs this without `--bench`: a two-round smoke run, no timings.
    let timing = std::env::args().any(|a| a == "--bench");
    let n: usize = if timing { std::env::var("LATENCY_N").ok().and_then(|s| s.parse().ok()).unwrap_or(50) } else { 2 };
    let delay_ms: u64 = std::env::var("LATENCY_FRAME_DELAY_MS").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let tls = std::env::var("LATENCY_TLS").map_or(true, |v| v != "0");
    let tokens = vec!["bench-token-0001".to_string()];
    let sim = sim::spawn(
        SimConfig { tokens: tokens.clone(), frame_delay: Duration::from_millis(delay_ms), tls, ..SimConfig::default() },
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .unwrap();
    let media = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.grok.base_url = sim.base_url();
    cfg.grok.assets_url = sim.base_url();
    cfg.grok.ws_url = sim.ws_url();
    cfg.grok.ca_pem = sim.ca_pem.clone();
    cfg.grok.tokens = tokens;
    cfg.media.dir = Some(media.path().to_owned());
    let direct = GrokWebClient::new(cfg.grok.clone(), Default::default()).unwrap();
    let server = Server::start(cfg, TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/v1/images/generations", server.base_url());
    let body = serde_json::json!({"model": "grok-imagine-1.0", "prompt": "latency probe", "n": 1, "size": "1024x1024"});
    let job = ImageJob {
        prompt: "latency probe".into(),
        n: 1,
        aspect_ratio: "1:1",
        output: Default::default(),
        quality: None,
    };

    // Warm up both paths (connections, page cache).
    for _ in 0..3 {
        direct.generate_images(&job, &ProgressSink::none()).await.unwrap();
        http.post(&url).json(&body).send().await.unwrap().bytes().await.unwrap();
    }
    let mut d = Vec::with_capacity(n);
    let mut g = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let assets = direct.generate_images(&job, &ProgressSink::none()).await.unwrap();
        d.push(t.elapsed());
        assert_eq!(assets.len(), 1);

        let t = Instant::now();
        let r = http.post(&url).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
        g.push(t.elapsed());
    }
    if !timing {
        println!("latency bench smoke run: both paths served {n} images (timings: cargo bench --bench latency)");
        return;
    }
    let front = if tls { "TLS + fingerprint checks" } else { "plain HTTP" };
    println!("one 512x512 image, simulator frame delay {delay_ms} ms, simulator over {front}");
    let md = stats("direct client → simulator", d);
    let mg = stats("through the gateway", g);
    println!("gateway overhead (median): {:.2} ms", mg - md);

    // Video: time to the first progress report and to the finished file, streamed.
    let video_job = VideoJob {
        prompt: "latency probe".into(),
        aspect_ratio: "3:2",
        duration: 6,
        resolution: "480p",
        preset: VideoPreset::Normal,
        images: Vec::new(),
    };
    let chat = format!("{}/v1/chat/completions", server.base_url());
    let chat_body = serde_json::json!({"model": "grok-imagine-1.0-video", "stream": true,
        "messages": [{"role": "user", "content": "latency probe"}]});
    let (mut d_first, mut d_total, mut g_first, mut g_total) = (vec![], vec![], vec![], vec![]);
    for _ in 0..n {
        let t = Instant::now();
        let (sink, mut rx) = ProgressSink::channel(64);
        let run = direct.generate_video(&video_job, &sink);
        tokio::pin!(run);
        let mut first = None;
        loop {
            tokio::select! {
                Some(_) = rx.recv(), if first.is_none() => first = Some(t.elapsed()),
                r = &mut run => { r.unwrap(); break; }
            }
        }
        d_total.push(t.elapsed());
        d_first.push(first.unwrap_or_else(|| t.elapsed()));

        let t = Instant::now();
        let mut r = http.post(&chat).json(&chat_body).send().await.unwrap();
        let mut first = None;
        let mut text = String::new();
        while let Some(c) = r.chunk().await.unwrap() {
            text.push_str(&String::from_utf8_lossy(&c));
            if first.is_none() && text.contains("\"progress\"") {
                first = Some(t.elapsed());
            }
        }
        assert!(text.contains("[DONE]") && text.contains("[video]("));
        g_total.push(t.elapsed());
        g_first.push(first.unwrap_or_else(|| t.elapsed()));
    }
    println!("one 6 s video (stream), simulator frame delay {delay_ms} ms");
    stats("direct: first progress", d_first);
    stats("gateway: first progress", g_first);
    let vd = stats("direct: finished", d_total);
    let vg = stats("gateway: finished", g_total);
    println!("gateway overhead for a video (median): {:.2} ms", vg - vd);
}

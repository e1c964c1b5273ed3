//! Test harness: the simulator and the real gateway router, each on an ephemeral loopback port,
//! and a real HTTP client.
#![allow(dead_code)]

pub mod proxy;
pub mod services;
pub mod webhooks;

use std::time::{Duration, Instant};

use grok2api::app::Server;
use grok2api::config::{Config, UpstreamKind};
use grok2api::sim::{self, SimConfig, SimHandle};
use tokio::net::TcpListener;

pub const KEY: &str = "test-key-1";
pub const OTHER_KEY: &str = "test-key-2";

pub struct Harness {
    pub sim: SimHandle,
    pub server: Server,
    pub http: reqwest::Client,
    pub base: String,
    _media: tempfile::TempDir,
    _ca: tempfile::TempDir,
    /// The harness's own redis-server in the Redis store mode.
    _store: Option<Running>,
}

/// The task store the suite runs on: `GROK2API_TEST_STORE=redis` gives each gateway its own
/// redis-server (the shared store several replicas use); the in-process store otherwise.
pub fn redis_store() -> bool {
    std::env::var("GROK2API_TEST_STORE").as_deref() == Ok("redis")
}

pub struct Builder {
    pub sim: SimConfig,
    pub cfg: Config,
    /// Config that depends on the running simulator (its URL), applied once it is up.
    after_sim: Vec<AfterSim>,
}

type AfterSim = Box<dyn FnOnce(&mut Config, &SimHandle)>;

/// Which upstream the end-to-end suite runs against: `GROK2API_TEST_UPSTREAM=xai` for the official
/// API flavor, grok.com's web protocol otherwise. The same tests run against both.
pub fn upstream() -> UpstreamKind {
    match std::env::var("GROK2API_TEST_UPSTREAM").as_deref() {
        Ok("xai") => UpstreamKind::Xai,
        _ => UpstreamKind::GrokWeb,
    }
}

pub fn is_xai() -> bool {
    upstream() == UpstreamKind::Xai
}

/// For tests of the grok.com token pool, which the xAI upstream (one API key) does not have.
pub fn grok_web_only(test: &str) -> bool {
    if is_xai() {
        eprintln!("{test}: tests the grok.com token pool; not applicable to the xai upstream");
        return true;
    }
    false
}

/// Fast simulator and two valid tokens unless a test says otherwise.
pub fn builder() -> Builder {
    let tokens = vec!["tok-alpha-0001".to_string(), "tok-bravo-0002".to_string()];
    let flavor = upstream();
    // The xAI flavor reports video progress per poll, so give its steps time to be seen.
    let delay = if flavor == UpstreamKind::Xai { 10 } else { 2 };
    let sim = SimConfig {
        tokens: tokens.clone(),
        frame_delay: Duration::from_millis(delay),
        image_long_side: 96,
        flavor,
        // grok.com sits behind Cloudflare: the suite goes through the fingerprint-checking TLS mode.
        tls: flavor == UpstreamKind::GrokWeb,
        ..SimConfig::default()
    };
    let mut cfg = Config::default();
    cfg.auth.api_keys = vec![KEY.into(), OTHER_KEY.into()];
    cfg.upstream.kind = flavor;
    cfg.grok.tokens = tokens.clone();
    cfg.grok.idle_timeout_secs = 5;
    cfg.xai.api_key = Some(tokens[0].clone());
    cfg.xai.poll_interval_ms = 10;
    cfg.xai.request_timeout_secs = 5;
    cfg.server.request_timeout_secs = 30;
    Builder { sim, cfg, after_sim: Vec::new() }
}

impl Builder {
    pub fn config(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.cfg);
        self
    }

    /// Config that needs the simulator's address (e.g. its FlareSolverr endpoint).
    pub fn config_with_sim(mut self, f: impl FnOnce(&mut Config, &SimHandle) + 'static) -> Self {
        self.after_sim.push(Box::new(f));
        self
    }

    pub fn sim(mut self, f: impl FnOnce(&mut SimConfig)) -> Self {
        f(&mut self.sim);
        self
    }

    /// The upstream credentials, for either upstream: grok.com tokens, or (the first as) the xAI key.
    /// The simulator accepts `valid`; the gateway is configured with `used`.
    pub fn credentials(mut self, valid: &[&str], used: &[&str]) -> Self {
        self.sim.tokens = valid.iter().map(|s| s.to_string()).collect();
        self.cfg.grok.tokens = used.iter().map(|s| s.to_string()).collect();
        self.cfg.xai.api_key = used.first().map(|s| s.to_string());
        self
    }

    /// A single upstream credential with a single concurrent slot and no waiting for it: a slot the
    /// gateway fails to give back shows as an immediate 429 on the next request.
    pub fn single_slot(self) -> Self {
        self.credentials(&["only-token-0001"], &["only-token-0001"]).config(|c| {
            c.grok.token_max_concurrency = 1;
            c.grok.token_wait_secs = 0;
        })
    }

    /// One timeout for "the upstream went quiet", whichever upstream: grok.com's first-byte and idle
    /// limits, xAI's per-call and per-video limits.
    pub fn upstream_timeout(mut self, secs: u64) -> Self {
        self.cfg.grok.first_byte_timeout_secs = secs;
        self.cfg.grok.idle_timeout_secs = secs;
        self.cfg.xai.request_timeout_secs = secs;
        self.cfg.xai.video_timeout_secs = secs;
        self
    }

    pub async fn start(self) -> Harness {
        grok2api::install_crypto_provider();
        let sim = sim::spawn(self.sim, TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
        let media = tempfile::tempdir().unwrap();
        let ca = tempfile::tempdir().unwrap();
        let mut cfg = self.cfg;
        cfg.grok.base_url = sim.base_url();
        cfg.grok.assets_url = sim.base_url();
        cfg.grok.ws_url = sim.ws_url();
        if let Some(pem) = &sim.ca_pem {
            let path = ca.path().join("sim-ca.pem");
            std::fs::write(&path, pem).unwrap();
            cfg.grok.ca_file = Some(path);
        }
        cfg.xai.base_url = sim.base_url();
        cfg.media.dir = Some(media.path().to_owned());
        for f in self.after_sim {
            f(&mut cfg, &sim);
        }
        let store = match redis_store() && cfg.store.url.is_none() {
            true => {
                let (running, url) = services::redis(None).await;
                cfg.store.url = Some(url);
                Some(running)
            }
            false => None,
        };
        let server = Server::start(cfg, TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
        let base = server.base_url();
        Harness { sim, server, http: reqwest::Client::new(), base, _media: media, _ca: ca, _store: store }
    }
}

pub async fn start() -> Harness {
    builder().start().await
}

impl Harness {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(self.url(path)).bearer_auth(KEY)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path)).bearer_auth(KEY)
    }

    /// POST /v1/images/generations with a JSON body; returns (status, headers, json body).
    pub async fn generate(&self, body: serde_json::Value) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
        let r = self.post("/v1/images/generations").json(&body).send().await.unwrap();
        split(r).await
    }

    pub async fn edit(&self, form: reqwest::multipart::Form) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
        let r = self.post("/v1/images/edits").multipart(form).send().await.unwrap();
        split(r).await
    }
}

/// A video task of `prompt` and `seconds` (16:9) made through `POST /v1/video/tasks` and polled to its
/// end: `(202, the final task data)`, or the create's status and answer when it was refused.
pub async fn video_task(h: &Harness, prompt: &str, seconds: u32) -> (u16, serde_json::Value) {
    let body = serde_json::json!({"model": "grok-imagine-1.0-video", "messages": [{"role": "user", "content": prompt}],
                                  "video_config": {"aspect_ratio": "16:9", "video_length": seconds}});
    let (s, _, created) = split(h.post("/v1/video/tasks").json(&body).send().await.unwrap()).await;
    if s != 202 {
        return (s, created);
    }
    let id = created["data"]["taskId"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, _, b) = split(h.get(&format!("/v1/video/tasks/{id}")).send().await.unwrap()).await;
        if ["success", "failed"].contains(&b["data"]["status"].as_str().unwrap_or_default()) {
            return (s, b["data"].clone());
        }
        assert!(Instant::now() < deadline, "task {id} never finished: {b}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn split(r: reqwest::Response) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("body is not JSON ({status}): {text}"));
    (status, headers, body)
}

/// Decodes PNG bytes, returning (width, height).
pub fn png_dims(bytes: &[u8]) -> (u32, u32) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes.to_vec()));
    let mut reader = decoder.read_info().expect("valid PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
    let info = reader.next_frame(&mut buf).expect("PNG pixel data decodes");
    (info.width, info.height)
}

/// The python that has the suite's packages (scripts/test.sh points this at .venv-test).
pub fn python() -> String {
    std::env::var("GROK2API_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// `sample_png()` as a multipart file part named `name`.
pub fn png_part(name: &str) -> reqwest::multipart::Part {
    reqwest::multipart::Part::bytes(sample_png()).file_name(name.to_owned()).mime_str("image/png").unwrap()
}

/// A small real PNG to upload.
pub fn sample_png() -> Vec<u8> {
    grok2api::sim::render::render_png(&grok2api::sim::render::seed_of(&[b"sample"]), 40, 30, 1.0)
}

/// Asserts the OpenAI error shape and returns `error.code`.
pub fn error_code(body: &serde_json::Value) -> String {
    let e = &body["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "error.message missing: {body}");
    assert!(e["type"].as_str().is_some(), "error.type missing: {body}");
    assert!(e.get("param").is_some(), "error.param missing: {body}");
    e["code"].as_str().unwrap_or_default().to_owned()
}

/// Reads an MP4's duration in seconds from `moov/mvhd`, proving the file is a real, parseable MP4.
pub fn mp4_duration_secs(bytes: &[u8]) -> f64 {
    fn boxes(mut b: &[u8]) -> Vec<(&[u8], &[u8])> {
        let mut out = Vec::new();
        while b.len() >= 8 {
            let size = u32::from_be_bytes(b[0..4].try_into().unwrap()) as usize;
            assert!(size >= 8 && size <= b.len(), "bad MP4 box size {size}");
            out.push((&b[4..8], &b[8..size]));
            b = &b[size..];
        }
        out
    }
    let top = boxes(bytes);
    assert_eq!(top[0].0, b"ftyp", "MP4 must start with ftyp");
    let moov = top.iter().find(|(t, _)| *t == b"moov").expect("moov box").1;
    let mvhd = boxes(moov).into_iter().find(|(t, _)| *t == b"mvhd").expect("mvhd box").1;
    let (timescale, duration) = if mvhd[0] == 1 {
        (
            u32::from_be_bytes(mvhd[20..24].try_into().unwrap()) as f64,
            u64::from_be_bytes(mvhd[24..32].try_into().unwrap()) as f64,
        )
    } else {
        (
            u32::from_be_bytes(mvhd[12..16].try_into().unwrap()) as f64,
            u32::from_be_bytes(mvhd[16..20].try_into().unwrap()) as f64,
        )
    };
    duration / timescale
}

/// A loopback server for image_url tests: `/img.png` serves a PNG, `/to?u=URL` redirects to URL.
#[allow(clippy::disallowed_types)] // a stand-in for someone else's server: axum's `Query` is fine here
pub async fn image_server() -> std::net::SocketAddr {
    use axum::extract::Query;
    use axum::response::{IntoResponse, Redirect};
    let app = axum::Router::new()
        .route(
            "/img.png",
            axum::routing::get(|| async { ([("content-type", "image/png")], sample_png()).into_response() }),
        )
        .route("/text", axum::routing::get(|| async { "plain text, not an image" }))
        .route(
            "/to",
            axum::routing::get(|Query(q): Query<std::collections::HashMap<String, String>>| async move {
                Redirect::temporary(&q["u"]).into_response()
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Parses an SSE body into its `data:` payloads.
pub fn sse_data(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|block| {
            let data: Vec<&str> = block.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect()
}

// ---------- the real binary ----------

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_grok2api");

/// Kills the child if a test fails before it could stop it, so no gateway outlives its test.
pub struct Running(pub Option<Child>);

impl Running {
    /// The process, no longer killed on drop (the caller owns its end).
    pub fn take_child(&mut self) -> Child {
        self.0.take().expect("process already taken")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts the binary on an ephemeral port and returns it with its base URL (read from stdout).
pub fn spawn(args: &[&str], envs: &[(&str, &str)], media: &std::path::Path) -> (Running, String) {
    spawn_logging(args, envs, media, Stdio::inherit())
}

/// `spawn`, with the process's log (stderr) going to `log`.
pub fn spawn_logging(args: &[&str], envs: &[(&str, &str)], media: &std::path::Path, log: Stdio) -> (Running, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("GROK2API_API_KEY").env("GROK2API_MEDIA_DIR", media).env("RUST_LOG", "warn");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(log).spawn().expect("binary starts");
    let stdout = child.stdout.take().unwrap();
    // Owned from here on, so a failed start below still kills the process.
    let running = Running(Some(child));
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    // `grok2api listening on URL`, or the simulator's `grok2api simulator (...) listening on URL`.
    let url = line.trim().split(" listening on ").nth(1).unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
    (running, url.to_owned())
}

/// The simulator as a process of its own (it outlives the gateways a test restarts or kills).
pub struct SimProcess {
    pub running: Running,
    pub url: String,
    _media: tempfile::TempDir,
}

/// Starts `grok2api sim` with `frame_delay_ms` between frames, accepting only `accept` when given
/// (any token otherwise).
pub fn sim_process(frame_delay_ms: u32, accept: Option<&str>) -> SimProcess {
    let media = tempfile::tempdir().unwrap();
    let delay = frame_delay_ms.to_string();
    let mut args = vec!["sim", "--listen", "127.0.0.1:0", "--frame-delay-ms", delay.as_str()];
    args.extend(accept.iter().flat_map(|t| ["--tokens", *t]));
    let (running, url) = spawn(&args, &[], media.path());
    SimProcess { running, url, _media: media }
}

impl SimProcess {
    /// The `[grok]` section of a gateway config that uses `token` against this simulator.
    pub fn grok(&self, token: &str) -> String {
        grok_section(&self.url, token)
    }
}

/// The `[grok]` section of a gateway config that uses `token` against the simulator at `url`.
pub fn grok_section(url: &str, token: &str) -> String {
    let ws = url.replacen("http", "ws", 1);
    format!("[grok]\ntokens = [\"{token}\"]\nbase_url = \"{url}\"\nws_url = \"{ws}\"\nassets_url = \"{url}\"\n")
}

pub fn sigterm_and_wait(mut running: Running) -> std::process::ExitStatus {
    let mut child = running.0.take().unwrap();
    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "no exit within 15 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Repeats `call` until it succeeds (200), failing if it still answers 429 after 5 s: proof that an
/// abandoned request gave its upstream slot back.
pub async fn assert_slot_freed(call: impl AsyncFn() -> (u16, serde_json::Value)) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = call().await;
        if status == 200 {
            return;
        }
        assert_eq!(status, 429, "{body}");
        assert!(Instant::now() < deadline, "token slot never freed after the client left");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

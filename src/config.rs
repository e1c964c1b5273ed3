//! Configuration: defaults, overlaid by an optional TOML file, overlaid by CLI flags / `GROK2API_*` env vars.
//! Unknown TOML keys are rejected so a typo never silently falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub auth: AuthConfig,
    pub upstream: UpstreamConfig,
    pub grok: GrokWebConfig,
    pub xai: XaiConfig,
    pub media: MediaConfig,
    pub images: ImagesConfig,
    pub files: FilesConfig,
    pub fetch: FetchConfig,
    pub tasks: TasksConfig,
    pub callbacks: CallbacksConfig,
    pub state: StateConfig,
    pub store: StoreConfig,
    pub limits: LimitsConfig,
    pub metrics: MetricsConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: String,
    /// Prefix for links we hand out; empty = derived from the request's Host header.
    pub public_base_url: Option<String>,
    /// Upper bound for a synchronous generation request, end to end.
    pub request_timeout_secs: u64,
    pub max_json_body_bytes: usize,
    /// Multipart limit for /v1/images/edits (up to 3 images of 20 MiB each plus fields).
    pub max_upload_bytes: usize,
    pub insecure_no_auth: bool,
    /// On SIGTERM: how long in-flight requests and running tasks get to finish.
    pub shutdown_grace_secs: u64,
    /// Open connections at once; at the cap the server stops accepting until one closes.
    pub max_connections: usize,
    /// A request's head (line and headers) must arrive within this; on HTTP/1 it is also how long an
    /// idle keep-alive connection waits for its next request, and a new connection for its first.
    pub header_read_timeout_secs: f64,
    /// A connection with nothing in flight is closed after this (HTTP/2 between streams).
    pub idle_timeout_secs: f64,
    /// Longest gap between two pieces of a request body.
    pub body_read_timeout_secs: f64,
    /// After the first `body_read_timeout_secs`, a body must keep arriving at this average rate.
    pub body_min_bytes_per_sec: u64,
    /// A client that reads none of its answer for this long is disconnected.
    pub send_timeout_secs: f64,
    /// Largest request head (HTTP/1 line + headers; HTTP/2 header list).
    pub max_header_bytes: usize,
    /// Most headers in one HTTP/1 request.
    pub max_headers: usize,
    pub http2_max_concurrent_streams: u32,
    /// HTTP/2 pings to a quiet peer, and how long it has to answer before the connection is closed.
    pub http2_keepalive_interval_secs: f64,
    pub http2_keepalive_timeout_secs: f64,
    /// Request-body bytes the whole server holds at once; a body that would go past it is a 503.
    pub max_body_bytes_in_flight: usize,
    /// Reverse proxies (addresses or networks, `10.0.0.0/8`) whose `X-Forwarded-For` names the
    /// client for per-client limits; empty = the peer address is the client.
    pub trusted_proxies: Vec<String>,
    /// Web origins (`https://app.example.com`, or `*`) a browser page may call the public API from.
    /// Unset: any origin when a key guards the gateway, none while it runs open (docs/operations.md).
    pub cors_allowed_origins: Option<Vec<String>>,
    /// How long a browser may keep a preflight's answer.
    pub cors_max_age_secs: u64,
}

/// Seconds from the config as a duration (at least 1 ms; a week at most).
pub fn secs(s: f64) -> std::time::Duration {
    std::time::Duration::from_secs_f64(if s.is_finite() { s.clamp(0.001, 7.0 * 86_400.0) } else { 1.0 })
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8000".into(),
            public_base_url: None,
            request_timeout_secs: 300,
            max_json_body_bytes: 1024 * 1024,
            max_upload_bytes: 64 * 1024 * 1024,
            insecure_no_auth: false,
            shutdown_grace_secs: 30,
            max_connections: 10_000,
            header_read_timeout_secs: 15.0,
            idle_timeout_secs: 60.0,
            body_read_timeout_secs: 30.0,
            body_min_bytes_per_sec: 2048,
            send_timeout_secs: 60.0,
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            http2_max_concurrent_streams: 64,
            http2_keepalive_interval_secs: 30.0,
            http2_keepalive_timeout_secs: 20.0,
            max_body_bytes_in_flight: 192 * 1024 * 1024,
            trusted_proxies: Vec::new(),
            cors_allowed_origins: None,
            cors_max_age_secs: 600,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub api_keys: Vec<String>,
    /// Let `GET` on a task's status/result skip auth: the task id (122 random bits) is the capability.
    pub public_task_reads: bool,
}

/// Per-API-key limits; 0 turns a limit off.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub requests_per_second: f64,
    /// Requests allowed at once above the sustained rate (default: one second's worth).
    pub burst: u32,
    /// Pending + processing tasks one key may have.
    pub max_concurrent_tasks: usize,
    /// Task event streams (`.../events`) open at once on one key's tasks.
    pub max_event_streams: usize,
    /// Wrong client keys one address may present at once, then `wrong_key_rate` per second; all
    /// addresses together ten times as many.
    pub wrong_key_burst: u32,
    pub wrong_key_rate: f64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            requests_per_second: 0.0,
            burst: 0,
            max_concurrent_tasks: 0,
            max_event_streams: 16,
            wrong_key_burst: 20,
            wrong_key_rate: 1.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub enabled: bool,
    /// Require an API key on /metrics.
    pub require_auth: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { enabled: true, require_auth: false }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Key for /admin/* and the console (separate from client keys); unset = neither exists.
    pub api_key: Option<String>,
    /// How long a console login lasts.
    pub session_ttl_secs: u64,
    /// Wrong admin keys or sessions (bearer, cookie, login) one address may present at once, then
    /// `wrong_key_rate` per second; all addresses together ten times as many.
    pub wrong_key_burst: u32,
    pub wrong_key_rate: f64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self { api_key: None, session_ttl_secs: 12 * 3600, wrong_key_burst: 10, wrong_key_rate: 0.2 }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// Directory for the durable task journal; unset = tasks live in memory only.
    pub dir: Option<PathBuf>,
}

/// `[store]`: where tasks live when several replicas share them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `redis://[user:pass@]host:port[/db]` or `rediss://` (TLS); unset = the embedded journal.
    pub url: Option<String>,
    /// A replica silent this long is taken for dead: its unfinished tasks move to the others.
    pub lease_secs: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self { url: None, lease_secs: 10 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TasksConfig {
    /// Tasks running at once (each holds one upstream request while it runs).
    pub workers: usize,
    /// Accepted tasks waiting for a worker; beyond it creates answer 429.
    pub queue_capacity: usize,
    /// Places of the queue one API key may hold (0 = half of it); workers serve the keys in turn.
    pub queue_per_key: usize,
    /// How long finished tasks stay readable.
    pub ttl_secs: u64,
    /// Finished tasks kept at most; beyond it the oldest are forgotten before their TTL.
    pub max_finished: usize,
    /// Upper bound for one task's run.
    pub job_timeout_secs: u64,
    /// Tasks (pending + kept finished) you expect to hold at once; the maps are sized for it up front
    /// so they do not have to grow (and stall requests) under load.
    pub expected_tasks: usize,
}

impl Default for TasksConfig {
    fn default() -> Self {
        Self {
            workers: 16,
            queue_capacity: 1000,
            queue_per_key: 0,
            ttl_secs: 24 * 3600,
            max_finished: 50_000,
            job_timeout_secs: 900,
            expected_tasks: 65_536,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallbacksConfig {
    /// Signing secret, `whsec_<base64>` (Standard Webhooks). Without it `callback_url` is refused.
    pub secret: Option<String>,
    /// Allow callback targets on loopback / private networks.
    pub allow_private: bool,
    pub timeout_secs: u64,
    /// Delay before each retry, in seconds; one retry per entry.
    pub retry_delays_secs: Vec<f64>,
}

impl Default for CallbacksConfig {
    fn default() -> Self {
        Self {
            secret: None,
            allow_private: false,
            timeout_secs: 10,
            retry_delays_secs: vec![5.0, 30.0, 120.0, 600.0, 1800.0],
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamKind {
    #[default]
    GrokWeb,
    Xai,
}

impl std::str::FromStr for UpstreamKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "grok-web" => Ok(Self::GrokWeb),
            "xai" => Ok(Self::Xai),
            other => Err(format!("unknown upstream `{other}`; use grok-web or xai")),
        }
    }
}

/// The official xAI API (`upstream.kind = "xai"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct XaiConfig {
    pub api_key: Option<String>,
    pub base_url: String,
    /// Official model ids our models map to (what each can do: `upstream::xai_models`).
    pub image_model: String,
    pub edit_model: String,
    pub video_model: String,
    /// The model video edits and extensions go to (`/v1/videos/edits`, `/v1/videos/extensions`):
    /// xAI offers them on `grok-imagine-video` only.
    pub video_edit_model: String,
    pub connect_timeout_secs: u64,
    /// One HTTP call to xAI (an image generation takes seconds to tens of seconds).
    pub request_timeout_secs: u64,
    /// How often a video request is polled.
    pub poll_interval_ms: u64,
    /// Longest a video may take, from submission.
    pub video_timeout_secs: u64,
    pub max_download_bytes: u64,
    /// The quality guard (`upstream/quality.rs`): media that answered a different request before, or
    /// listed in `canned_outputs`, is canned (CLIProxyAPI #5221 got an unrelated clip from the API)
    /// and fails the request as `upstream_canned_output` instead of being delivered.
    pub quality_guard: bool,
    pub canned_outputs: Vec<String>,
}

impl Default for XaiConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            base_url: "https://api.x.ai".into(),
            // 2.0 takes `quality`, five edit images and the 21:9 / 5:2 ratios; the retired
            // `grok-imagine-image-quality` is served by it anyway (source: docs.x.ai
            // developers/migration/imagine-image-quality-nov-2.md).
            image_model: "grok-imagine-image-2.0".into(),
            edit_model: "grok-imagine-image-2.0".into(),
            // 1.5 takes the same request as `grok-imagine-video` and adds 1080p (source: xai-sdk-ts
            // src/generated/types.ts GenerateVideoRequest; docs.x.ai video/generation).
            video_model: "grok-imagine-video-1.5".into(),
            video_edit_model: "grok-imagine-video".into(),
            connect_timeout_secs: 10,
            request_timeout_secs: 120,
            poll_interval_ms: 5000,
            video_timeout_secs: 1800,
            max_download_bytes: 256 * 1024 * 1024,
            quality_guard: true,
            canned_outputs: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    pub kind: UpstreamKind,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrokWebConfig {
    /// REST and upload host.
    pub base_url: String,
    /// WebSocket host for the Imagine image channel.
    pub ws_url: String,
    /// Host that serves generated media behind the sso cookie; relative media paths resolve against it.
    pub assets_url: String,
    /// sso tokens; `TOKEN|PROXY_URL` gives one token its own proxy (one account, one address).
    pub tokens: Vec<String>,
    /// File with one sso token per line (`#` comments allowed), same `TOKEN|PROXY_URL` form.
    pub tokens_file: Option<PathBuf>,
    /// Browser profile (wreq-util name, e.g. `chrome_149`): TLS hello, HTTP/2 settings, header order and
    /// default User-Agent all come from it. Default (empty): the newest Chrome the library ships.
    pub browser: String,
    /// Platform the profile claims: windows, macos, linux, android, ios.
    pub platform: String,
    /// A User-Agent of your own; picks the nearest profile of the same browser (e.g. to match a
    /// `cf_clearance` earned in a real browser). Unset = the profile's own.
    pub user_agent: Option<String>,
    /// Proxy for all grok.com traffic: http://, https://, socks5://, socks5h:// (credentials allowed).
    pub proxy: Option<String>,
    /// Extra PEM root certificates to trust for grok.com (a TLS-inspecting proxy, `sim --tls`).
    pub ca_file: Option<PathBuf>,
    /// The same, in memory (the `--demo` simulator's CA); not settable from the file.
    #[serde(skip)]
    pub ca_pem: Option<String>,
    /// FlareSolverr endpoint (e.g. http://127.0.0.1:8191); on a Cloudflare challenge a token asks it
    /// for clearance cookies through its own proxy, then retries once.
    pub flaresolverr_url: Option<String>,
    pub flaresolverr_timeout_secs: u64,
    /// Extra cookies appended verbatim (e.g. `cf_clearance=...`).
    pub extra_cookies: Option<String>,
    /// Fixed `x-statsig-id` (the older form of `statsig = "fixed:..."`); wins over `statsig` when set.
    pub statsig_id: Option<String>,
    /// How to sign REST calls: "local" (mint from grok.com's page), "signer:<url>", "fixed:<value>", "off".
    pub statsig: String,
    pub connect_timeout_secs: u64,
    /// Longest wait for the first byte of an answer (response headers, first WebSocket frame).
    pub first_byte_timeout_secs: u64,
    /// Longest silence tolerated between two frames of a stream.
    pub idle_timeout_secs: u64,
    /// Upper bound for one upstream attempt, start to finish.
    pub total_timeout_secs: u64,
    /// How long to keep asking grok.com for a video whose stream broke after it started (its media
    /// post), before giving up. The video is billed either way; it is never re-run on another token.
    pub video_recover_secs: u64,
    /// How often to ask the upstream for every token's remaining quota (0 = never).
    pub quota_refresh_secs: u64,
    /// The most quota checks started per second (periodic or on demand), however many tokens: a
    /// round is spread over `quota_refresh_secs` and takes longer when this cap says so.
    pub quota_refresh_per_sec: u32,
    /// Tokens tried for one request before giving up (rate-limit / auth failures move to the next).
    pub max_attempts: u32,
    /// Simultaneous upstream requests per token.
    pub token_max_concurrency: u32,
    /// How long a request waits for a free slot when every usable token is at its concurrency cap.
    pub token_wait_secs: u64,
    /// Cooldown after a 429 that did not say how long to wait.
    pub rate_limit_cooldown_secs: u64,
    /// The longest an account rests after a 429, whatever the upstream's `Retry-After` says: one odd
    /// header must not park an account for hours (chenyme/grok2api #986, #1036). Quota windows the
    /// upstream reports (`quota_info`) are not capped: they are the account's real state.
    pub cooldown_max_secs: u64,
    /// Consecutive auth failures after which a token is marked expired.
    pub token_fail_threshold: u32,
    pub enable_nsfw: bool,
    /// The quality guard (`upstream/grok_web/quality.rs`): an answer whose media has the same bytes
    /// as the answer to a different request is canned (a flagged account), never delivered; its
    /// account is flagged and the request moves to another one.
    pub quality_guard: bool,
    /// SHA-256s (hex) of outputs known to be canned, refused whoever answers them.
    pub canned_outputs: Vec<String>,
    /// Largest media file accepted from the upstream.
    pub max_download_bytes: u64,
}

impl Default for GrokWebConfig {
    fn default() -> Self {
        Self {
            base_url: "https://grok.com".into(),
            ws_url: "wss://grok.com".into(),
            assets_url: "https://assets.grok.com".into(),
            tokens: Vec::new(),
            tokens_file: None,
            // The newest Chrome the impersonation library ships, resolved by the client.
            browser: String::new(),
            platform: "windows".into(),
            user_agent: None,
            proxy: None,
            ca_file: None,
            ca_pem: None,
            flaresolverr_url: None,
            flaresolverr_timeout_secs: 60,
            extra_cookies: None,
            statsig_id: None,
            statsig: "local".into(),
            connect_timeout_secs: 10,
            first_byte_timeout_secs: 30,
            idle_timeout_secs: 60,
            total_timeout_secs: 600,
            video_recover_secs: 300,
            quota_refresh_secs: 600,
            quota_refresh_per_sec: 5,
            max_attempts: 3,
            token_max_concurrency: 4,
            token_wait_secs: 30,
            rate_limit_cooldown_secs: 300,
            cooldown_max_secs: 900,
            token_fail_threshold: 5,
            enable_nsfw: false,
            quality_guard: true,
            canned_outputs: Vec::new(),
            max_download_bytes: 64 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// Where downloaded media lives; default `<system temp>/grok2api-media`.
    pub dir: Option<PathBuf>,
    /// Total size cap; least recently used files are evicted beyond it.
    pub max_bytes: u64,
    /// S3-compatible object storage shared by every replica; unset = local disk only.
    pub s3: Option<S3Config>,
}

/// `[media.s3]`: where every replica puts and finds media (AWS S3, MinIO, R2, …).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    /// Unset = AWS for `region`; else e.g. `http://127.0.0.1:9000` for MinIO.
    pub endpoint: Option<String>,
    #[serde(default = "default_region")]
    pub region: String,
    /// Unset: `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (and the rest of the AWS environment).
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// `bucket` in the path (`endpoint/bucket/key`, MinIO and most self-hosted stores) instead of the host.
    #[serde(default)]
    pub path_style: bool,
    /// Key prefix inside the bucket.
    #[serde(default)]
    pub prefix: String,
    /// > 0: file links redirect (302) to a presigned URL valid this long instead of being proxied.
    #[serde(default)]
    pub presign_secs: u64,
}

fn default_region() -> String {
    "us-east-1".into()
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self { dir: None, max_bytes: 1024 * 1024 * 1024, s3: None }
    }
}

/// `[images]`: how image answers are written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImagesConfig {
    /// What an image answer carries when the request names no `response_format`.
    pub default_response_format: ImageResponseFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageResponseFormat {
    /// A link to the file on this gateway (the user document's default).
    #[default]
    Url,
    /// The file inline, base64.
    B64Json,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesConfig {
    /// Require the API key on /v1/files/* too (default: links are capabilities, readable by anyone holding them).
    pub require_auth: bool,
}

/// Fetching user-supplied URLs (`image_url` inputs).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FetchConfig {
    /// Allow loopback / private / link-local targets. Only for a gateway inside a trusted network.
    pub allow_private: bool,
    pub timeout_secs: u64,
    /// Host → base URL served instead, e.g. `"images.internal" = "http://10.0.0.5:9000"`. Targets named
    /// here are trusted and skip the address check.
    pub host_overrides: std::collections::HashMap<String, String>,
    /// A root (PEM) for override targets served by a private CA: the `--demo` simulator's; not settable.
    #[serde(skip)]
    pub ca_pem: Option<String>,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self { allow_private: false, timeout_secs: 20, host_overrides: Default::default(), ca_pem: None }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter; `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Text, level: "info".into() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config {path}: {source}")]
    Parse { path: PathBuf, source: Box<toml::de::Error> },
    #[error("{0}")]
    Invalid(String),
}

/// The URL a health probe on this machine should use for a gateway listening on `listen`.
pub fn healthcheck_url(listen: &str) -> String {
    let (host, port) = listen.rsplit_once(':').unwrap_or((listen, "8000"));
    let host = match host.trim_start_matches('[').trim_end_matches(']') {
        "" | "0.0.0.0" => "127.0.0.1".to_owned(),
        "::" => "[::1]".to_owned(),
        h if h.contains(':') => format!("[{h}]"),
        h => h.to_owned(),
    };
    format!("http://{host}:{port}/healthz")
}

impl Config {
    pub fn from_toml_str(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.to_owned(), source: Box::new(e) })
    }

    /// Adds the lines of `grok.tokens_file` (one token each; `#` comments) to `grok.tokens`.
    pub fn load_tokens_file(&mut self) -> Result<(), ConfigError> {
        let Some(path) = &self.grok.tokens_file else { return Ok(()) };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
        self.grok
            .tokens
            .extend(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned));
        Ok(())
    }

    /// A key guards the gateway: a client key, or an admin key (whose console makes client keys).
    pub fn is_keyed(&self) -> bool {
        !self.auth.api_keys.is_empty() || self.admin.api_key.as_deref().is_some_and(|k| !k.is_empty())
    }

    /// The contract's no-key rules: without keys we only serve loopback, unless explicitly told otherwise.
    /// With an admin key the gateway is never open (keys are made in the console), so it may listen anywhere.
    pub fn check_auth_safety(&self, listen: SocketAddr) -> Result<(), ConfigError> {
        if !self.is_keyed() && !listen.ip().is_loopback() && !self.server.insecure_no_auth {
            return Err(ConfigError::Invalid(format!(
                "refusing to listen on {listen} without an API key: set GROK2API_API_KEY (or auth.api_keys), \
                 or pass --insecure-no-auth"
            )));
        }
        Ok(())
    }

    /// Refuses keys a guesser could find: every client key and the admin key must be at least
    /// `MIN_KEY_CHARS` long and not a run or repetition of a few characters (`--demo` skips this).
    pub fn check_key_strength(&self) -> Result<(), ConfigError> {
        let named = self.auth.api_keys.iter().enumerate().map(|(i, k)| (format!("client key #{}", i + 1), k.as_str()));
        let admin = self.admin.api_key.iter().map(|k| ("the admin key (admin.api_key)".to_string(), k.as_str()));
        for (name, key) in named.chain(admin).filter(|(_, k)| !k.is_empty()) {
            if let Some(why) = weak_key(key) {
                return Err(ConfigError::Invalid(format!(
                    "{name} is too weak: {why}. Use a random key, e.g. `openssl rand -hex 24`"
                )));
            }
        }
        Ok(())
    }
}

/// The shortest key the gateway accepts outside `--demo`.
pub const MIN_KEY_CHARS: usize = 16;

/// Why `key` is too easy to guess, if it is: too short, or its characters carry too little
/// information (Shannon entropy of its own character distribution, in bits for the whole key, with
/// runs like `abcd` or `1111` counted once).
pub fn weak_key(key: &str) -> Option<String> {
    let chars: Vec<char> = key.trim().chars().collect();
    if chars.len() < MIN_KEY_CHARS {
        return Some(format!("{} characters, at least {MIN_KEY_CHARS} are needed", chars.len()));
    }
    let mut counts = std::collections::HashMap::new();
    for c in &chars {
        *counts.entry(*c).or_insert(0usize) += 1;
    }
    let n = chars.len() as f64;
    let per_char: f64 = counts.values().map(|&k| k as f64 / n).map(|p| -p * p.log2()).sum();
    // A step of +1, 0 or -1 from the previous character continues a run and adds little.
    let steps = chars.windows(2).filter(|w| (w[1] as i64 - w[0] as i64).abs() <= 1).count();
    let informative = chars.len() - steps.min(chars.len() - 1);
    let bits = per_char * informative as f64;
    (bits < 48.0).then(|| format!("it holds about {bits:.0} bits of information, at least 48 are needed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_keys_are_told_apart_from_random_ones() {
        for weak in [
            "abc",
            "sk-123",
            "aaaaaaaaaaaaaaaaaaaaaaaa",
            "abcdefghijklmnopqrstuvwx",
            "abababababababababababab",
            "test-key-1",
        ] {
            assert!(weak_key(weak).is_some(), "{weak} must be refused");
        }
        for strong in ["3f9c1d27a8b4e6f0c5d2a9e1", "g2a_k_1a2b3c4d5e6f_Q3vX9pLmZt7RwYk2", "sk-Vb83nQz1LkP0xW5rT7yU"] {
            assert_eq!(weak_key(strong), None, "{strong} must pass");
        }
    }

    #[test]
    fn healthcheck_follows_the_listen_address() {
        assert_eq!(healthcheck_url("0.0.0.0:9000"), "http://127.0.0.1:9000/healthz");
        assert_eq!(healthcheck_url("127.0.0.1:8000"), "http://127.0.0.1:8000/healthz");
        assert_eq!(healthcheck_url("[::]:8080"), "http://[::1]:8080/healthz");
        assert_eq!(healthcheck_url("10.1.2.3:81"), "http://10.1.2.3:81/healthz");
    }

    #[test]
    fn unknown_key_is_rejected_with_its_name() {
        let err = Config::from_toml_str("[grok]\ntokenz = []\n", Path::new("x.toml")).unwrap_err();
        assert!(err.to_string().contains("tokenz"), "{err}");
    }

    #[test]
    fn the_replica_config_of_the_compose_file_parses() {
        let text = include_str!("../deploy/replica.toml");
        let cfg = Config::from_toml_str(text, Path::new("deploy/replica.toml")).unwrap();
        assert_eq!(cfg.media.s3.map(|s| (s.bucket, s.path_style)), Some(("grok2api-media".into(), true)));
        assert_eq!(cfg.store.lease_secs, 10);
    }

    #[test]
    fn example_config_parses() {
        let text = include_str!("../config.example.toml");
        let cfg = Config::from_toml_str(text, Path::new("config.example.toml")).unwrap();
        assert_eq!(cfg.server.listen, "127.0.0.1:8000");
    }

    #[test]
    fn no_key_on_public_address_is_refused() {
        let cfg = Config::default();
        assert!(cfg.check_auth_safety("0.0.0.0:8000".parse().unwrap()).is_err());
        assert!(cfg.check_auth_safety("127.0.0.1:8000".parse().unwrap()).is_ok());
        let mut keyed = Config::default();
        keyed.auth.api_keys.push("k".into());
        assert!(keyed.check_auth_safety("0.0.0.0:8000".parse().unwrap()).is_ok());
    }
}

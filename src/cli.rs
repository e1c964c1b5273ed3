//! The command line: `grok2api` (serve), `grok2api sim`, `grok2api doctor`, and how the serve flags
//! (and their `GROK2API_*` variables) overlay the configuration file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, ConfigError, GrokWebConfig, LogFormat, UpstreamKind};

#[derive(Debug, Parser)]
#[command(name = "grok2api", version, about = "OpenAI-compatible gateway for Grok Imagine")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the simulated grok.com upstream alone.
    Sim(SimArgs),
    /// Probe grok.com with one account, step by step (DNS, TCP, proxy, TLS, Cloudflare, anti-bot, sso,
    /// quota, WebSocket, optionally one image). Exit code 0 only when every step passes.
    Doctor(DoctorArgs),
    /// Print the fingerprint of media files (what they show, not their container), for
    /// `grok.canned_outputs`: a canned clip or picture a flagged account answers with.
    Fingerprint {
        /// Image or MP4 files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Probe a running gateway's /healthz (used by the Docker HEALTHCHECK; exit 0 = healthy).
    Healthcheck {
        /// Default: /healthz on the address `GROK2API_LISTEN` names (a wildcard address is probed on loopback).
        #[arg(long, env = "GROK2API_HEALTHCHECK_URL")]
        url: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The sso cookie of the account to probe (`TOKEN|PROXY_URL` gives it its own proxy).
    #[arg(long, env = "GROK2API_DOCTOR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Proxy for this probe (overrides grok.proxy).
    #[arg(long)]
    pub proxy: Option<String>,
    /// Also generate two real images of two prompts (spends two generations); a flagged account
    /// answering both with the same canned picture fails the step.
    #[arg(long)]
    pub generate: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Configuration file whose [grok] section to use.
    #[arg(long, env = "GROK2API_CONFIG")]
    pub config: Option<PathBuf>,
    /// grok.com base URL (default https://grok.com; the WebSocket and assets URLs follow it unless set).
    #[arg(long)]
    pub base_url: Option<String>,
    #[arg(long)]
    pub ws_url: Option<String>,
    /// Extra PEM roots (grok.ca_file).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Browser profile (grok.browser).
    #[arg(long)]
    pub browser: Option<String>,
    /// User-Agent (grok.user_agent).
    #[arg(long)]
    pub user_agent: Option<String>,
    /// Fixed x-statsig-id (grok.statsig_id).
    #[arg(long)]
    pub statsig_id: Option<String>,
    /// FlareSolverr endpoint (grok.flaresolverr_url).
    #[arg(long)]
    pub flaresolverr_url: Option<String>,
}

impl DoctorArgs {
    /// The grok section the probe runs with: the config file's, then these flags.
    pub fn grok_config(&self) -> Result<GrokWebConfig, ConfigError> {
        let mut cfg = match &self.config {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
                Config::from_toml_str(&text, path)?.grok
            }
            None => GrokWebConfig::default(),
        };
        if let Some(base) = &self.base_url {
            let base = base.trim_end_matches('/').to_owned();
            cfg.ws_url = self.ws_url.clone().unwrap_or_else(|| base.replacen("http", "ws", 1));
            cfg.assets_url = base.clone();
            cfg.base_url = base;
        } else if let Some(ws) = &self.ws_url {
            cfg.ws_url = ws.clone();
        }
        if let Some(t) = &self.token {
            cfg.tokens = vec![t.clone()];
        }
        let set = |field: &mut Option<_>, v: &Option<_>| {
            if v.is_some() {
                field.clone_from(v);
            }
        };
        set(&mut cfg.proxy, &self.proxy);
        set(&mut cfg.user_agent, &self.user_agent);
        set(&mut cfg.statsig_id, &self.statsig_id);
        set(&mut cfg.flaresolverr_url, &self.flaresolverr_url);
        if self.ca_file.is_some() {
            cfg.ca_file.clone_from(&self.ca_file);
        }
        if let Some(b) = &self.browser {
            cfg.browser = b.clone();
        }
        // One probe, no second chances: each step says what it saw.
        cfg.max_attempts = 1;
        cfg.token_wait_secs = 0;
        Ok(cfg)
    }
}

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Address the simulator listens on.
    #[arg(long, env = "GROK2API_SIM_LISTEN", default_value = "127.0.0.1:8001")]
    pub listen: SocketAddr,
    /// Comma-separated sso tokens the simulator accepts (default: any non-empty token).
    #[arg(long, env = "GROK2API_SIM_TOKENS", value_delimiter = ',')]
    pub tokens: Vec<String>,
    /// Delay between streamed frames, in milliseconds.
    #[arg(long, env = "GROK2API_SIM_FRAME_DELAY_MS", default_value_t = 40)]
    pub frame_delay_ms: u64,
    /// Which upstream to simulate: grok-web (grok.com's web protocol) or xai (the official API).
    #[arg(long, env = "GROK2API_SIM_FLAVOR", default_value = "grok-web")]
    pub flavor: UpstreamKind,
    /// Serve HTTPS/WSS with a generated certificate and challenge clients whose TLS hello or
    /// WebSocket headers are not the browser's their User-Agent claims (as Cloudflare does).
    #[arg(long, env = "GROK2API_SIM_TLS")]
    pub tls: bool,
    /// With --tls: write the CA certificate (PEM) here, for the gateway's grok.ca_file.
    #[arg(long)]
    pub ca_out: Option<PathBuf>,
    /// Challenge every request that lacks a cf_clearance from the simulator's FlareSolverr
    /// (POST /flaresolverr/v1).
    #[arg(long)]
    pub require_clearance: bool,
}

#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// TOML configuration file (see config.example.toml).
    #[arg(long, env = "GROK2API_CONFIG")]
    pub config: Option<PathBuf>,
    /// Listen address, e.g. 127.0.0.1:8000 (overrides server.listen).
    #[arg(long, env = "GROK2API_LISTEN")]
    pub listen: Option<String>,
    /// Start the simulated upstream in-process and point the client at it: try every endpoint with no account.
    #[arg(long, env = "GROK2API_DEMO")]
    pub demo: bool,
    /// API keys clients must present as `Authorization: Bearer <key>` (comma-separated).
    #[arg(long = "api-key", env = "GROK2API_API_KEY", value_delimiter = ',', hide_env_values = true)]
    pub api_keys: Vec<String>,
    /// Key for the admin API (/admin/tokens), separate from client keys (overrides admin.api_key).
    #[arg(long = "admin-key", env = "GROK2API_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// Upstream: grok-web (grok.com accounts) or xai (official API key) (overrides upstream.kind).
    #[arg(long, env = "GROK2API_UPSTREAM")]
    pub upstream: Option<UpstreamKind>,
    /// xAI API key for upstream.kind = "xai" (overrides xai.api_key).
    #[arg(long = "xai-api-key", env = "GROK2API_XAI_API_KEY", hide_env_values = true)]
    pub xai_api_key: Option<String>,
    /// grok.com sso tokens (comma-separated), added to grok.tokens.
    #[arg(long = "grok-token", env = "GROK2API_GROK_TOKENS", value_delimiter = ',', hide_env_values = true)]
    pub grok_tokens: Vec<String>,
    /// Browser profile for grok.com traffic, e.g. chrome_149 (overrides grok.browser).
    #[arg(long = "grok-browser", env = "GROK2API_GROK_BROWSER")]
    pub grok_browser: Option<String>,
    /// Proxy for all grok.com traffic: http://, https://, socks5://, socks5h:// (overrides grok.proxy).
    #[arg(long = "grok-proxy", env = "GROK2API_GROK_PROXY", hide_env_values = true)]
    pub grok_proxy: Option<String>,
    /// Extra PEM roots for grok.com (overrides grok.ca_file).
    #[arg(long = "grok-ca-file", env = "GROK2API_GROK_CA_FILE")]
    pub grok_ca_file: Option<PathBuf>,
    /// FlareSolverr endpoint for Cloudflare challenges (overrides grok.flaresolverr_url).
    #[arg(long = "flaresolverr-url", env = "GROK2API_FLARESOLVERR_URL")]
    pub flaresolverr_url: Option<String>,
    /// Base URL used in returned links, e.g. https://img.example.com (default: from the request's Host).
    #[arg(long, env = "GROK2API_PUBLIC_BASE_URL")]
    pub public_base_url: Option<String>,
    /// Web origins allowed to call the API from a browser (repeat, or comma-separated); `*` = any.
    #[arg(long = "cors-allowed-origin", env = "GROK2API_CORS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub cors_allowed_origins: Vec<String>,
    /// Directory for downloaded media (overrides media.dir).
    #[arg(long, env = "GROK2API_MEDIA_DIR")]
    pub media_dir: Option<PathBuf>,
    /// Keep accepted tasks and owed callbacks in a durable journal here (overrides state.dir).
    #[arg(long, env = "GROK2API_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Shared store for several replicas (`redis://…`, `rediss://…`); default: the embedded journal.
    #[arg(long = "store", env = "GROK2API_STORE", hide_env_values = true)]
    pub store: Option<String>,
    /// Log format: text or json (overrides log.format).
    #[arg(long, env = "GROK2API_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Allow serving on a non-loopback address without any API key.
    #[arg(long, env = "GROK2API_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
}

impl ServeArgs {
    /// The configuration these flags name: defaults, overlaid by the TOML file, overlaid by the flags.
    pub fn load_config(&self) -> Result<Config, ConfigError> {
        let args = self;
        let mut cfg = match &args.config {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
                Config::from_toml_str(&text, path)?
            }
            None => Config::default(),
        };
        args.apply(&mut cfg);
        cfg.load_tokens_file()?;
        Ok(cfg)
    }

    fn apply(&self, cfg: &mut Config) {
        let args = self;
        if let Some(listen) = &args.listen {
            cfg.server.listen = listen.clone();
        }
        cfg.auth.api_keys.extend(args.api_keys.iter().map(|k| k.trim().to_owned()));
        cfg.auth.api_keys.retain(|k| !k.is_empty());
        cfg.grok.tokens.extend(args.grok_tokens.iter().cloned());
        if let Some(b) = args.grok_browser.as_ref().filter(|b| !b.trim().is_empty()) {
            cfg.grok.browser = b.trim().to_owned();
        }
        if let Some(p) = args.grok_proxy.as_ref().filter(|p| !p.trim().is_empty()) {
            cfg.grok.proxy = Some(p.trim().to_owned());
        }
        if args.grok_ca_file.is_some() {
            cfg.grok.ca_file = args.grok_ca_file.clone();
        }
        if let Some(u) = args.flaresolverr_url.as_ref().filter(|u| !u.trim().is_empty()) {
            cfg.grok.flaresolverr_url = Some(u.trim().to_owned());
        }
        if args.public_base_url.is_some() {
            cfg.server.public_base_url = args.public_base_url.clone();
        }
        if !args.cors_allowed_origins.is_empty() {
            cfg.server.cors_allowed_origins = Some(args.cors_allowed_origins.clone());
        }
        if args.media_dir.is_some() {
            cfg.media.dir = args.media_dir.clone();
        }
        if let Some(k) = args.admin_key.as_ref().filter(|k| !k.trim().is_empty()) {
            cfg.admin.api_key = Some(k.trim().to_owned());
        }
        if let Some(kind) = args.upstream {
            cfg.upstream.kind = kind;
        }
        if let Some(k) = args.xai_api_key.as_ref().filter(|k| !k.trim().is_empty()) {
            cfg.xai.api_key = Some(k.trim().to_owned());
        }
        if args.store.is_some() {
            cfg.store.url = args.store.clone();
        }
        if args.state_dir.is_some() {
            cfg.state.dir = args.state_dir.clone();
        }
        if let Some(format) = args.log_format {
            cfg.log.format = format;
        }
        cfg.server.insecure_no_auth |= args.insecure_no_auth;
    }
}

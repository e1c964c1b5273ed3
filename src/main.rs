//! args → config → tracing → (demo simulator) → serve → drain on SIGTERM / Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use grok2api::app::Server;
use grok2api::cli::{Cli, Command, SimArgs};
use grok2api::config::{LogFormat, UpstreamKind};
use grok2api::sim::{self, SimConfig};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

/// Tokens the in-process demo simulator accepts, and the gateway uses.
const DEMO_TOKENS: [&str; 2] = ["demo-sso-token-1", "demo-sso-token-2"];

/// Demo-only webhook secret (`whsec_` + base64 of "grok2api-demo-callback-secret").
const DEMO_CALLBACK_SECRET: &str = "whsec_Z3JvazJhcGktZGVtby1jYWxsYmFjay1zZWNyZXQ=";

fn init_tracing(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    grok2api::install_crypto_provider();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Sim(args)) => run_sim(args).await,
        Some(Command::Doctor(args)) => return doctor(args).await,
        Some(Command::Fingerprint { files }) => fingerprint(&files),
        Some(Command::Healthcheck { url }) => {
            let listen = std::env::var("GROK2API_LISTEN").unwrap_or_else(|_| "127.0.0.1:8000".into());
            healthcheck(&url.unwrap_or_else(|| grok2api::config::healthcheck_url(&listen))).await
        }
        None => serve(cli.serve).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("grok2api: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `grok2api fingerprint FILE…`: one line per file, `<fingerprint>  <file>`.
fn fingerprint(files: &[std::path::PathBuf]) -> Result<(), String> {
    for f in files {
        let bytes = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let kind = grok2api::media::kind::sniff_media_type(&bytes)
            .ok_or_else(|| format!("{}: not an image or a video", f.display()))?;
        println!("{}  {}", hex::encode(grok2api::media::fingerprint::fingerprint(&bytes, kind)), f.display());
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

async fn serve(args: grok2api::cli::ServeArgs) -> Result<(), String> {
    let mut cfg = args.load_config().map_err(|e| e.to_string())?;
    init_tracing(cfg.log.format, &cfg.log.level);

    let mut demo_sim = None;
    if args.demo {
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("demo simulator: {e}"))?;
        let handle = sim::spawn(
            SimConfig {
                tokens: DEMO_TOKENS.map(String::from).to_vec(),
                flavor: cfg.upstream.kind,
                // The demo goes through the same fingerprint-checking TLS front as the test suite.
                tls: cfg.upstream.kind == UpstreamKind::GrokWeb,
                ..SimConfig::default()
            },
            listener,
        )
        .map_err(|e| format!("demo simulator: {e}"))?;
        let base = handle.base_url();
        cfg.grok.base_url = base.clone();
        cfg.grok.assets_url = base.clone();
        cfg.grok.ws_url = handle.ws_url();
        cfg.grok.ca_pem = handle.ca_pem.clone();
        cfg.fetch.ca_pem = handle.ca_pem.clone();
        cfg.grok.tokens = DEMO_TOKENS.map(String::from).to_vec();
        cfg.xai.base_url = base.clone();
        cfg.xai.api_key = Some(DEMO_TOKENS[0].into());
        cfg.xai.poll_interval_ms = 200;
        // Documentation domains (RFC 2606) are answered by the simulator, so examples that use
        // https://example.com/... image URLs work offline.
        for host in ["example.com", "example.net", "example.org"] {
            cfg.fetch.host_overrides.insert(host.into(), format!("{base}/example-assets/{host}"));
        }
        if cfg.callbacks.secret.is_none() {
            cfg.callbacks.secret = Some(DEMO_CALLBACK_SECRET.into());
            cfg.callbacks.allow_private = true;
            tracing::info!("demo mode: callbacks signed with {DEMO_CALLBACK_SECRET} and allowed to loopback");
        }
        tracing::info!("demo mode: simulated grok.com upstream at {base}");
        demo_sim = Some(handle);
    }

    let listen: SocketAddr = tokio::net::lookup_host(&cfg.server.listen)
        .await
        .map_err(|e| format!("bad listen address {}: {e}", cfg.server.listen))?
        .next()
        .ok_or_else(|| format!("listen address {} resolves to nothing", cfg.server.listen))?;
    cfg.check_auth_safety(listen).map_err(|e| e.to_string())?;
    // The demo's keys are the user's to choose for a loopback try-out.
    if !args.demo {
        cfg.check_key_strength().map_err(|e| e.to_string())?;
    }
    if cfg.auth.api_keys.is_empty() {
        if cfg.admin.api_key.as_deref().is_some_and(|k| !k.is_empty()) {
            tracing::info!("no API key in the config: /v1 answers keys made in the console (/admin) only");
        } else {
            tracing::warn!(
                "NO API KEY CONFIGURED: every request is accepted. Set GROK2API_API_KEY before exposing this server."
            );
        }
    }
    if cfg.upstream.kind == UpstreamKind::GrokWeb && cfg.grok.tokens.is_empty() {
        tracing::warn!(
            "no grok.com sso tokens configured (grok.tokens / GROK2API_GROK_TOKENS); generation requests will fail"
        );
    }

    if let Some(files) = grok2api::server::raise_open_file_limit() {
        let room = files.saturating_sub(grok2api::server::RESERVED_FILES) as usize;
        if room < cfg.server.max_connections {
            tracing::warn!(
                open_files = files,
                max_connections = cfg.server.max_connections,
                "server.max_connections is above what the open-file limit leaves for clients; capped at {room} \
                 (raise `ulimit -n` / LimitNOFILE to allow more)"
            );
            cfg.server.max_connections = room.max(64);
        }
    }
    let listener = TcpListener::bind(listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let server = Server::start(cfg, listener)?;
    // Machine-readable line on stdout (tests and scripts read the port from it when listening on :0).
    println!("grok2api listening on {}", server.base_url());
    tracing::info!("listening on {}", server.base_url());

    let stop = server.shutdown_token();
    let drain = tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        stop.cancel();
    });
    let result = server.wait().await.map_err(|e| e.to_string());
    drain.abort();
    if let Some(sim) = demo_sim {
        let _ = tokio::time::timeout(Duration::from_secs(5), sim.stop()).await;
    }
    result
}

async fn run_sim(args: SimArgs) -> Result<(), String> {
    init_tracing(LogFormat::Text, "info");
    let listener =
        TcpListener::bind(args.listen).await.map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let handle = sim::spawn(
        SimConfig {
            tokens: args.tokens.into_iter().filter(|t| !t.is_empty()).collect(),
            frame_delay: Duration::from_millis(args.frame_delay_ms),
            flavor: args.flavor,
            tls: args.tls,
            require_clearance: args.require_clearance,
            ..SimConfig::default()
        },
        listener,
    )
    .map_err(|e| e.to_string())?;
    if let (Some(path), Some(pem)) = (&args.ca_out, &handle.ca_pem) {
        std::fs::write(path, pem).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("simulator CA written to {} (give it to the gateway as grok.ca_file)", path.display());
    }
    println!("grok2api simulator ({:?}) listening on {}", args.flavor, handle.base_url());
    shutdown_signal().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), handle.stop()).await;
    Ok(())
}

async fn doctor(args: grok2api::cli::DoctorArgs) -> ExitCode {
    init_tracing(LogFormat::Text, "warn");
    let cfg = match args.grok_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("grok2api doctor: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = grok2api::upstream::grok_web::doctor::run(cfg, args.generate).await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        print!("{}", grok2api::upstream::grok_web::doctor::render_text(&report));
    }
    if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

async fn healthcheck(url: &str) -> Result<(), String> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(3)).build().map_err(|e| e.to_string())?;
    let resp = client.get(url).send().await.map_err(|e| format!("{url}: {e}"))?;
    if resp.status().is_success() { Ok(()) } else { Err(format!("{url}: HTTP {}", resp.status())) }
}

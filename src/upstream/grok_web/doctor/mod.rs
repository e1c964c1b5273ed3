//! `grok2api doctor`: a live, step-by-step probe of one grok.com account from this machine — DNS, TCP,
//! proxy, TLS with the chosen browser profile, Cloudflare's verdict, the anti-bot header, the sso
//! cookie and its media quota, the Imagine WebSocket, and (with `--generate`) one real image. Each step
//! prints its result, its time and, on failure, the next thing to try. Exit code 0 only when every
//! step that ran passed. `network.rs` holds the steps below the browser (DNS, TCP, the proxy's
//! tunnel), `grok.rs` the ones grok.com answers.

mod grok;
mod network;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::GrokWebConfig;
use crate::metrics::Metrics;
use crate::upstream::error::UpstreamError;
use crate::upstream::grok_web::browser::redact_proxy;
use crate::upstream::grok_web::token_pool::parse_entry;
use crate::upstream::grok_web::{Account, GrokWebClient};

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Skip,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub step: &'static str,
    pub status: Status,
    pub ms: u64,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub ok: bool,
    pub base_url: String,
    pub profile: String,
    pub user_agent: String,
    pub proxy: Option<String>,
    pub steps: Vec<Step>,
}

struct Run {
    steps: Vec<Step>,
}

impl Run {
    fn record(&mut self, step: &'static str, started: Instant, result: Result<String, (String, String)>) -> bool {
        let ms = started.elapsed().as_millis() as u64;
        let (status, detail, advice) = match result {
            Ok(detail) => (Status::Pass, detail, None),
            Err((detail, advice)) => (Status::Fail, detail, Some(advice)),
        };
        self.steps.push(Step { step, status, ms, detail, advice });
        status == Status::Pass
    }

    fn skip(&mut self, step: &'static str, why: &str) {
        self.steps.push(Step { step, status: Status::Skip, ms: 0, detail: why.to_owned(), advice: None });
    }
}

fn fail<T>(detail: impl Into<String>, advice: &str) -> Result<T, (String, String)> {
    Err((detail.into(), advice.to_owned()))
}

/// Advice for an upstream failure at the step where it happened.
fn advice_for(e: &UpstreamError) -> &'static str {
    match e {
        UpstreamError::Challenge(_) => {
            "challenge: configure grok.flaresolverr_url, or a residential proxy (grok.proxy or TOKEN|PROXY)"
        }
        UpstreamError::ProxyFailed(_) => {
            "check the proxy's address and credentials, and that it allows CONNECT to :443"
        }
        UpstreamError::StaleSignature(_) => {
            "the x-statsig-id was refused as stale even after re-reading grok.com's page: with grok.statsig_id \
             set, capture a fresh one; otherwise grok.com changed how it signs and grok2api needs an update"
        }
        UpstreamError::CannedOutput(_) => {
            "this account is flagged: grok.com answers every prompt with the same canned media. Use another \
             account; the gateway stops using a flagged one by itself"
        }
        UpstreamError::Auth(_) => "the sso cookie was refused: log in to grok.com again and copy the new `sso` cookie",
        UpstreamError::RateLimited { .. } => {
            "this account's quota is used up: wait for its window or add another token"
        }
        UpstreamError::Timeout(_) | UpstreamError::Transport(_) => {
            "the connection broke: check the network path, or use a proxy (grok.proxy)"
        }
        _ => "see the detail; run with RUST_LOG=debug for the whole exchange",
    }
}

/// What every step works with: the client built from the config, the account of the token probed and
/// where its traffic leaves from.
struct Probe {
    client: GrokWebClient,
    account: Account,
    token: String,
    /// The token's own proxy, else `grok.proxy`.
    proxy: Option<String>,
    base_url: String,
    ws_url: String,
    connect_timeout: Duration,
}

/// Runs every step for `cfg.tokens[0]`.
pub async fn run(cfg: GrokWebConfig, generate: bool) -> Report {
    let mut run = Run { steps: Vec::new() };
    let token_entry = cfg.tokens.first().cloned().unwrap_or_default();
    let (token, token_proxy) = parse_entry(&token_entry);
    let proxy = token_proxy.or_else(|| cfg.proxy.clone().filter(|p| !p.trim().is_empty()));
    let base_url = cfg.base_url.trim_end_matches('/').to_owned();

    let started = Instant::now();
    let client = match GrokWebClient::new(cfg.clone(), Arc::new(Metrics::default())) {
        Ok(c) => c,
        Err(e) => {
            run.record("config", started, fail(e, "fix the setting named above"));
            return finish(run, &base_url, "-", "-", proxy.as_deref());
        }
    };
    let probe = Probe {
        account: client.account(&token, proxy.as_deref()),
        client,
        token,
        proxy,
        base_url,
        ws_url: cfg.ws_url.trim_end_matches('/').to_owned(),
        connect_timeout: Duration::from_secs(cfg.connect_timeout_secs.max(1)),
    };
    if probe.config(&mut run, started) {
        probe.steps(&mut run, generate).await;
    }
    probe.report(run)
}

impl Probe {
    /// The config step: a profile was chosen (the client was built) and there is a token.
    fn config(&self, run: &mut Run, started: Instant) -> bool {
        if self.token.is_empty() {
            run.record(
                "config",
                started,
                fail("no token given", "pass --token <the sso cookie of a grok.com account>"),
            );
            return false;
        }
        let profile = self.client.transport().profile();
        let detail =
            format!("profile {} ({:?}), token {}", profile.name, profile.platform, crate::secret::mask(&self.token));
        run.record("config", started, Ok(detail))
    }

    /// The steps after the config, in order; `None` where a failed step leaves the rest nothing to try.
    async fn steps(&self, run: &mut Run, generate: bool) -> Option<()> {
        let target = self.dns(run).await?;
        let tcp = self.tcp(run, &target).await?;
        self.proxy(run, tcp, &target).await?;
        let landing = self.tls(run).await?;
        self.cloudflare(run, &landing)?;
        self.rest(run).await;
        self.websocket(run).await;
        self.generate(run, generate).await;
        Some(())
    }

    fn report(&self, run: Run) -> Report {
        let profile = &self.account.egress.profile;
        finish(run, &self.base_url, &profile.name, &profile.user_agent, self.proxy.as_deref())
    }
}

fn finish(run: Run, base_url: &str, profile: &str, user_agent: &str, proxy: Option<&str>) -> Report {
    let ok = !run.steps.is_empty() && run.steps.iter().all(|s| s.status != Status::Fail);
    Report {
        ok,
        base_url: base_url.to_owned(),
        profile: profile.to_owned(),
        user_agent: user_agent.to_owned(),
        proxy: proxy.map(redact_proxy),
        steps: run.steps,
    }
}

/// The report for a terminal, one line per step.
pub fn render_text(r: &Report) -> String {
    let mut out = format!(
        "grok2api doctor — {} as {} ({}), {}\n",
        r.base_url,
        r.profile,
        r.user_agent,
        r.proxy.as_deref().map_or_else(|| "no proxy".to_owned(), |p| format!("via {p}"))
    );
    for s in &r.steps {
        let tag = match s.status {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        };
        let ms = if s.status == Status::Skip { String::new() } else { format!("{} ms", s.ms) };
        out.push_str(&format!("  {tag}  {:<10} {:>8}  {}\n", s.step, ms, s.detail));
        if let Some(a) = &s.advice {
            out.push_str(&format!("        → {a}\n"));
        }
    }
    out.push_str(if r.ok { "all steps passed\n" } else { "some steps failed\n" });
    out
}

//! `grok2api doctor`: a live, step-by-step probe of one grok.com account from this machine — DNS, TCP,
//! proxy, TLS with the chosen browser profile, Cloudflare's verdict, the anti-bot header, the sso
//! cookie and its media quota, the Imagine WebSocket, and (with `--generate`) one real image. Each step
//! prints its result, its time and, on failure, the next thing to try. Exit code 0 only when every
//! step that ran passed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Method;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::config::GrokWebConfig;
use crate::jobs::{ImageJob, ProgressSink};
use crate::metrics::Metrics;
use crate::upstream::UpstreamError;
use crate::upstream::grok_web::GrokWebClient;
use crate::upstream::grok_web::browser::{WsOpen, redact_proxy};

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

/// Runs every step for `cfg.tokens[0]`.
pub async fn run(cfg: GrokWebConfig, generate: bool) -> Report {
    let mut run = Run { steps: Vec::new() };
    let token_entry = cfg.tokens.first().cloned().unwrap_or_default();
    let (token, token_proxy) = crate::upstream::grok_web::token_pool::parse_entry(&token_entry);
    let proxy = token_proxy.or_else(|| cfg.proxy.clone().filter(|p| !p.trim().is_empty()));
    let base_url = cfg.base_url.trim_end_matches('/').to_owned();
    let connect_timeout = Duration::from_secs(cfg.connect_timeout_secs.max(1));

    let started = Instant::now();
    let client = match GrokWebClient::new(cfg.clone(), Arc::new(Metrics::default())) {
        Ok(c) => c,
        Err(e) => {
            run.record("config", started, fail(e, "fix the setting named above"));
            return finish(run, &base_url, "-", "-", proxy.as_deref());
        }
    };
    let profile = client.transport().profile().clone();
    let account = client.account(&token, proxy.as_deref());
    let report = |run: Run| {
        finish(run, &base_url, &account.egress.profile.name, &account.egress.profile.user_agent, proxy.as_deref())
    };
    if token.is_empty() {
        run.record("config", started, fail("no token given", "pass --token <the sso cookie of a grok.com account>"));
        return report(run);
    }
    run.record(
        "config",
        started,
        Ok(format!("profile {} ({:?}), token {}", profile.name, profile.platform, crate::secret::mask(&token))),
    );

    let Ok(url) = url::Url::parse(&base_url) else {
        run.record("dns", Instant::now(), fail(format!("`{base_url}` is not a URL"), "fix grok.base_url"));
        return report(run);
    };
    let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    let proxy_url = proxy.as_deref().and_then(|p| url::Url::parse(p).ok());

    // DNS: ours, unless the proxy resolves names for us.
    let started = Instant::now();
    let remote_dns = proxy_url.as_ref().is_some_and(|p| p.scheme() != "socks5");
    let mut target: Option<SocketAddr> = None;
    if remote_dns {
        run.skip("dns", "names are resolved by the proxy");
    } else {
        let ok = match tokio::time::timeout(connect_timeout, tokio::net::lookup_host((host.as_str(), port))).await {
            Ok(Ok(mut addrs)) => match addrs.next() {
                Some(a) => {
                    target = Some(a);
                    Ok(format!("{host} → {}", a.ip()))
                }
                None => fail(format!("{host} has no address"), "check the host name and this machine's DNS"),
            },
            Ok(Err(e)) => fail(
                format!("{host}: {e}"),
                "check the host name and this machine's DNS (/etc/resolv.conf), or use a socks5h:// proxy",
            ),
            Err(_) => fail(
                format!("{host}: no answer in {}s", connect_timeout.as_secs()),
                "this machine's DNS is not answering",
            ),
        };
        if !run.record("dns", started, ok) {
            return report(run);
        }
    }

    // TCP: to grok.com, or to the proxy when there is one.
    let started = Instant::now();
    let tcp_target = match &proxy_url {
        Some(p) => format!("{}:{}", p.host_str().unwrap_or_default(), p.port_or_known_default().unwrap_or(1080)),
        None => target.map(|a| a.to_string()).unwrap_or_default(),
    };
    let what = if proxy_url.is_some() { "the proxy" } else { "the upstream" };
    let tcp = match tokio::time::timeout(connect_timeout, TcpStream::connect(&tcp_target)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(format!("{tcp_target}: {e}")),
        Err(_) => Err(format!("{tcp_target}: no answer in {}s", connect_timeout.as_secs())),
    };
    let tcp = match tcp {
        Ok(s) => {
            run.record("tcp", started, Ok(format!("connected to {what} at {tcp_target}")));
            s
        }
        Err(e) => {
            let advice = if proxy_url.is_some() {
                "the proxy is not reachable: check its address and that it is running"
            } else {
                "grok.com is not reachable from here: a firewall? try a proxy (grok.proxy)"
            };
            run.record("tcp", started, fail(e, advice));
            return report(run);
        }
    };

    // Proxy: a tunnel to grok.com through it, with its credentials.
    match &proxy_url {
        None => {
            // The probe connection has served its purpose; the TLS step opens its own.
            drop(tcp);
            run.skip("proxy", "no proxy configured");
        }
        Some(p) => {
            let started = Instant::now();
            let result = tunnel(tcp, p, &host, port).await;
            let ok = match result {
                Ok(()) => Ok(format!("tunnel to {host}:{port} through {}", redact_proxy(p.as_str()))),
                Err(e) => fail(e, "check the proxy's credentials and that it allows CONNECT to :443"),
            };
            if !run.record("proxy", started, ok) {
                return report(run);
            }
        }
    }

    // TLS with the profile, and Cloudflare's verdict on it.
    let started = Instant::now();
    let req = client.transport().request(&account.egress, Method::GET, &format!("{base_url}/"), http::HeaderMap::new());
    let resp = match req {
        Ok(r) => tokio::time::timeout(connect_timeout * 3, r.send()).await,
        Err(e) => {
            run.record("tls", started, fail(e.to_string(), advice_for(&e)));
            return report(run);
        }
    };
    let resp = match resp {
        Err(_) => {
            run.record("tls", started, fail("no answer in time", "the network path is too slow or blocked"));
            return report(run);
        }
        Ok(Err(e)) => {
            let mapped = crate::upstream::grok_web::browser::map_error(&e, &account.egress);
            let advice = match mapped {
                UpstreamError::ProxyFailed(_) => advice_for(&mapped),
                _ => "TLS failed: behind a TLS-inspecting proxy (or against `sim --tls`), give its CA in grok.ca_file",
            };
            run.record("tls", started, fail(mapped.to_string(), advice));
            return report(run);
        }
        Ok(Ok(r)) => r,
    };
    run.record(
        "tls",
        started,
        Ok(format!("{} handshake as {}, {:?}", scheme_name(&base_url), account.egress.profile.name, resp.version())),
    );
    let started = Instant::now();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    client.transport().clearance.observe(&token, &headers);
    let challenged = headers.get("cf-mitigated").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"challenge"));
    let cf_ok = if challenged {
        fail(
            format!("HTTP {status}: Cloudflare challenge (cf-mitigated) for this address and fingerprint"),
            advice_for(&UpstreamError::Challenge(String::new())),
        )
    } else {
        Ok(format!("let through (HTTP {status})"))
    };
    let cloudflare_passed = run.record("cloudflare", started, cf_ok);
    if !cloudflare_passed {
        for s in ["anti-bot", "sso", "quota", "websocket", "generate"] {
            run.skip(s, "Cloudflare stopped the connection");
        }
        return report(run);
    }

    // One REST call answers three questions: anti-bot header, sso cookie, remaining quota.
    let started = Instant::now();
    match client.quota_info(&account).await {
        Ok(products) => {
            run.record("anti-bot", started, Ok("x-statsig-id accepted".into()));
            run.record("sso", started, Ok("the sso cookie is valid".into()));
            let mut parts = Vec::new();
            let mut any_left = false;
            for (product, q) in &products {
                let key = product.key();
                match q {
                    None => parts.push(format!("{key} -")),
                    Some(q) => {
                        let left = q.remaining.map_or_else(|| "?".to_owned(), |n| n.to_string());
                        any_left |= q.available && q.remaining != Some(0);
                        let next = q
                            .next_available_at
                            .map_or_else(String::new, |t| format!(" (back {})", humantime::format_rfc3339_seconds(t)));
                        parts.push(format!("{key} {left}{next}"));
                    }
                }
            }
            let detail = format!("media generations left: {}", parts.join(", "));
            let ok = if any_left {
                Ok(detail)
            } else {
                fail(detail, advice_for(&UpstreamError::RateLimited { retry_after: None, message: String::new() }))
            };
            run.record("quota", started, ok);
        }
        Err(e @ UpstreamError::Challenge(_)) if !e.to_string().contains("cf-mitigated") => {
            run.record("anti-bot", started, fail(e.to_string(), "the x-statsig-id was refused (code 7): set grok.statsig_id to a value captured from a logged-in browser"));
            run.skip("sso", "needs the anti-bot header accepted");
            run.skip("quota", "needs the anti-bot header accepted");
        }
        Err(e @ UpstreamError::Auth(_)) => {
            run.record("anti-bot", started, Ok("x-statsig-id accepted".into()));
            run.record("sso", started, fail(e.to_string(), advice_for(&e)));
            run.skip("quota", "needs a valid sso cookie");
        }
        Err(e) => {
            run.record("anti-bot", started, fail(e.to_string(), advice_for(&e)));
            run.skip("sso", "the REST call failed");
            run.skip("quota", "the REST call failed");
        }
    }

    // The Imagine WebSocket: no anti-bot header there, so it is worth trying whatever REST said.
    let started = Instant::now();
    let ws_url = format!("{}/ws/imagine/listen", cfg.ws_url.trim_end_matches('/'));
    let cookie = client.cookie(&token);
    let ws = tokio::time::timeout(
        connect_timeout * 3,
        client.transport().websocket(&account.egress, &ws_url, &base_url, &cookie),
    )
    .await;
    let ws_ok = match ws {
        Err(_) => fail("no handshake answer in time", "the network path is too slow or blocked"),
        Ok(Err(e)) => fail(e.to_string(), advice_for(&e)),
        Ok(Ok(WsOpen::Refused { status, headers })) => {
            let e = crate::upstream::grok_web::classify_handshake(status, &headers);
            fail(format!("handshake refused: {e}"), advice_for(&e))
        }
        Ok(Ok(WsOpen::Open(ws))) => {
            let _ = ws.close(wreq::ws::message::CloseCode::from(1000), "").await;
            Ok("handshake accepted".into())
        }
    };
    run.record("websocket", started, ws_ok);

    if !generate {
        run.skip("generate", "pass --generate to make one real image (spends one generation)");
    } else if run.steps.iter().any(|s| s.status == Status::Fail) {
        run.skip("generate", "an earlier step failed");
    } else {
        let started = Instant::now();
        let job = ImageJob {
            prompt: "a small red lighthouse on a rock, watercolor".into(),
            n: 1,
            aspect_ratio: "1:1",
            output: Default::default(),
        };
        let ok = match client.generate_images(&job, &ProgressSink::none()).await {
            Ok(images) if !images.is_empty() => {
                Ok(format!("1 image, {} bytes, {}", images[0].bytes.len(), images[0].content_type))
            }
            Ok(_) => fail("no image came back", "see the websocket step"),
            Err(e) => fail(e.to_string(), advice_for(&e)),
        };
        run.record("generate", started, ok);
    }
    report(run)
}

fn scheme_name(url: &str) -> &'static str {
    if url.starts_with("https") { "TLS" } else { "plain-HTTP (no TLS)" }
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

/// Opens a tunnel to `host:port` through the proxy on `tcp` (HTTP CONNECT or SOCKS5, with auth).
async fn tunnel(tcp: TcpStream, proxy: &url::Url, host: &str, port: u16) -> Result<(), String> {
    let credentials = crate::upstream::grok_web::browser::proxy_credentials(proxy);
    match proxy.scheme() {
        "socks5" | "socks5h" => {
            let target = (host, port);
            let result = match &credentials {
                None => tokio_socks::tcp::Socks5Stream::connect_with_socket(tcp, target).await,
                Some((user, pass)) => {
                    tokio_socks::tcp::Socks5Stream::connect_with_password_and_socket(tcp, target, user, pass).await
                }
            };
            result.map(|_| ()).map_err(|e| format!("SOCKS5: {e}"))
        }
        "http" => {
            let mut tcp = tcp;
            let mut req = format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n");
            if let Some((user, pass)) = &credentials {
                use base64::Engine;
                let cred = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
                req.push_str(&format!("Proxy-Authorization: Basic {cred}\r\n"));
            }
            req.push_str("\r\n");
            tcp.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
            let mut line = String::new();
            let mut reader = BufReader::new(tcp);
            tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
                .await
                .map_err(|_| "the proxy did not answer CONNECT".to_owned())?
                .map_err(|e| e.to_string())?;
            match line.split_whitespace().nth(1) {
                Some("200") => Ok(()),
                Some("407") => Err("HTTP 407: the proxy refused the credentials".into()),
                Some(code) => Err(format!("the proxy answered CONNECT with HTTP {code}")),
                None => Err("the proxy closed the connection".into()),
            }
        }
        // A TLS connection to the proxy itself: the TLS step goes through it.
        _ => Ok(()),
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

//! The steps grok.com answers: the TLS handshake with the browser profile and Cloudflare's verdict on
//! it, one REST call (anti-bot header, sso cookie, quota), the Imagine WebSocket, and one real image.

use std::time::Instant;

use http::Method;

use crate::jobs::{ImageJob, ProgressSink};
use crate::upstream::error::UpstreamError;
use crate::upstream::grok_web::browser::{WsOpen, map_error};
use crate::upstream::grok_web::classify_handshake;
use crate::upstream::grok_web::doctor::{Probe, Run, Status, advice_for, fail};

impl Probe {
    /// TLS with the profile: the landing page's answer, for Cloudflare's verdict.
    pub(super) async fn tls(&self, run: &mut Run) -> Option<wreq::Response> {
        let (base_url, egress) = (&self.base_url, &self.account.egress);
        let started = Instant::now();
        let req = self.client.transport().request(egress, Method::GET, &format!("{base_url}/"), http::HeaderMap::new());
        let resp = match req {
            Ok(r) => tokio::time::timeout(self.connect_timeout * 3, r.send()).await,
            Err(e) => {
                run.record("tls", started, fail(e.to_string(), advice_for(&e)));
                return None;
            }
        };
        let resp = match resp {
            Err(_) => {
                run.record("tls", started, fail("no answer in time", "the network path is too slow or blocked"));
                return None;
            }
            Ok(Err(e)) => {
                let mapped = map_error(&e, egress);
                let advice = match mapped {
                    UpstreamError::ProxyFailed(_) => advice_for(&mapped),
                    _ => {
                        "TLS failed: behind a TLS-inspecting proxy (or against `sim --tls`), give its CA in grok.ca_file"
                    }
                };
                run.record("tls", started, fail(mapped.to_string(), advice));
                return None;
            }
            Ok(Ok(r)) => r,
        };
        run.record(
            "tls",
            started,
            Ok(format!("{} handshake as {}, {:?}", scheme_name(base_url), egress.profile.name, resp.version())),
        );
        Some(resp)
    }

    /// Cloudflare's verdict on this address and fingerprint; a challenge leaves nothing else to try.
    pub(super) fn cloudflare(&self, run: &mut Run, landing: &wreq::Response) -> Option<()> {
        let started = Instant::now();
        let status = landing.status().as_u16();
        let headers = landing.headers().clone();
        self.client.transport().clearance.observe(&self.token, &headers);
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
            return None;
        }
        Some(())
    }

    /// One REST call answers three questions: anti-bot header, sso cookie, remaining quota.
    pub(super) async fn rest(&self, run: &mut Run) {
        let started = Instant::now();
        match self.client.quota_info(&self.account).await {
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
                            let next = q.next_available_at.map_or_else(String::new, |t| {
                                format!(" (back {})", humantime::format_rfc3339_seconds(t))
                            });
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
            Err(e @ UpstreamError::StaleSignature(_)) => {
                run.record("anti-bot", started, fail(e.to_string(), advice_for(&e)));
                run.skip("sso", "needs the anti-bot header accepted");
                run.skip("quota", "needs the anti-bot header accepted");
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
    }

    /// The Imagine WebSocket: no anti-bot header there, so it is worth trying whatever REST said.
    pub(super) async fn websocket(&self, run: &mut Run) {
        let started = Instant::now();
        let ws_url = format!("{}/ws/imagine/listen", self.ws_url);
        let cookie = self.client.cookie(&self.token);
        let ws = tokio::time::timeout(
            self.connect_timeout * 3,
            self.client.transport().websocket(&self.account.egress, &ws_url, &self.base_url, &cookie),
        )
        .await;
        let ws_ok = match ws {
            Err(_) => fail("no handshake answer in time", "the network path is too slow or blocked"),
            Ok(Err(e)) => fail(e.to_string(), advice_for(&e)),
            Ok(Ok(WsOpen::Refused { status, headers })) => {
                let e = classify_handshake(status, &headers);
                fail(format!("handshake refused: {e}"), advice_for(&e))
            }
            Ok(Ok(WsOpen::Open(ws))) => {
                let _ = ws.close(wreq::ws::message::CloseCode::from(1000), "").await;
                Ok("handshake accepted".into())
            }
        };
        run.record("websocket", started, ws_ok);
    }

    /// Two real images of two prompts (`--generate`), only when every earlier step passed: a flagged
    /// account answers both with the same canned picture, which the quality guard refuses.
    pub(super) async fn generate(&self, run: &mut Run, generate: bool) {
        if !generate {
            run.skip("generate", "pass --generate to make two real images (spends two generations)");
            return;
        }
        if run.steps.iter().any(|s| s.status == Status::Fail) {
            run.skip("generate", "an earlier step failed");
            return;
        }
        let started = Instant::now();
        let mut made = Vec::new();
        for prompt in ["a small red lighthouse on a rock, watercolor", "a blue teapot on a wooden table, photograph"] {
            let job = ImageJob {
                prompt: prompt.into(),
                n: 1,
                aspect_ratio: "1:1",
                output: Default::default(),
                quality: None,
            };
            match self.client.generate_images(&job, &ProgressSink::none()).await {
                Ok(images) if !images.is_empty() => made.push(images[0].clone()),
                Ok(_) => made.clear(),
                Err(e) => {
                    run.record("generate", started, fail(e.to_string(), advice_for(&e)));
                    return;
                }
            }
            if made.is_empty() {
                run.record("generate", started, fail("no image came back", "see the websocket step"));
                return;
            }
        }
        let sizes: Vec<String> = made.iter().map(|i| format!("{} bytes", i.bytes.len())).collect();
        run.record("generate", started, Ok(format!("2 images ({}), {}", sizes.join(", "), made[0].content_type)));
    }
}

fn scheme_name(url: &str) -> &'static str {
    if url.starts_with("https") { "TLS" } else { "plain-HTTP (no TLS)" }
}

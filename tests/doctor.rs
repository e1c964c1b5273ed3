//! `grok2api doctor` (the real binary) against `sim --tls`: every step passes for a good account, and
//! each failure the simulator can stage is reported at its step with its advice and a non-zero exit.

mod common;

use std::collections::HashMap;

use common::*;
use grok2api::sim::{self, SimConfig, SimHandle};
use serde_json::Value;

const TOKEN: &str = "doctor-token-0001";

struct Probe {
    exit: i32,
    steps: HashMap<String, Value>,
    report: Value,
}

impl Probe {
    fn status(&self, step: &str) -> &str {
        self.steps.get(step).and_then(|s| s["status"].as_str()).unwrap_or("missing")
    }
    fn advice(&self, step: &str) -> String {
        self.steps.get(step).and_then(|s| s["advice"].as_str()).unwrap_or_default().to_owned()
    }
}

async fn sim_with(f: impl FnOnce(&mut SimConfig)) -> (SimHandle, tempfile::TempDir) {
    grok2api::install_crypto_provider();
    let mut cfg = SimConfig {
        tokens: vec![TOKEN.into()],
        tls: true,
        frame_delay: std::time::Duration::from_millis(2),
        image_long_side: 64,
        ..SimConfig::default()
    };
    f(&mut cfg);
    let sim = sim::spawn(cfg, tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), sim.ca_pem.as_ref().unwrap()).unwrap();
    (sim, dir)
}

async fn doctor(sim: &SimHandle, ca: Option<&tempfile::TempDir>, extra: &[&str]) -> Probe {
    let mut args = vec!["doctor".to_owned(), "--json".into(), "--base-url".into(), sim.base_url()];
    if let Some(dir) = ca {
        args.extend(["--ca-file".into(), dir.path().join("ca.pem").display().to_string()]);
    }
    if !extra.contains(&"--token") {
        args.extend(["--token".into(), TOKEN.into()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_grok2api"))
        .args(&args)
        .env_remove("GROK2API_CONFIG")
        .output()
        .await
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    let steps = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step"].as_str().unwrap().to_owned(), s.clone()))
        .collect();
    Probe { exit: out.status.code().unwrap_or(-1), steps, report }
}

#[tokio::test]
async fn a_good_account_passes_every_step_including_a_real_image() {
    let (sim, ca) = sim_with(|_| {}).await;
    let p = doctor(&sim, Some(&ca), &["--generate"]).await;
    assert_eq!(p.exit, 0, "{:#}", p.report);
    for step in ["config", "dns", "tcp", "tls", "cloudflare", "anti-bot", "sso", "quota", "websocket", "generate"] {
        assert_eq!(p.status(step), "pass", "{step}: {:#}", p.report);
    }
    assert_eq!(p.status("proxy"), "skip");
    assert!(p.steps["generate"]["detail"].as_str().unwrap().contains("image/png"));
    assert!(p.report["profile"].as_str().unwrap().starts_with("chrome_"));
}

/// A flagged account answers both of the generate step's prompts with the same canned picture
/// (chenyme/grok2api #1014): the step fails and says what that means.
#[tokio::test]
async fn a_flagged_account_fails_the_generate_step() {
    let (sim, ca) = sim_with(|s| s.flagged = vec![TOKEN.into()]).await;
    let p = doctor(&sim, Some(&ca), &["--generate"]).await;
    assert_ne!(p.exit, 0, "{:#}", p.report);
    assert_eq!(p.status("generate"), "fail", "{:#}", p.report);
    assert!(p.steps["generate"]["detail"].as_str().unwrap().contains("canned"), "{:#}", p.report);
    assert!(p.advice("generate").contains("flagged"), "{:#}", p.report);
}

#[tokio::test]
async fn through_an_authenticated_proxy_the_proxy_step_passes_and_a_bad_password_fails_it() {
    let (sim, ca) = sim_with(|_| {}).await;
    let good = proxy::http("doc", "pw").await;
    let p = doctor(&sim, Some(&ca), &["--proxy", &good.url("http", "doc", "pw")]).await;
    assert_eq!(p.exit, 0, "{:#}", p.report);
    assert_eq!(p.status("proxy"), "pass");
    assert!(!p.report.to_string().contains(":pw@"), "the proxy password is never printed");
    let socks = proxy::socks5("doc", "pw").await;
    let p = doctor(&sim, Some(&ca), &["--proxy", &socks.url("socks5", "doc", "pw")]).await;
    assert_eq!(p.exit, 0, "{:#}", p.report);
    assert_eq!(p.status("proxy"), "pass");

    let p = doctor(&sim, Some(&ca), &["--proxy", &good.url("http", "doc", "nope")]).await;
    assert_eq!(p.exit, 1);
    assert_eq!(p.status("proxy"), "fail", "{:#}", p.report);
    assert!(p.steps["proxy"]["detail"].as_str().unwrap().contains("407"));
    assert!(p.advice("proxy").contains("credentials"));
}

#[tokio::test]
async fn network_failures_stop_at_their_step() {
    let (sim, ca) = sim_with(|_| {}).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    // DNS: a name that cannot resolve (RFC 6761 .invalid).
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_grok2api"))
        .args(["doctor", "--json", "--token", TOKEN, "--base-url", "https://grok.doctor-test.invalid"])
        .output()
        .await
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let dns = report["steps"].as_array().unwrap().iter().find(|s| s["step"] == "dns").unwrap();
    assert_eq!(dns["status"], "fail", "{report:#}");
    assert!(dns["advice"].as_str().unwrap().contains("DNS"));
    assert_eq!(out.status.code(), Some(1));

    // TCP: nothing listens there.
    let closed_sim = format!("https://{closed}");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_grok2api"))
        .args(["doctor", "--json", "--token", TOKEN, "--base-url", &closed_sim])
        .output()
        .await
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let tcp = report["steps"].as_array().unwrap().iter().find(|s| s["step"] == "tcp").unwrap();
    assert_eq!(tcp["status"], "fail", "{report:#}");
    assert_eq!(out.status.code(), Some(1));

    // A proxy that is not there.
    let p = doctor(&sim, Some(&ca), &["--proxy", &format!("socks5://u:p@{closed}")]).await;
    assert_eq!(p.status("tcp"), "fail", "{:#}", p.report);
    assert!(p.advice("tcp").contains("proxy"));

    // TLS: the simulator's CA is not trusted.
    let p = doctor(&sim, None, &[]).await;
    assert_eq!(p.status("tls"), "fail", "{:#}", p.report);
    assert!(p.advice("tls").contains("grok.ca_file"));
    assert_eq!(p.exit, 1);
}

#[tokio::test]
async fn cloudflare_anti_bot_sso_and_quota_failures_carry_their_advice() {
    // Cloudflare: a clearance is required (or the hello does not match the User-Agent).
    let (sim, ca) = sim_with(|c| c.require_clearance = true).await;
    let p = doctor(&sim, Some(&ca), &[]).await;
    assert_eq!(p.status("cloudflare"), "fail", "{:#}", p.report);
    assert!(p.advice("cloudflare").contains("flaresolverr"));
    assert_eq!(p.status("websocket"), "skip");
    assert_eq!(p.exit, 1);
    let (sim, ca) = sim_with(|_| {}).await;
    let chrome_156 = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";
    let p = doctor(&sim, Some(&ca), &["--user-agent", chrome_156]).await;
    assert_eq!(p.status("cloudflare"), "fail", "{:#}", p.report);

    // Anti-bot: an x-statsig-id that is not the web app's shape.
    let p = doctor(&sim, Some(&ca), &["--statsig-id", "not-a-signature"]).await;
    assert_eq!(p.status("anti-bot"), "fail", "{:#}", p.report);
    assert!(p.advice("anti-bot").contains("statsig"));
    assert_eq!(p.status("websocket"), "pass", "the WebSocket needs no anti-bot header");

    // sso: an account the simulator does not know.
    let p = doctor(&sim, Some(&ca), &["--token", "someone-else"]).await;
    assert_eq!(p.status("anti-bot"), "pass", "{:#}", p.report);
    assert_eq!(p.status("sso"), "fail");
    assert!(p.advice("sso").contains("sso"));
    assert_eq!(p.exit, 1);

    // Quota: none left; the WebSocket refuses too.
    let (sim, ca) = sim_with(|c| {
        c.quotas.insert(TOKEN.into(), 0);
    })
    .await;
    let p = doctor(&sim, Some(&ca), &["--generate"]).await;
    assert_eq!(p.status("quota"), "fail", "{:#}", p.report);
    assert!(p.advice("quota").contains("quota"));
    assert_eq!(p.status("websocket"), "fail");
    assert_eq!(p.status("generate"), "skip");
    assert_eq!(p.exit, 1);
}

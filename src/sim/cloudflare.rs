//! The simulated Cloudflare in front of the simulated grok.com. Like the real one it compares what a
//! client is (its TLS hello, and for a WebSocket the header order and case of the upgrade) with what
//! its User-Agent claims, and answers a mismatch with a challenge page: 403, `cf-mitigated:
//! challenge`, HTML. With `require_clearance` it also wants a `cf_clearance` cookie bound to the
//! User-Agent, which only its FlareSolverr endpoint hands out.
//!
//! The facts below were measured with `shared/tools/tls_fingerprint.py` and are kept independent of
//! the client's own tables, so a client regression cannot hide behind a shared constant.

use std::ops::RangeInclusive;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::tls::ConnInfo;
use crate::sim::state::Sim;

/// A browser's ClientHello, as JA4 parts b and c (ciphers; extensions + signature algorithms), which
/// do not depend on whether SNI was sent.
pub struct Fact {
    pub majors: RangeInclusive<u32>,
    /// JA4's ALPN field: `h2` for page loads and fetches, `h1` for Chrome's WebSocket connection.
    pub alpn: &'static str,
    pub ja4_bc: &'static str,
    pub source: &'static str,
}

/// Chromium-based browsers (Chrome, Edge, Opera share BoringSSL's hello).
pub const CHROMIUM: &[Fact] = &[
    Fact {
        majors: 156..=156,
        alpn: "h2",
        ja4_bc: "8daaf6152771_cb7bf5808d99",
        source: "headless Chromium 156.0.8078.73 (Debian), page load, 2026-11-27",
    },
    Fact {
        majors: 156..=156,
        alpn: "h1",
        ja4_bc: "8daaf6152771_5b37b36a67c0",
        source: "headless Chromium 156.0.8078.73 (Debian), `new WebSocket(wss://...)`, 2026-11-27",
    },
    Fact {
        majors: 142..=149,
        alpn: "h2",
        ja4_bc: "8daaf6152771_d8a2da3f94cd",
        source: "curl_cffi chrome142 and chrome146, wreq-util chrome_149: the same hello",
    },
    Fact {
        majors: 142..=149,
        alpn: "h1",
        ja4_bc: "8daaf6152771_0a20fe35d3a5",
        source: "Chrome 149's hello without ALPS (0x44cd): Chromium 156 sends ALPS only when it offers h2",
    },
];

/// TLS libraries that are not browsers.
pub const LIBRARIES: &[(&str, &str)] = &[
    ("rustls 0.23 (reqwest, tokio-tungstenite)", "61a7ad8aa9b6_3fcd1a44f3e3"),
    ("curl 7.88 / OpenSSL 3.0", "e8f1e7e78f70_b26ce05bbdd6"),
    ("Python ssl / OpenSSL 3.0", "85036bcba153_d41ae481755e"),
];

/// Chrome's WebSocket upgrade, captured from Chromium 156 over ws:// (names in order, exact case).
pub const CHROME_WS_HEADERS: &[&str] = &[
    "Host",
    "Connection",
    "Pragma",
    "Cache-Control",
    "User-Agent",
    "Upgrade",
    "Origin",
    "Sec-WebSocket-Version",
    "Accept-Encoding",
    "Accept-Language",
    "Cookie",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Extensions",
];

const WS_REQUIRED: &[&str] =
    &["Host", "Connection", "User-Agent", "Upgrade", "Origin", "Sec-WebSocket-Version", "Sec-WebSocket-Key"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    Chromium(u32),
    Firefox,
    Safari,
}

fn major_after(ua: &str, marker: &str) -> Option<u32> {
    let rest = &ua[ua.find(marker)? + marker.len()..];
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

fn claim(ua: &str) -> Option<Claim> {
    if ua.contains("Firefox/") {
        Some(Claim::Firefox)
    } else if let Some(m) = major_after(ua, "Chrome/").or_else(|| major_after(ua, "CriOS/")) {
        Some(Claim::Chromium(m))
    } else if ua.contains("Safari/") && ua.contains("Version/") {
        Some(Claim::Safari)
    } else {
        None
    }
}

/// Whether a hello with this JA4 may come from the browser `user_agent` names.
pub fn check_hello(ja4: &str, user_agent: &str) -> Result<(), String> {
    let mut parts = ja4.splitn(2, '_');
    let a = parts.next().unwrap_or_default();
    let bc = parts.next().unwrap_or_default();
    let alpn = a.get(a.len().saturating_sub(2)..).unwrap_or_default();
    if let Some((lib, _)) = LIBRARIES.iter().find(|(_, f)| *f == bc) {
        return Err(format!("the TLS hello is {lib}'s, not a browser's"));
    }
    let claimed = claim(user_agent).ok_or_else(|| format!("User-Agent `{user_agent}` is not a browser"))?;
    let chromium_hello = CHROMIUM.iter().any(|f| f.ja4_bc == bc);
    match claimed {
        Claim::Chromium(major) => {
            let same_alpn: Vec<&Fact> = CHROMIUM.iter().filter(|f| f.alpn == alpn).collect();
            let for_major: Vec<&&Fact> = same_alpn.iter().filter(|f| f.majors.contains(&major)).collect();
            let ok = if for_major.is_empty() {
                same_alpn.iter().any(|f| f.ja4_bc == bc)
            } else {
                for_major.iter().any(|f| f.ja4_bc == bc)
            };
            if ok { Ok(()) } else { Err(format!("JA4 {ja4} is not Chrome {major}'s hello")) }
        }
        // Without recorded facts for these, only the contradiction is caught: a Chrome hello.
        Claim::Firefox | Claim::Safari if chromium_hello => {
            Err(format!("a Chrome TLS hello ({ja4}) under a {claimed:?} User-Agent"))
        }
        Claim::Firefox | Claim::Safari => Ok(()),
    }
}

/// Whether an HTTP/1.1 WebSocket upgrade carries Chrome's headers in Chrome's order and case.
pub fn check_ws_headers(names: &[String]) -> Result<(), String> {
    let mut last = 0;
    for name in names {
        let Some(pos) = CHROME_WS_HEADERS.iter().position(|h| h == name) else {
            return Err(match CHROME_WS_HEADERS.iter().find(|h| h.eq_ignore_ascii_case(name)) {
                Some(h) => format!("header `{name}` in a case no browser sends (`{h}`)"),
                None => format!("header `{name}` is not part of a browser's WebSocket upgrade"),
            });
        };
        if pos < last {
            return Err(format!("header `{name}` out of a browser's order ({})", names.join(", ")));
        }
        last = pos;
    }
    match WS_REQUIRED.iter().find(|r| !names.iter().any(|n| n == *r)) {
        Some(missing) => Err(format!("no `{missing}` header")),
        None => Ok(()),
    }
}

/// The `cf_clearance` value the simulator binds to a User-Agent.
pub fn clearance_for(secret: &str, user_agent: &str) -> String {
    let digest = Sha256::digest(format!("{secret}\n{user_agent}").as_bytes());
    hex::encode(&digest[..20])
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

pub(crate) fn challenge_page(reason: &str) -> Response {
    tracing::info!("simulated Cloudflare challenge: {reason}");
    let body = "<!DOCTYPE html><html lang=\"en-US\"><head><title>Just a moment...</title></head><body>\
                <div id=\"challenge-running\">Checking your browser</div>\
                <script src=\"/cdn-cgi/challenge-platform/h/g/orchestrate/chl_page/v1\"></script></body></html>";
    let mut r = (StatusCode::FORBIDDEN, body).into_response();
    let h = r.headers_mut();
    h.insert("cf-mitigated", HeaderValue::from_static("challenge"));
    h.insert(header::SERVER, HeaderValue::from_static("cloudflare"));
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=UTF-8"));
    if let Ok(v) = HeaderValue::from_str(reason) {
        h.insert("x-sim-challenge-reason", v);
    }
    r
}

/// The gate in front of every grok.com route.
pub(crate) async fn gate(State(sim): State<Sim>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let ua = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    // Only `sim --tls` knows the connection's hello and raw head; plain HTTP is judged on cookies alone.
    let conn = req.extensions().get::<ConnectInfo<ConnInfo>>().map(|ConnectInfo(c)| c.clone());
    let fingerprint = match &conn {
        Some(conn) => check_hello(&conn.ja4, &ua).and_then(|()| {
            let upgrade = headers.get(header::UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
            if upgrade && matches!(claim(&ua), Some(Claim::Chromium(_))) {
                check_ws_headers(&conn.header_names())
            } else {
                Ok(())
            }
        }),
        None => Ok(()),
    };
    let verdict = fingerprint.and_then(|()| {
        let cleared = !sim.cfg.require_clearance
            || cookie(headers, "cf_clearance") == Some(clearance_for(&sim.clearance_secret, &ua).as_str());
        if cleared { Ok(()) } else { Err("no cf_clearance for this User-Agent".to_owned()) }
    });
    if let Err(reason) = verdict {
        sim.stats.challenged.fetch_add(1, Ordering::Relaxed);
        return challenge_page(&reason);
    }
    if let Some(conn) = &conn {
        let mut seen = sim.stats.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() < 10_000 {
            seen.push((req.uri().path().to_owned(), conn.ja4.to_string(), ua.clone()));
        }
    }
    let replayed = cookie(req.headers(), "__cf_bm").is_some_and(|v| v.starts_with("sim-"));
    if replayed {
        sim.stats.cf_bm_replayed.fetch_add(1, Ordering::Relaxed);
    }
    let mut resp = next.run(req).await;
    if !replayed {
        let value = format!(
            "__cf_bm=sim-{}; Path=/; Max-Age=1800; HttpOnly; Secure; SameSite=None",
            uuid::Uuid::new_v4().simple()
        );
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

/// The User-Agent the simulated FlareSolverr solves with: an older Chrome than the gateway's default,
/// so a test sees the token switch profile to match it.
pub const SOLVER_USER_AGENT: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/146.0.0.0 Safari/537.36";

/// `POST /flaresolverr/v1`: FlareSolverr's API, `request.get` only.
pub(crate) async fn flaresolverr(State(sim): State<Sim>, Json(body): Json<Value>) -> Response {
    sim.stats.solver_requests.lock().unwrap_or_else(|p| p.into_inner()).push(body.clone());
    if body.get("cmd").and_then(Value::as_str) != Some("request.get") {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"status": "error", "message": "Request parameter 'cmd' = '...' is invalid."})),
        )
            .into_response();
    }
    let url = body.get("url").and_then(Value::as_str).unwrap_or_default();
    if sim.cfg.solver_fails {
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"status": "error", "message": "Error: Error solving the challenge. Timeout after 60.0 seconds."}))).into_response();
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let cookie = json!({"name": "cf_clearance", "value": clearance_for(&sim.clearance_secret, SOLVER_USER_AGENT),
                        "domain": ".127.0.0.1", "path": "/", "expires": now + 1800, "size": 60,
                        "httpOnly": true, "secure": true, "session": false, "sameSite": "None"});
    Json(json!({
        "status": "ok", "message": "Challenge solved!",
        "solution": {"url": url, "status": 200, "headers": {}, "response": "<html></html>",
                     "cookies": [cookie], "userAgent": SOLVER_USER_AGENT},
        "startTimestamp": now * 1000, "endTimestamp": now * 1000 + 4200, "version": "3.3.21"
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME_149: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/149.0.0.0 Safari/537.36";
    const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:151.0) Gecko/20100101 Firefox/151.0";

    #[test]
    fn hellos_are_judged_against_the_claimed_browser() {
        assert!(check_hello("t13d1516h2_8daaf6152771_d8a2da3f94cd", CHROME_149).is_ok());
        assert!(check_hello("t13i1514h1_8daaf6152771_0a20fe35d3a5", CHROME_149).is_ok());
        // Chrome 156's hello under a Chrome 149 User-Agent: the version does not match.
        assert!(check_hello("t13i1516h2_8daaf6152771_cb7bf5808d99", CHROME_149).is_err());
        // A WebSocket hello on a page-load connection and the other way round.
        assert!(check_hello("t13i1515h1_8daaf6152771_d8a2da3f94cd", CHROME_149).is_err());
        assert!(check_hello("t13i1010h2_61a7ad8aa9b6_3fcd1a44f3e3", CHROME_149).unwrap_err().contains("rustls"));
        assert!(check_hello("t13i1515h2_8daaf6152771_d8a2da3f94cd", FIREFOX).is_err());
        assert!(check_hello("t13i1515h2_8daaf6152771_d8a2da3f94cd", "curl/8.5.0").is_err());
        // A Chrome major without its own fact accepts any recorded Chrome hello.
        let chrome_152 = CHROME_149.replace("149.0", "152.0");
        assert!(check_hello("t13i1516h2_8daaf6152771_cb7bf5808d99", &chrome_152).is_ok());
    }

    #[test]
    fn websocket_upgrades_must_look_like_chromes() {
        let names = |s: &str| s.split(',').map(str::to_owned).collect::<Vec<_>>();
        let chrome = "Host,Connection,Pragma,Cache-Control,User-Agent,Upgrade,Origin,Sec-WebSocket-Version,\
                      Accept-Encoding,Accept-Language,Cookie,Sec-WebSocket-Key,Sec-WebSocket-Extensions";
        assert!(check_ws_headers(&names(chrome)).is_ok());
        // tungstenite's order, then lowercase extras.
        let tungstenite = "Host,Connection,Upgrade,Sec-WebSocket-Version,Sec-WebSocket-Key,origin,user-agent,cookie";
        assert!(check_ws_headers(&names(tungstenite)).is_err());
        let lower = chrome.to_ascii_lowercase();
        assert!(check_ws_headers(&names(&lower)).unwrap_err().contains("case"));
        assert!(check_ws_headers(&names("Host,Connection,User-Agent,Upgrade,Origin,Sec-WebSocket-Version")).is_err());
    }
}

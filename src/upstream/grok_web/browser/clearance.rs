//! Cloudflare clearance per token: the cookies Cloudflare sets (`cf_clearance`, `__cf_bm`, ...) kept
//! with their expiry and sent back, and an optional FlareSolverr service that solves a challenge for a
//! token (through that token's proxy) and hands back cookies plus the User-Agent they are bound to.
//! A clearance is only good with the fingerprint that earned it, so the token switches to the profile
//! matching that User-Agent.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dashmap::DashMap;
use http::HeaderMap;
use serde::Deserialize;
use serde_json::json;

use crate::upstream::error::UpstreamError;
use crate::upstream::grok_web::browser::profile::BrowserProfile;
use crate::upstream::grok_web::browser::{proxy_credentials, side_client};

#[derive(Debug, Clone, Default)]
struct TokenClearance {
    /// name → (value, expiry; `None` = session cookie).
    cookies: BTreeMap<String, (String, Option<SystemTime>)>,
    profile: Option<Arc<BrowserProfile>>,
}

/// Per-token Cloudflare state, keyed by the sso token.
#[derive(Default)]
pub struct Clearance {
    tokens: DashMap<String, TokenClearance>,
}

/// Cookies Cloudflare owns; grok.com's own cookies are not ours to replay.
fn is_cloudflare_cookie(name: &str) -> bool {
    name.starts_with("cf_") || name.starts_with("__cf") || name.starts_with("_cf")
}

/// One `Set-Cookie` value → (name, value, expiry). An expiry in the past means "delete".
fn parse_set_cookie(raw: &str, now: SystemTime) -> Option<(String, String, Option<SystemTime>)> {
    let mut parts = raw.split(';');
    let (name, value) = parts.next()?.trim().split_once('=')?;
    let mut expires = None;
    for attr in parts {
        let (k, v) = attr.trim().split_once('=').unwrap_or((attr.trim(), ""));
        if k.eq_ignore_ascii_case("max-age") {
            // Max-Age wins over Expires (RFC 6265 §5.3).
            let secs: i64 = v.trim().parse().ok()?;
            return Some((name.into(), value.into(), Some(now + Duration::from_secs(secs.max(0) as u64))));
        }
        if k.eq_ignore_ascii_case("expires") {
            expires = httpdate::parse_http_date(v.trim()).ok();
        }
    }
    Some((name.trim().to_owned(), value.trim().to_owned(), expires))
}

impl Clearance {
    /// The profile a clearance switched this token to, if any.
    pub fn profile_for(&self, token: &str) -> Option<Arc<BrowserProfile>> {
        self.tokens.get(token).and_then(|t| t.profile.clone())
    }

    /// `name=value; ...` of the token's live Cloudflare cookies (empty when none).
    pub fn cookie_header(&self, token: &str) -> String {
        let now = SystemTime::now();
        let Some(mut t) = self.tokens.get_mut(token) else { return String::new() };
        t.cookies.retain(|_, (_, exp)| exp.is_none_or(|e| e > now));
        t.cookies.iter().map(|(k, (v, _))| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    /// Keeps the Cloudflare cookies a grok.com response set for this token.
    pub fn observe(&self, token: &str, headers: &HeaderMap) {
        let now = SystemTime::now();
        let mut parsed = headers
            .get_all(http::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| parse_set_cookie(v, now))
            .filter(|(name, _, _)| is_cloudflare_cookie(name))
            .peekable();
        if parsed.peek().is_none() {
            return;
        }
        let mut t = self.tokens.entry(token.to_owned()).or_default();
        for (name, value, expires) in parsed {
            if expires.is_some_and(|e| e <= now) {
                t.cookies.remove(&name);
            } else {
                t.cookies.insert(name, (value, expires));
            }
        }
    }

    /// Installs what a solver returned: its cookies, and the profile matching its User-Agent.
    pub fn install(&self, token: &str, solution: &Solution) -> Result<(), String> {
        let profile = match &solution.user_agent {
            Some(ua) => Some(Arc::new(BrowserProfile::for_user_agent(ua)?)),
            None => None,
        };
        let mut t = self.tokens.entry(token.to_owned()).or_default();
        for c in &solution.cookies {
            t.cookies.insert(c.name.clone(), (c.value.clone(), c.expires));
        }
        if profile.is_some() {
            t.profile = profile;
        }
        Ok(())
    }

    /// Forgets a token's clearance (its cookies were refused).
    pub fn forget(&self, token: &str) {
        self.tokens.remove(token);
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SolvedCookie {
    pub name: String,
    pub value: String,
    pub expires: Option<SystemTime>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Solution {
    pub cookies: Vec<SolvedCookie>,
    pub user_agent: Option<String>,
}

/// FlareSolverr's `/v1` answer (only what we use).
#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    message: String,
    solution: Option<AnswerSolution>,
}

#[derive(Deserialize)]
struct AnswerSolution {
    #[serde(default)]
    cookies: Vec<AnswerCookie>,
    #[serde(default, rename = "userAgent")]
    user_agent: Option<String>,
}

#[derive(Deserialize)]
struct AnswerCookie {
    name: String,
    value: String,
    /// Seconds since the epoch; -1 (or absent) for a session cookie.
    #[serde(default)]
    expires: Option<f64>,
}

/// A FlareSolverr service (`grok.flaresolverr_url`).
pub struct FlareSolverr {
    url: String,
    http: reqwest::Client,
    timeout: Duration,
}

impl FlareSolverr {
    /// `ca_pem`: extra roots (`grok.ca_file`), for a solver behind the same TLS-inspecting proxy.
    pub fn new(url: &str, timeout: Duration, ca_pem: Option<&[u8]>) -> Result<Self, String> {
        let http =
            side_client(timeout + Duration::from_secs(10), ca_pem).map_err(|e| format!("FlareSolverr client: {e}"))?;
        Ok(Self { url: format!("{}/v1", url.trim_end_matches('/').trim_end_matches("/v1")), http, timeout })
    }

    /// Asks the solver to load `target` (through `proxy`, so the clearance is bound to the token's
    /// address) and returns the Cloudflare cookies it earned.
    pub async fn solve(&self, target: &str, proxy: Option<&str>) -> Result<Solution, UpstreamError> {
        let mut body = json!({"cmd": "request.get", "url": target, "maxTimeout": self.timeout.as_millis() as u64});
        if let Some(p) = proxy.and_then(|p| url::Url::parse(p).ok()) {
            let mut bare = p.clone();
            let _ = bare.set_username("");
            let _ = bare.set_password(None);
            let mut proxy = json!({"url": bare.as_str().trim_end_matches('/')});
            if let Some((user, pass)) = proxy_credentials(&p) {
                proxy["username"] = json!(user);
                proxy["password"] = json!(pass);
            }
            body["proxy"] = proxy;
        }
        let fail = |m: String| UpstreamError::Challenge(format!("FlareSolverr could not clear the challenge: {m}"));
        let resp = self.http.post(&self.url).json(&body).send().await.map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        let answer: Answer = resp.json().await.map_err(|e| fail(format!("HTTP {status}, unreadable answer: {e}")))?;
        if answer.status != "ok" {
            return Err(fail(answer.message));
        }
        let solution = answer.solution.ok_or_else(|| fail("answer without a solution".into()))?;
        let cookies: Vec<SolvedCookie> = solution
            .cookies
            .into_iter()
            .filter(|c| is_cloudflare_cookie(&c.name))
            .map(|c| SolvedCookie {
                name: c.name,
                value: c.value,
                expires: c.expires.filter(|e| *e > 0.0).map(|e| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(e)),
            })
            .collect();
        if cookies.is_empty() {
            return Err(fail("the solver returned no Cloudflare cookie".into()));
        }
        Ok(Solution { cookies, user_agent: solution.user_agent })
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn set_cookie_expiry_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let (n, v, e) = parse_set_cookie("cf_clearance=abc.def-1; Path=/; Max-Age=1800; Secure", now).unwrap();
        assert_eq!((n.as_str(), v.as_str(), e), ("cf_clearance", "abc.def-1", Some(now + Duration::from_secs(1800))));
        let (_, _, e) =
            parse_set_cookie("__cf_bm=x; expires=Wed, 15 Jan 2025 10:00:00 GMT; path=/; HttpOnly", now).unwrap();
        assert_eq!(e, httpdate::parse_http_date("Wed, 15 Jan 2025 10:00:00 GMT").ok());
        assert_eq!(parse_set_cookie("_cfuvid=y; Path=/", now).unwrap().2, None);
        assert!(parse_set_cookie("garbage", now).is_none());
    }

    #[test]
    fn keeps_only_live_cloudflare_cookies_per_token() {
        let c = Clearance::default();
        let mut h = HeaderMap::new();
        h.append("set-cookie", HeaderValue::from_static("cf_clearance=one; Max-Age=600; Path=/"));
        h.append("set-cookie", HeaderValue::from_static("__cf_bm=two; Max-Age=600"));
        h.append("set-cookie", HeaderValue::from_static("sso=never-replayed; Max-Age=600"));
        h.append("set-cookie", HeaderValue::from_static("_cfuvid=old; Max-Age=0"));
        c.observe("t1", &h);
        assert_eq!(c.cookie_header("t1"), "__cf_bm=two; cf_clearance=one");
        assert_eq!(c.cookie_header("t2"), "");
        let mut del = HeaderMap::new();
        del.append("set-cookie", HeaderValue::from_static("__cf_bm=gone; Max-Age=0"));
        c.observe("t1", &del);
        assert_eq!(c.cookie_header("t1"), "cf_clearance=one");
    }

    #[test]
    fn a_solution_switches_the_token_to_the_matching_profile() {
        let c = Clearance::default();
        let ua = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/146.0.0.0 Safari/537.36";
        let s = Solution {
            cookies: vec![SolvedCookie { name: "cf_clearance".into(), value: "v".into(), expires: None }],
            user_agent: Some(ua.into()),
        };
        c.install("t", &s).unwrap();
        let p = c.profile_for("t").unwrap();
        assert_eq!((p.name.as_str(), p.user_agent.as_str()), ("chrome_146", ua));
        assert_eq!(c.cookie_header("t"), "cf_clearance=v");
        assert!(c.profile_for("other").is_none());
    }
}

//! How an upstream call failed, and what the upstream said about waiting.

use std::time::Duration;

/// How an upstream call failed, classified by what the caller should do about it.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum UpstreamError {
    /// The token (or every token) is rate limited; try another token, or tell the client to wait.
    #[error("{message}")]
    RateLimited { retry_after: Option<Duration>, message: String },
    /// The upstream refused our credentials (expired/invalid sso token, dead account).
    #[error("upstream rejected the credentials: {0}")]
    Auth(String),
    /// An anti-bot challenge page instead of an answer (Cloudflare HTML 403).
    #[error("upstream answered with an anti-bot challenge: {0}")]
    Challenge(String),
    /// grok.com's 403 code 7 "This page is out of date. Reload to continue.": the path-bound
    /// `x-statsig-id` was signed with stale inputs (a new frontend build). Re-signing fixes it, a
    /// new clearance or another account does not (chenyme/grok2api #992, #1002).
    #[error("upstream refused a stale anti-bot signature: {0}")]
    StaleSignature(String),
    /// The account answered with canned media marked as success (a flagged account: the same demo
    /// clip or image whatever the prompt); `quality.rs` tells it from the output. Another account may
    /// answer for real.
    #[error("upstream answered with canned media: {0}")]
    CannedOutput(String),
    /// No account that serves can make what was asked (free accounts and a longer video): the
    /// request, not the upstream, has to change.
    #[error("{0}")]
    PlanLimit(String),
    /// The upstream does not make what was asked (grok.com: a video edit, or an extension of a video it
    /// did not make); the message names who does.
    #[error("{0}")]
    Unsupported(String),
    /// The upstream moderated the output; retrying the same prompt is unlikely to help.
    #[error("{0}")]
    Moderated(String),
    /// The upstream answered something we cannot parse, or stopped before a result.
    #[error("upstream sent an unusable response: {0}")]
    Protocol(String),
    /// The upstream reported a failure.
    #[error("upstream failed: {0}")]
    Failed(String),
    /// Connection-level failure.
    #[error("cannot reach the upstream: {0}")]
    Transport(String),
    /// The token's proxy refused or broke the connection: that token's egress, not the upstream.
    #[error("upstream proxy failed: {0}")]
    ProxyFailed(String),
    #[error("upstream timed out: {0}")]
    Timeout(String),
    /// The upstream account is out of credits or at its spending limit: a billing stop, not a rate
    /// limit; waiting or retrying does not help until someone pays.
    #[error("upstream account has no credits left: {0}")]
    CreditsExhausted(String),
    /// We could not keep what the upstream produced (disk full, ...).
    #[error("cannot store media: {0}")]
    Storage(String),
}

impl UpstreamError {
    /// The same error with its text changed by `f`.
    pub fn map_message(self, f: impl FnOnce(String) -> String) -> Self {
        match self {
            Self::RateLimited { retry_after, message } => Self::RateLimited { retry_after, message: f(message) },
            Self::Auth(m) => Self::Auth(f(m)),
            Self::Challenge(m) => Self::Challenge(f(m)),
            Self::StaleSignature(m) => Self::StaleSignature(f(m)),
            Self::CannedOutput(m) => Self::CannedOutput(f(m)),
            Self::PlanLimit(m) => Self::PlanLimit(f(m)),
            Self::Unsupported(m) => Self::Unsupported(f(m)),
            Self::Moderated(m) => Self::Moderated(f(m)),
            Self::Protocol(m) => Self::Protocol(f(m)),
            Self::Failed(m) => Self::Failed(f(m)),
            Self::Transport(m) => Self::Transport(f(m)),
            Self::ProxyFailed(m) => Self::ProxyFailed(f(m)),
            Self::Timeout(m) => Self::Timeout(f(m)),
            Self::CreditsExhausted(m) => Self::CreditsExhausted(f(m)),
            Self::Storage(m) => Self::Storage(f(m)),
        }
    }

    /// A stable name for the kind of failure (snake case): the `outcome` label of the upstream
    /// metrics. Clients see `ApiError` codes instead (`error.rs` maps each kind to its answer).
    pub fn code(&self) -> &'static str {
        match self {
            Self::RateLimited { .. } => "rate_limited",
            Self::Auth(_) => "auth",
            Self::Challenge(_) => "challenge",
            Self::StaleSignature(_) => "stale_signature",
            Self::CannedOutput(_) => "canned_output",
            Self::PlanLimit(_) => "plan_limit",
            Self::Unsupported(_) => "unsupported",
            Self::Moderated(_) => "moderated",
            Self::Protocol(_) => "bad_response",
            Self::Failed(_) => "failed",
            Self::Transport(_) => "transport",
            Self::ProxyFailed(_) => "proxy_failed",
            Self::Timeout(_) => "timeout",
            Self::Storage(_) => "storage",
            Self::CreditsExhausted(_) => "credits_exhausted",
        }
    }

    /// Whether the same request may succeed with a different token. Not `CreditsExhausted`: a
    /// billing stop is reported, never retried.
    pub fn retry_on_other_token(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::Auth(_)
                | Self::Challenge(_)
                | Self::Transport(_)
                | Self::ProxyFailed(_)
                | Self::CannedOutput(_)
        )
    }
}

/// An upstream's `Retry-After`, if it sent a usable one: delay seconds (RFC 9110 says an integer;
/// fractions such as `1.5` are accepted too) or an HTTP date (a date in the past means now).
pub(super) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    parse_retry_after(headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?, std::time::SystemTime::now())
}

fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if v.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        // `try_from` refuses negative, NaN and overflowing values instead of panicking.
        return v.parse::<f64>().ok().and_then(|s| Duration::try_from_secs_f64(s).ok());
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Metric label for how an upstream attempt ended: `ok`, or the error's `code`.
pub(super) fn outcome_label<T>(r: &Result<T, UpstreamError>) -> &'static str {
    r.as_ref().err().map_or("ok", UpstreamError::code)
}

#[cfg(test)]
mod tests {
    use crate::upstream::error::*;

    #[test]
    fn codes_are_the_metric_labels() {
        let m = String::new;
        let every = [
            UpstreamError::RateLimited { retry_after: None, message: m() },
            UpstreamError::Auth(m()),
            UpstreamError::Challenge(m()),
            UpstreamError::StaleSignature(m()),
            UpstreamError::CannedOutput(m()),
            UpstreamError::PlanLimit(m()),
            UpstreamError::Unsupported(m()),
            UpstreamError::Moderated(m()),
            UpstreamError::Protocol(m()),
            UpstreamError::Failed(m()),
            UpstreamError::Transport(m()),
            UpstreamError::ProxyFailed(m()),
            UpstreamError::Timeout(m()),
            UpstreamError::CreditsExhausted(m()),
            UpstreamError::Storage(m()),
        ];
        let codes: Vec<&str> = every.iter().map(UpstreamError::code).collect();
        assert_eq!(
            codes,
            [
                "rate_limited",
                "auth",
                "challenge",
                "stale_signature",
                "canned_output",
                "plan_limit",
                "unsupported",
                "moderated",
                "bad_response",
                "failed",
                "transport",
                "proxy_failed",
                "timeout",
                "credits_exhausted",
                "storage"
            ]
        );
        assert_eq!(outcome_label(&Ok::<(), UpstreamError>(())), "ok");
        assert_eq!(outcome_label(&Err::<(), _>(UpstreamError::Protocol(m()))), "bad_response");
    }

    #[test]
    fn retry_after_takes_seconds_fractions_and_http_dates() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let p = |v: &str| parse_retry_after(v, now);
        assert_eq!(p("120"), Some(Duration::from_secs(120)));
        assert_eq!(p(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(p("0"), Some(Duration::ZERO));
        assert_eq!(p("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(p("0.25"), Some(Duration::from_millis(250)));
        assert_eq!(p("Sun, 06 Nov 1994 08:50:07 GMT"), Some(Duration::from_secs(30)));
        // A date already past: retry now, not never.
        assert_eq!(p("Sun, 06 Nov 1994 08:00:00 GMT"), Some(Duration::ZERO));
        for bad in ["", "soon", "-1", "-1.5", "NaN", "inf", "1e400", "1.5s", "Sun, 06 Nov 1994"] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(reqwest::header::RETRY_AFTER, reqwest::header::HeaderValue::from_static("2.5"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(2500)));
        let later = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(90));
        h.insert(reqwest::header::RETRY_AFTER, reqwest::header::HeaderValue::from_str(&later).unwrap());
        let d = retry_after(&h).unwrap();
        assert!((Duration::from_secs(88)..=Duration::from_secs(90)).contains(&d), "{d:?}");
    }
}

//! Turning grok.com's failure signals (HTTP status + body, in-band error frames) into `UpstreamError`s.

use http::header::{HeaderMap, SERVER};

use crate::upstream::error::{UpstreamError, retry_after};

/// grok.com's words for a stale signature (403 code 7 "This page is out of date. Reload to continue.",
/// chenyme/grok2api #1002, 2026-08-24), lower case.
const STALE_PAGE: &str = "page is out of date";

/// Words in a 403 JSON body that mean the account itself is unusable (not this one request).
const DEAD_ACCOUNT: &[&str] = &[
    "blocked-user",
    "invalid-credentials",
    "bad-credentials",
    "session not found",
    "account suspended",
    "token revoked",
    "token expired",
    "unauthenticated",
    "not logged in",
];

const CHALLENGE: &[&str] = &["just a moment", "challenge-platform", "__cf_chl", "cf-chl-"];

fn snippet(body: &str) -> String {
    let s: String = body.chars().take(160).collect();
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// How `classify_http` words a plain failure status, so `is_transient` can read the status back.
const HTTP_FAILURE: &str = "upstream HTTP ";

/// Whether asking again later may get a different answer: a 5xx, a rate limit, a broken or silent
/// connection, an unreadable answer. A 4xx (the request itself is refused) is not.
pub fn is_transient(e: &UpstreamError) -> bool {
    match e {
        UpstreamError::Failed(m) => m.strip_prefix(HTTP_FAILURE).is_some_and(|rest| rest.starts_with('5')),
        UpstreamError::Transport(_)
        | UpstreamError::Timeout(_)
        | UpstreamError::Protocol(_)
        | UpstreamError::RateLimited { .. }
        | UpstreamError::ProxyFailed(_) => true,
        _ => false,
    }
}

/// A non-success HTTP answer (REST call or WebSocket handshake).
/// grok.com's answer to an extension of another account's post (CrisLIUning/grok2api, 2026-07: the
/// extension must run on the account that owns the post).
const OTHERS_POST: &str = "invalid-parent-post";

pub fn classify_http(status: u16, headers: &HeaderMap, body: &str) -> UpstreamError {
    let lower = body.to_ascii_lowercase();
    let looks_json = body.trim_start().starts_with('{');
    // Cloudflare marks every challenge it serves, whatever the status and body.
    if headers.get("cf-mitigated").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("challenge")) {
        return UpstreamError::Challenge(format!(
            "{status} Cloudflare challenge (cf-mitigated); configure grok.flaresolverr_url, or a proxy whose \
             address Cloudflare trusts"
        ));
    }
    match status {
        401 => UpstreamError::Auth(format!("401 {}", snippet(body))),
        403 => {
            let cloudflare =
                headers.get(SERVER).and_then(|v| v.to_str().ok()).is_some_and(|s| s.eq_ignore_ascii_case("cloudflare"));
            if !looks_json
                && (body.trim().is_empty()
                    || cloudflare
                    || CHALLENGE.iter().any(|w| lower.contains(w))
                    || lower.contains("<html"))
            {
                UpstreamError::Challenge("403 challenge page".into())
            } else if DEAD_ACCOUNT.iter().any(|w| lower.contains(w)) {
                UpstreamError::Auth(format!("403 {}", snippet(body)))
            } else if lower.contains(STALE_PAGE) {
                UpstreamError::StaleSignature(format!("403 {}", snippet(body)))
            } else if lower.contains(OTHERS_POST) {
                // A post of another account: no clearance or account fixes that request.
                UpstreamError::Failed(format!("403 {}: the source post belongs to another account", snippet(body)))
            } else if lower.contains("anti-bot") || lower.contains("\"code\":7") {
                UpstreamError::Challenge(format!("403 {}", snippet(body)))
            } else {
                UpstreamError::Failed(format!("403 {}", snippet(body)))
            }
        }
        429 => UpstreamError::RateLimited {
            retry_after: retry_after(headers),
            message: "upstream rate limit reached".into(),
        },
        s => UpstreamError::Failed(format!("{HTTP_FAILURE}{s}: {}", snippet(body))),
    }
}

/// An error reported inside a stream (`{"error":{"code":8,...}}` or an Imagine `error` frame).
pub fn classify_in_band(code: Option<&str>, message: &str) -> UpstreamError {
    let lower = message.to_ascii_lowercase();
    let code = code.unwrap_or("");
    if code == "8" || lower.contains("too many requests") || lower.contains("rate limit") || code.contains("rate_limit")
    {
        UpstreamError::RateLimited { retry_after: None, message: "upstream rate limit reached".into() }
    } else if lower.contains("usage limit")
        || lower.contains("usage quota")
        || lower.contains("media generation credits")
    {
        UpstreamError::RateLimited { retry_after: None, message: "upstream usage quota exhausted".into() }
    } else if lower.contains(STALE_PAGE) {
        UpstreamError::StaleSignature(snippet(message))
    } else if code == "7" || lower.contains("anti-bot") {
        UpstreamError::Challenge(snippet(message))
    } else if code == "16" || lower.contains("unauthenticated") {
        UpstreamError::Auth(snippet(message))
    } else {
        UpstreamError::Failed(if code.is_empty() { snippet(message) } else { format!("{code}: {}", snippet(message)) })
    }
}

/// `modelResponse.streamErrors`: strings or `{code, message}` objects (kept as JSON text). The most
/// telling one wins: quota, anti-bot and auth say what to do; anything else is a plain failure.
pub fn classify_stream_errors(errors: &[String]) -> UpstreamError {
    let classified: Vec<UpstreamError> = errors
        .iter()
        .map(|e| match serde_json::from_str::<serde_json::Value>(e) {
            Ok(v) if v.is_object() => {
                let code = v.get("code").map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_owned));
                let message = v.get("message").and_then(|m| m.as_str()).unwrap_or(e);
                classify_in_band(code.as_deref(), message)
            }
            _ => classify_in_band(None, e),
        })
        .collect();
    classified
        .iter()
        .find(|c| !matches!(c, UpstreamError::Failed(_)))
        .cloned()
        .unwrap_or_else(|| UpstreamError::Failed(format!("upstream stream errors: {}", errors.join("; "))))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::header::RETRY_AFTER;

    use crate::upstream::grok_web::classify::*;

    #[test]
    fn only_answers_that_may_change_are_transient() {
        let h = HeaderMap::new();
        assert!(is_transient(&classify_http(502, &h, "bad gateway")));
        assert!(is_transient(&classify_http(429, &h, "")));
        assert!(!is_transient(&classify_http(404, &h, r#"{"error":{"code":5,"message":"post not found"}}"#)));
        assert!(!is_transient(&classify_http(400, &h, "")));
        assert!(is_transient(&UpstreamError::Transport("reset".into())));
        assert!(!is_transient(&UpstreamError::Moderated("no".into())));
    }
    use http::header::HeaderValue;

    #[test]
    fn http_statuses() {
        let mut h = HeaderMap::new();
        assert!(matches!(classify_http(401, &h, ""), UpstreamError::Auth(_)));
        assert!(matches!(
            classify_http(403, &h, "<!DOCTYPE html><title>Just a moment...</title>"),
            UpstreamError::Challenge(_)
        ));
        assert!(matches!(classify_http(403, &h, ""), UpstreamError::Challenge(_)));
        assert!(matches!(classify_http(403, &h, r#"{"error":"blocked-user"}"#), UpstreamError::Auth(_)));
        assert!(matches!(
            classify_http(403, &h, r#"{"error":{"code":7,"message":"Request rejected by anti-bot rules."}}"#),
            UpstreamError::Challenge(_)
        ));
        assert!(matches!(classify_http(403, &h, r#"{"error":"policy"}"#), UpstreamError::Failed(_)));
        // chenyme/grok2api #1002 (2026-08-24): a stale path-bound signature, on the media path.
        let stale = r#"{"code":7,"message":"This page is out of date. Reload to continue.","details":[]}"#;
        assert!(matches!(classify_http(403, &h, stale), UpstreamError::StaleSignature(_)));
        // Another account's post, asked to be extended: this request's failure, not a challenge.
        let others = r#"{"error":{"code":7,"message":"invalid-parent-post"}}"#;
        assert!(matches!(classify_http(403, &h, others), UpstreamError::Failed(_)));
        assert!(matches!(
            classify_in_band(Some("7"), "This page is out of date. Reload to continue."),
            UpstreamError::StaleSignature(_)
        ));
        assert!(matches!(
            classify_in_band(Some("7"), "Request rejected by anti-bot rules."),
            UpstreamError::Challenge(_)
        ));
        h.insert(RETRY_AFTER, HeaderValue::from_static("17"));
        assert_eq!(
            classify_http(429, &h, ""),
            UpstreamError::RateLimited {
                retry_after: Some(Duration::from_secs(17)),
                message: "upstream rate limit reached".into()
            }
        );
        assert!(matches!(classify_http(503, &h, "x"), UpstreamError::Failed(_)));
        h.insert("cf-mitigated", HeaderValue::from_static("challenge"));
        assert!(matches!(classify_http(403, &h, "{\"json\":1}"), UpstreamError::Challenge(_)));
    }

    #[test]
    fn in_band_codes() {
        assert!(matches!(classify_in_band(Some("8"), "Too many requests"), UpstreamError::RateLimited { .. }));
        assert!(matches!(
            classify_in_band(None, "You have reached your usage limit"),
            UpstreamError::RateLimited { .. }
        ));
        assert!(matches!(classify_in_band(Some("7"), "blocked"), UpstreamError::Challenge(_)));
        assert!(matches!(classify_in_band(Some("13"), "internal"), UpstreamError::Failed(_)));
    }
}

//! Fault injection by prompt tokens, so a test (or a curious user in `--demo`) can ask the simulator
//! to misbehave in a specific, documented way:
//!
//! | token | Imagine WebSocket | conversation stream |
//! | --- | --- | --- |
//! | `[sim:fail]` | `error` frame after the first previews | in-band `{"error":{"code":13}}` |
//! | `[sim:rate-limit]` | `error` frame "Too many requests" | in-band `{"error":{"code":8}}` |
//! | `[sim:slow=MS]` | extra MS before every frame | extra MS before every frame |
//! | `[sim:disconnect]` | socket dropped mid-stream | connection cut mid-stream |
//! | `[sim:garbage]` | a run of non-JSON frames | a non-JSON line |
//! | `[sim:moderated]` | `completed` with `moderated:true`, no final | final frame with `moderated:true` |
//! | `[sim:keep-open]` | – | video: the stream stays open for 10 minutes after the final URL |
//! | `[sim:vanish]` | – | video: its media post is lost (`post/get` answers 404), so a broken stream cannot be recovered |
//! | `[sim:uploads-only]` | – | inputs: an id of a generated image is refused (400 "not found"); uploads pass |
//! | `[sim:cloudflare]` | `error` frame "anti-bot" (the prompt comes after the handshake) | HTTP 403 HTML challenge page |

use std::time::Duration;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Faults {
    pub fail: bool,
    pub rate_limit: bool,
    pub slow: Option<Duration>,
    pub disconnect: bool,
    pub garbage: bool,
    pub moderated: bool,
    pub cloudflare: bool,
    pub keep_open: bool,
    pub vanish: bool,
    pub uploads_only: bool,
}

impl Faults {
    pub fn parse(prompt: &str) -> Self {
        let mut f = Faults::default();
        let mut rest = prompt;
        while let Some(start) = rest.find("[sim:") {
            let after = &rest[start + 5..];
            let Some(end) = after.find(']') else { break };
            let token = after[..end].trim();
            match token.split_once('=') {
                Some(("slow", ms)) => f.slow = ms.trim().parse().ok().map(Duration::from_millis),
                _ => match token {
                    "fail" => f.fail = true,
                    "rate-limit" => f.rate_limit = true,
                    "disconnect" => f.disconnect = true,
                    "garbage" => f.garbage = true,
                    "moderated" => f.moderated = true,
                    "cloudflare" => f.cloudflare = true,
                    "keep-open" => f.keep_open = true,
                    "vanish" => f.vanish = true,
                    "uploads-only" => f.uploads_only = true,
                    _ => {}
                },
            }
            rest = &after[end + 1..];
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tokens_anywhere() {
        let f = Faults::parse("a cat [sim:slow=250] in [sim:moderated] space [sim:unknown]");
        assert_eq!(f, Faults { slow: Some(Duration::from_millis(250)), moderated: true, ..Faults::default() });
        assert_eq!(Faults::parse("plain [sim:"), Faults::default());
    }
}

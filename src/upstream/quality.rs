//! The quality guard. A flagged grok.com account "completes" every prompt with the same canned media:
//! a demo clip or an unrelated image, marked as success (chenyme/grok2api #1014, #1053; sub2api #4578,
//! #6441); the official xAI API has done the same (CLIProxyAPI #5221: an unrelated autumn-road clip for
//! `grok-imagine-video-1.5-preview`), so both upstreams judge their outputs here. Since 2026-08-26 the sso token no longer carries the
//! `bfs`/`botFlagSource` claim that used to say so (kaibush/grok-register #28), so the only sign is the
//! output itself. The guard keeps the fingerprint (`media::fingerprint`: what the media shows, not its
//! container, which grok.com renews for every canned answer) of recent outputs across the whole pool:
//! media that answered a different request before, media repeated inside one answer, or media the
//! operator listed (`grok.canned_outputs`) are canned. Such an answer is never delivered; the attempt fails as
//! `UpstreamError::CannedOutput`, the account is flagged, and the request moves to another account.
//!
//! What it does not trip on: the same request asked again (a client's retry may be served from a
//! cache), several different images of one prompt, and an output equal to one of its own inputs (an
//! edit that changed nothing is the model's answer, not a canned one).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;
use sha2::Digest;

use crate::upstream::error::UpstreamError;

pub use crate::media::fingerprint::Fingerprint as Hash;

/// What a job asked for, hashed: its kind, its prompt (trimmed, case folded), and its inputs' hashes.
/// Two requests with the same key may legitimately get the same bytes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestKey(Hash);

impl RequestKey {
    pub fn new(kind: &str, prompt: &str, inputs: &[Hash]) -> Self {
        let mut h = sha2::Sha256::new();
        h.update(kind.as_bytes());
        h.update([0]);
        h.update(prompt.trim().to_lowercase().as_bytes());
        for i in inputs {
            h.update([1]);
            h.update(i);
        }
        RequestKey(h.finalize().into())
    }
}

/// Why an answer was judged canned, and which accounts gave those bytes for another request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canned {
    pub hash: String,
    pub reason: &'static str,
    /// Other accounts (token ids) that answered a different request with the same bytes: flagged too.
    pub also: Vec<String>,
}

impl std::fmt::Display for Canned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (fingerprint {})", self.reason, &self.hash[..16])
    }
}

struct Seen {
    request: RequestKey,
    account: String,
}

#[derive(Default)]
struct Recent {
    by_hash: HashMap<Hash, Seen>,
    order: VecDeque<Hash>,
    /// Canned outputs: configured, and learned from repeats.
    known: HashSet<Hash>,
}

pub struct QualityGuard {
    enabled: bool,
    /// How many recent outputs are remembered (oldest forgotten first).
    window: usize,
    recent: Mutex<Recent>,
}

/// Outputs remembered across the pool: at ~100 bytes each, 8,192 outputs are under 1 MiB and cover
/// hours of a busy pool, far longer than a flagged account takes to repeat itself.
pub const WINDOW: usize = 8192;

impl QualityGuard {
    /// `known` are fingerprints (hex, as `grok2api fingerprint FILE` prints them) of canned outputs the
    /// operator listed; a malformed one is refused.
    pub fn new(enabled: bool, known: &[String], window: usize) -> Result<Self, String> {
        let mut recent = Recent::default();
        for k in known {
            let bytes = hex::decode(k.trim())
                .ok()
                .and_then(|b| Hash::try_from(b.as_slice()).ok())
                .ok_or_else(|| format!("grok.canned_outputs: `{k}` is not a fingerprint (64 hex digits)"))?;
            recent.known.insert(bytes);
        }
        Ok(Self { enabled, window: window.max(1), recent: Mutex::new(recent) })
    }

    /// The fingerprints of some media, worked out off the async workers (decoding a picture takes a few
    /// milliseconds); none when the guard is off, which then has nothing to compare.
    pub async fn fingerprints(&self, media: Vec<(Bytes, &'static str)>) -> Result<Vec<Hash>, UpstreamError> {
        if !self.enabled {
            return Ok(Vec::new());
        }
        tokio::task::spawn_blocking(move || {
            media.iter().map(|(b, t)| crate::media::fingerprint::fingerprint(b, t)).collect::<Vec<_>>()
        })
        .await
        .map_err(|e| UpstreamError::Failed(format!("fingerprinting the output failed: {e}")))
    }

    /// Judges one answer (`outputs`: the hashes of its media, thumbnails left out) that `account` gave
    /// for `request`, whose inputs hash to `inputs`; a clean answer is remembered.
    pub fn check(&self, account: &str, request: RequestKey, inputs: &[Hash], outputs: &[Hash]) -> Result<(), Canned> {
        if !self.enabled {
            return Ok(());
        }
        let mut r = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let canned = |h: &Hash, reason, also| Canned { hash: hex::encode(h), reason, also };
        for (i, h) in outputs.iter().enumerate() {
            if inputs.contains(h) {
                continue;
            }
            if r.known.contains(h) {
                return Err(canned(h, "a known canned output", Vec::new()));
            }
            if outputs[..i].contains(h) {
                r.known.insert(*h);
                return Err(canned(h, "the same bytes twice in one answer", Vec::new()));
            }
            if let Some(seen) = r.by_hash.get(h).filter(|s| s.request != request) {
                let also = if seen.account == account { Vec::new() } else { vec![seen.account.clone()] };
                r.known.insert(*h);
                return Err(canned(h, "the same bytes as the answer to a different request", also));
            }
        }
        for h in outputs.iter().filter(|h| !inputs.contains(h)) {
            if r.by_hash.insert(*h, Seen { request, account: account.to_owned() }).is_none() {
                r.order.push_back(*h);
            }
        }
        while r.order.len() > self.window {
            if let Some(old) = r.order.pop_front() {
                r.by_hash.remove(&old);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::upstream::quality::*;

    fn hash(bytes: &[u8]) -> Hash {
        sha2::Sha256::digest(bytes).into()
    }

    fn guard() -> QualityGuard {
        QualityGuard::new(true, &[], 4).unwrap()
    }

    #[test]
    fn different_images_of_one_prompt_and_a_repeated_request_pass() {
        let g = guard();
        let cat = RequestKey::new("image", "a cat", &[]);
        g.check("a", cat, &[], &[hash(b"cat 1"), hash(b"cat 2")]).unwrap();
        // The same request again (a client's retry) may be served the same bytes.
        g.check("b", RequestKey::new("image", "  A Cat ", &[]), &[], &[hash(b"cat 1")]).unwrap();
    }

    #[test]
    fn the_same_bytes_for_a_different_prompt_are_canned_and_stay_known() {
        let g = guard();
        let demo = hash(b"demo clip");
        g.check("a", RequestKey::new("video", "a cat", &[]), &[], &[demo]).unwrap();
        let e = g.check("b", RequestKey::new("video", "a dog", &[]), &[], &[demo]).unwrap_err();
        assert_eq!(
            (e.reason, e.also.as_slice()),
            ("the same bytes as the answer to a different request", &["a".to_owned()][..])
        );
        // Learned: even its first request, asked again, no longer gets it through.
        let e = g.check("c", RequestKey::new("video", "a cat", &[]), &[], &[demo]).unwrap_err();
        assert_eq!(e.reason, "a known canned output");
    }

    #[test]
    fn twins_in_one_answer_listed_hashes_and_inputs() {
        let g = QualityGuard::new(true, &[hex::encode(hash(b"listed"))], 4).unwrap();
        let key = RequestKey::new("image", "x", &[]);
        assert_eq!(
            g.check("a", key, &[], &[hash(b"z"), hash(b"z")]).unwrap_err().reason,
            "the same bytes twice in one answer"
        );
        assert_eq!(g.check("a", key, &[], &[hash(b"listed")]).unwrap_err().reason, "a known canned output");
        // An edit that gave its input back, twice with different prompts, is not canned.
        let input = hash(b"photo");
        g.check("a", RequestKey::new("edit", "sharpen", &[input]), &[input], &[input]).unwrap();
        g.check("a", RequestKey::new("edit", "blur", &[input]), &[input], &[input]).unwrap();
        assert!(QualityGuard::new(true, &["abc".into()], 4).is_err());
    }

    #[test]
    fn the_window_forgets_the_oldest_and_a_disabled_guard_passes_everything() {
        let g = guard();
        for i in 0..5u8 {
            g.check("a", RequestKey::new("image", &i.to_string(), &[]), &[], &[hash(&[i])]).unwrap();
        }
        // Output 0 was pushed out of a window of 4.
        g.check("a", RequestKey::new("image", "other", &[]), &[], &[hash(&[0])]).unwrap();
        assert!(g.check("a", RequestKey::new("image", "yet another", &[]), &[], &[hash(&[4])]).is_err());
        let off = QualityGuard::new(false, &[], 4).unwrap();
        off.check("a", RequestKey::new("image", "1", &[]), &[], &[hash(b"x"), hash(b"x")]).unwrap();
    }
}

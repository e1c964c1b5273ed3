//! `x-statsig-id`, the anti-bot signature the web app puts on its REST calls (not on the WebSocket,
//! uploads or downloads). grok.com checks it: a random value gets 403 `{"code":7,"message":"Request
//! rejected by anti-bot rules."}`.
//!
//! The web app's token is 70 bytes, base64 without padding: a random key byte, then, each XORed with
//! it, the 48-byte seed from the `grok-site-verification` meta tag of grok.com's page, the seconds since
//! 2023-05-01T07:00:00Z as a little-endian u32, the first 16 bytes of SHA-256 over
//! `METHOD!path!seconds` + "obfiowerehiring" + the build's animation fingerprint, and 0x03 (public
//! clients: chenyme/grok2api `statsig.go`, SentDz/grok2api `statsig_local.go`, 2026-08/09).
//!
//! The animation fingerprint is what the page's generator script reads back from an animation it
//! plays: one curve of the page's per-build `curves` table (4 groups of 16: colour pair, angle, cubic
//! Bézier), chosen and timed by five seed bytes whose positions rotate with each frontend build and sit
//! only in a lazily loaded script chunk. It is reproduced in `fingerprint.rs`: the colour and rotation
//! matrix the browser would report, each number as JS's `Number(x.toFixed(2)).toString(16)`, joined,
//! without '.' and '-' (reversed by public clients: a Rust statsig module and SentDz/grok2api
//! `statsig_hex.go`; its published vector is a unit test there).
//!
//! Modes (`grok.statsig`): `local` mints it from the page's seed and curves plus the chunk's indices
//! (`page.rs` reads them from what the client fetches through the browser transport, `signing.rs` one
//! folder up; cached, refreshed once on a code-7 answer); when the page or its chunks do not yield the
//! fingerprint it signs without one and warns, since grok.com may then refuse it. Otherwise: `signer:<url>` (an external signing service, the contract some peers use:
//! `POST {"method","path","environment":{"metaContent"}}` → `{"x-statsig-id"}`), or `fixed:<value>`
//! captured from a browser, or `off`.

pub mod fingerprint;
pub mod page;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use sha2::{Digest, Sha256};

pub use self::fingerprint::{BuildIndices, Curves, build_fingerprint, fingerprint};
pub use self::page::{
    chunk_refs, curves_from_page, indices_from_chunk, loads_generator, resolve_chunk, seed_from_page,
};
use crate::upstream::error::UpstreamError;

/// 2023-05-01T07:00:00Z, the epoch of the token's timestamp.
const EPOCH: u64 = 1_682_924_400;
const SALT: &str = "obfiowerehiring";
/// Signing inputs are good for a while; grok.com rotates them with its frontend builds.
const INPUTS_TTL: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Local,
    Signer(String),
    Fixed(String),
    Off,
}

impl Mode {
    /// `grok.statsig`, with the older `grok.statsig_id` (a fixed value) taking precedence when set.
    pub fn parse(statsig: &str, legacy_fixed: Option<&str>) -> Result<Self, String> {
        if let Some(v) = legacy_fixed.map(str::trim).filter(|v| !v.is_empty()) {
            return Ok(Mode::Fixed(v.to_owned()));
        }
        let s = statsig.trim();
        match s {
            "" | "local" => Ok(Mode::Local),
            "off" => Ok(Mode::Off),
            _ => match s.split_once(':') {
                Some(("fixed", v)) if !v.trim().is_empty() => Ok(Mode::Fixed(v.trim().to_owned())),
                Some(("signer", url)) if url.starts_with("http://") || url.starts_with("https://") => {
                    Ok(Mode::Signer(url.to_owned()))
                }
                _ => Err(format!("grok.statsig `{s}`: use local, off, fixed:<value> or signer:<http(s) URL>")),
            },
        }
    }
}

/// Mints one token from `seed` (the meta tag's bytes).
pub fn mint(seed: &[u8], method: &str, path: &str, unix_now: u64, key: u8, fingerprint: &str) -> String {
    let t = unix_now.saturating_sub(EPOCH) as u32;
    let digest = Sha256::digest(format!("{}!{path}!{t}{SALT}{fingerprint}", method.to_ascii_uppercase()).as_bytes());
    let mut plain = Vec::with_capacity(70);
    plain.push(key);
    plain.extend_from_slice(seed);
    plain.extend_from_slice(&t.to_le_bytes());
    plain.extend_from_slice(&digest[..16]);
    plain.push(3);
    for b in plain.iter_mut().skip(1) {
        *b ^= key;
    }
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(plain)
}

/// What `local` mode signs with: the page's seed and the build's animation fingerprint (empty when it
/// could not be worked out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningInputs {
    pub seed: Vec<u8>,
    pub fingerprint: String,
}

/// The mode plus the cached signing inputs (`local`).
pub struct Statsig {
    pub mode: Mode,
    inputs: Mutex<Option<(Arc<SigningInputs>, Instant)>>,
    /// Held while the inputs are fetched, so concurrent calls wait for one fetch (a page and up to
    /// `MAX_CHUNKS` scripts) instead of each making their own.
    fetching: tokio::sync::Mutex<()>,
    signer: Option<reqwest::Client>,
}

impl Statsig {
    /// `ca_pem`: `grok.ca_file`, trusted by the signer's client too.
    pub fn new(mode: Mode, ca_pem: Option<&[u8]>) -> Result<Self, String> {
        let signer = match mode {
            Mode::Signer(_) => Some(
                super::browser::side_client(Duration::from_secs(15), ca_pem)
                    .map_err(|e| format!("statsig signer client: {e}"))?,
            ),
            _ => None,
        };
        Ok(Self { mode, inputs: Mutex::new(None), fetching: tokio::sync::Mutex::new(()), signer })
    }

    /// Whether a code-7 answer is worth one retry with fresh inputs.
    pub fn refreshable(&self) -> bool {
        matches!(self.mode, Mode::Local | Mode::Signer(_))
    }

    pub fn invalidate(&self) {
        *self.inputs.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub fn cached_inputs(&self) -> Option<Arc<SigningInputs>> {
        let guard = self.inputs.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().filter(|(_, at)| at.elapsed() < INPUTS_TTL).map(|(i, _)| i.clone())
    }

    pub fn cached_seed(&self) -> Option<Vec<u8>> {
        self.cached_inputs().map(|i| i.seed.clone())
    }

    pub fn store_inputs(&self, inputs: SigningInputs) -> Arc<SigningInputs> {
        let inputs = Arc::new(inputs);
        *self.inputs.lock().unwrap_or_else(|p| p.into_inner()) = Some((inputs.clone(), Instant::now()));
        inputs
    }

    /// The cached inputs, or the ones `fetch` brings (then cached). One fetch at a time: a caller that
    /// waited finds the inputs the previous one stored.
    pub async fn inputs_or_fetch<F, Fut>(&self, fetch: F) -> Result<Arc<SigningInputs>, UpstreamError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<SigningInputs, UpstreamError>>,
    {
        if let Some(i) = self.cached_inputs() {
            return Ok(i);
        }
        let _one_fetch = self.fetching.lock().await;
        if let Some(i) = self.cached_inputs() {
            return Ok(i);
        }
        Ok(self.store_inputs(fetch().await?))
    }

    /// Mints for `method path` with the inputs already at hand.
    pub fn mint_now(inputs: &SigningInputs, method: &str, path: &str) -> String {
        let now = crate::clock::now_secs();
        mint(&inputs.seed, method, path, now, rand::random::<u8>(), &inputs.fingerprint)
    }

    /// Asks the external signer.
    pub async fn from_signer(
        &self,
        url: &str,
        method: &str,
        path: &str,
        meta: Option<&str>,
    ) -> Result<String, UpstreamError> {
        let Some(http) = &self.signer else { return Err(UpstreamError::Failed("no statsig signer client".into())) };
        let body = serde_json::json!({"method": method, "path": path, "environment": {"metaContent": meta}});
        let fail = |m: String| UpstreamError::Failed(format!("statsig signer {url}: {m}"));
        let resp = http.post(url).json(&body).send().await.map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        let v: serde_json::Value = resp.json().await.map_err(|e| fail(format!("HTTP {status}: {e}")))?;
        v.get("x-statsig-id")
            .and_then(|s| s.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| fail(format!("HTTP {status}, no x-statsig-id in the answer")))
    }
}

#[cfg(test)]
mod tests {
    use crate::upstream::grok_web::statsig::*;

    #[test]
    fn minted_tokens_have_the_web_apps_layout() {
        let seed: Vec<u8> = (0..48).collect();
        let token = mint(&seed, "post", "/rest/app-chat/conversations/new", EPOCH + 123_456, 37, "");
        let raw = base64::engine::general_purpose::STANDARD_NO_PAD.decode(&token).unwrap();
        assert_eq!(raw.len(), 70);
        let key = raw[0];
        assert_eq!(key, 37);
        let plain: Vec<u8> = raw.iter().skip(1).map(|b| b ^ key).collect();
        assert_eq!(&plain[..48], &seed[..]);
        assert_eq!(u32::from_le_bytes(plain[48..52].try_into().unwrap()), 123_456);
        assert_eq!(plain[68], 3);
        // The same inputs give the same signature; the path is part of it.
        assert_eq!(token, mint(&seed, "POST", "/rest/app-chat/conversations/new", EPOCH + 123_456, 37, ""));
        assert_ne!(token, mint(&seed, "POST", "/rest/rate-limits", EPOCH + 123_456, 37, ""));
    }

    #[test]
    fn modes_parse() {
        assert_eq!(Mode::parse("", None), Ok(Mode::Local));
        assert_eq!(Mode::parse("off", None), Ok(Mode::Off));
        assert_eq!(Mode::parse("fixed:abc", None), Ok(Mode::Fixed("abc".into())));
        assert_eq!(
            Mode::parse("signer:https://s.example/sign", None),
            Ok(Mode::Signer("https://s.example/sign".into()))
        );
        assert_eq!(Mode::parse("local", Some("legacy")), Ok(Mode::Fixed("legacy".into())));
        assert!(Mode::parse("signer:ftp://x", None).is_err());
        assert!(Mode::parse("magic", None).is_err());
    }
}

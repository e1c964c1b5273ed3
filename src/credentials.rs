//! What a request presents (`Authorization: Bearer <key>`) and the configured keys it is checked
//! against. Apart from the `/v1` guard (`auth.rs`) and from console keys (`keys.rs`), which both read
//! it, so neither has to import the other for it. Keys are kept only as SHA-256 digests and compared
//! in constant time (digest against every configured digest, no early exit).

use std::sync::Arc;

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::owner::KeyId;

pub struct Auth {
    /// Each key's digest with its precomputed id, so a request allocates nothing.
    keys: Vec<([u8; 32], KeyId)>,
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The key a request presents (`Authorization: Bearer <key>`).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim())
}

impl Auth {
    pub fn new(keys: &[String]) -> Self {
        let keys = keys.iter().filter(|k| !k.is_empty()).map(|k| (digest(k), Self::key_id(k))).collect();
        Self { keys }
    }

    /// The owner id of a config key: a digest prefix, stable across restarts.
    pub fn key_id(key: &str) -> KeyId {
        KeyId(Arc::from(format!("key-{}", hex::encode(&digest(key)[..8]))))
    }

    pub fn anonymous() -> KeyId {
        static ID: std::sync::OnceLock<KeyId> = std::sync::OnceLock::new();
        ID.get_or_init(|| KeyId(Arc::from("anonymous"))).clone()
    }

    /// No key configured: every request is accepted (loopback demo mode).
    pub fn is_open(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn check(&self, headers: &HeaderMap) -> Result<KeyId, ApiError> {
        if self.is_open() {
            return Ok(Self::anonymous());
        }
        let presented = bearer(headers).ok_or_else(ApiError::unauthorized)?;
        let d = digest(presented);
        // Every digest is compared, match or not, in constant time; only which configured key
        // matched (not secret: the caller holds it) decides the id returned.
        let mut found = None;
        for (known, id) in &self.keys {
            if bool::from(known.ct_eq(&d)) {
                found = Some(id);
            }
        }
        found.cloned().ok_or_else(ApiError::unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn accepts_any_configured_key_and_nothing_else() {
        let auth = Auth::new(&["alpha".into(), "beta".into()]);
        let a = auth.check(&headers("Bearer alpha")).unwrap();
        let b = auth.check(&headers("bearer beta")).unwrap();
        assert_ne!(a, b);
        assert!(auth.check(&headers("Bearer gamma")).is_err());
        assert!(auth.check(&headers("Basic alpha")).is_err());
        assert!(auth.check(&HeaderMap::new()).is_err());
        assert!(Auth::new(&[]).check(&HeaderMap::new()).is_ok());
    }
}

//! What the operators see of the pool and change in it.

use std::time::Instant;

use crate::secret::mask;
use crate::upstream::grok_web::browser::redact_proxy;
use crate::upstream::grok_web::token_pool::{
    Plan, Product, SsoPool, TokenState, TokenStatus, lock, parse_entry, token_id,
};
use crate::upstream::tokens::{ExportedToken, ProductInfo, TokenInfo, TokenPatch};

#[derive(Debug, PartialEq, Eq)]
pub enum PatchError {
    NotFound,
}

impl SsoPool {
    pub fn snapshot(&self) -> Vec<TokenInfo> {
        let now = Instant::now();
        lock(&self.state.tokens)
            .iter()
            .filter(|t| t.status != TokenStatus::Removed)
            .map(|t| {
                let (status, cooldown) = t.label_and_cooldown(now);
                TokenInfo {
                    source: t.source,
                    id: t.id.clone(),
                    token: mask(&t.token),
                    status,
                    enabled: t.enabled,
                    note: t.note.clone(),
                    last_error: t.last_error.as_ref().map(|(e, _)| e.clone()),
                    last_error_at: t.last_error.as_ref().map(|(_, at)| *at),
                    checked_at: t.checked_at,
                    in_flight: t.in_flight,
                    fail_count: t.fail_count,
                    remaining: t.remaining(),
                    cooldown_secs: cooldown.map(|d| d.as_secs().max(1)),
                    proxy: t.proxy.as_deref().map(redact_proxy),
                    plan: t.plan.map(Plan::key),
                    products: Product::ALL
                        .iter()
                        .map(|p| {
                            let st = t.products[p.idx()];
                            let cooling = st.cooling(now).map(|d| d.as_secs().max(1));
                            (
                                p.key(),
                                ProductInfo {
                                    remaining: st.remaining,
                                    cooldown_secs: cooling,
                                    refills_at: cooling.map(|c| crate::clock::now_secs() + c),
                                },
                            )
                        })
                        .collect(),
                }
            })
            .collect()
    }

    /// Counts by health label, for metrics.
    pub fn health(&self) -> Vec<(&'static str, usize)> {
        let now = Instant::now();
        let tokens = lock(&self.state.tokens);
        ["active", "cooling", "expired", "flagged", "disabled"]
            .into_iter()
            .map(|l| (l, tokens.iter().filter(|t| t.label_and_cooldown(now).0 == l).count()))
            .collect()
    }

    /// Adds tokens (or brings back removed, expired or flagged ones); returns how many became usable.
    pub fn add(&self, raw: &[String]) -> usize {
        let mut tokens = lock(&self.state.tokens);
        let mut added = 0;
        for (token, proxy) in raw.iter().map(|t| parse_entry(t)).filter(|(t, _)| !t.is_empty()) {
            match tokens.iter_mut().find(|t| t.token == token) {
                Some(t) if t.status.label(Instant::now()) == "active" => {
                    t.proxy = proxy.or(t.proxy.take());
                }
                Some(t) => {
                    t.proxy = proxy.or(t.proxy.take());
                    t.status = TokenStatus::Active;
                    t.fail_count = 0;
                    added += 1;
                }
                None => {
                    tokens.push(TokenState::new(token, proxy, "admin"));
                    added += 1;
                }
            }
        }
        drop(tokens);
        self.state.released.notify_waiters();
        added
    }

    /// Adds one token as the console imports it: `false` when the pool already holds it (a removed or
    /// expired one comes back, as with `add`).
    pub fn add_one(&self, token: String, proxy: Option<String>, note: Option<String>) -> bool {
        let id = token_id(&token);
        if self.holds(&id) {
            return false;
        }
        let entry = match &proxy {
            Some(p) => format!("{token}|{p}"),
            None => token,
        };
        self.add(&[entry]);
        if note.is_some() {
            let _ = self.update(&id, &TokenPatch { note: Some(note), ..TokenPatch::default() });
        }
        true
    }

    /// The pool serves (or may serve again by itself) the token `id` names: not removed, expired or
    /// flagged.
    pub fn holds(&self, id: &str) -> bool {
        lock(&self.state.tokens).iter().any(|t| {
            t.id == id && !matches!(t.status, TokenStatus::Removed | TokenStatus::Expired | TokenStatus::Flagged)
        })
    }

    /// Changes what the console may change of a token added at run time.
    pub fn update(&self, id: &str, patch: &TokenPatch) -> Result<(), PatchError> {
        let mut tokens = lock(&self.state.tokens);
        let t =
            tokens.iter_mut().find(|t| t.status != TokenStatus::Removed && t.id == id).ok_or(PatchError::NotFound)?;
        if let Some(enabled) = patch.enabled {
            t.enabled = enabled;
        }
        if let Some(note) = &patch.note {
            t.note = note.clone().filter(|n| !n.trim().is_empty());
        }
        if let Some(proxy) = &patch.proxy {
            t.proxy = proxy.clone();
            t.proxy_error = None;
        }
        drop(tokens);
        self.state.released.notify_waiters();
        Ok(())
    }

    /// Where a token came from (`config` or `admin`), unless it was removed.
    pub fn source_of(&self, id: &str) -> Option<&'static str> {
        lock(&self.state.tokens).iter().find(|t| t.status != TokenStatus::Removed && t.id == id).map(|t| t.source)
    }

    /// The pool's index of the token `id` names, for a refresh of that one token.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        lock(&self.state.tokens).iter().position(|t| t.status != TokenStatus::Removed && t.id == id)
    }

    /// Every token with its proxy, note and switch, for an export (the full values: the operator's backup).
    pub fn export(&self) -> Vec<ExportedToken> {
        lock(&self.state.tokens)
            .iter()
            .filter(|t| t.status != TokenStatus::Removed)
            .map(|t| ExportedToken {
                token: t.token.clone(),
                proxy: t.proxy.clone(),
                note: t.note.clone(),
                enabled: t.enabled,
            })
            .collect()
    }

    /// Takes a token out of rotation by its id; in-flight requests finish.
    pub fn remove(&self, id: &str) -> bool {
        let mut tokens = lock(&self.state.tokens);
        match tokens.iter_mut().find(|t| t.status != TokenStatus::Removed && t.id == id) {
            Some(t) => {
                t.status = TokenStatus::Removed;
                true
            }
            None => false,
        }
    }

    /// The token (and its proxy) a `token_id` names, unless it was removed.
    pub fn find(&self, id: &str) -> Option<(String, Option<String>)> {
        lock(&self.state.tokens)
            .iter()
            .find(|t| t.status != TokenStatus::Removed && t.id == id)
            .map(|t| (t.token.clone(), t.proxy.clone()))
    }

    /// (index, token, proxy) of every token worth asking the upstream about.
    pub fn refreshable(&self) -> Vec<(usize, String, Option<String>)> {
        lock(&self.state.tokens)
            .iter()
            .enumerate()
            .filter(|(_, t)| !matches!(t.status, TokenStatus::Removed | TokenStatus::Expired))
            .map(|(i, t)| (i, t.token.clone(), t.proxy.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::upstream::grok_web::token_pool::admin::*;
    use std::time::Duration;

    use crate::upstream::grok_web::token_pool::{NoToken, test_pool as pool};

    #[test]
    fn admin_add_remove_and_quota_refresh() {
        let p = pool(&["token-aaaa-1111", "token-bbbb-2222"], 4);
        let id = token_id("token-aaaa-1111");
        assert!(p.remove(&id));
        assert!(!p.remove(&id));
        assert_eq!(p.capacity(), (1, 1));
        assert!(p.snapshot().iter().all(|t| t.id != id && !t.token.contains("token-bbbb-2222")));
        assert_eq!(p.add(&["sso=token-aaaa-1111; Path=/".into(), "token-cccc-3333".into()]), 2);
        assert_eq!(p.capacity(), (3, 3));
        let later = Some(Instant::now() + Duration::from_secs(60));
        for product in Product::ALL {
            p.set_product_quota(2, product, Some(0), later);
        }
        assert_eq!(p.snapshot()[2].status, "cooling", "every product used up: the token as a whole rests");
        p.set_product_quota(2, Product::Video, Some(5), None);
        let snap = &p.snapshot()[2];
        assert_eq!((snap.status, snap.remaining), ("active", Some(5)));
        assert_eq!(snap.products["video"].remaining, Some(5));
        assert!(snap.products["image"].cooldown_secs.is_some());
        assert_eq!(p.acquire(Product::Image, &[0, 1]).err().map(|e| matches!(e, NoToken::Cooling(..))), Some(true));
        assert_eq!(p.acquire(Product::Video, &[0, 1]).map(|l| l.index).ok(), Some(2));
    }

    #[test]
    fn disabled_tokens_are_kept_but_never_picked_and_imports_see_duplicates() {
        let p = pool(&["token-aaaa-1111"], 4);
        assert!(p.add_one("token-bbbb-2222".into(), None, Some("spare".into())));
        assert!(!p.add_one("token-bbbb-2222".into(), None, None), "already held");
        let b = token_id("token-bbbb-2222");
        p.update(&token_id("token-aaaa-1111"), &TokenPatch { enabled: Some(false), ..TokenPatch::default() }).unwrap();
        assert_eq!(p.acquire(Product::Image, &[]).map(|l| l.index).ok(), Some(1), "only the enabled one serves");
        p.update(&b, &TokenPatch { enabled: Some(false), ..TokenPatch::default() }).unwrap();
        assert_eq!(p.acquire(Product::Image, &[]).err(), Some(NoToken::NoneUsable));
        let snap = p.snapshot();
        assert_eq!((snap[1].status, snap[1].note.as_deref()), ("disabled", Some("spare")));
        assert_eq!(p.health().iter().find(|(l, _)| *l == "disabled").map(|(_, n)| *n), Some(2));
        p.update(
            &b,
            &TokenPatch { note: Some(None), proxy: Some(Some("http://127.0.0.1:1".into())), ..TokenPatch::default() },
        )
        .unwrap();
        assert_eq!(p.snapshot()[1].note, None);
        assert_eq!(p.find(&b).unwrap().1.as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(p.update("000000000000", &TokenPatch::default()), Err(PatchError::NotFound));
    }
}

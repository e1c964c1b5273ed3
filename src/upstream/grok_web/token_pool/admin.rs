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
    /// Every token but the removed ones, in the pool's order.
    pub fn snapshot(&self) -> Vec<TokenInfo> {
        let now = Instant::now();
        self.state.collect(|_, t| (t.status != TokenStatus::Removed).then(|| info(t, now)))
    }

    /// The token `id` names, unless it was removed.
    pub fn info(&self, id: &str) -> Option<TokenInfo> {
        let now = Instant::now();
        let i = self.state.index_of(id)?;
        self.state.read(i, |t| (t.status != TokenStatus::Removed).then(|| info(t, now))).flatten()
    }

    /// Counts by health label, for metrics (from the census: no token is looked at).
    pub fn health(&self) -> Vec<(&'static str, usize)> {
        let mut census = lock(&self.state.census);
        let cooling = census.cooling(Instant::now()).min(census.live);
        vec![
            ("active", census.live - cooling),
            ("cooling", cooling),
            ("expired", census.expired),
            ("flagged", census.flagged),
            ("disabled", census.disabled),
        ]
    }

    /// Adds tokens (or brings back removed, expired or flagged ones); returns how many became usable.
    pub fn add(&self, raw: &[String]) -> usize {
        let mut added = 0;
        {
            let mut ids = self.state.ids.write().unwrap_or_else(|p| p.into_inner());
            for (token, proxy) in raw.iter().map(|t| parse_entry(t)).filter(|(t, _)| !t.is_empty()) {
                let held = ids.get(&token_id(&token)).copied();
                let back = held.and_then(|i| {
                    self.state
                        .with(i, |t| {
                            // Another token with the same id prefix (never seen, but possible) is its own.
                            (t.token == token).then(|| {
                                t.proxy = proxy.clone().or(t.proxy.take());
                                if t.status.label(Instant::now()) == "active" {
                                    return false;
                                }
                                t.status = TokenStatus::Active;
                                t.fail_count = 0;
                                true
                            })
                        })
                        .flatten()
                });
                match back {
                    Some(came_back) => added += usize::from(came_back),
                    None => {
                        self.state.push(&mut ids, TokenState::new(token, proxy, "admin"));
                        added += 1;
                    }
                }
            }
        }
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
        self.state.with_id(id, |t| !matches!(t.status, TokenStatus::Expired | TokenStatus::Flagged)).unwrap_or(false)
    }

    /// Changes what the console may change of a token added at run time.
    pub fn update(&self, id: &str, patch: &TokenPatch) -> Result<(), PatchError> {
        self.state
            .with_id(id, |t| {
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
            })
            .ok_or(PatchError::NotFound)?;
        self.state.released.notify_waiters();
        Ok(())
    }

    /// Where a token came from (`config` or `admin`), unless it was removed.
    pub fn source_of(&self, id: &str) -> Option<&'static str> {
        self.state.with_id(id, |t| t.source)
    }

    /// The pool's index of the token `id` names, for a refresh of that one token.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        let i = self.state.index_of(id)?;
        self.state.read(i, |t| t.status != TokenStatus::Removed).unwrap_or(false).then_some(i)
    }

    /// Every token with its proxy, note and switch, for an export (the full values: the operator's backup).
    pub fn export(&self) -> Vec<ExportedToken> {
        self.state.collect(|_, t| {
            (t.status != TokenStatus::Removed).then(|| ExportedToken {
                token: t.token.clone(),
                proxy: t.proxy.clone(),
                note: t.note.clone(),
                enabled: t.enabled,
            })
        })
    }

    /// Takes a token out of rotation by its id; in-flight requests finish.
    pub fn remove(&self, id: &str) -> bool {
        self.state.with_id(id, |t| t.status = TokenStatus::Removed).is_some()
    }

    /// The token (and its proxy) a `token_id` names, unless it was removed.
    pub fn find(&self, id: &str) -> Option<(String, Option<String>)> {
        self.state.with_id(id, |t| (t.token.clone(), t.proxy.clone()))
    }

    /// (index, token, proxy) of every token worth asking the upstream about.
    pub fn refreshable(&self) -> Vec<(usize, String, Option<String>)> {
        self.state.collect(|i, t| {
            (!matches!(t.status, TokenStatus::Removed | TokenStatus::Expired))
                .then(|| (i, t.token.clone(), t.proxy.clone()))
        })
    }
}

/// What the admin API shows of one token.
fn info(t: &TokenState, now: Instant) -> TokenInfo {
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
        in_flight_elsewhere: t.remote_in_flight,
        elsewhere: Default::default(),
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
}

#[cfg(test)]
mod tests {
    use crate::upstream::grok_web::token_pool::admin::*;
    use std::time::Duration;

    use crate::upstream::grok_web::token_pool::{NoToken, VideoFit, test_pool as pool};

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
    /// The counts `/readyz` and `/metrics` read are kept as tokens change, and always agree with
    /// what the tokens themselves say (a resting token counts as active again once its time is up).
    #[test]
    fn the_census_agrees_with_the_tokens() {
        use crate::upstream::error::UpstreamError;
        let names: Vec<String> = (0..2000).map(|i| format!("token-{i:05}-census")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let p = pool(&refs, 4);
        let recount = |p: &SsoPool| {
            let snap = p.snapshot();
            ["active", "cooling", "expired", "flagged", "disabled"]
                .into_iter()
                .map(|l| (l, snap.iter().filter(|t| t.status == l).count()))
                .collect::<Vec<_>>()
        };
        let soon = Some(Instant::now() + Duration::from_millis(150));
        let later = Some(Instant::now() + Duration::from_secs(60));
        for (i, name) in names.iter().enumerate() {
            let id = token_id(name);
            match i % 9 {
                0 => {
                    for product in Product::ALL {
                        p.set_product_quota(i, product, Some(0), if i % 2 == 0 { soon } else { later });
                    }
                }
                1 => p.set_product_quota(i, Product::Video, Some(0), later),
                2 => {
                    p.update(&id, &TokenPatch { enabled: Some(false), ..TokenPatch::default() }).unwrap();
                }
                3 => {
                    p.remove(&id);
                }
                4 => p.flag(&id, "canned"),
                5 => {
                    let auth = UpstreamError::Auth(String::new());
                    p.report_index(i, Product::Image, Err(&auth));
                    p.report_index(i, Product::Image, Err(&auth));
                }
                6 => p.report_index(i, Product::Image, Err(&UpstreamError::ProxyFailed("down".into()))),
                7 => p.set_plan(i, Plan::Basic),
                _ => {}
            }
        }
        assert_eq!(p.health(), recount(&p));
        let (usable, total) = p.capacity();
        assert_eq!((usable, total), (recount(&p)[0].1, p.snapshot().len()));
        // Some come back with time, and removed or flagged ones are added again.
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(p.health(), recount(&p));
        let back: Vec<String> = names.iter().step_by(9).skip(1).take(5).cloned().collect();
        p.add(&[names[3].clone(), names[4].clone()]);
        p.add(&back);
        assert_eq!(p.health(), recount(&p));
        assert_eq!(p.capacity().1, p.snapshot().len());
        assert_eq!(p.video_fit(10), VideoFit::NotFree);
    }
}

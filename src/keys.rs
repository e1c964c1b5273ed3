//! Client API keys. Two kinds: the ones the config gives (fixed; read-only in the console) and the ones
//! made in the console, kept in the state dir as SHA-256 digests (the key itself is shown once, when
//! made or rotated). A console key reads `g2a_<id>_<secret>`: the id, not secret, finds the record, and
//! the digest of the whole key is then compared in constant time; config keys are compared against
//! every configured digest, as before. Each console key may carry its own request rate, concurrent
//! task limit and model allowlist.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::HeaderMap;
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::HotMap;
use crate::credentials::Auth;
use crate::error::ApiError;
use crate::owner::KeyId;
use crate::secret::mask;
use crate::state_db::{KEYS, StateDb};

const PREFIX: &str = "g2a_";

/// What the console stores of a key it made.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyRecord {
    /// `k_<12 hex>`; also the owner id of the key's tasks and usage.
    id: String,
    name: String,
    /// Hex SHA-256 of the whole key.
    digest: String,
    /// The secret's last four characters, so an operator can tell two keys apart.
    hint: String,
    created_at: u64,
    expires_at: Option<u64>,
    revoked_at: Option<u64>,
    requests_per_second: Option<f64>,
    max_concurrent_tasks: Option<usize>,
    /// Canonical model ids; empty = every model.
    models: Vec<String>,
}

/// The limits a console key carries (none for config keys: the global ones apply).
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub requests_per_second: Option<f64>,
    pub max_concurrent_tasks: Option<usize>,
    pub models: Vec<String>,
}

struct Entry {
    record: KeyRecord,
    digest: [u8; 32],
    owner: KeyId,
    policy: Arc<Policy>,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub owner: KeyId,
    pub policy: Option<Arc<Policy>>,
}

/// A key as the admin API shows it (never the key).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct KeyInfo {
    pub id: String,
    pub name: String,
    /// Enough to recognise the key, not to use it.
    pub prefix: String,
    /// `config` (read-only) or `admin`.
    pub source: &'static str,
    /// `active`, `expired` or `revoked`.
    pub status: &'static str,
    pub created_at: Option<u64>,
    pub expires_at: Option<u64>,
    pub revoked_at: Option<u64>,
    /// Since this process started.
    pub last_used_at: Option<u64>,
    pub requests_per_second: Option<f64>,
    pub max_concurrent_tasks: Option<usize>,
    /// Model ids the key may use; empty = all.
    pub models: Vec<String>,
}

/// `POST /admin/keys`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    pub name: String,
    /// Unix seconds; absent = never.
    pub expires_at: Option<u64>,
    pub requests_per_second: Option<f64>,
    pub max_concurrent_tasks: Option<usize>,
    /// Model ids or aliases; absent or empty = all.
    #[serde(default)]
    pub models: Vec<String>,
}

/// A key just made or rotated: the only time the key itself is shown.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IssuedKey {
    pub key: String,
    #[serde(flatten)]
    pub info: KeyInfo,
}

pub struct KeyRing {
    config: Auth,
    /// Config keys' ids and masked forms, in config order.
    config_keys: Vec<(KeyId, String)>,
    stored: HotMap<String, Arc<Entry>>,
    /// Unix seconds of each key's last accepted request.
    last_used: HotMap<KeyId, AtomicU64>,
    db: Option<Arc<StateDb>>,
    /// With an admin key the gateway is never open: keys may be made at any time.
    admin: bool,
    /// `stored` is not empty (asked on every request; a DashMap's `is_empty` locks every shard).
    any_stored: std::sync::atomic::AtomicBool,
    /// With several replicas, console keys live in Redis (`stored` caches them) instead of `db`.
    shared: Option<Arc<crate::shared::SharedStore>>,
}

impl KeyRing {
    pub fn open(
        config_keys: &[String],
        db: Option<Arc<StateDb>>,
        admin: bool,
        shared: Option<Arc<crate::shared::SharedStore>>,
    ) -> Result<Self, String> {
        let db = if shared.is_some() { None } else { db };
        let config = Auth::new(config_keys);
        let config_keys = config_keys.iter().filter(|k| !k.is_empty()).map(|k| (Auth::key_id(k), mask(k))).collect();
        let stored = HotMap::default();
        if let Some(db) = &db {
            for (id, json) in db.all(KEYS)? {
                let record: KeyRecord = serde_json::from_str(&json).map_err(|e| format!("api key {id}: {e}"))?;
                let entry = Entry::new(record).map_err(|e| format!("api key {id}: {e}"))?;
                stored.insert(id, Arc::new(entry));
            }
        }
        let any_stored = (!stored.is_empty()).into();
        Ok(Self { config, config_keys, stored, last_used: HotMap::default(), db, admin, any_stored, shared })
    }

    /// No key of any kind and no console to make one: every request is accepted (loopback demo).
    pub fn is_open(&self) -> bool {
        self.config.is_open() && !self.admin && !self.any_stored.load(Ordering::Relaxed)
    }

    pub async fn check(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        if let Some(checked) = self.check_now(headers) {
            return checked;
        }
        // A console key made on another replica: bring it into this one's cache, then check it.
        let presented = crate::credentials::bearer(headers).ok_or_else(ApiError::unauthorized)?;
        let id = console_id(presented).ok_or_else(ApiError::unauthorized)?;
        self.fetch(&id).await?;
        let caller = self.check_stored(&id, presented)?;
        self.touch(&caller.owner);
        Ok(caller)
    }

    /// `check` when it needs no waiting, which is every time but the first use on this replica of
    /// a console key made on another (`None`: the shared store must be asked, `check` does).
    pub fn check_now(&self, headers: &HeaderMap) -> Option<Result<Caller, ApiError>> {
        if self.is_open() {
            return Some(Ok(Caller { owner: Auth::anonymous(), policy: None }));
        }
        let Some(presented) = crate::credentials::bearer(headers) else { return Some(Err(ApiError::unauthorized())) };
        let caller = match console_id(presented) {
            Some(id) if !self.stored.contains_key(&id) && self.shared.is_some() => return None,
            Some(id) => self.check_stored(&id, presented),
            None => self.config.check(headers).map(|owner| Caller { owner, policy: None }),
        };
        if let Ok(caller) = &caller {
            self.touch(&caller.owner);
        }
        Some(caller)
    }

    fn check_stored(&self, id: &str, presented: &str) -> Result<Caller, ApiError> {
        let entry = self.stored.get(id).ok_or_else(ApiError::unauthorized)?;
        let d: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        if !bool::from(entry.digest.ct_eq(&d)) {
            return Err(ApiError::unauthorized());
        }
        // The caller holds the key: saying why it no longer works leaks nothing.
        if entry.record.revoked_at.is_some() {
            return Err(ApiError::key_refused("this API key was revoked"));
        }
        if entry.record.expires_at.is_some_and(|t| t <= crate::clock::now_secs()) {
            return Err(ApiError::key_refused("this API key has expired"));
        }
        Ok(Caller { owner: entry.owner.clone(), policy: Some(entry.policy.clone()) })
    }

    /// With several replicas: brings a key made on another replica into this one's cache.
    async fn fetch(&self, id: &str) -> Result<(), ApiError> {
        let Some(shared) = &self.shared else { return Ok(()) };
        let json = shared.key_record(id).await.map_err(crate::shared::down)?;
        if let Some(json) = json {
            self.cache(&json);
        }
        Ok(())
    }

    fn cache(&self, json: &str) {
        match serde_json::from_str::<KeyRecord>(json).map_err(|e| e.to_string()).and_then(Entry::new) {
            Ok(entry) => {
                self.stored.insert(entry.record.id.clone(), Arc::new(entry));
                self.any_stored.store(true, Ordering::Relaxed);
            }
            Err(e) => tracing::error!("unreadable API key record skipped: {e}"),
        }
    }

    /// With several replicas: every console key, fresh from the store (the console's list, and names).
    pub async fn refresh(&self) -> Result<(), ApiError> {
        let Some(shared) = &self.shared else { return Ok(()) };
        let all = shared.key_records().await.map_err(crate::shared::down)?;
        all.iter().for_each(|json| self.cache(json));
        Ok(())
    }

    /// Another replica changed key `id` (rotated, revoked): the next use reads it again.
    pub fn forget_cached(&self, id: &str) {
        self.stored.remove(id);
    }

    fn touch(&self, owner: &KeyId) {
        let t = crate::clock::now_secs();
        match self.last_used.get(owner) {
            Some(v) => v.store(t, Ordering::Relaxed),
            None => {
                self.last_used.insert(owner.clone(), AtomicU64::new(t));
            }
        }
    }

    /// The limits of the key `owner` names, when it is a console key.
    pub fn policy(&self, owner: &KeyId) -> Option<Arc<Policy>> {
        self.stored.get(&*owner.0).map(|e| e.policy.clone())
    }

    /// A readable name for a key id (console keys: their name; config keys: their position).
    pub fn name_of(&self, owner: &str) -> Option<String> {
        if let Some(e) = self.stored.get(owner) {
            return Some(e.record.name.clone());
        }
        self.config_keys.iter().position(|(id, _)| &*id.0 == owner).map(|i| format!("config key #{}", i + 1))
    }

    pub fn list(&self) -> Vec<KeyInfo> {
        let mut out: Vec<KeyInfo> = self
            .config_keys
            .iter()
            .enumerate()
            .map(|(i, (id, masked))| KeyInfo {
                id: id.0.to_string(),
                name: format!("config key #{}", i + 1),
                prefix: masked.clone(),
                source: "config",
                status: "active",
                created_at: None,
                expires_at: None,
                revoked_at: None,
                last_used_at: self.last_used(id),
                requests_per_second: None,
                max_concurrent_tasks: None,
                models: Vec::new(),
            })
            .collect();
        let mut stored: Vec<KeyInfo> = self.stored.iter().map(|e| self.info(e.value())).collect();
        stored.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| a.id.cmp(&b.id)));
        out.extend(stored);
        out
    }

    fn last_used(&self, owner: &KeyId) -> Option<u64> {
        self.last_used.get(owner).map(|v| v.load(Ordering::Relaxed))
    }

    fn info(&self, e: &Entry) -> KeyInfo {
        let r = &e.record;
        let status = if r.revoked_at.is_some() {
            "revoked"
        } else if r.expires_at.is_some_and(|t| t <= crate::clock::now_secs()) {
            "expired"
        } else {
            "active"
        };
        KeyInfo {
            id: r.id.clone(),
            name: r.name.clone(),
            prefix: format!("{PREFIX}{}_…{}", r.id.trim_start_matches("k_"), r.hint),
            source: "admin",
            status,
            created_at: Some(r.created_at),
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            last_used_at: self.last_used(&e.owner),
            requests_per_second: r.requests_per_second,
            max_concurrent_tasks: r.max_concurrent_tasks,
            models: r.models.clone(),
        }
    }

    pub async fn create(&self, new: NewKey) -> Result<IssuedKey, ApiError> {
        let name = new.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(ApiError::invalid_param("name", "give the key a name of 1-64 printable characters"));
        }
        if new.expires_at.is_some_and(|t| t <= crate::clock::now_secs()) {
            return Err(ApiError::invalid_param("expires_at", "expires_at must be in the future (unix seconds)"));
        }
        if new.requests_per_second.is_some_and(|r| !(r.is_finite() && r > 0.0 && r <= 100_000.0)) {
            return Err(ApiError::invalid_param("requests_per_second", "requests_per_second must be above 0"));
        }
        if new.max_concurrent_tasks == Some(0) {
            return Err(ApiError::invalid_param("max_concurrent_tasks", "max_concurrent_tasks must be at least 1"));
        }
        let mut models = Vec::new();
        for m in &new.models {
            let id = crate::catalog::canonical_model(m).ok_or_else(|| {
                ApiError::invalid_param("models", format!("`{m}` is not a model of this gateway; see GET /v1/models"))
            })?;
            if !models.iter().any(|x: &String| x == id) {
                models.push(id.to_owned());
            }
        }
        let mut raw = [0u8; 6];
        rand::rng().fill_bytes(&mut raw);
        let id = format!("k_{}", hex::encode(raw));
        let (key, digest, hint) = secret_for(&id);
        let record = KeyRecord {
            id: id.clone(),
            name,
            digest,
            hint,
            created_at: crate::clock::now_secs(),
            expires_at: new.expires_at,
            revoked_at: None,
            requests_per_second: new.requests_per_second,
            max_concurrent_tasks: new.max_concurrent_tasks,
            models,
        };
        let info = self.save(record).await?;
        tracing::info!(key = %info.id, name = %info.name, "API key created in the console");
        Ok(IssuedKey { key, info })
    }

    pub async fn revoke(&self, id: &str) -> Result<KeyInfo, ApiError> {
        let mut record = self.editable(id)?;
        if record.revoked_at.is_none() {
            record.revoked_at = Some(crate::clock::now_secs());
        }
        let info = self.save(record).await?;
        tracing::info!(key = %id, "API key revoked");
        Ok(info)
    }

    /// A new secret for the same key id: limits, tasks and usage stay; the old key stops working.
    pub async fn rotate(&self, id: &str) -> Result<IssuedKey, ApiError> {
        let mut record = self.editable(id)?;
        if record.revoked_at.is_some() {
            return Err(ApiError::conflict("key_revoked", "a revoked key cannot be rotated; make a new one"));
        }
        let (key, digest, hint) = secret_for(id);
        (record.digest, record.hint) = (digest, hint);
        let info = self.save(record).await?;
        tracing::info!(key = %id, "API key rotated");
        Ok(IssuedKey { key, info })
    }

    fn editable(&self, id: &str) -> Result<KeyRecord, ApiError> {
        if let Some(e) = self.stored.get(id) {
            return Ok(e.record.clone());
        }
        if self.config_keys.iter().any(|(k, _)| &*k.0 == id) {
            return Err(ApiError::conflict("read_only", "this key comes from the config; change it there"));
        }
        Err(ApiError::not_found(format!("no API key with id `{id}`")))
    }

    /// Stores the record (durably, when there is a state dir), then makes it the one requests see.
    async fn save(&self, record: KeyRecord) -> Result<KeyInfo, ApiError> {
        let entry = Entry::new(record.clone()).map_err(ApiError::internal)?;
        let json = serde_json::to_string(&record).map_err(|e| ApiError::internal(e.to_string()))?;
        if let Some(shared) = &self.shared {
            shared.put_key_record(&record.id, &json).await.map_err(crate::shared::down)?;
        }
        if let Some(db) = self.db.clone() {
            let row = vec![(record.id.clone(), json)];
            tokio::task::spawn_blocking(move || db.put(KEYS, &row))
                .await
                .map_err(|e| ApiError::internal(format!("saving the key stopped: {e}")))?
                .map_err(|e| ApiError::internal(format!("cannot save the key: {e}")))?;
        }
        let entry = Arc::new(entry);
        let info = self.info(&entry);
        self.stored.insert(record.id, entry);
        self.any_stored.store(true, Ordering::Relaxed);
        Ok(info)
    }
}

impl Entry {
    fn new(record: KeyRecord) -> Result<Self, String> {
        let digest: [u8; 32] = hex::decode(&record.digest)
            .ok()
            .and_then(|d| d.try_into().ok())
            .ok_or("the stored digest is not a SHA-256")?;
        let policy = Arc::new(Policy {
            requests_per_second: record.requests_per_second,
            max_concurrent_tasks: record.max_concurrent_tasks,
            models: record.models.clone(),
        });
        Ok(Self { owner: KeyId(Arc::from(record.id.as_str())), digest, policy, record })
    }
}

/// A fresh key for `id` (`k_<hex>`): the key, its hex digest, and its hint.
fn secret_for(id: &str) -> (String, String, String) {
    let mut raw = [0u8; 24];
    rand::rng().fill_bytes(&mut raw);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw).replace(['-', '_'], "x");
    let key = format!("{PREFIX}{}_{secret}", id.trim_start_matches("k_"));
    let digest = hex::encode(Sha256::digest(key.as_bytes()));
    let hint = secret[secret.len() - 4..].to_owned();
    (key, digest, hint)
}

/// The record id a console key names (`g2a_<hex>_<secret>` → `k_<hex>`), without checking the secret.
fn console_id(presented: &str) -> Option<String> {
    let rest = presented.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty()).then(|| format!("k_{id}"))
}

/// The console's model allowlist: may `policy` use `model`?
pub fn allows(policy: &Policy, model: &str) -> bool {
    policy.models.is_empty() || policy.models.iter().any(|m| m == model)
}

/// `allows`, as the answer a refused request gets: 403 `model_not_allowed` naming the key's models.
pub fn check_model(policy: &Policy, model: &str) -> Result<(), ApiError> {
    if allows(policy, model) {
        return Ok(());
    }
    Err(ApiError::forbidden(
        "model_not_allowed",
        format!("this API key may not use `{model}`; allowed: {}", policy.models.join(", ")),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, header};

    fn bearer(key: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {key}")).unwrap());
        h
    }

    fn new_key(name: &str) -> NewKey {
        NewKey {
            name: name.into(),
            expires_at: None,
            requests_per_second: Some(2.0),
            max_concurrent_tasks: Some(1),
            models: vec!["grok-imagine-image".into()],
        }
    }

    #[tokio::test]
    async fn console_keys_are_stored_hashed_rotate_revoke_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(StateDb::open(dir.path()).unwrap());
        let ring = KeyRing::open(&["config-key-123456".into()], Some(db.clone()), true, None).unwrap();
        let issued = ring.create(new_key("mobile")).await.unwrap();
        assert!(issued.key.starts_with("g2a_") && issued.info.prefix.ends_with(&issued.key[issued.key.len() - 4..]));
        let caller = ring.check(&bearer(&issued.key)).await.unwrap();
        assert_eq!(&*caller.owner.0, issued.info.id);
        assert_eq!(caller.policy.unwrap().models, vec!["grok-imagine-1.0".to_string()]);
        assert!(ring.check(&bearer("config-key-123456")).await.unwrap().policy.is_none());
        // A wrong secret under a real id, and a made-up id, are both plain 401s.
        // One character changed (to one it is not already: a key ending in `x` once made this no forgery).
        let swap = if issued.key.ends_with('x') { 'y' } else { 'x' };
        let forged = format!("{}{swap}", &issued.key[..issued.key.len() - 1]);
        assert_eq!(ring.check(&bearer(&forged)).await.unwrap_err().message, ApiError::unauthorized().message);
        assert!(ring.check(&bearer("g2a_000000000000_abc")).await.is_err());
        // The database holds no key, only its digest.
        let stored = db.all(KEYS).unwrap();
        assert!(!stored[0].1.contains(&issued.key[17..]), "{stored:?}");

        let rotated = ring.rotate(&issued.info.id).await.unwrap();
        assert!(ring.check(&bearer(&issued.key)).await.is_err(), "the old secret stops working");
        assert!(ring.check(&bearer(&rotated.key)).await.is_ok());
        ring.revoke(&issued.info.id).await.unwrap();
        let e = ring.check(&bearer(&rotated.key)).await.unwrap_err();
        assert_eq!((e.status.as_u16(), e.message.as_str()), (401, "this API key was revoked"));
        assert_eq!(ring.revoke(&ring.list()[0].id).await.unwrap_err().code, "read_only");
        drop(ring);

        let ring = KeyRing::open(&[], Some(db), true, None).unwrap();
        let listed = ring.list();
        assert_eq!((listed.len(), listed[0].status, listed[0].name.as_str()), (1, "revoked", "mobile"));
        assert!(ring.check(&bearer(&rotated.key)).await.is_err());
    }

    #[tokio::test]
    async fn bad_new_keys_are_refused_by_field_and_expiry_is_enforced() {
        let ring = KeyRing::open(&[], None, true, None).unwrap();
        assert!(!ring.is_open(), "an admin key closes the gateway even before any client key exists");
        assert!(KeyRing::open(&[], None, false, None).unwrap().is_open());
        for (k, param) in [
            (new_key(" "), "name"),
            (NewKey { models: vec!["dall-e-3".into()], ..new_key("a") }, "models"),
            (NewKey { requests_per_second: Some(0.0), ..new_key("a") }, "requests_per_second"),
            (NewKey { max_concurrent_tasks: Some(0), ..new_key("a") }, "max_concurrent_tasks"),
            (NewKey { expires_at: Some(1), ..new_key("a") }, "expires_at"),
        ] {
            assert_eq!(ring.create(k).await.unwrap_err().param.as_deref(), Some(param));
        }
        let issued =
            ring.create(NewKey { expires_at: Some(crate::clock::now_secs() + 1), ..new_key("short") }).await.unwrap();
        assert!(ring.check(&bearer(&issued.key)).await.is_ok());
        tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
        assert_eq!(ring.check(&bearer(&issued.key)).await.unwrap_err().message, "this API key has expired");
        assert_eq!(ring.list()[0].status, "expired");
    }
}

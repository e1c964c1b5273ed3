//! `Idempotency-Key`: the same key and the same body within the window return the first task; the same
//! key with a different body is a client bug (422). Keys are scoped to the API key that sent them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use sha2::{Digest, Sha256};

use crate::owner::KeyId;

pub const WINDOW: Duration = Duration::from_secs(24 * 3600);

struct Record {
    body: [u8; 32],
    task: Arc<str>,
    at: Instant,
}

#[derive(Default)]
pub struct IdempotencyKeys {
    map: DashMap<(KeyId, String), Record>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// First use: go ahead and create, then `bind` the task.
    New,
    /// Seen with this body: answer with this task.
    Existing(Arc<str>),
    /// Seen with another body.
    Conflict,
}

/// Hash of a JSON body independent of key order and whitespace.
pub fn body_hash(body: &serde_json::Value) -> [u8; 32] {
    // serde_json's map is ordered by key, so serialising a parsed value is canonical.
    Sha256::digest(body.to_string().as_bytes()).into()
}

impl IdempotencyKeys {
    pub fn check(&self, owner: &KeyId, key: &str, body: &[u8; 32]) -> Claim {
        match self.map.get(&(owner.clone(), key.to_owned())) {
            Some(r) if r.at.elapsed() < WINDOW => {
                if r.body == *body {
                    Claim::Existing(r.task.clone())
                } else {
                    Claim::Conflict
                }
            }
            _ => Claim::New,
        }
    }

    /// Remembers `task` for the key; if a concurrent request bound it first, returns that claim instead.
    pub fn bind(&self, owner: &KeyId, key: &str, body: [u8; 32], task: Arc<str>) -> Claim {
        match self.map.entry((owner.clone(), key.to_owned())) {
            Entry::Occupied(e) if e.get().at.elapsed() < WINDOW => {
                if e.get().body == body {
                    Claim::Existing(e.get().task.clone())
                } else {
                    Claim::Conflict
                }
            }
            Entry::Occupied(mut e) => {
                e.insert(Record { body, task, at: Instant::now() });
                Claim::New
            }
            Entry::Vacant(e) => {
                e.insert(Record { body, task, at: Instant::now() });
                Claim::New
            }
        }
    }

    pub fn reap(&self) {
        self.map.retain(|_, r| r.at.elapsed() < WINDOW);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn same_body_same_task_other_body_conflicts() {
        let k = IdempotencyKeys::default();
        let owner = KeyId(Arc::from("a"));
        let h1 = body_hash(&json!({"a": 1, "b": 2}));
        assert_eq!(h1, body_hash(&serde_json::from_str(r#"{ "b":2, "a":1 }"#).unwrap()));
        assert_eq!(k.check(&owner, "k1", &h1), Claim::New);
        assert_eq!(k.bind(&owner, "k1", h1, Arc::from("t1")), Claim::New);
        assert_eq!(k.check(&owner, "k1", &h1), Claim::Existing(Arc::from("t1")));
        assert_eq!(k.check(&owner, "k1", &body_hash(&json!({"a": 2}))), Claim::Conflict);
        assert_eq!(k.check(&KeyId(Arc::from("b")), "k1", &h1), Claim::New, "scoped per API key");
    }
}

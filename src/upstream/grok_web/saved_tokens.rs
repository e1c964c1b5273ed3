//! Tokens added through the admin API, kept in the state dir (`<state.dir>/tokens.redb`, the same
//! embedded database engine as the task journal) so they survive a restart. Tokens from the config,
//! the environment or `tokens_file` are not written here: they come back from where they were given.
//! A write that fails (a full disk) is tried on a freshly opened file the next time.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::redb_file::RedbFile;
use crate::upstream::grok_web::token_pool::{parse_entry, token_id};

/// `token_id` → the entry as given (`TOKEN` or `TOKEN|PROXY_URL`).
const TOKENS: TableDefinition<&str, &str> = TableDefinition::new("tokens");
/// `token_id` → what the console set on it (`Meta` as JSON).
const META: TableDefinition<&str, &str> = TableDefinition::new("token_meta");

/// The console's settings of a kept token.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Meta {
    pub note: Option<String>,
    pub disabled: bool,
}

pub struct SavedTokens {
    db: RedbFile,
}

impl SavedTokens {
    /// Opens (or creates) the store and returns the entries it holds, each with its settings.
    pub fn open(dir: &Path) -> Result<(Self, Vec<(String, Meta)>), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create state dir {}: {e}", dir.display()))?;
        let path = dir.join("tokens.redb");
        let db = RedbFile::open(&path)?;
        let entries = db.with(read_all)?;
        Ok((Self { db }, entries))
    }

    /// Keeps `entries` (replacing an earlier entry of the same token, e.g. with another proxy).
    pub fn save(&self, entries: &[String]) -> Result<(), String> {
        self.db.with(|db| {
            let txn = db.begin_write().map_err(|e| e.to_string())?;
            {
                let mut table = txn.open_table(TOKENS).map_err(|e| e.to_string())?;
                for entry in entries {
                    let (token, _) = parse_entry(entry);
                    if token.is_empty() {
                        continue;
                    }
                    let id = token_id(&token);
                    table.insert(id.as_str(), entry.trim()).map_err(|e| e.to_string())?;
                }
            }
            txn.commit().map_err(|e| e.to_string())
        })
    }

    /// Keeps the console's settings of the token `id` names.
    pub fn save_meta(&self, id: &str, meta: &Meta) -> Result<(), String> {
        self.save_metas(&[(id.to_owned(), meta.clone())])
    }

    /// Keeps the settings of several tokens (`token_id`, settings) in one commit.
    pub fn save_metas(&self, metas: &[(String, Meta)]) -> Result<(), String> {
        let rows = metas
            .iter()
            .map(|(id, meta)| serde_json::to_string(meta).map(|json| (id, json)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        self.db.with(|db| {
            let txn = db.begin_write().map_err(|e| e.to_string())?;
            {
                let mut table = txn.open_table(META).map_err(|e| e.to_string())?;
                for (id, json) in &rows {
                    table.insert(id.as_str(), json.as_str()).map_err(|e| e.to_string())?;
                }
            }
            txn.commit().map_err(|e| e.to_string())
        })
    }

    /// Forgets the token `id` names (nothing happens for a token that was never saved).
    pub fn forget(&self, id: &str) -> Result<(), String> {
        self.db.with(|db| {
            let txn = db.begin_write().map_err(|e| e.to_string())?;
            txn.open_table(TOKENS).map_err(|e| e.to_string())?.remove(id).map_err(|e| e.to_string())?;
            txn.open_table(META).map_err(|e| e.to_string())?.remove(id).map_err(|e| e.to_string())?;
            txn.commit().map_err(|e| e.to_string())
        })
    }
}

/// Creates the tables if needed and reads every entry with its settings.
fn read_all(db: &Database) -> Result<Vec<(String, Meta)>, String> {
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    txn.open_table(TOKENS).map_err(|e| e.to_string())?;
    txn.open_table(META).map_err(|e| e.to_string())?;
    txn.commit().map_err(|e| e.to_string())?;
    let read = db.begin_read().map_err(|e| e.to_string())?;
    let table = read.open_table(TOKENS).map_err(|e| e.to_string())?;
    let meta = read.open_table(META).map_err(|e| e.to_string())?;
    let mut entries = Vec::new();
    for row in table.iter().map_err(|e| e.to_string())? {
        let (id, entry) = row.map_err(|e| e.to_string())?;
        let m = match meta.get(id.value()).map_err(|e| e.to_string())? {
            Some(json) => serde_json::from_str(json.value()).unwrap_or_default(),
            None => Meta::default(),
        };
        entries.push((entry.value().to_owned(), m));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use crate::upstream::grok_web::saved_tokens::*;

    #[test]
    fn entries_survive_reopening_and_forgetting_works() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (saved, entries) = SavedTokens::open(dir.path()).unwrap();
            assert!(entries.is_empty());
            saved.save(&["tok-one".into(), "tok-two|socks5://127.0.0.1:1080".into()]).unwrap();
            saved.save(&["tok-one|http://127.0.0.1:3128".into()]).unwrap();
            let meta = Meta { note: Some("main".into()), disabled: true };
            saved.save_meta(&token_id("tok-one"), &meta).unwrap();
            saved.forget(&token_id("tok-two")).unwrap();
        }
        let (_, entries) = SavedTokens::open(dir.path()).unwrap();
        let meta = Meta { note: Some("main".into()), disabled: true };
        assert_eq!(entries, vec![("tok-one|http://127.0.0.1:3128".to_string(), meta)]);
    }
}

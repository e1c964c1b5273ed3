//! The console's tables in the state dir (`<state.dir>/console.redb`, redb like the task journal): API
//! keys made at run time, and per-key daily usage. Rows are small JSON values; writes are rare (a key
//! made or revoked, a usage flush every few seconds), so each is its own transaction, called off the
//! async workers. A write that fails (a full disk) is tried again on a freshly opened file next time.

use std::path::Path;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use crate::redb_file::RedbFile;

/// `k_<id>` → the key's record (its SHA-256, never the key).
pub const KEYS: TableDefinition<&str, &str> = TableDefinition::new("api_keys");
/// `<YYYY-MM-DD>|<key id>` → that day's counters.
pub const USAGE: TableDefinition<&str, &str> = TableDefinition::new("usage");

pub struct StateDb {
    db: RedbFile,
}

impl StateDb {
    pub fn open(dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create state dir {}: {e}", dir.display()))?;
        let path = dir.join("console.redb");
        let db = RedbFile::open(&path)?;
        db.with(|db| {
            let txn = db.begin_write().map_err(|e| e.to_string())?;
            txn.open_table(KEYS).map_err(|e| e.to_string())?;
            txn.open_table(USAGE).map_err(|e| e.to_string())?;
            txn.commit().map_err(|e| e.to_string())
        })?;
        Ok(Self { db })
    }

    pub fn all(&self, table: TableDefinition<&str, &str>) -> Result<Vec<(String, String)>, String> {
        self.db.with(|db| {
            let read = db.begin_read().map_err(|e| e.to_string())?;
            let table = read.open_table(table).map_err(|e| e.to_string())?;
            let mut rows = Vec::new();
            for row in table.iter().map_err(|e| e.to_string())? {
                let (k, v) = row.map_err(|e| e.to_string())?;
                rows.push((k.value().to_owned(), v.value().to_owned()));
            }
            Ok(rows)
        })
    }

    /// Writes `rows` in one durable transaction.
    pub fn put(&self, table: TableDefinition<&str, &str>, rows: &[(String, String)]) -> Result<(), String> {
        if rows.is_empty() {
            return Ok(());
        }
        self.db.with(|db| {
            let txn = db.begin_write().map_err(|e| e.to_string())?;
            {
                let mut t = txn.open_table(table).map_err(|e| e.to_string())?;
                for (k, v) in rows {
                    t.insert(k.as_str(), v.as_str()).map_err(|e| e.to_string())?;
                }
            }
            txn.commit().map_err(|e| e.to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = StateDb::open(dir.path()).unwrap();
            db.put(KEYS, &[("k_1".into(), "{}".into())]).unwrap();
            db.put(USAGE, &[("2026-11-27|k_1".into(), "{\"requests\":1}".into())]).unwrap();
            db.put(USAGE, &[("2026-11-27|k_1".into(), "{\"requests\":2}".into())]).unwrap();
        }
        let db = StateDb::open(dir.path()).unwrap();
        assert_eq!(db.all(KEYS).unwrap(), vec![("k_1".to_string(), "{}".to_string())]);
        assert_eq!(db.all(USAGE).unwrap()[0].1, "{\"requests\":2}");
    }
}

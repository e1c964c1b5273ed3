//! A redb database that survives a failed write. After an I/O error (a full disk, above all) redb
//! refuses every later transaction with `PreviousIo` until the file is closed and opened again, so a
//! gateway that kept its handle stayed unable to write until it was restarted. Here a failed
//! transaction closes the handle and the next use opens the file again (redb rolls back to its last
//! commit on open), no more often than a backoff allows, so a disk that stays full costs a failed
//! open now and then rather than one per request.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redb::Database;

/// Backoff between attempts to open the file again after a failure.
const REOPEN_FIRST: Duration = Duration::from_millis(100);
const REOPEN_MAX: Duration = Duration::from_secs(1);

pub struct RedbFile {
    path: PathBuf,
    state: Mutex<State>,
}

struct State {
    /// `None` after a failed transaction, until the next open succeeds.
    db: Option<Database>,
    /// No open before this instant.
    retry_at: Instant,
    backoff: Duration,
    last_error: String,
}

impl RedbFile {
    /// Opens (or creates) the database at `path`; an error here is the caller's to report (at start).
    pub fn open(path: &Path) -> Result<Self, String> {
        let db = Database::create(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let state = State { db: Some(db), retry_at: Instant::now(), backoff: REOPEN_FIRST, last_error: String::new() };
        Ok(Self { path: path.to_owned(), state: Mutex::new(state) })
    }

    /// Runs `f` on the database. When `f` fails the handle is closed, so the next call works on a
    /// freshly opened file; while the backoff runs, calls fail at once with the last error.
    pub fn with<T>(&self, f: impl FnOnce(&Database) -> Result<T, String>) -> Result<T, String> {
        // A panic in `f` leaves at worst a handle that the next failure replaces: keep going.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let result = match self.database(&mut state) {
            Ok(db) => f(db),
            Err(e) => return Err(e),
        };
        match &result {
            Ok(_) => state.backoff = REOPEN_FIRST,
            Err(e) => state.failed(e),
        }
        result
    }

    fn database<'a>(&self, state: &'a mut State) -> Result<&'a Database, String> {
        if state.db.is_none() {
            if Instant::now() < state.retry_at {
                return Err(format!("{} cannot be written now: {}", self.path.display(), state.last_error));
            }
            match Database::create(&self.path) {
                Ok(db) => {
                    tracing::info!(file = %self.path.display(), "database opened again after a failed write");
                    state.db = Some(db);
                }
                Err(e) => {
                    let e = format!("cannot open {}: {e}", self.path.display());
                    state.failed(&e);
                    return Err(e);
                }
            }
        }
        state.db.as_ref().ok_or_else(|| "database not open".to_string())
    }
}

impl State {
    /// Closes the handle (dropping it releases the file) and schedules the next open.
    fn failed(&mut self, error: &str) {
        self.db = None;
        self.last_error = error.to_owned();
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(REOPEN_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{ReadableDatabase, ReadableTableMetadata, TableDefinition};

    const T: TableDefinition<&str, u32> = TableDefinition::new("t");

    fn put(db: &Database, k: &str) -> Result<(), String> {
        let txn = db.begin_write().map_err(|e| e.to_string())?;
        txn.open_table(T).map_err(|e| e.to_string())?.insert(k, 1).map_err(|e| e.to_string())?;
        txn.commit().map_err(|e| e.to_string())
    }

    #[test]
    fn a_failed_transaction_closes_the_handle_and_a_later_call_reopens_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = RedbFile::open(&dir.path().join("x.redb")).unwrap();
        file.with(|db| put(db, "a")).unwrap();
        assert_eq!(file.with(|_| Err::<(), _>("disk full".into())), Err("disk full".into()));
        // Within the backoff: refused without touching the file, naming the last error.
        let refused = file.with(|db| put(db, "b")).unwrap_err();
        assert!(refused.contains("disk full"), "{refused}");
        std::thread::sleep(REOPEN_FIRST + Duration::from_millis(20));
        file.with(|db| put(db, "b")).unwrap();
        let n = file.with(|db| {
            let read = db.begin_read().map_err(|e| e.to_string())?;
            read.open_table(T).map_err(|e| e.to_string())?.len().map_err(|e| e.to_string())
        });
        assert_eq!(n, Ok(2), "what was committed before the failure is still there");
    }
}

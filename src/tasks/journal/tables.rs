//! The journal's tables: every task's newest record in redb (`<state dir>/tasks.redb`), brought up
//! to date from the log's frames behind the creates, in one transaction per gathered run of frames.
//! They are what a restart reads; the log only has to hold what they do not have yet.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};

use super::TaskRecord;
use super::log::{Entry, Frame, remove_before};
use crate::redb_file::RedbFile;

/// Records keyed by (creation time, id): new tasks land at the right edge of the B-tree, so a batch
/// of creates rewrites a few pages instead of one random page per task (unthrottled creates with
/// the journal went from 15 % to 22 % of the machine's ceiling, docs/benchmarks.md).
pub(crate) const TASKS: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("tasks_by_created");
/// The layout before: keyed by id alone. Moved into `TASKS` when such a journal is opened.
pub(crate) const LEGACY: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");
/// Most frames one transaction takes: a writer that fell behind catches up in large steps.
const MAX_FRAMES: usize = 4096;
/// How long after a transaction the next one gathers frames (an idle journal's frame is written
/// at once). Nothing waits on the tables: a create is durable in the log.
const GATHER: Duration = Duration::from_millis(100);
/// After a failed transaction, the first and the longest wait before trying again.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(1);
/// When the journal closes, how long frames that cannot be written are still tried (they stay in
/// the log, replayed at the next start).
const CLOSE_PATIENCE: Duration = Duration::from_secs(3);

/// Creates the table if needed, moving a legacy layout into it.
pub(super) fn prepare(db: &Database) -> Result<(), String> {
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    {
        let mut table = txn.open_table(TASKS).map_err(|e| e.to_string())?;
        let moved = move_legacy_records(&txn, &mut table)?;
        if moved > 0 {
            tracing::info!(records = moved, "journal records moved to the creation-ordered layout");
        }
    }
    txn.commit().map_err(|e| e.to_string())
}

/// Every record in the table.
pub(super) fn load(db: &Database) -> Result<Vec<TaskRecord>, String> {
    let read = db.begin_read().map_err(|e| e.to_string())?;
    let table = read.open_table(TASKS).map_err(|e| e.to_string())?;
    let mut records = Vec::new();
    for row in table.iter().map_err(|e| e.to_string())? {
        let (k, v) = row.map_err(|e| e.to_string())?;
        match serde_json::from_slice::<TaskRecord>(v.value()) {
            Ok(r) => records.push(r),
            Err(e) => tracing::error!(task = k.value().1, "unreadable journal record skipped: {e}"),
        }
    }
    Ok(records)
}

/// Writes the entries of `frames` in one durable transaction. Only a task's last entry is written:
/// a record that a later one in the same run replaces never reaches the B-tree.
pub(super) fn apply(db: &Database, frames: &[Frame]) -> Result<(), String> {
    let mut last: HashMap<&str, Entry<'_>, foldhash::fast::RandomState> = HashMap::default();
    for entry in frames.iter().flat_map(Frame::entries) {
        last.insert(entry.id(), entry);
    }
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    {
        let mut table = txn.open_table(TASKS).map_err(|e| e.to_string())?;
        // Creation order: the right edge of the B-tree, as the keys are laid out.
        let mut entries: Vec<_> = last.into_values().collect();
        entries.sort_unstable_by_key(|e| match e {
            Entry::Put { id, created_ms, .. } | Entry::Remove { id, created_ms } => (*created_ms, *id),
        });
        for entry in entries {
            match entry {
                Entry::Put { id, created_ms, record } => {
                    table.insert((created_ms, id), record).map_err(|e| e.to_string())?;
                }
                Entry::Remove { id, created_ms } => {
                    table.remove((created_ms, id)).map_err(|e| e.to_string())?;
                }
            }
        }
    }
    txn.commit().map_err(|e| e.to_string())
}

/// Starts the thread that writes the log's frames into the tables and deletes the segments they
/// came from. It ends when the log writer drops its sender, answering whether every frame it was
/// given is in the tables.
pub(super) fn start_writer(
    file: RedbFile,
    log_dir: PathBuf,
    frames: mpsc::Receiver<Frame>,
) -> Result<JoinHandle<bool>, String> {
    std::thread::Builder::new()
        .name("grok2api-journal-tables".into())
        .spawn(move || write_frames(&file, &log_dir, frames))
        .map_err(|e| format!("cannot start the journal's table writer: {e}"))
}

fn write_frames(file: &RedbFile, log_dir: &std::path::Path, rx: mpsc::Receiver<Frame>) -> bool {
    let mut pending: Vec<Frame> = Vec::new();
    let mut retry: Option<Duration> = None;
    let mut closed = false;
    let mut patience: Option<Instant> = None;
    // Segments below this are deleted (a segment the writer left after a failed write included).
    let mut removed_below = 0;
    let mut last_commit = Instant::now();
    loop {
        if !closed {
            let next = match (pending.is_empty(), retry) {
                (true, _) => rx.recv().map_err(|_| true),
                (false, Some(wait)) => match rx.recv_timeout(wait) {
                    Ok(f) => Ok(f),
                    Err(mpsc::RecvTimeoutError::Timeout) => Err(false),
                    Err(mpsc::RecvTimeoutError::Disconnected) => Err(true),
                },
                (false, None) => Err(false),
            };
            match next {
                Ok(f) => pending.push(f),
                Err(true) => closed = true,
                Err(false) => {}
            }
            // Under load, frames gather for `GATHER` after the last transaction: its fixed cost
            // (page writes, free-list bookkeeping, the fsync) is paid per run, not per frame.
            let until = last_commit + GATHER;
            while !closed && pending.len() < MAX_FRAMES {
                let left = until.saturating_duration_since(Instant::now());
                let next = if left.is_zero() {
                    rx.try_recv().map_err(|e| matches!(e, mpsc::TryRecvError::Disconnected))
                } else {
                    rx.recv_timeout(left).map_err(|e| matches!(e, mpsc::RecvTimeoutError::Disconnected))
                };
                match next {
                    Ok(f) => pending.push(f),
                    Err(true) => closed = true,
                    Err(false) => break,
                }
            }
        }
        if pending.is_empty() {
            if closed {
                return true;
            }
            continue;
        }
        let applied = file.with(|db| apply(db, &pending));
        last_commit = Instant::now();
        match applied {
            Ok(()) => {
                if retry.take().is_some() {
                    tracing::warn!("task tables are written again; the log caught up");
                }
                // Every segment before the newest frame's is in the tables now, and the newest
                // frame's too when it was the last of its segment.
                let done = pending.last().map_or(0, |f| if f.seals { f.seq + 1 } else { f.seq });
                pending.clear();
                if done > removed_below {
                    remove_before(log_dir, done);
                    removed_below = done;
                }
            }
            Err(e) => {
                let wait = match retry {
                    None => {
                        tracing::error!("task tables cannot be written (the log keeps the records): {e}");
                        RETRY_FIRST
                    }
                    Some(w) => (w * 2).min(RETRY_MAX),
                };
                retry = Some(wait);
                if closed {
                    let until = *patience.get_or_insert_with(|| Instant::now() + CLOSE_PATIENCE);
                    if Instant::now() + wait > until {
                        tracing::error!(
                            frames = pending.len(),
                            "journal closed before its tables took these frames; the next start replays them"
                        );
                        return false;
                    }
                    std::thread::sleep(wait);
                }
            }
        }
    }
}

/// Moves the records of a journal keyed by id alone into `table`, and drops the old table. An
/// unreadable record keeps its bytes (under creation time 0), to be reported like any other.
fn move_legacy_records(
    txn: &redb::WriteTransaction,
    table: &mut redb::Table<(u64, &str), &[u8]>,
) -> Result<usize, String> {
    let exists = txn.list_tables().map_err(|e| e.to_string())?.any(|t| t.name() == LEGACY.name());
    if !exists {
        return Ok(0);
    }
    let mut moved = 0;
    {
        let legacy = txn.open_table(LEGACY).map_err(|e| e.to_string())?;
        for row in legacy.iter().map_err(|e| e.to_string())? {
            let (k, v) = row.map_err(|e| e.to_string())?;
            let created = serde_json::from_slice::<TaskRecord>(v.value()).map_or(0, |r| r.created_ms);
            table.insert((created, k.value()), v.value()).map_err(|e| e.to_string())?;
            moved += 1;
        }
    }
    txn.delete_table(LEGACY).map_err(|e| e.to_string())?;
    Ok(moved)
}

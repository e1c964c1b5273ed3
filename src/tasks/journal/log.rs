//! The journal's durable step: an append-only log of record writes. A batch of operations becomes
//! one frame, appended with one `write` and made durable with one `fdatasync`; a create is answered
//! once its frame is. The redb tables are brought up to date from the frames behind it (`tables`),
//! and a segment is deleted once every frame in it is in the tables.
//!
//! Files: `<state dir>/tasks-log/<seq>.log`, numbered in the order they were written. A frame:
//!
//! ```text
//! magic "g2aL" | payload length u32 LE | CRC-32 of the payload u32 LE | payload
//! payload: entries, each  1 u8 | created_ms u64 | id length u16 | id | record length u32 | record   (a put)
//!                     or  2 u8 | created_ms u64 | id length u16 | id                                 (a remove)
//! ```
//!
//! A crash may leave the last frame torn (a partial write, or bytes the disk never got): its
//! checksum does not match, and reading stops there. Such a frame was never acknowledged (its
//! `fdatasync` had not returned), so dropping it loses nothing a client was told.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use super::Op;

const MAGIC: &[u8; 4] = b"g2aL";
const HEADER: usize = 12;
const PUT: u8 = 1;
const REMOVE: u8 = 2;
/// A segment this large is closed and the next one started, so applied frames can be deleted
/// while a write storm goes on.
pub(super) const SEGMENT_BYTES: u64 = 8 << 20;

/// One record write, read back from a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Entry<'a> {
    Put { id: &'a str, created_ms: u64, record: &'a [u8] },
    Remove { id: &'a str, created_ms: u64 },
}

impl<'a> Entry<'a> {
    pub(super) fn id(&self) -> &'a str {
        match self {
            Entry::Put { id, .. } | Entry::Remove { id, .. } => id,
        }
    }
}

/// A frame that is durable in segment `seq`, on its way to the tables.
pub(super) struct Frame {
    pub seq: u64,
    /// The whole frame, header included.
    pub bytes: Vec<u8>,
    /// The last frame of its segment: once it is in the tables, so is the whole segment.
    pub seals: bool,
}

impl Frame {
    pub(super) fn entries(&self) -> Entries<'_> {
        Entries { rest: self.bytes.get(HEADER..).unwrap_or_default() }
    }
}

/// Appends the record operations of `ops` to `buf` as one frame; false when there are none.
fn encode(ops: &[Op], buf: &mut Vec<u8>) -> bool {
    buf.clear();
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&[0; 8]);
    let mut any = false;
    for op in ops {
        let (tag, id, created_ms, record) = match op {
            Op::Put(id, record, meta, _) => (PUT, id, meta.created_ms, Some(record)),
            Op::Remove(id, created_ms) => (REMOVE, id, *created_ms, None),
            Op::Synced(_) => continue,
        };
        any = true;
        buf.push(tag);
        buf.extend_from_slice(&created_ms.to_le_bytes());
        // Task ids are short (`task_` + 32 hex); the length field bounds them anyway.
        let id = &id.as_bytes()[..id.len().min(u16::MAX as usize)];
        buf.extend_from_slice(&(id.len() as u16).to_le_bytes());
        buf.extend_from_slice(id);
        if let Some(record) = record {
            buf.extend_from_slice(&(record.len() as u32).to_le_bytes());
            buf.extend_from_slice(record);
        }
    }
    let len = (buf.len() - HEADER) as u32;
    let crc = crc32fast::hash(&buf[HEADER..]);
    buf[4..8].copy_from_slice(&len.to_le_bytes());
    buf[8..12].copy_from_slice(&crc.to_le_bytes());
    any
}

/// The entries of a frame's payload. A payload that passed its checksum but does not parse (a bug,
/// not a crash) ends the iteration; `Frames` has logged it.
pub(super) struct Entries<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Entries<'a> {
    type Item = Entry<'a>;

    fn next(&mut self) -> Option<Entry<'a>> {
        let (entry, rest) = parse_entry(self.rest)?;
        self.rest = rest;
        Some(entry)
    }
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (head, rest) = (b.get(..n)?, b.get(n..)?);
    *b = rest;
    Some(head)
}

fn parse_entry(mut b: &[u8]) -> Option<(Entry<'_>, &[u8])> {
    let tag = *take(&mut b, 1)?.first()?;
    let created_ms = u64::from_le_bytes(take(&mut b, 8)?.try_into().ok()?);
    let id_len = u16::from_le_bytes(take(&mut b, 2)?.try_into().ok()?) as usize;
    let id = std::str::from_utf8(take(&mut b, id_len)?).ok()?;
    let entry = match tag {
        PUT => {
            let len = u32::from_le_bytes(take(&mut b, 4)?.try_into().ok()?) as usize;
            Entry::Put { id, created_ms, record: take(&mut b, len)? }
        }
        REMOVE => Entry::Remove { id, created_ms },
        _ => return None,
    };
    Some((entry, b))
}

/// Whether `payload` is a whole number of well-formed entries.
fn well_formed(mut payload: &[u8]) -> bool {
    while !payload.is_empty() {
        match parse_entry(payload) {
            Some((_, rest)) => payload = rest,
            None => return false,
        }
    }
    true
}

/// Splits a segment's bytes into its frames: the whole ones, and the offset where reading stopped
/// (the segment's length when nothing was torn).
pub(super) fn frames(bytes: &[u8]) -> (Vec<std::ops::Range<usize>>, usize) {
    let mut at = 0;
    let mut whole = Vec::new();
    while let Some(header) = bytes.get(at..at + HEADER) {
        if &header[..4] != MAGIC {
            break;
        }
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let crc = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else { break };
        if crc32fast::hash(payload) != crc {
            break;
        }
        if !well_formed(payload) {
            tracing::error!(offset = at, "a task log frame passed its checksum but does not parse; skipped");
        } else {
            whole.push(at..at + HEADER + len);
        }
        at += HEADER + len;
    }
    (whole, at)
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.log"))
}

/// The segments in `dir`, oldest first.
fn segments(dir: &Path) -> Result<Vec<u64>, String> {
    let mut seqs = Vec::new();
    let read = std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    for entry in read {
        let name = entry.map_err(|e| e.to_string())?.file_name();
        if let Some(seq) = name.to_str().and_then(|n| n.strip_suffix(".log")).and_then(|n| n.parse().ok()) {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// What a log left behind by the last run holds.
pub(super) struct Recovered {
    /// Every whole frame, oldest first.
    pub frames: Vec<Frame>,
    /// Bytes after the last whole frame of each segment (a torn write), in all.
    pub torn_bytes: usize,
    /// The segments read; `remove_through` deletes them once their frames are in the tables.
    pub last_seq: Option<u64>,
}

/// Reads every segment in `dir` (creating `dir` if needed).
pub(super) fn recover(dir: &Path) -> Result<Recovered, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let seqs = segments(dir)?;
    let mut out = Recovered { frames: Vec::new(), torn_bytes: 0, last_seq: seqs.last().copied() };
    for seq in seqs {
        let path = segment_path(dir, seq);
        let mut bytes = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let (whole, end) = frames(&bytes);
        out.torn_bytes += bytes.len() - end;
        out.frames.extend(whole.into_iter().map(|r| Frame { seq, bytes: bytes[r].to_vec(), seals: false }));
    }
    Ok(out)
}

/// Deletes the segments numbered below `seq`: every frame in them is in the tables.
pub(super) fn remove_before(dir: &Path, seq: u64) {
    match segments(dir) {
        Ok(seqs) => {
            for old in seqs.into_iter().take_while(|s| *s < seq) {
                if let Err(e) = std::fs::remove_file(segment_path(dir, old)) {
                    tracing::warn!(segment = old, "cannot delete an applied task log segment: {e}");
                }
            }
        }
        Err(e) => tracing::warn!("cannot list the task log: {e}"),
    }
}

/// Makes a new directory entry durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The writer's end of the log: appends frames to the newest segment and hands each durable frame
/// to the tables.
pub(super) struct LogWriter {
    dir: PathBuf,
    seq: u64,
    file: Option<File>,
    /// Bytes of whole, durable frames in the current segment.
    len: u64,
    /// A failed write may have left part of a frame (or a frame whose sync failed) after `len`.
    dirty: bool,
    buf: Vec<u8>,
    applied: mpsc::Sender<Frame>,
}

impl LogWriter {
    /// Starts segment `seq` in `dir`.
    pub(super) fn create(dir: &Path, seq: u64, applied: mpsc::Sender<Frame>) -> Result<Self, String> {
        let mut w = Self { dir: dir.to_owned(), seq, file: None, len: 0, dirty: false, buf: Vec::new(), applied };
        w.open_segment()?;
        Ok(w)
    }

    fn open_segment(&mut self) -> Result<(), String> {
        let path = segment_path(&self.dir, self.seq);
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .and_then(|f| sync_dir(&self.dir).map(|()| f))
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        self.file = Some(file);
        self.len = 0;
        self.dirty = false;
        Ok(())
    }

    /// Writes the record operations of `ops` as one frame and syncs it. An empty batch writes
    /// nothing, but after a failure it is the probe of whether the disk takes writes again.
    pub(super) fn append(&mut self, ops: &[Op]) -> Result<(), String> {
        self.mend()?;
        let mut buf = std::mem::take(&mut self.buf);
        if !encode(ops, &mut buf) {
            self.buf = buf;
            return Ok(());
        }
        let Some(file) = self.file.as_mut() else { return Err("task log not open".into()) };
        self.dirty = true;
        file.write_all(&buf).and_then(|()| file.sync_data()).map_err(|e| format!("task log: {e}"))?;
        self.dirty = false;
        self.len += buf.len() as u64;
        let frame_len = buf.len();
        // The tables take the frame itself; the next frame gets a buffer of about the same size.
        self.buf = Vec::with_capacity(frame_len);
        let seals = self.len >= SEGMENT_BYTES;
        if self.applied.send(Frame { seq: self.seq, bytes: buf, seals }).is_err() {
            tracing::error!("task log: the table writer stopped; frames stay in the log until a restart");
        }
        if seals {
            self.seq += 1;
            if let Err(e) = self.open_segment() {
                // The frame is durable; the next append tries again.
                self.file = None;
                tracing::warn!("task log: cannot start the next segment: {e}");
            }
        }
        Ok(())
    }

    /// After a failed write: cut what it left after the last whole frame (a frame whose sync
    /// failed must not come back at a restart: its create was refused). When the segment cannot be
    /// cut, or is not open, the next segment is started instead.
    fn mend(&mut self) -> Result<(), String> {
        if !self.dirty && self.file.is_some() {
            return Ok(());
        }
        let len = self.len;
        let cut = self.file.as_mut().map(|f| f.set_len(len).and_then(|()| f.sync_data()));
        match cut {
            Some(Ok(())) => {
                self.dirty = false;
                Ok(())
            }
            _ => {
                self.file = None;
                self.seq += 1;
                self.open_segment()
            }
        }
    }

    /// Stops the tables' writer (it writes what it has first) and, when it wrote every frame,
    /// deletes the log: the next start has nothing to replay.
    pub(super) fn finish(self, tables: Option<std::thread::JoinHandle<bool>>) {
        let Self { dir, file, applied, .. } = self;
        drop(applied);
        drop(file);
        let all_applied = match tables.map(|t| t.join()) {
            Some(Ok(done)) => done,
            Some(Err(_)) => {
                tracing::error!("the task table writer panicked; the log is replayed at the next start");
                false
            }
            None => true,
        };
        if all_applied {
            remove_before(&dir, u64::MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::journal::PutMeta;

    fn put(id: &str, record: &str) -> Op {
        let meta = PutMeta { owner: "k".into(), created_ms: 7, terminal: false, owed: false, pending: true };
        Op::Put(id.into(), record.as_bytes().to_vec(), meta, None)
    }

    #[test]
    fn a_frame_reads_back_as_its_entries() {
        let mut buf = Vec::new();
        assert!(encode(&[put("a", "{1}"), Op::Remove("b".into(), 9), put("c", "")], &mut buf));
        let (whole, end) = frames(&buf);
        assert_eq!((whole.len(), end), (1, buf.len()));
        let frame = Frame { seq: 1, bytes: buf.clone(), seals: false };
        assert_eq!(
            frame.entries().collect::<Vec<_>>(),
            [
                Entry::Put { id: "a", created_ms: 7, record: b"{1}" },
                Entry::Remove { id: "b", created_ms: 9 },
                Entry::Put { id: "c", created_ms: 7, record: b"" },
            ]
        );
        let (tx, _rx) = oneshot_pair();
        assert!(!encode(&[Op::Synced(tx)], &mut buf), "a batch of no records is no frame");
    }

    fn oneshot_pair() -> (tokio::sync::oneshot::Sender<()>, tokio::sync::oneshot::Receiver<()>) {
        tokio::sync::oneshot::channel()
    }

    #[test]
    fn reading_stops_at_a_torn_or_corrupt_frame() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        encode(&[put("a", "first")], &mut a);
        encode(&[put("b", "second")], &mut b);
        let log = [a.clone(), b.clone()].concat();
        for cut in a.len()..log.len() {
            let (whole, end) = frames(&log[..cut]);
            assert_eq!((whole.len(), end), (1, a.len()), "cut at {cut}");
        }
        let mut flipped = log.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(frames(&flipped).0.len(), 1, "a flipped bit fails the checksum");
        let zeros = [log.clone(), vec![0; 64]].concat();
        assert_eq!(frames(&zeros), (vec![0..a.len(), a.len()..log.len()], log.len()), "zeros are no frame");
    }
}

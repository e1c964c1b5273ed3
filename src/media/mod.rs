//! The media store: upstream results are kept on local disk under random names and served from
//! `/v1/files/{image|video}/{name}`, so links never point at an upstream host that needs cookies.
//! A byte cap with least-recently-used eviction bounds the disk it takes, and a full disk evicts the
//! same way (the disk may be smaller than the cap, or shared). With `[media.s3]` every file
//! is also put into shared object storage, and a file this replica does not hold is fetched from there
//! into the local dir (which then acts as a cache) before it is served.

pub mod fingerprint;
pub mod kind;
pub mod mp4;
pub mod s3;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;

pub use self::kind::MediaKind;
use self::kind::{content_type_for, extension_for};

/// Where a stored image came from upstream: which account made it and the upstream's id for it, so
/// a later request that feeds it back (image-to-video, edits) can name it instead of uploading it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamOrigin {
    /// A fingerprint of the account (never the credential itself).
    pub account: String,
    pub asset_id: String,
}

/// A file the store holds; `bytes` is the content as written (handy for `b64_json`).
#[derive(Debug, Clone)]
pub struct StoredMedia {
    pub kind: MediaKind,
    pub name: String,
    pub content_type: &'static str,
    pub bytes: Bytes,
}

impl StoredMedia {
    pub fn path(&self) -> String {
        format!("/v1/files/{}/{}", self.kind.as_str(), self.name)
    }
}

/// What the file endpoint needs to serve one entry.
#[derive(Debug, Clone)]
pub struct MediaFile {
    pub path: PathBuf,
    pub size: u64,
    pub content_type: &'static str,
    pub etag: String,
}

struct Entry {
    size: u64,
    tick: u64,
    /// Kept in memory only: after a restart an input is uploaded again, which is slower, not wrong.
    origin: Option<UpstreamOrigin>,
}

#[derive(Default)]
struct Index {
    entries: HashMap<(MediaKind, String), Entry>,
    /// Access order: tick → key. The smallest tick is the least recently used.
    lru: BTreeMap<u64, (MediaKind, String)>,
    total: u64,
    clock: u64,
}

impl Index {
    fn touch(&mut self, key: &(MediaKind, String)) -> Option<u64> {
        self.clock += 1;
        let clock = self.clock;
        let entry = self.entries.get_mut(key)?;
        self.lru.remove(&entry.tick);
        entry.tick = clock;
        self.lru.insert(clock, key.clone());
        Some(entry.size)
    }

    fn insert(&mut self, key: (MediaKind, String), size: u64, origin: Option<UpstreamOrigin>) {
        self.clock += 1;
        self.lru.insert(self.clock, key.clone());
        self.total += size;
        self.entries.insert(key, Entry { size, tick: self.clock, origin });
    }

    /// Pop least recently used entries until `total <= cap`, never the one named `keep`.
    fn evict(&mut self, cap: u64, keep: &(MediaKind, String)) -> Vec<(MediaKind, String)> {
        let mut evicted = Vec::new();
        while self.total > cap {
            let Some((&tick, key)) = self.lru.iter().find(|(_, k)| *k != keep) else { break };
            let key = key.clone();
            self.lru.remove(&tick);
            if let Some(e) = self.entries.remove(&key) {
                self.total -= e.size;
            }
            evicted.push(key);
        }
        evicted
    }
}

pub struct MediaStore {
    dir: PathBuf,
    max_bytes: u64,
    index: Mutex<Index>,
    remote: Option<s3::RemoteMedia>,
}

impl MediaStore {
    /// Opens (creating if needed) the store and re-indexes files a previous run left, so links survive restarts.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Self> {
        let mut index = Index::default();
        for kind in [MediaKind::Image, MediaKind::Video] {
            let sub = dir.join(kind.as_str());
            std::fs::create_dir_all(&sub)?;
            let mut found = Vec::new();
            for entry in std::fs::read_dir(&sub)? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(PART) {
                    // A write a crash cut short: nothing links to it.
                    let _ = std::fs::remove_file(entry.path());
                    continue;
                }
                let meta = entry.metadata()?;
                if !meta.is_file() || !is_valid_name(&name) {
                    continue;
                }
                let mtime = meta.modified().ok();
                found.push((mtime, name, meta.len()));
            }
            found.sort();
            for (_, name, size) in found {
                index.insert((kind, name), size, None);
            }
        }
        let store = Self { dir: dir.to_owned(), max_bytes, index: Mutex::new(index), remote: None };
        Ok(store)
    }

    /// Shares every file through object storage (`[media.s3]`).
    pub fn with_remote(mut self, remote: s3::RemoteMedia) -> Self {
        self.remote = Some(remote);
        self
    }

    pub fn remote(&self) -> Option<&s3::RemoteMedia> {
        self.remote.as_ref()
    }

    fn file_path(&self, kind: MediaKind, name: &str) -> PathBuf {
        self.dir.join(kind.as_str()).join(name)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        // A panic while holding the lock cannot leave the index inconsistent in a way worse than a
        // missing entry, so keep serving rather than propagate the poison.
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub async fn put(
        &self,
        kind: MediaKind,
        bytes: Bytes,
        content_type: &'static str,
        origin: Option<UpstreamOrigin>,
    ) -> io::Result<StoredMedia> {
        let name = format!("{}.{}", uuid::Uuid::new_v4().simple(), extension_for(content_type));
        // Shared first: a link handed out must work on every replica.
        if let Some(remote) = &self.remote {
            remote.put(kind, &name, bytes.clone(), content_type).await.map_err(io::Error::other)?;
        }
        self.keep_local(kind, &name, &bytes, origin).await?;
        Ok(StoredMedia { kind, name, content_type, bytes })
    }

    /// Writes a file into the local dir and the index, evicting what the byte cap says.
    async fn keep_local(
        &self,
        kind: MediaKind,
        name: &str,
        bytes: &Bytes,
        origin: Option<UpstreamOrigin>,
    ) -> io::Result<()> {
        let key = (kind, name.to_owned());
        self.write_making_room(&self.file_path(kind, name), bytes, &key).await?;
        let evicted = {
            let mut index = self.lock();
            if index.entries.contains_key(&key) {
                // Two requests fetched the same file at once: one entry, one size.
                index.touch(&key);
                Vec::new()
            } else {
                index.insert(key.clone(), bytes.len() as u64, origin);
                index.evict(self.max_bytes, &key)
            }
        };
        self.remove_files(evicted).await;
        Ok(())
    }

    /// Writes `bytes` to `path`. A full disk is not only `max_bytes`: the disk may be smaller, or
    /// shared with the journal and others. Then the least recently used files (never `keep`) make
    /// room for this one and as much again (so the journal beside it can write too), and the write
    /// is tried again, until nothing is left to evict.
    async fn write_making_room(&self, path: &Path, bytes: &Bytes, keep: &(MediaKind, String)) -> io::Result<()> {
        loop {
            match write_whole(path, bytes).await {
                Err(e) if is_disk_full(&e) => {
                    let freed = self.make_room(2 * bytes.len() as u64, keep).await;
                    if freed == 0 {
                        return Err(e);
                    }
                    tracing::warn!(freed, "media disk full: least recently used files evicted to make room");
                }
                result => return result,
            }
        }
    }

    /// Evicts least recently used files (never `keep`) until `want` bytes are freed or none is
    /// left; returns the bytes freed.
    async fn make_room(&self, want: u64, keep: &(MediaKind, String)) -> u64 {
        let (evicted, freed) = {
            let mut index = self.lock();
            let before = index.total;
            let evicted = index.evict(before.saturating_sub(want), keep);
            (evicted, before - index.total)
        };
        self.remove_files(evicted).await;
        freed
    }

    async fn remove_files(&self, keys: Vec<(MediaKind, String)>) {
        for (k, n) in keys {
            if let Err(e) = tokio::fs::remove_file(self.file_path(k, &n)).await {
                tracing::warn!(file = %n, "cannot remove evicted media: {e}");
            }
        }
    }

    /// `get`, or with object storage, the shared copy brought into the local dir first (another
    /// replica made it, or this one evicted it). `Err` only when the object store failed.
    pub async fn fetch(&self, kind: MediaKind, name: &str) -> Result<Option<MediaFile>, String> {
        if let Some(file) = self.get(kind, name) {
            return Ok(Some(file));
        }
        let Some(remote) = self.remote.as_ref().filter(|_| is_valid_name(name)) else { return Ok(None) };
        let Some(bytes) = remote.get(kind, name).await? else { return Ok(None) };
        self.keep_local(kind, name, &bytes, None).await.map_err(|e| format!("cannot keep {name} locally: {e}"))?;
        Ok(self.get(kind, name))
    }

    /// Looks a file up and marks it recently used.
    pub fn get(&self, kind: MediaKind, name: &str) -> Option<MediaFile> {
        if !is_valid_name(name) {
            return None;
        }
        let size = self.lock().touch(&(kind, name.to_owned()))?;
        Some(MediaFile {
            path: self.file_path(kind, name),
            size,
            content_type: content_type_for(name),
            // Names are random and content never changes under a name, so the name is a strong validator.
            etag: format!("\"{}\"", name.split('.').next().unwrap_or(name)),
        })
    }

    /// Where the upstream keeps a file this store holds (its account and id there), when it said: kept
    /// in memory, so a restart forgets it.
    pub fn origin_of(&self, kind: MediaKind, name: &str) -> Option<UpstreamOrigin> {
        self.lock().entries.get(&(kind, name.to_owned()))?.origin.clone()
    }

    /// An image this store serves, read back as an input for another job, with its upstream origin.
    pub async fn read_image(&self, name: &str) -> Option<(Bytes, &'static str, Option<UpstreamOrigin>)> {
        if !is_valid_name(name) {
            return None;
        }
        let key = (MediaKind::Image, name.to_owned());
        if self.lock().touch(&key).is_none() {
            self.fetch(MediaKind::Image, name).await.ok()??;
        }
        let origin = self.lock().entries.get(&key)?.origin.clone();
        let bytes = tokio::fs::read(self.file_path(MediaKind::Image, name)).await.ok()?;
        Some((Bytes::from(bytes), content_type_for(name), origin))
    }

    pub fn total_bytes(&self) -> u64 {
        self.lock().total
    }
}

/// Writes through a temporary file, so a reader never sees half a file; a failed write leaves
/// nothing behind (a partial file on a full disk would hold the space it needs).
async fn write_whole(path: &Path, bytes: &Bytes) -> io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!("{name}.{}{PART}", uuid::Uuid::new_v4().simple()));
    let result = match tokio::fs::write(&tmp, bytes).await {
        Ok(()) => tokio::fs::rename(&tmp, path).await,
        Err(e) => Err(e),
    };
    if result.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    result
}

/// The suffix of a file being written.
const PART: &str = ".part";

fn is_disk_full(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
}

/// 32 lowercase hex chars, a dot, a short extension: anything else (`..`, slashes) is not ours.
fn is_valid_name(name: &str) -> bool {
    let Some((stem, ext)) = name.split_once('.') else { return false };
    stem.len() == 32
        && stem.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        && (1..=4).contains(&ext.len())
        && ext.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A single byte range resolved against a file length.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeRequest {
    Full,
    Partial { start: u64, end: u64 },
    Unsatisfiable,
}

/// Parses a `Range` header (one range; several ranges fall back to the whole file, as RFC 9110 allows).
pub fn parse_range(header: Option<&str>, len: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else { return RangeRequest::Full };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((a, b)) = spec.split_once('-') else { return RangeRequest::Full };
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        // Suffix range: the last N bytes.
        let Ok(n) = b.parse::<u64>() else { return RangeRequest::Full };
        if n == 0 || len == 0 {
            return RangeRequest::Unsatisfiable;
        }
        (len.saturating_sub(n), len - 1)
    } else {
        let Ok(start) = a.parse::<u64>() else { return RangeRequest::Full };
        let end = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            match b.parse::<u64>() {
                Ok(e) if e >= start => e.min(len.saturating_sub(1)),
                _ => return RangeRequest::Full,
            }
        };
        (start, end)
    };
    if start >= len {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Partial { start, end }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 100), RangeRequest::Full);
        assert_eq!(parse_range(Some("bytes=0-9"), 100), RangeRequest::Partial { start: 0, end: 9 });
        assert_eq!(parse_range(Some("bytes=90-"), 100), RangeRequest::Partial { start: 90, end: 99 });
        assert_eq!(parse_range(Some("bytes=-10"), 100), RangeRequest::Partial { start: 90, end: 99 });
        assert_eq!(parse_range(Some("bytes=50-1000"), 100), RangeRequest::Partial { start: 50, end: 99 });
        assert_eq!(parse_range(Some("bytes=100-"), 100), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=9-3"), 100), RangeRequest::Full);
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), RangeRequest::Full);
        assert_eq!(parse_range(Some("items=0-1"), 100), RangeRequest::Full);
    }

    #[test]
    fn names_are_checked() {
        assert!(is_valid_name("0123456789abcdef0123456789abcdef.png"));
        assert!(!is_valid_name("../../etc/passwd"));
        assert!(!is_valid_name("0123456789ABCDEF0123456789abcdef.png"));
        assert!(!is_valid_name("0123456789abcdef0123456789abcdef.png/x"));
    }

    #[tokio::test]
    async fn evicts_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let store = MediaStore::open(dir.path(), 25).unwrap();
        let a = store.put(MediaKind::Image, Bytes::from(vec![1; 10]), "image/png", None).await.unwrap();
        let b = store.put(MediaKind::Image, Bytes::from(vec![2; 10]), "image/png", None).await.unwrap();
        assert!(store.get(MediaKind::Image, &a.name).is_some()); // a is now more recent than b
        let c = store.put(MediaKind::Image, Bytes::from(vec![3; 10]), "image/png", None).await.unwrap();
        assert!(store.get(MediaKind::Image, &b.name).is_none());
        assert!(!dir.path().join("image").join(&b.name).exists());
        assert!(store.get(MediaKind::Image, &a.name).is_some());
        assert!(store.get(MediaKind::Image, &c.name).is_some());
        assert_eq!(store.total_bytes(), 20);
        drop(store);
        let reopened = MediaStore::open(dir.path(), 25).unwrap();
        assert_eq!(reopened.total_bytes(), 20);
        assert!(reopened.get(MediaKind::Image, &c.name).is_some());
    }

    #[tokio::test]
    async fn making_room_evicts_by_recency_but_never_the_file_being_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = MediaStore::open(dir.path(), u64::MAX).unwrap();
        let mut names = Vec::new();
        for i in 0..4 {
            names.push(store.put(MediaKind::Image, Bytes::from(vec![i; 10]), "image/png", None).await.unwrap().name);
        }
        store.get(MediaKind::Image, &names[0]); // the oldest is now the most recent
        let keep = (MediaKind::Image, names[1].clone());
        assert_eq!(store.make_room(15, &keep).await, 20, "whole files, least recent first, until enough is freed");
        let present = |n: &String| dir.path().join("image").join(n).exists();
        assert_eq!(names.iter().map(present).collect::<Vec<_>>(), [true, true, false, false]);
        assert_eq!(store.make_room(100, &keep).await, 10, "only `keep` is left");
        assert!(present(&names[1]) && store.get(MediaKind::Image, &names[1]).is_some());
        assert_eq!(store.make_room(100, &keep).await, 0);
    }

    #[test]
    fn a_write_cut_short_is_cleaned_up_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("image");
        std::fs::create_dir_all(&image).unwrap();
        let part = image.join(format!("0123456789abcdef0123456789abcdef.png.{}{PART}", "f".repeat(32)));
        std::fs::write(&part, b"half").unwrap();
        let store = MediaStore::open(dir.path(), 100).unwrap();
        assert!(!part.exists());
        assert_eq!(store.total_bytes(), 0);
    }
}

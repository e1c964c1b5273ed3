//! Per-key usage per UTC day: requests, images and video seconds delivered, errors, and 429s. Counted
//! in memory on the request path (one map lookup and an atomic add), written to the state dir by a
//! flush every few seconds and at shutdown, so a restart keeps the history.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::HotMap;
use crate::owner::KeyId;
/// One row as stored and as the admin API shows it: the shared store's row type, since the rows of
/// every replica are summed there.
pub use crate::shared::Totals;
use crate::state_db::{StateDb, USAGE};

/// Indexes into `Counters::counts` (the order of `Totals::NAMES`).
const REQUESTS: usize = 0;
const IMAGES: usize = 1;
const VIDEO_SECONDS: usize = 2;
const ERRORS: usize = 3;
const RATE_LIMITED: usize = 4;

#[derive(Default)]
struct Counters {
    /// In the order of `Totals::NAMES`.
    counts: [AtomicU64; 5],
    /// Changed since the last flush.
    dirty: AtomicBool,
}

impl Counters {
    fn of(t: &Totals) -> Self {
        Self { counts: t.values().map(AtomicU64::new), dirty: false.into() }
    }

    fn totals(&self) -> Totals {
        Totals::from_values(std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed)))
    }

    fn add(&self, field: usize, n: u64) {
        self.counts[field].fetch_add(n, Ordering::Relaxed);
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Takes away what was written elsewhere (counts that arrived meanwhile stay).
    fn sub(&self, t: &Totals) {
        for (c, n) in self.counts.iter().zip(t.values()) {
            c.fetch_sub(n, Ordering::Relaxed);
        }
    }
}

pub struct UsageBook {
    rows: HotMap<(u32, KeyId), Arc<Counters>>,
    db: Option<Arc<StateDb>>,
    /// With several replicas the totals live in Redis; `rows` then holds what is not flushed yet.
    shared: Option<Arc<crate::shared::SharedStore>>,
}

impl UsageBook {
    /// Loads the history kept in `db` (none: counts live in memory only). With `shared`, the history
    /// is the shared store's, and `db` is not used.
    pub fn open(db: Option<Arc<StateDb>>, shared: Option<Arc<crate::shared::SharedStore>>) -> Result<Self, String> {
        let rows = HotMap::default();
        let db = if shared.is_some() { None } else { db };
        if let Some(db) = &db {
            for (k, v) in db.all(USAGE)? {
                let Some((day, key)) = k.split_once('|').and_then(|(d, key)| Some((parse_day(d)?, key))) else {
                    tracing::warn!(row = %k, "usage row with an unreadable key skipped");
                    continue;
                };
                let t: Totals = serde_json::from_str(&v).map_err(|e| format!("usage row {k}: {e}"))?;
                let c = Counters::of(&t);
                rows.insert((day, KeyId(Arc::from(key))), Arc::new(c));
            }
        }
        Ok(Self { rows, db, shared })
    }

    fn today(&self, key: &KeyId) -> Arc<Counters> {
        let day = today();
        // Lookups clone only the key's Arc; the row is made once a day per key.
        match self.rows.get(&(day, key.clone())) {
            Some(c) => c.clone(),
            None => self.rows.entry((day, key.clone())).or_default().clone(),
        }
    }

    /// One answered request: 429s and errors (any other 4xx/5xx) are counted apart as well.
    pub fn response(&self, key: &KeyId, status: u16) {
        let c = self.today(key);
        c.add(REQUESTS, 1);
        match status {
            429 => c.add(RATE_LIMITED, 1),
            400.. => c.add(ERRORS, 1),
            _ => {}
        }
    }

    /// Media handed to the caller (sync answer or finished task).
    pub fn delivered(&self, key: &KeyId, images: u64, video_seconds: u64) {
        let c = self.today(key);
        if images > 0 {
            c.add(IMAGES, images);
        }
        if video_seconds > 0 {
            c.add(VIDEO_SECONDS, video_seconds);
        }
    }

    /// A task accepted with 202 that failed later: the caller saw an error all the same.
    pub fn task_failed(&self, key: &KeyId) {
        let c = self.today(key);
        c.add(ERRORS, 1);
    }

    /// Rows for `key` (all keys when `None`) between two days, inclusive; newest day first.
    pub fn rows(&self, key: Option<&str>, from: Option<u32>, to: Option<u32>) -> Vec<(u32, KeyId, Totals)> {
        let mut out: Vec<_> = self
            .rows
            .iter()
            .filter(|e| {
                let (day, k) = e.key();
                key.is_none_or(|want| &*k.0 == want) && from.is_none_or(|f| *day >= f) && to.is_none_or(|t| *day <= t)
            })
            .map(|e| (e.key().0, e.key().1.clone(), e.value().totals()))
            .collect();
        out.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.0.cmp(&b.1.0)));
        out
    }

    /// Writes what changed since the last flush: into the shared store (as increments, so every
    /// replica's counts add up), or into the state dir (off the async workers).
    pub async fn flush_now(self: &Arc<Self>) -> Result<usize, String> {
        let Some(shared) = &self.shared else {
            let book = self.clone();
            return tokio::task::spawn_blocking(move || book.flush()).await.map_err(|e| e.to_string())?;
        };
        let mut sent = Vec::new();
        for e in self.rows.iter() {
            if e.value().dirty.swap(false, Ordering::Relaxed) {
                let (day, key) = e.key();
                sent.push(((*day, key.clone()), e.value().clone(), e.value().totals()));
            }
        }
        let rows: Vec<(String, Totals)> =
            sent.iter().map(|((day, key), _, t)| (format!("{}|{}", format_day(*day), key.0), t.clone())).collect();
        match shared.usage_add(&rows).await {
            Ok(()) => {
                // Counts that arrived meanwhile stay for the next flush.
                for (_, c, t) in &sent {
                    c.sub(t);
                }
                Ok(sent.len())
            }
            Err(e) => {
                sent.iter().for_each(|(_, c, _)| c.dirty.store(true, Ordering::Relaxed));
                Err(e)
            }
        }
    }

    /// `rows`, with several replicas from the shared store (plus what this one has not flushed yet).
    pub async fn rows_now(
        &self,
        key: Option<&str>,
        from: Option<u32>,
        to: Option<u32>,
    ) -> Result<Vec<(u32, KeyId, Totals)>, String> {
        let Some(shared) = &self.shared else { return Ok(self.rows(key, from, to)) };
        let mut merged: std::collections::BTreeMap<(u32, String), Totals> = std::collections::BTreeMap::new();
        for (row, t) in shared.usage_rows().await? {
            if let Some((day, k)) = row.split_once('|').and_then(|(d, k)| Some((parse_day(d)?, k))) {
                merged.insert((day, k.to_owned()), t);
            }
        }
        for (day, k, t) in self.rows(None, None, None) {
            merged.entry((day, k.0.to_string())).or_default().add(&t);
        }
        let mut out: Vec<_> = merged
            .into_iter()
            .filter(|((day, k), _)| {
                key.is_none_or(|want| k == want) && from.is_none_or(|f| *day >= f) && to.is_none_or(|t| *day <= t)
            })
            .map(|((day, k), t)| (day, KeyId(Arc::from(k.as_str())), t))
            .collect();
        out.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.0.cmp(&b.1.0)));
        Ok(out)
    }

    /// Writes the rows that changed since the last flush (blocking: call off the async workers).
    pub fn flush(&self) -> Result<usize, String> {
        let Some(db) = &self.db else { return Ok(0) };
        let mut changed = Vec::new();
        for e in self.rows.iter() {
            if e.value().dirty.swap(false, Ordering::Relaxed) {
                let (day, key) = e.key();
                let json = serde_json::to_string(&e.value().totals()).map_err(|e| e.to_string())?;
                changed.push((format!("{}|{}", format_day(*day), key.0), json));
            }
        }
        let n = changed.len();
        if let Err(e) = db.put(USAGE, &changed) {
            // Put the marks back so the next flush tries again.
            for (k, _) in &changed {
                if let Some((d, key)) = k.split_once('|').and_then(|(d, key)| Some((parse_day(d)?, key)))
                    && let Some(c) = self.rows.get(&(d, KeyId(Arc::from(key))))
                {
                    c.dirty.store(true, Ordering::Relaxed);
                }
            }
            return Err(e);
        }
        Ok(n)
    }
}

/// Days since 1970-01-01 (UTC).
pub fn today() -> u32 {
    (crate::clock::now_ms() / 86_400_000) as u32
}

/// `YYYY-MM-DD` of a day number (proleptic Gregorian; Howard Hinnant's civil_from_days).
pub fn format_day(day: u32) -> String {
    let z = day as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The day number of `YYYY-MM-DD`, if it is a real date on or after 1970-01-01.
pub fn parse_day(s: &str) -> Option<u32> {
    let mut parts = s.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.parse().ok()?;
    if s.len() != 10 || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let day = era * 146_097 + doe - 719_468;
    // 2026-02-31 would land in March: only dates that round-trip are real.
    let day = u32::try_from(day).ok()?;
    (format_day(day) == s).then_some(day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip_and_reject_impossible_dates() {
        assert_eq!(format_day(0), "1970-01-01");
        assert_eq!(parse_day("2026-11-27"), Some(20_784));
        assert_eq!(format_day(20_784), "2026-11-27");
        assert_eq!(parse_day("2024-02-29").map(format_day).as_deref(), Some("2024-02-29"));
        for bad in ["2026-02-29", "2026-13-01", "2026-1-01", "1969-12-31", "x", "2026-11-27x"] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
        for day in (0..40_000).step_by(37) {
            assert_eq!(parse_day(&format_day(day)), Some(day));
        }
    }

    #[test]
    fn counts_by_key_and_day_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let k = KeyId(Arc::from("k_1"));
        {
            let db = Arc::new(StateDb::open(dir.path()).unwrap());
            let book = UsageBook::open(Some(db), None).unwrap();
            book.response(&k, 200);
            book.response(&k, 429);
            book.response(&k, 502);
            book.delivered(&k, 2, 6);
            book.task_failed(&k);
            assert_eq!(book.flush().unwrap(), 1);
            assert_eq!(book.flush().unwrap(), 0, "nothing changed since");
        }
        let db = Arc::new(StateDb::open(dir.path()).unwrap());
        let book = UsageBook::open(Some(db), None).unwrap();
        let rows = book.rows(Some("k_1"), None, None);
        let want = Totals { requests: 3, images: 2, video_seconds: 6, errors: 2, rate_limited: 1 };
        assert_eq!(rows, vec![(today(), k, want)]);
        assert!(book.rows(Some("k_2"), None, None).is_empty());
        assert!(book.rows(None, Some(today() + 1), None).is_empty());
    }
}

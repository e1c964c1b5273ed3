//! Progress reporting from the upstream to whoever waits on a job (SSE stream, task store).
//! Events are advisory: a slow consumer loses intermediate progress, never the job.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use bytes::Bytes;
use tokio::sync::mpsc;

#[derive(Debug, Clone)]
pub enum JobEvent {
    /// Overall percentage, strictly rising.
    Progress(u8),
    /// A preview of image `index` (0-based), e.g. a partial render.
    Preview { index: usize, bytes: Bytes },
    /// The upstream accepted the job under this id (asynchronous upstreams): keep it to resume.
    Submitted(String),
}

type Callback = Arc<dyn Fn(JobEvent) + Send + Sync>;

#[derive(Clone, Default)]
pub struct ProgressSink {
    tx: Option<mpsc::Sender<JobEvent>>,
    callback: Option<Callback>,
    last: Arc<AtomicU8>,
}

impl ProgressSink {
    /// A sink that drops everything (plain sync requests).
    pub fn none() -> Self {
        Self::default()
    }

    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<JobEvent>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Self { tx: Some(tx), callback: None, last: Arc::default() }, rx)
    }

    /// A sink that hands every event to `f` at once (it must be quick: it runs on the job's task).
    pub fn callback(f: Callback) -> Self {
        Self { tx: None, callback: Some(f), last: Arc::default() }
    }

    /// Report overall progress; values that do not rise are ignored, so progress never goes backwards.
    pub fn progress(&self, percent: u8) {
        let percent = percent.min(100);
        let prev = self.last.fetch_max(percent, Ordering::AcqRel);
        if percent > prev {
            self.send(JobEvent::Progress(percent));
        }
    }

    pub fn last_progress(&self) -> u8 {
        self.last.load(Ordering::Acquire)
    }

    pub fn submitted(&self, upstream_id: &str) {
        self.send(JobEvent::Submitted(upstream_id.to_owned()));
    }

    pub fn preview(&self, index: usize, bytes: Bytes) {
        self.send(JobEvent::Preview { index, bytes });
    }

    fn send(&self, event: JobEvent) {
        if let Some(f) = &self.callback {
            f(event.clone());
        }
        if let Some(tx) = &self.tx {
            // A full channel means the consumer is behind; the next event supersedes this one.
            let _ = tx.try_send(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_monotonic() {
        let (sink, mut rx) = ProgressSink::channel(16);
        for p in [10, 5, 10, 40, 30, 100] {
            sink.progress(p);
        }
        let mut seen = Vec::new();
        while let Ok(JobEvent::Progress(p)) = rx.try_recv() {
            seen.push(p);
        }
        assert_eq!(seen, vec![10, 40, 100]);
    }
}

/// Per-item percentages (one per image being made) folded into one overall figure, the mean.
/// Held below 100: only the runner says 100, once the results are stored.
pub struct ProgressSlots {
    sink: ProgressSink,
    slots: std::sync::Mutex<Vec<f64>>,
}

impl ProgressSlots {
    pub fn new(sink: ProgressSink, n: usize) -> Self {
        Self { sink, slots: std::sync::Mutex::new(vec![0.0; n.max(1)]) }
    }

    pub fn set(&self, slot: usize, percent: f64) {
        let overall = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            let Some(s) = slots.get_mut(slot) else { return };
            *s = s.max(percent.clamp(0.0, 100.0));
            slots.iter().sum::<f64>() / slots.len() as f64
        };
        self.sink.progress((overall as u8).min(99));
    }

    pub fn sink(&self) -> &ProgressSink {
        &self.sink
    }
}

#[cfg(test)]
mod slot_tests {
    use super::*;

    #[test]
    fn slots_average_and_stop_short_of_100() {
        let (sink, _rx) = ProgressSink::channel(16);
        let slots = ProgressSlots::new(sink.clone(), 2);
        slots.set(0, 100.0);
        assert_eq!(sink.last_progress(), 50);
        slots.set(1, 100.0);
        assert_eq!(sink.last_progress(), 99);
        slots.set(7, 100.0);
    }
}

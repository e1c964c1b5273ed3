//! Memory per stored finished task: fills a `TaskStore` with successful image tasks (two result images
//! each, a callback URL on every other task) and reads the process RSS before and after.
//! Run: `cargo bench --bench task_memory` (100 000 tasks; `TASKS_N` to change).

use std::sync::Arc;

use grok2api::auth::KeyId;
use grok2api::tasks::store::{TaskStore, Transition};
use grok2api::tasks::{Outcome, TaskKind};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let timing = std::env::args().any(|a| a == "--bench");
    let n: usize =
        if timing { std::env::var("TASKS_N").ok().and_then(|s| s.parse().ok()).unwrap_or(100_000) } else { 1000 };
    let store = TaskStore::new();
    let owners: Vec<KeyId> = (0..4).map(|i| KeyId(Arc::from(format!("key-{i:016x}")))).collect();
    let base: Arc<str> = Arc::from("https://gateway.example.com");
    let before = rss_kib();
    let started = std::time::Instant::now();
    for i in 0..n {
        let callback = (i % 2 == 0).then(|| format!("https://hooks.example.com/grok/{i}"));
        let id = store.create(owners[i % owners.len()].clone(), TaskKind::Image, callback);
        store.apply(&id, Transition::Start).expect("start");
        store.apply(&id, Transition::Progress(50)).expect("progress");
        let names = (0..2).map(|_| format!("{}.png", uuid::Uuid::new_v4().simple())).collect();
        store
            .apply(&id, Transition::Succeed(Outcome::Images { base: base.clone(), names, b64: false }))
            .expect("succeed");
        if i % 2 == 0 {
            store.record_callback(&id, true, None, true);
        }
    }
    let elapsed = started.elapsed();
    let after = rss_kib();
    assert_eq!(store.len(), n);
    let per_task = (after.saturating_sub(before) as f64 * 1024.0) / n as f64;
    if timing {
        println!(
            "{n} finished tasks: RSS {before} KiB → {after} KiB, {per_task:.0} bytes per task; \
             {:.0} create+finish per second (one thread)",
            n as f64 / elapsed.as_secs_f64()
        );
    } else {
        println!("task memory bench smoke run: {n} tasks stored ({per_task:.0} bytes/task, too few to be meaningful)");
    }
}

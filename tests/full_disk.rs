//! A full disk under the state and media dirs (a small tmpfs, filled by a file): creates are refused
//! and readiness says so while it lasts; tasks that end meanwhile keep their state in memory and
//! their callbacks wait; once the file is deleted creates are accepted again without a restart, the
//! callbacks go out, and a restart on the same state brings back every task as it ended. The media
//! store makes room on a full disk by evicting its least recently used files.
//!
//! Mounting needs root (the suite runs as root in CI); elsewhere these tests say so and pass.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::webhooks::receiver;
use common::*;
use serde_json::{Value, json};

/// A tmpfs mounted for one test, unmounted when dropped (a failing test included).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (with a note) when not root: only root may mount.
    fn mount(size: &str) -> Option<Self> {
        let uid = Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        if uid.as_deref().ok() != Some("0") {
            eprintln!("full_disk: needs root to mount a tmpfs; skipped");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "mount -t tmpfs failed");
        Some(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the disk refuses more; returns it (delete it to free the space).
    fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        for chunk in [vec![0u8; 64 * 1024], vec![0u8; 4096], vec![0u8; 512]] {
            while f.write_all(&chunk).is_ok() {}
        }
        assert_eq!(f.write_all(&[0]).unwrap_err().kind(), std::io::ErrorKind::StorageFull);
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a gateway thread of a failed test may still hold a file open.
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// A gateway with its state and media dirs on `disk` and signed callbacks to loopback.
async fn gateway(disk: &Path) -> Harness {
    let media = disk.join("media");
    builder()
        .config(|c| {
            c.state.dir = Some(disk.join("state"));
            c.tasks.workers = 8;
            common::webhooks::to_loopback(c);
            c.callbacks.retry_delays_secs = vec![0.05; 3];
        })
        .config_with_sim(move |c, _| c.media.dir = Some(media))
        .start()
        .await
}

async fn create(h: &Harness, prompt: &str, hook: &str) -> (u16, Value) {
    let body = json!({"model": "grok-imagine-1.0", "prompt": prompt, "n": 1, "callback_url": hook});
    let (status, _, body) = split(h.post("/v1/images/tasks").json(&body).send().await.unwrap()).await;
    (status, body)
}

async fn readyz(h: &Harness) -> (u16, String) {
    let (status, _, body) = split(h.http.get(h.url("/readyz")).send().await.unwrap()).await;
    (status, body["store"].as_str().unwrap_or_default().to_owned())
}

async fn task(h: &Harness, id: &str) -> Value {
    let (status, _, body) = split(h.get(&format!("/v1/images/tasks/{id}")).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

/// Status and error code of each task once it has ended.
async fn ended(h: &Harness, ids: &[String]) -> HashMap<String, (String, String)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut out = HashMap::new();
    for id in ids {
        let data = loop {
            let data = task(h, id).await;
            if matches!(data["status"].as_str(), Some("success" | "failed")) {
                break data;
            }
            assert!(Instant::now() < deadline, "task {id} never ended: {data}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let code = data["errorCode"].as_str().unwrap_or_default().to_owned();
        out.insert(id.clone(), (data["status"].as_str().unwrap_or_default().to_owned(), code));
    }
    out
}

/// The callbacks received so far, by task id.
fn callbacks(hook: &common::webhooks::Receiver) -> HashMap<String, Value> {
    let got = hook.got.lock().unwrap();
    let events = got.iter().map(|(_, body)| serde_json::from_slice::<Value>(body).unwrap());
    events.map(|e| (e["taskId"].as_str().unwrap_or_default().to_owned(), e)).collect()
}

#[tokio::test]
async fn a_full_disk_refuses_creates_keeps_what_ended_and_recovers_without_a_restart() {
    if redis_store() {
        eprintln!("full_disk: tests the embedded journal; not applicable to the redis store");
        return;
    }
    let Some(disk) = Tmpfs::mount("4m") else { return };
    let (hook_rx, hook) = receiver(vec![]).await;
    let h = gateway(disk.path()).await;
    assert_eq!(readyz(&h).await, (200, "journal".into()));

    // Running when the disk fills: they end (failed: their images cannot be stored) while it is full.
    let mut running = Vec::new();
    for i in 0..3 {
        let (status, body) = create(&h, &format!("slow {i} [sim:slow=150]"), &hook).await;
        assert_eq!(status, 202, "{body}");
        running.push(body["data"]["taskId"].as_str().unwrap().to_owned());
    }
    for id in &running {
        while task(&h, id).await["status"] == "pending" {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let filler = disk.fill();

    // The journal has some room left inside its file; creates are refused once it is used up.
    let mut accepted = running.clone();
    let mut refused = false;
    for i in 0..300 {
        let (status, body) = create(&h, &format!("while full {i}"), &hook).await;
        match status {
            202 => accepted.push(body["data"]["taskId"].as_str().unwrap().to_owned()),
            503 => {
                assert!(body.to_string().contains("cannot persist the task"), "{body}");
                if readyz(&h).await == (503, "journal_unwritable".into()) {
                    refused = true;
                    break;
                }
            }
            other => panic!("create answered {other}: {body}"),
        }
    }
    assert!(refused, "no create was refused with readiness saying the journal cannot write");

    let while_full = ended(&h, &running).await;
    for id in &running {
        assert_eq!(while_full[id], ("failed".into(), "media_store_unavailable".into()));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // (Tasks accepted after the fill may have ended while the journal still had room: theirs may go.)
    let sent = callbacks(&hook_rx);
    assert!(
        running.iter().all(|id| !sent.contains_key(id)),
        "a callback went out for a state the journal does not hold: {sent:#?}"
    );
    assert_eq!(readyz(&h).await, (503, "journal_unwritable".into()), "still full");

    std::fs::remove_file(filler).unwrap();
    let freed = Instant::now();
    let after = loop {
        let (status, body) = create(&h, "after", &hook).await;
        if status == 202 {
            break body["data"]["taskId"].as_str().unwrap().to_owned();
        }
        assert_eq!(status, 503, "{body}");
        assert!(freed.elapsed() < Duration::from_secs(5), "creates still refused 5 s after the disk has room");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let recovered = freed.elapsed();
    assert_eq!(readyz(&h).await, (200, "journal".into()));
    eprintln!("full_disk: creates accepted again {recovered:?} after the space was freed");
    accepted.push(after);

    // The callbacks of the tasks that ended while the disk was full go out now that their state is kept.
    let deadline = Instant::now() + Duration::from_secs(10);
    let states = ended(&h, &accepted).await;
    loop {
        let sent = callbacks(&hook_rx);
        if running.iter().all(|id| sent.contains_key(id)) {
            for id in &running {
                assert_eq!(sent[id]["data"]["status"], "failed");
            }
            break;
        }
        assert!(Instant::now() < deadline, "callbacks not sent after the disk had room: {sent:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A restart on the same state: every task is back as it ended, none runs again.
    h.server.stop().await.unwrap();
    let h = gateway(disk.path()).await;
    assert_eq!(readyz(&h).await, (200, "journal".into()));
    let mut reverted = Vec::new();
    for (id, before) in &states {
        let data = task(&h, id).await;
        let now = (data["status"].as_str().unwrap_or_default(), data["errorCode"].as_str().unwrap_or_default());
        if (now.0, now.1) != (before.0.as_str(), before.1.as_str()) {
            reverted.push(format!("{id}: {before:?} → {now:?}"));
        }
    }
    assert!(reverted.is_empty(), "tasks changed across the restart: {reverted:#?}");
    h.server.stop().await.unwrap();
}

#[tokio::test]
async fn a_full_disk_makes_the_media_store_evict_its_least_recently_used_files() {
    let Some(disk) = Tmpfs::mount("2m") else { return };
    let media = disk.path().join("media");
    let h = builder().config_with_sim(move |c, _| c.media.dir = Some(media)).start().await;
    let generate = async |prompt: &str| {
        let (status, _, body) = h.generate(json!({"model": "grok-imagine-1.0", "prompt": prompt, "n": 1})).await;
        (status, body)
    };
    let mut links = Vec::new();
    for i in 0..5 {
        let (status, body) = generate(&format!("kept {i}")).await;
        assert_eq!(status, 200, "{body}");
        links.push(body["data"][0]["url"].as_str().unwrap().to_owned());
    }
    let fetch = async |url: &str| h.http.get(url).send().await.unwrap().status().as_u16();
    // The first one is now the most recently used; the second the least.
    assert_eq!(fetch(&links[0]).await, 200);
    let filler = disk.fill();

    let (status, body) = generate("on a full disk").await;
    assert_eq!(status, 200, "the media store did not make room: {body}");
    assert_eq!(fetch(body["data"][0]["url"].as_str().unwrap()).await, 200);
    assert_eq!(fetch(&links[1]).await, 404, "the least recently used file was evicted");
    assert_eq!(fetch(&links[0]).await, 200, "a recently used file was kept");
    assert!(filler.exists(), "only the media store's own files are evicted");
    let leftovers = std::fs::read_dir(disk.path().join("media/image"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".part"))
        .count();
    assert_eq!(leftovers, 0, "a write that failed for want of space left a partial file behind");
}

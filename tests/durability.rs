//! Restart without loss: the real binary with `--state-dir`, killed with SIGKILL (and, separately,
//! stopped with SIGTERM), then started again on the same state. Finished tasks stay readable, pending
//! ones run, the one that was running ends `interrupted`, and owed callbacks are delivered.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

struct Gateway {
    proc: Running,
    url: String,
    http: reqwest::Client,
}

fn config(dir: &std::path::Path, grace: u64) -> std::path::PathBuf {
    let path = dir.join("gw.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[server]
shutdown_grace_secs = {grace}
[auth]
api_keys = ["dur-key-5c1e9a07b3f2d846"]
[tasks]
workers = 1
[callbacks]
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
allow_private = true
retry_delays_secs = [3600.0]
[state]
dir = "{state}"
[media]
dir = "{media}"
"#,
            state = dir.join("state").display(),
            media = dir.join("media").display(),
        ),
    )
    .unwrap();
    path
}

fn start(cfg: &std::path::Path, media: &std::path::Path) -> Gateway {
    let (proc, url) = spawn(&["--demo", "--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()], &[], media);
    grok2api::install_crypto_provider();
    Gateway { proc, url, http: reqwest::Client::new() }
}

impl Gateway {
    async fn create(&self, kind: &str, body: Value) -> String {
        let path = if kind == "video" { "/v1/video/tasks" } else { "/v1/images/tasks" };
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth("dur-key-5c1e9a07b3f2d846")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        r.json::<Value>().await.unwrap()["data"]["taskId"].as_str().unwrap().to_owned()
    }

    async fn task(&self, kind: &str, id: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}/v1/{kind}/tasks/{id}", self.url))
            .bearer_auth("dur-key-5c1e9a07b3f2d846")
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap()["data"].clone())
    }

    async fn wait_for(&self, kind: &str, id: &str, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (s, data) = self.task(kind, id).await;
            assert_eq!(s, 200, "task {id} must exist: {data}");
            if want(&data) {
                return data;
            }
            assert!(Instant::now() < deadline, "task {id} never reached the state wanted: {data}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Answers 500 until `healthy` is set, then 200; counts deliveries it accepted.
async fn receiver(healthy: Arc<AtomicBool>, accepted: Arc<AtomicUsize>) -> String {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let (healthy, accepted) = (healthy.clone(), accepted.clone());
            async move {
                if healthy.load(Ordering::SeqCst) {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    axum::http::StatusCode::OK
                } else {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn video(prompt: &str) -> Value {
    json!({"model": "grok-imagine-1.0-video", "prompt": prompt})
}

#[tokio::test]
async fn kill_9_and_restart_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 5);
    let healthy = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicUsize::new(0));
    let hook = receiver(healthy.clone(), accepted.clone()).await;

    let gw = start(&cfg, &dir.path().join("media"));
    // Finished before the crash, with a callback the receiver refused (so it is still owed).
    let done = gw.create("images", json!({"model": "grok-imagine-1.0", "prompt": "done", "callback_url": hook})).await;
    let done_data = gw.wait_for("images", &done, |d| d["callback"]["attempts"] == 1).await;
    assert_eq!(done_data["status"], "success");
    // Running at the crash (the only worker is busy with it for a long time).
    let running = gw.create("video", video("long [sim:slow=3000]")).await;
    gw.wait_for("video", &running, |d| d["status"] == "processing").await;
    // Queued behind it.
    let pending: Vec<String> =
        futures_util::future::join_all((0..3).map(|i| gw.create("video", video(&format!("queued {i}"))))).await;
    for id in &pending {
        assert_eq!(gw.task("video", id).await.1["status"], "pending");
    }

    // SIGKILL: no shutdown code runs.
    gw.kill_9();

    healthy.store(true, Ordering::SeqCst);
    let gw = start(&cfg, &dir.path().join("media"));
    let (s, data) = gw.task("images", &done).await;
    assert_eq!((s, data["status"].as_str()), (200, Some("success")), "{data}");
    // Links carry the base URL the creator used; this restart has a new port, so keep only the path.
    let link = data["result"]["images"][0].as_str().unwrap();
    let path = &link[link.find("/v1/files/").unwrap()..];
    let img = gw.http.get(format!("{}{path}", gw.url)).send().await.unwrap();
    assert_eq!(img.status(), 200, "the finished task's image must still be served");
    png_dims(&img.bytes().await.unwrap());
    let data = gw.wait_for("images", &done, |d| d["callback"]["delivered"] == true).await;
    assert_eq!(data["callback"]["attempts"], 2);
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "the owed callback is delivered once");

    let data = gw.wait_for("video", &running, |d| d["status"] != "processing").await;
    assert_eq!((data["status"].as_str(), data["errorCode"].as_str()), (Some("failed"), Some("interrupted")), "{data}");
    for id in &pending {
        let data = gw.wait_for("video", id, |d| d["status"] == "success" || d["status"] == "failed").await;
        assert_eq!(data["status"], "success", "a pending task must run after the restart: {data}");
    }
    let list: Value = gw
        .http
        .get(format!("{}/v1/video/tasks", gw.url))
        .bearer_auth("dur-key-5c1e9a07b3f2d846")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"]["tasks"].as_array().unwrap().len(), 4);
    assert!(sigterm_and_wait(gw.proc).success());
}

/// Creates from eight clients as fast as the gateway takes them, and a `kill -9` at a random moment
/// of the storm, three times over the same state dir: every create that was answered 202 is there
/// after each restart (the journal's log is replayed into its tables at start).
#[tokio::test]
async fn a_create_storm_killed_at_random_points_loses_no_acknowledged_task() {
    let dir = tempfile::tempdir().unwrap();
    // Room in the queue for every create of the storm (they wait behind one slow worker).
    let cfg = state_config(
        dir.path(),
        "[auth]\napi_keys = [\"dur-key-5c1e9a07b3f2d846\"]\n[tasks]\nworkers = 1\nqueue_capacity = 1000000\nqueue_per_key = 1000000\n",
    );
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    eprintln!("storm seed {seed}");
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut acknowledged: Vec<String> = Vec::new();
    for round in 0..3 {
        let gw = start(&cfg, &dir.path().join("media"));
        let found = missing(&gw, &acknowledged).await;
        assert!(found.is_empty(), "round {round}: acknowledged tasks lost across a kill -9: {found:?}");
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let clients: Vec<_> = (0..8)
            .map(|c| {
                let (url, stop, answered) = (gw.url.clone(), stop.clone(), answered.clone());
                tokio::spawn(async move {
                    let http = reqwest::Client::new();
                    let mut acked = Vec::new();
                    let mut i = 0;
                    while !stop.load(Ordering::SeqCst) {
                        i += 1;
                        let sent = http
                            .post(format!("{url}/v1/images/tasks"))
                            .bearer_auth("dur-key-5c1e9a07b3f2d846")
                            .json(&json!({"model": "grok-imagine-1.0", "prompt": format!("storm {c}-{i} [sim:slow=600000]")}))
                            .send()
                            .await;
                        // Killed mid-request: no answer, so nothing was promised.
                        let Ok(r) = sent else { continue };
                        if r.status() != 202 {
                            continue;
                        }
                        if let Ok(v) = r.json::<Value>().await {
                            acked.push(v["data"]["taskId"].as_str().unwrap().to_owned());
                            answered.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    acked
                })
            })
            .collect();
        // The storm is on once creates are answered; the kill comes at a random moment of it.
        let deadline = Instant::now() + Duration::from_secs(20);
        while answered.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "round {round}: no create answered");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let at = next() % 400;
        tokio::time::sleep(Duration::from_millis(at)).await;
        gw.kill_9();
        stop.store(true, Ordering::SeqCst);
        let before = acknowledged.len();
        for c in clients {
            acknowledged.extend(c.await.unwrap());
        }
        eprintln!("round {round}: killed {at} ms into the storm, {} creates acknowledged", acknowledged.len() - before);
        assert!(acknowledged.len() > before, "round {round}: no create was answered before the kill");
    }
    let gw = start(&cfg, &dir.path().join("media"));
    let found = missing(&gw, &acknowledged).await;
    assert!(found.is_empty(), "acknowledged tasks lost across a kill -9: {found:?}");
    gw.kill_9();
}

/// Which of `ids` the gateway does not know.
async fn missing(gw: &Gateway, ids: &[String]) -> Vec<String> {
    use futures_util::StreamExt;
    futures_util::stream::iter(ids)
        .map(|id| async move { (id, gw.task("images", id).await.0) })
        .buffer_unordered(16)
        .filter_map(|(id, status)| async move { (status != 200).then(|| id.clone()) })
        .collect()
        .await
}

#[tokio::test]
async fn sigterm_keeps_every_accepted_task() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 1);
    let gw = start(&cfg, &dir.path().join("media"));
    let running = gw.create("video", video("long [sim:slow=3000]")).await;
    gw.wait_for("video", &running, |d| d["status"] == "processing").await;
    let mut ids: Vec<String> =
        futures_util::future::join_all((0..5).map(|i| gw.create("video", video(&format!("q{i}"))))).await;
    ids.extend(
        futures_util::future::join_all(
            (0..5).map(|i| gw.create("images", json!({"model": "grok-imagine-1.0", "prompt": format!("i{i}")}))),
        )
        .await,
    );
    let t = Instant::now();
    assert!(sigterm_and_wait(gw.proc).success());
    assert!(t.elapsed() < Duration::from_secs(10), "shutdown must end within the grace period");

    let gw = start(&cfg, &dir.path().join("media"));
    let data = gw.wait_for("video", &running, |d| d["status"] == "failed" || d["status"] == "success").await;
    assert!(data["status"] == "success" || data["errorCode"] == "interrupted", "{data}");
    for (i, id) in ids.iter().enumerate() {
        let kind = if i < 5 { "video" } else { "images" };
        let data = gw.wait_for(kind, id, |d| d["status"] == "success" || d["status"] == "failed").await;
        assert_eq!(data["status"], "success", "accepted task {id} lost or failed: {data}");
    }
    assert!(sigterm_and_wait(gw.proc).success());
}

/// A gateway (no demo) on `cfg`: its upstream is a simulator process that outlives it.
fn start_plain(cfg: &std::path::Path, media: &std::path::Path) -> Gateway {
    let (proc, url) = spawn(&["--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()], &[], media);
    grok2api::install_crypto_provider();
    Gateway { proc, url, http: reqwest::Client::new() }
}

/// `sections` of a gateway config plus a state dir under `dir`, written to `dir/gw.toml`.
fn state_config(dir: &std::path::Path, sections: &str) -> std::path::PathBuf {
    let path = dir.join("gw.toml");
    std::fs::write(&path, format!("{sections}[state]\ndir = \"{}\"\n", dir.join("state").display())).unwrap();
    path
}

impl Gateway {
    /// A request to `path` with the test key.
    fn call(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.url)).bearer_auth("dur-key-5c1e9a07b3f2d846")
    }

    /// `GET /v1/videos/{id}` (the OpenAI or xAI shape the id names) until `done` says so.
    async fn video_until(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v: Value = self
                .call(reqwest::Method::GET, &format!("/v1/videos/{id}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if done(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "video {id} never got there: {v}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: no shutdown code runs.
    fn kill_9(mut self) {
        let mut child = self.proc.take_child();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

/// A video the upstream (`sim`, a separate process) had started when the gateway was killed is
/// finished after the restart, and the upstream counts one start (`starts` in `/sim/stats`).
/// `journaled` says when the upstream's id is surely in the journal.
async fn started_video_survives_kill_9(
    sim: (Running, String),
    upstream: &str,
    journaled: impl Fn(&Value) -> bool,
    starts: &str,
) {
    let (sim, sim_url) = sim;
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("media");
    let cfg = state_config(dir.path(), &format!("[auth]\napi_keys = [\"dur-key-5c1e9a07b3f2d846\"]\n{upstream}"));
    let gw = start_plain(&cfg, &media);
    let id = gw
        .create(
            "video",
            json!({"model": "grok-imagine-1.0-video", "prompt": "waves [sim:slow=400]", "video_length": 6}),
        )
        .await;
    gw.wait_for("video", &id, journaled).await;
    gw.kill_9();

    let gw = start_plain(&cfg, &media);
    let data = gw.wait_for("video", &id, |d| d["status"] == "success" || d["status"] == "failed").await;
    assert_eq!(data["status"], "success", "the started video must be finished after the restart: {data}");
    assert!(data["result"]["downloadUrl"].as_str().is_some_and(|l| l.contains("/v1/files/video/")), "{data}");
    let stats: Value = reqwest::get(format!("{sim_url}/sim/stats")).await.unwrap().json().await.unwrap();
    assert_eq!(stats[starts], 1, "the video must not be started twice");
    assert!(sigterm_and_wait(gw.proc).success());
    assert!(sigterm_and_wait(sim).success());
}

/// xAI: the video `request_id` is journaled before polling, so a gateway killed mid-video resumes
/// polling after the restart — the upstream sees exactly one create (no second charge).
#[tokio::test]
async fn xai_video_resumes_polling_after_kill_9_without_a_second_create() {
    let sim_media = tempfile::tempdir().unwrap();
    let args = ["sim", "--flavor", "xai", "--listen", "127.0.0.1:0", "--tokens", "xai-key-1", "--frame-delay-ms", "5"];
    let sim = spawn(&args, &[], sim_media.path());
    let upstream = format!(
        "[upstream]\nkind = \"xai\"\n[xai]\napi_key = \"xai-key-1\"\nbase_url = \"{}\"\npoll_interval_ms = 20\n",
        sim.1
    );
    // Progress above 0 means the create was answered and polling runs: the request_id is journaled.
    started_video_survives_kill_9(sim, &upstream, |d| d["progress"].as_u64().is_some_and(|p| p > 0), "video_creates")
        .await;
}

/// An xAI video extension is a video task like the others: killed mid-poll, the gateway resumes
/// polling its journaled `request_id` after the restart (xAI sees one create), and the result lasts
/// the input plus the added part.
#[tokio::test]
async fn xai_video_extension_resumes_after_kill_9_without_a_second_create() {
    let sim_media = tempfile::tempdir().unwrap();
    let args = ["sim", "--flavor", "xai", "--listen", "127.0.0.1:0", "--tokens", "xai-key-1", "--frame-delay-ms", "5"];
    let (sim, sim_url) = spawn(&args, &[], sim_media.path());
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("media");
    let cfg = state_config(
        dir.path(),
        &format!(
            "[auth]\napi_keys = [\"dur-key-5c1e9a07b3f2d846\"]\n[upstream]\nkind = \"xai\"\n[xai]\n\
             api_key = \"xai-key-1\"\nbase_url = \"{sim_url}\"\npoll_interval_ms = 20\n"
        ),
    );
    let gw = start_plain(&cfg, &media);
    let mp4 = include_bytes!("../src/sim/fixtures/video-16x9-6s.mp4");
    let url =
        format!("data:video/mp4;base64,{}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, mp4));
    let body = json!({"prompt": "the waves roll on [sim:slow=400]", "video": {"url": url}, "duration": 4});
    let r = gw.call(reqwest::Method::POST, "/v1/videos/extensions").json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let id = r.json::<Value>().await.unwrap()["request_id"].as_str().unwrap().to_owned();
    // Progress above 0: the create was answered and polling runs, so the request_id is journaled.
    gw.video_until(&id, |v| v["progress"].as_u64().unwrap_or(0) > 0).await;
    gw.kill_9();

    let gw = start_plain(&cfg, &media);
    let done = gw.video_until(&id, |v| v["status"] != "pending").await;
    assert_eq!((done["status"].as_str(), done["video"]["duration"].as_u64()), (Some("done"), Some(10)), "{done}");
    let stats: Value = reqwest::get(format!("{sim_url}/sim/stats")).await.unwrap().json().await.unwrap();
    assert_eq!(stats["video_creates"], 1, "the extension must not be created twice");
    assert!(sigterm_and_wait(gw.proc).success());
    assert!(sigterm_and_wait(sim).success());
}

/// grok.com: a video that started before the gateway was killed is journaled with its media post
/// (`grok-web:<token id>:<post id>`); after the restart it is collected from that post with the same
/// token — grok.com starts it exactly once.
#[tokio::test]
async fn grok_web_video_is_collected_after_kill_9_without_a_second_start() {
    let sim_media = tempfile::tempdir().unwrap();
    let args = ["sim", "--listen", "127.0.0.1:0", "--tokens", "tok-dur-0001", "--frame-delay-ms", "5"];
    let sim = spawn(&args, &[], sim_media.path());
    let upstream = common::grok_section(&sim.1, "tok-dur-0001");
    // The first frame names the video's post and carries progress 1; the post is journaled write-behind
    // at that moment. The second frame (400 ms later) is well past that write.
    started_video_survives_kill_9(sim, &upstream, |d| d["progress"].as_u64().is_some_and(|p| p > 1), "video_starts")
        .await;
}

/// grok.com extends only its own posts, with the account that made them: the video's post and account
/// are kept with the finished task (journaled), so after a `kill -9` and a restart the video made
/// before is still extended (the media store's memory of it is gone).
#[tokio::test]
async fn a_grok_web_video_made_before_a_restart_can_still_be_extended() {
    let sim_media = tempfile::tempdir().unwrap();
    let args = ["sim", "--listen", "127.0.0.1:0", "--tokens", "tok-dur-0001", "--frame-delay-ms", "2"];
    let (sim, sim_url) = spawn(&args, &[], sim_media.path());
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("media");
    let upstream = common::grok_section(&sim_url, "tok-dur-0001");
    let cfg = state_config(dir.path(), &format!("[auth]\napi_keys = [\"dur-key-5c1e9a07b3f2d846\"]\n{upstream}"));
    let gw = start_plain(&cfg, &media);
    let id = gw
        .create("video", json!({"model": "grok-imagine-1.0-video", "prompt": "a paper boat", "video_length": 6}))
        .await;
    gw.wait_for("video", &id, |d| d["status"] == "success").await;
    // Journaled write-behind: give the success record a moment to reach the disk before the kill.
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.kill_9();

    let gw = start_plain(&cfg, &media);
    let form = reqwest::multipart::Form::new()
        .text("prompt", "the boat sails on")
        .text("seconds", "4")
        .text("video[id]", id.clone());
    let r = gw.call(reqwest::Method::POST, "/v1/videos/extensions").multipart(form).send().await.unwrap();
    let status = r.status().as_u16();
    let ext: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{ext}");
    let ext_id = ext["id"].as_str().unwrap().to_owned();
    let done = gw.video_until(&ext_id, |v| v["status"] == "completed" || v["status"] == "failed").await;
    assert_eq!((done["status"].as_str(), done["seconds"].as_str()), (Some("completed"), Some("10")), "{done}");
    assert!(sigterm_and_wait(gw.proc).success());
    assert!(sigterm_and_wait(sim).success());
}

/// Tokens added through the admin API are kept in the state dir: back after a `kill -9`, marked as
/// added at run time (the config's are marked `config`); a removed one stays removed.
#[tokio::test]
async fn tokens_added_at_run_time_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("media");
    let cfg = state_config(
        dir.path(),
        "[auth]\napi_keys = [\"dur-key-5c1e9a07b3f2d846\"]\n[admin]\napi_key = \"dur-admin-8e2b47c1f09d3a65\"\n",
    );
    let kept = grok2api::upstream::grok_web::token_pool::token_id("tok-kept-0001");
    let tokens = |gw: &Gateway| {
        let (http, url) = (gw.http.clone(), gw.url.clone());
        async move {
            let r =
                http.get(format!("{url}/admin/tokens")).bearer_auth("dur-admin-8e2b47c1f09d3a65").send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()["data"].as_array().unwrap().clone()
        }
    };
    let gw = start(&cfg, &media);
    let r = gw
        .http
        .post(format!("{}/admin/tokens", gw.url))
        .bearer_auth("dur-admin-8e2b47c1f09d3a65")
        .json(&json!({"tokens": ["tok-kept-0001|http://user:secret@127.0.0.1:3128"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    gw.kill_9();

    let gw = start(&cfg, &media);
    let list = tokens(&gw).await;
    let entry = list.iter().find(|t| t["id"] == kept.as_str()).unwrap_or_else(|| panic!("not kept: {list:?}"));
    assert_eq!(entry["source"], "admin");
    assert!(!entry["token"].as_str().unwrap().contains("tok-kept-0001"), "never shown in full: {entry}");
    let proxy = entry["proxy"].as_str().unwrap();
    assert!(proxy.contains("127.0.0.1:3128") && !proxy.contains("secret"), "{proxy}");
    assert!(list.iter().filter(|t| t["id"] != kept.as_str()).all(|t| t["source"] == "config"), "{list:?}");
    let r = gw
        .http
        .delete(format!("{}/admin/tokens/{kept}", gw.url))
        .bearer_auth("dur-admin-8e2b47c1f09d3a65")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(sigterm_and_wait(gw.proc).success());

    let gw = start(&cfg, &media);
    let list = tokens(&gw).await;
    assert!(list.iter().all(|t| t["id"] != kept.as_str()), "a removed token stays removed: {list:?}");
    assert!(sigterm_and_wait(gw.proc).success());
}

/// The console's state (imported tokens with their settings, console-made keys, usage) survives a
/// restart; its sessions do not. Nothing secret reaches the log, even at debug level.
#[tokio::test]
async fn console_state_survives_a_restart_its_sessions_do_not_and_secrets_stay_out_of_the_log() {
    let sim = common::sim_process(5, None);
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("media");
    let cfg = state_config(
        dir.path(),
        &format!("[admin]\napi_key = \"dur-console-admin-7f3a\"\n{}", sim.grok("tok-conf-secret-4b1d9e")),
    );
    let log_path = dir.path().join("gateway.log");
    let start_logged = || {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).unwrap();
        let args = ["--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()];
        let (proc, url) = common::spawn_logging(&args, &[("RUST_LOG", "debug")], &media, log.into());
        grok2api::install_crypto_provider();
        Gateway { proc, url, http: reqwest::Client::new() }
    };
    let admin = "dur-console-admin-7f3a";
    let secrets = ["tok-import-secret-a81c2f", "tok-import-secret-c93e07"];

    let gw = start_logged();
    let login = gw.http.post(format!("{}/admin/login", gw.url)).json(&json!({"key": admin})).send().await.unwrap();
    let cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let csrf = login.json::<Value>().await.unwrap()["csrf_token"].as_str().unwrap().to_owned();
    let console = |r: reqwest::RequestBuilder| r.header("cookie", &cookie).header("x-csrf-token", &csrf);
    let file = format!("{{\"token\": \"{}\", \"note\": \"main\"}}\n\"{}\"\n", secrets[0], secrets[1]);
    let r = console(gw.http.post(format!("{}/admin/tokens/import", gw.url))).json(&json!({"content": file})).send();
    assert_eq!(r.await.unwrap().json::<Value>().await.unwrap()["added"], 2);
    let second = grok2api::upstream::grok_web::token_pool::token_id(secrets[1]);
    let r = console(gw.http.patch(format!("{}/admin/tokens/{second}", gw.url))).json(&json!({"enabled": false}));
    assert_eq!(r.send().await.unwrap().status(), 200);
    let made: Value = console(gw.http.post(format!("{}/admin/keys", gw.url)))
        .json(&json!({"name": "nightly", "max_concurrent_tasks": 3}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = made["key"].as_str().unwrap().to_owned();
    let image = gw
        .http
        .post(format!("{}/v1/images/generations", gw.url))
        .bearer_auth(&key)
        .json(&json!({"model": "grok-imagine-1.0", "prompt": "a harbour"}))
        .send()
        .await
        .unwrap();
    assert_eq!(image.status(), 200);
    let export = console(gw.http.post(format!("{}/admin/tokens/export", gw.url))).send().await.unwrap();
    assert!(export.text().await.unwrap().contains(secrets[0]), "the export is the operator's backup");
    assert!(sigterm_and_wait(gw.proc).success());

    let gw = start_logged();
    let old = gw.http.get(format!("{}/admin/session", gw.url)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(old.status(), 401, "a session from before the restart is refused");
    let get = |path: &str| {
        let r = gw.http.get(format!("{}{path}", gw.url)).bearer_auth(admin).send();
        async move { r.await.unwrap().json::<Value>().await.unwrap() }
    };
    let tokens = get("/admin/tokens").await;
    let by_id = |id: &str| tokens["data"].as_array().unwrap().iter().find(|t| t["id"] == id).cloned().unwrap();
    let first = by_id(&grok2api::upstream::grok_web::token_pool::token_id(secrets[0]));
    assert_eq!((first["note"].as_str(), first["enabled"].as_bool()), (Some("main"), Some(true)));
    assert_eq!(by_id(&second)["status"], "disabled");
    let keys = get("/admin/keys").await;
    let nightly = keys["data"].as_array().unwrap().iter().find(|k| k["name"] == "nightly").cloned().unwrap();
    assert_eq!((nightly["status"].as_str(), nightly["max_concurrent_tasks"].as_u64()), (Some("active"), Some(3)));
    let usage = get(&format!("/admin/usage?key={}", nightly["id"].as_str().unwrap())).await;
    assert_eq!((usage["data"][0]["requests"].as_u64(), usage["data"][0]["images"].as_u64()), (Some(1), Some(1)));
    let r = gw.http.get(format!("{}/v1/models", gw.url)).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status(), 200, "the key still works after the restart");
    assert!(sigterm_and_wait(gw.proc).success());
    assert!(sigterm_and_wait(sim.running).success());

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("console login") && log.contains("tokens imported"), "debug logging ran: {log}");
    for secret in secrets.iter().chain([&"tok-conf-secret-4b1d9e", &admin, &key.as_str(), &csrf.as_str()]) {
        assert!(!log.contains(secret), "`{secret}` appears in the log");
    }
    assert!(!log.contains(cookie.trim_start_matches("grok2api_session=")), "the session id appears in the log");
}

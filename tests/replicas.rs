//! Several replicas on one Redis (`store.url`) and one S3-compatible bucket: a task made on one is
//! read, listed, cancelled and downloaded on the others; idempotency keys, request rates and
//! unfinished-task limits hold across them; a replica killed with `kill -9` loses its tasks to another,
//! which finishes them without a second upstream start; Redis going away is a clear 503, and coming
//! back needs no restart.

mod common;

use std::time::{Duration, Instant};

use common::services::{moto, redis, s3};
use common::{Harness, KEY, builder, sigterm_and_wait, spawn};
use serde_json::{Value, json};

async fn replica(
    store: &str,
    s3_endpoint: Option<&str>,
    f: impl FnOnce(&mut grok2api::config::Config) + 'static,
) -> Harness {
    let (store, bucket) = (store.to_owned(), s3_endpoint.map(|e| s3(e, 0)));
    builder()
        .config(move |c| {
            c.store.url = Some(store);
            c.media.s3 = bucket;
            f(c)
        })
        .start()
        .await
}

/// The config file of replicas run as processes: the suite's key, `store` with a 2 s lease, one worker,
/// callbacks signed and allowed to loopback (`callbacks` adds lines to that section), then `grok`.
fn process_config(dir: &std::path::Path, store: &str, callbacks: &str, grok: &str) -> std::path::PathBuf {
    let cfg = dir.join("gw.toml");
    std::fs::write(
        &cfg,
        format!(
            "[auth]\napi_keys = [\"rep-key-4a7f1c93e0b2d568\"]\n[store]\nurl = \"{store}\"\nlease_secs = 2\n[tasks]\nworkers = 1\n\
             [callbacks]\nsecret = \"{}\"\nallow_private = true\n{callbacks}{grok}",
            common::webhooks::SECRET,
        ),
    )
    .unwrap();
    cfg
}

async fn body(r: reqwest::RequestBuilder) -> (u16, Value) {
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn wait_for(ok: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !ok() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_done(h: &Harness, path: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, v) = body(h.get(path)).await;
        if matches!(v["data"]["status"].as_str(), Some("success" | "failed")) {
            return v["data"].clone();
        }
        assert!(Instant::now() < deadline, "{path} never finished: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_task_made_on_one_replica_is_read_listed_cancelled_and_downloaded_on_the_others() {
    let (_redis, store) = redis(None).await;
    let (_moto, bucket) = moto().await;
    let limits = |c: &mut grok2api::config::Config| c.limits.max_concurrent_tasks = 2;
    let a = replica(&store, Some(&bucket), limits).await;
    let b = replica(&store, Some(&bucket), limits).await;
    let c = replica(&store, Some(&bucket), limits).await;

    // Create on A (with an Idempotency-Key), poll on B, download on C.
    let image = json!({"model": "grok-imagine-1.0", "prompt": "a lantern"});
    let (s, made) = body(a.post("/v1/images/tasks").header("idempotency-key", "k-1").json(&image)).await;
    assert_eq!(s, 202, "{made}");
    let id = made["data"]["taskId"].as_str().unwrap().to_owned();
    let done = wait_done(&b, &format!("/v1/images/tasks/{id}")).await;
    assert_eq!(done["status"], "success", "{done}");
    let link = done["result"]["images"][0].as_str().unwrap();
    let path = link.split_once("/v1/files/").map(|(_, p)| format!("/v1/files/{p}")).unwrap();
    let file = c.http.get(c.url(&path)).send().await.unwrap();
    assert_eq!(file.status(), 200);
    assert!(file.bytes().await.unwrap().starts_with(b"\x89PNG"));

    // The same key and body on B is the same task; another body on C is a conflict.
    let (s, again) = body(b.post("/v1/images/tasks").header("idempotency-key", "k-1").json(&image)).await;
    assert_eq!((s, again["data"]["taskId"].as_str()), (202, Some(id.as_str())));
    let other = json!({"model": "grok-imagine-1.0", "prompt": "another"});
    let (s, _) = body(c.post("/v1/images/tasks").header("idempotency-key", "k-1").json(&other)).await;
    assert_eq!(s, 422);

    // Listing on C sees it; another key does not.
    let (_, list) = body(c.get("/v1/images/tasks?after=")).await;
    let ids: Vec<&str> =
        list["data"]["tasks"].as_array().unwrap().iter().map(|t| t["taskId"].as_str().unwrap()).collect();
    assert_eq!(ids, [id.as_str()]);
    let (_, theirs) = body(c.http.get(c.url("/v1/images/tasks")).bearer_auth(common::OTHER_KEY)).await;
    assert!(theirs["data"]["tasks"].as_array().unwrap().is_empty());

    // Two slow videos on A fill the key's limit of two unfinished tasks, on every replica.
    let slow = json!({"model": "grok-imagine-1.0-video", "prompt": "tide [sim:slow=400]"});
    let (_, v1) = body(a.post("/v1/video/tasks").json(&slow)).await;
    let (_, v2) = body(a.post("/v1/video/tasks").json(&slow)).await;
    let (s, full) = body(b.post("/v1/video/tasks").json(&slow)).await;
    assert_eq!(s, 429, "the limit counts A's tasks on B: {full}");
    // B cancels A's task: the message reaches A, which runs it.
    let v1 = v1["data"]["taskId"].as_str().unwrap();
    let (s, cancelled) = body(b.http.delete(b.url(&format!("/v1/video/tasks/{v1}"))).bearer_auth(KEY)).await;
    assert_eq!((s, cancelled["message"].as_str()), (200, Some("task cancelled")), "{cancelled}");
    assert_eq!(cancelled["data"]["errorCode"], "cancelled");
    let local = a.server.state.tasks.snapshot(v1).unwrap();
    assert_eq!(local.status.as_str(), "failed", "A, which ran it, stopped it");
    let v2 = v2["data"]["taskId"].as_str().unwrap();
    // C follows A's task live: the events come from the shared record, and the stream ends with it.
    let events = c.get(&format!("/v1/video/tasks/{v2}/events")).send().await.unwrap();
    assert_eq!(events.status(), 200);
    let text = tokio::time::timeout(Duration::from_secs(30), events.text()).await.unwrap().unwrap();
    let data = common::sse_data(&text);
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["status"], "success", "{text}");
    assert!(data.len() >= 2, "at least one change before the end: {text}");
    assert_eq!(wait_done(&c, &format!("/v1/video/tasks/{v2}")).await["status"], "success");
}

#[tokio::test]
async fn request_rates_are_counted_once_for_all_replicas_and_a_lost_redis_is_a_503() {
    let (mut server, store) = redis(None).await;
    let rate = |c: &mut grok2api::config::Config| {
        c.limits.requests_per_second = 0.5;
        c.limits.burst = 2;
    };
    let a = replica(&store, None, rate).await;
    let b = replica(&store, None, rate).await;
    assert_eq!(a.get("/v1/models").send().await.unwrap().status(), 200);
    assert_eq!(b.get("/v1/models").send().await.unwrap().status(), 200);
    let third = b.get("/v1/models").send().await.unwrap();
    assert_eq!(third.status(), 429, "two replicas, one bucket of two");
    assert!(third.headers().contains_key("retry-after"));

    let (_, ready) = body(a.http.get(a.url("/readyz"))).await;
    assert_eq!(ready["store"], "redis");
    // Redis stops: requests that need it say so, as 503s; readiness fails.
    let port = store.trim_end_matches('/').rsplit(':').next().unwrap().parse::<u16>().unwrap();
    let mut child = server.take_child();
    child.kill().unwrap();
    child.wait().unwrap();
    let r = a.get("/v1/models").send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("store_unavailable"));
    let (s, ready) = body(a.http.get(a.url("/readyz"))).await;
    assert_eq!((s, ready["store"].as_str()), (503, Some("redis_unreachable")));
    // It comes back on the same address: no restart of the gateway needed.
    let (_server, _) = redis(Some(port)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = a.get("/v1/models").send().await.unwrap().status();
        if s == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still {s} after redis came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `kill -9` of the replica running tasks: another takes them over after the lease, collects the
/// started video from its upstream post (one start in the simulator's count), and delivers the callback
/// the dead replica still owed; the image queued behind the video runs once (on B, which takes queued
/// work when idle, or after the takeover) and its callback arrives once.
#[tokio::test]
async fn tasks_of_a_killed_replica_are_finished_by_another_without_a_second_start() {
    if common::grok_web_only("replica takeover") {
        return;
    }
    grok2api::install_crypto_provider();
    let (_redis, store) = redis(None).await;
    let (rx, hook) = common::webhooks::receiver(vec![]).await;
    // This one refuses the first delivery; A would retry in an hour, so only a takeover delivers it.
    let (owed_rx, owed_hook) = common::webhooks::receiver(vec![500]).await;
    let sim = common::sim_process(5, None);
    let sim_url = sim.url.clone();
    let dir = tempfile::tempdir().unwrap();
    let cfg = process_config(dir.path(), &store, "retry_delays_secs = [3600.0]\n", &sim.grok("tok-rep-0001"));
    let args = ["--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()];
    // Each replica its own media dir: the video is collected from the upstream post, not a shared file.
    let (media_a, media_b) = (dir.path().join("a"), dir.path().join("b"));
    let (mut a, url_a) = spawn(&args, &[], &media_a);
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        http.post(format!("{url_a}{path}")).bearer_auth("rep-key-4a7f1c93e0b2d568").json(&body).send()
    };
    let first =
        post("/v1/images/tasks", json!({"model": "grok-imagine-1.0", "prompt": "a heron", "callback_url": owed_hook}))
            .await
            .unwrap();
    let first = first.json::<Value>().await.unwrap()["data"]["taskId"].as_str().unwrap().to_owned();
    let video = post(
        "/v1/video/tasks",
        json!({"model": "grok-imagine-1.0-video", "prompt": "surf [sim:slow=300]", "video_length": 6}),
    )
    .await
    .unwrap();
    let video = video.json::<Value>().await.unwrap()["data"]["taskId"].as_str().unwrap().to_owned();
    let image =
        post("/v1/images/tasks", json!({"model": "grok-imagine-1.0", "prompt": "a gull", "callback_url": hook}))
            .await
            .unwrap();
    let image = image.json::<Value>().await.unwrap()["data"]["taskId"].as_str().unwrap().to_owned();
    // Wait until A has written the video's upstream post into the store (written behind, moments after
    // the first frame names it): from then on a takeover collects the video instead of failing it.
    let redis_client = redis::Client::open(store.as_str()).unwrap();
    let mut conn = redis_client.get_multiplexed_async_connection().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let record: Option<String> =
            redis::cmd("GET").arg(format!("g2a:t:{video}")).query_async(&mut conn).await.unwrap();
        let record: Value = record.map(|r| serde_json::from_str(&r).unwrap()).unwrap_or(Value::Null);
        if record["pending"]["upstream_ref"].is_string() {
            break;
        }
        assert!(Instant::now() < deadline, "the video's upstream post never reached the store: {record}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // B starts only now, so A is the one running the video (B, idle, may take the queued image).
    let (b, url_b) = spawn(&args, &[], &media_b);
    let get = |id: &str, kind: &str| {
        let r = http.get(format!("{url_b}/v1/{kind}/tasks/{id}")).bearer_auth("rep-key-4a7f1c93e0b2d568").send();
        async move { r.await.unwrap().json::<Value>().await.unwrap()["data"].clone() }
    };
    let (v_now, i_now) = (get(&video, "video").await, get(&image, "images").await);
    assert_eq!(v_now["status"], "processing", "{v_now}");
    // The queued image may already be B's: an idle replica takes queued work (see below).
    assert_ne!(i_now["status"], "failed", "{i_now}");
    assert_eq!(get(&first, "images").await["status"], "success");
    wait_for(|| owed_rx.got.lock().unwrap().len() == 1, "A's first (refused) delivery").await;
    let mut child = a.take_child();
    child.kill().unwrap();
    child.wait().unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    let (v, i) = loop {
        let (v, i) = (get(&video, "video").await, get(&image, "images").await);
        if [&v, &i].iter().all(|t| matches!(t["status"].as_str(), Some("success" | "failed"))) {
            break (v, i);
        }
        assert!(Instant::now() < deadline, "not taken over: {v} {i}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(v["status"], "success", "the started video is collected by B: {v}");
    assert_eq!(i["status"], "success", "the queued image runs on B: {i}");
    let stats: Value = reqwest::get(format!("{sim_url}/sim/stats")).await.unwrap().json().await.unwrap();
    assert_eq!(stats["video_starts"], 1, "the video is never started twice");
    wait_for(|| rx.got.lock().unwrap().len() == 1, "the image's callback").await;
    wait_for(|| owed_rx.got.lock().unwrap().len() == 2, "the callback A still owed, delivered by B").await;
    // Once, not more: nothing else arrives in the next half second.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.got.lock().unwrap().len(), 1, "the image's callback arrives once");
    assert_eq!(owed_rx.got.lock().unwrap().len(), 2, "the owed callback is delivered once");
    assert!(sigterm_and_wait(b).success());
    assert!(sigterm_and_wait(sim.running).success());
}

/// A token rate limited on one replica rests on the others too (within moments), and a replica that
/// starts later learns the rest from the store.
#[tokio::test]
async fn a_token_rate_limited_on_one_replica_rests_on_all() {
    if common::grok_web_only("shared token state") {
        return;
    }
    let (_redis, store) = redis(None).await;
    let one_token = |c: &mut grok2api::config::Config| {
        c.grok.max_attempts = 1;
        c.grok.quota_refresh_secs = 0;
    };
    let a = replica(&store, None, one_token).await;
    let b = replica(&store, None, one_token).await;
    let pool = |h: &Harness| h.server.state.runner.upstream().tokens().unwrap().snapshot();
    let cooling = |h: &Harness| {
        pool(h).iter().filter(|t| t.products["image"].cooldown_secs.is_some()).map(|t| t.id.clone()).collect::<Vec<_>>()
    };
    assert!(cooling(&b).is_empty());
    let (status, _, _) = a.generate(json!({"model": "grok-imagine-1.0", "prompt": "x [sim:rate-limit]"})).await;
    assert_eq!(status, 429);
    let rested = cooling(&a);
    assert_eq!(rested.len(), 1, "one token rests on A: {:?}", pool(&a));
    let deadline = Instant::now() + Duration::from_secs(5);
    while cooling(&b) != rested {
        assert!(Instant::now() < deadline, "B never heard: {:?}", pool(&b));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The video product of that token still serves on B.
    let token = pool(&b).into_iter().find(|t| t.id == rested[0]).unwrap();
    assert!(token.products["video"].cooldown_secs.is_none());
    let c = replica(&store, None, one_token).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while cooling(&c) != rested {
        assert!(Instant::now() < deadline, "a later replica never learned the rest: {:?}", pool(&c));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Usage per key is counted by every replica into one total, read through any of them.
#[tokio::test]
async fn usage_from_every_replica_adds_up() {
    let (_redis, store) = redis(None).await;
    let admin = |c: &mut grok2api::config::Config| c.admin.api_key = Some("rep-admin".into());
    let (a, b, c) =
        (replica(&store, None, admin).await, replica(&store, None, admin).await, replica(&store, None, admin).await);
    for _ in 0..2 {
        assert_eq!(a.get("/v1/models").send().await.unwrap().status(), 200);
    }
    for _ in 0..3 {
        assert_eq!(b.get("/v1/models").send().await.unwrap().status(), 200);
    }
    assert_eq!(b.get("/v1/models/dall-e-3").send().await.unwrap().status(), 404);
    let key = grok2api::auth::Auth::key_id(KEY);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, usage) = body(c.http.get(c.url(&format!("/admin/usage?key={}", key.0))).bearer_auth("rep-admin")).await;
        let row = &usage["data"][0];
        if row["requests"] == 6 {
            assert_eq!(row["errors"], 1, "{usage}");
            break;
        }
        assert!(Instant::now() < deadline, "the replicas' counts never added up: {usage}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A key made in the console of one replica works on the others, and a revocation reaches them all.
#[tokio::test]
async fn console_keys_are_shared_and_their_revocation_reaches_every_replica() {
    let (_redis, store) = redis(None).await;
    let admin = |c: &mut grok2api::config::Config| c.admin.api_key = Some("rep-admin".into());
    let (a, b, c) =
        (replica(&store, None, admin).await, replica(&store, None, admin).await, replica(&store, None, admin).await);
    let (s, made) =
        body(a.http.post(a.url("/admin/keys")).bearer_auth("rep-admin").json(&json!({"name": "shared"}))).await;
    assert_eq!(s, 201, "{made}");
    let (key, id) = (made["key"].as_str().unwrap(), made["id"].as_str().unwrap());
    assert_eq!(b.http.get(b.url("/v1/models")).bearer_auth(key).send().await.unwrap().status(), 200);
    let (_, listed) = body(c.http.get(c.url("/admin/keys")).bearer_auth("rep-admin")).await;
    assert!(listed["data"].as_array().unwrap().iter().any(|k| k["id"] == id), "{listed}");
    let (s, _) = body(c.http.delete(c.url(&format!("/admin/keys/{id}"))).bearer_auth("rep-admin")).await;
    assert_eq!(s, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.http.get(b.url("/v1/models")).bearer_auth(key).send().await.unwrap().status() != 401 {
        assert!(Instant::now() < deadline, "B still accepts a key revoked on C");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The console of any replica lists every replica's tasks, shows them, cancels them where they run,
/// and re-delivers their callbacks.
#[tokio::test]
async fn the_console_of_any_replica_sees_and_acts_on_every_task() {
    let (_redis, store) = redis(None).await;
    let (rx, hook) = common::webhooks::receiver(vec![]).await;
    let setup = |c: &mut grok2api::config::Config| {
        c.admin.api_key = Some("rep-admin".into());
        common::webhooks::to_loopback(c);
    };
    let (a, c) = (replica(&store, None, setup).await, replica(&store, None, setup).await);
    let admin = |r: reqwest::RequestBuilder| r.bearer_auth("rep-admin");
    let (_, slow) = body(
        a.post("/v1/video/tasks").json(&json!({"model": "grok-imagine-1.0-video", "prompt": "dunes [sim:slow=400]"})),
    )
    .await;
    let slow = slow["data"]["taskId"].as_str().unwrap().to_owned();
    let image = json!({"model": "grok-imagine-1.0", "prompt": "a bell", "callback_url": hook});
    let (_, quick) = body(a.post("/v1/images/tasks").json(&image)).await;
    let quick = quick["data"]["taskId"].as_str().unwrap().to_owned();
    wait_done(&a, &format!("/v1/images/tasks/{quick}")).await;
    wait_for(|| rx.got.lock().unwrap().len() == 1, "the first delivery").await;

    let (_, list) = body(admin(c.http.get(c.url("/admin/tasks")))).await;
    let ids: Vec<&str> = list["data"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [quick.as_str(), slow.as_str()], "A's tasks, newest first, in C's console");
    let (s, detail) = body(admin(c.http.get(c.url(&format!("/admin/tasks/{slow}"))))).await;
    assert_eq!((s, detail["kind"].as_str()), (200, Some("video")));
    let (s, cancelled) = body(admin(c.http.post(c.url(&format!("/admin/tasks/{slow}/cancel"))))).await;
    assert_eq!(s, 200, "{cancelled}");
    assert_eq!(cancelled["error"]["message"], "cancelled by an operator");
    assert_eq!(a.server.state.tasks.snapshot(&slow).unwrap().status.as_str(), "failed", "stopped on A, which ran it");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (s, again) = body(admin(c.http.post(c.url(&format!("/admin/tasks/{quick}/redeliver"))))).await;
    assert_eq!(s, 200, "{again}");
    wait_for(|| rx.got.lock().unwrap().len() == 2, "the re-delivery from C").await;
}

/// Any replica runs: an idle replica takes queued tasks another one accepted but has no worker for.
#[tokio::test]
async fn an_idle_replica_runs_what_a_busy_one_accepted() {
    let (_redis, store) = redis(None).await;
    let one_worker = |c: &mut grok2api::config::Config| c.tasks.workers = 1;
    let (a, b) = (replica(&store, None, one_worker).await, replica(&store, None, one_worker).await);
    // A's only worker is busy with a long video.
    let (_, video) = body(
        a.post("/v1/video/tasks").json(&json!({"model": "grok-imagine-1.0-video", "prompt": "fog [sim:slow=500]"})),
    )
    .await;
    let video = video["data"]["taskId"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut images = Vec::new();
    for i in 0..2 {
        let (s, made) =
            body(a.post("/v1/images/tasks").json(&json!({"model": "grok-imagine-1.0", "prompt": format!("kite {i}")})))
                .await;
        assert_eq!(s, 202);
        images.push(made["data"]["taskId"].as_str().unwrap().to_owned());
    }
    for id in &images {
        let done = wait_done(&a, &format!("/v1/images/tasks/{id}")).await;
        assert_eq!(done["status"], "success", "{done}");
        assert!(b.server.state.tasks.snapshot(id).is_some(), "B ran {id}");
        assert!(a.server.state.tasks.snapshot(id).is_none(), "A dropped its queued copy of {id}");
    }
    let (_, v) = body(a.get(&format!("/v1/video/tasks/{video}"))).await;
    assert_eq!(v["data"]["status"], "processing", "the images did not wait for A's video: {v}");
    assert_eq!(wait_done(&b, &format!("/v1/video/tasks/{video}")).await["status"], "success");
}

/// The per-token concurrency cap counts every replica's requests: with both tokens busy on A, B waits
/// and then answers "busy" instead of sending a third request to an account; when A's requests end
/// (or A dies, after a moment) the tokens serve B again.
#[tokio::test]
async fn the_per_token_concurrency_cap_counts_every_replica() {
    if common::grok_web_only("shared in-flight counts") {
        return;
    }
    let (_redis, store) = redis(None).await;
    let cap = |c: &mut grok2api::config::Config| {
        c.grok.token_max_concurrency = 1;
        c.grok.token_wait_secs = 1;
        c.tasks.workers = 2;
    };
    let (a, b) = (replica(&store, None, cap).await, replica(&store, None, cap).await);
    let mut videos = Vec::new();
    for i in 0..2 {
        let prompt = format!("swell {i} [sim:slow=300]");
        let (_, v) =
            body(a.post("/v1/video/tasks").json(&json!({"model": "grok-imagine-1.0-video", "prompt": prompt}))).await;
        videos.push(v["data"]["taskId"].as_str().unwrap().to_owned());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.server.state.runner.upstream().tokens().unwrap().in_flight_counts().len() < 2 {
        assert!(Instant::now() < deadline, "A never had both tokens busy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1200)).await; // A has told B
    let (status, _, busy) = b.generate(json!({"model": "grok-imagine-1.0", "prompt": "a buoy"})).await;
    assert_eq!(status, 429, "{busy}");
    assert!(busy["error"]["message"].as_str().unwrap().contains("busy"), "{busy}");
    // The console of B shows, per token, the requests A has in flight with it.
    let on_b = b.server.state.runner.upstream().tokens().unwrap().snapshot();
    assert!(on_b.iter().all(|t| t.in_flight == 0 && t.in_flight_elsewhere == 1), "{on_b:?}");
    for v in &videos {
        assert_eq!(wait_done(&a, &format!("/v1/video/tasks/{v}")).await["status"], "success");
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, _, _) = b.generate(json!({"model": "grok-imagine-1.0", "prompt": "a buoy"})).await;
    assert_eq!(status, 200);
}

/// The unfinished-task limit is reserved atomically: six creates racing on two replicas for a key
/// allowed one unfinished task get one 202 and five 429s.
#[tokio::test]
async fn racing_creates_on_two_replicas_get_exactly_the_allowed_tasks() {
    let (_redis, store) = redis(None).await;
    let one = |c: &mut grok2api::config::Config| c.limits.max_concurrent_tasks = 1;
    let (a, b) = (replica(&store, None, one).await, replica(&store, None, one).await);
    let slow = json!({"model": "grok-imagine-1.0-video", "prompt": "tide [sim:slow=300]"});
    let calls = (0..6).map(|i| {
        let h = if i % 2 == 0 { &a } else { &b };
        h.post("/v1/video/tasks").json(&slow).send()
    });
    let statuses: Vec<u16> =
        futures_util::future::join_all(calls).await.into_iter().map(|r| r.unwrap().status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 202).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 5, "{statuses:?}");
}

/// Sends `signal` (`STOP`, `CONT`) to a running process.
fn signal(running: &common::Running, signal: &str) {
    let pid = running.0.as_ref().unwrap().id().to_string();
    assert!(std::process::Command::new("kill").arg(format!("-{signal}")).arg(pid).status().unwrap().success());
}

/// Fencing: replica A is paused (SIGSTOP) while it runs a video, past its lease, so B takes the task
/// over and finishes it (collecting the video from its upstream post) and delivers its callback. When A
/// wakes (SIGCONT) its job finishes too, but its epoch is stale: its write is refused, it drops its
/// copy and sends no callback. The task ends once: B's record is never overwritten, both replicas
/// read the same end, and the receiver hears one callback.
#[tokio::test]
async fn a_replica_paused_past_its_lease_cannot_overwrite_the_task_it_lost() {
    if common::grok_web_only("fencing") {
        return;
    }
    grok2api::install_crypto_provider();
    let (_redis, store) = redis(None).await;
    let (rx, hook) = common::webhooks::receiver(vec![]).await;
    let sim = common::sim_process(5, None);
    let dir = tempfile::tempdir().unwrap();
    let cfg = process_config(dir.path(), &store, "", &sim.grok("tok-fence-0001"));
    let args = ["--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()];
    let log_a = dir.path().join("a.log");
    let (a, url_a) =
        common::spawn_logging(&args, &[], &dir.path().join("a"), std::fs::File::create(&log_a).unwrap().into());
    let http = reqwest::Client::new();
    // Eight frames a second apart: the video takes about 8 s upstream.
    let made = http
        .post(format!("{url_a}/v1/video/tasks"))
        .bearer_auth("rep-key-4a7f1c93e0b2d568")
        .json(&json!({"model": "grok-imagine-1.0-video", "prompt": "tide [sim:slow=1000]", "video_length": 6, "callback_url": hook}))
        .send()
        .await
        .unwrap();
    let id = made.json::<Value>().await.unwrap()["data"]["taskId"].as_str().unwrap().to_owned();
    let mut conn = redis::Client::open(store.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let mut record = async || -> Value {
        let raw: Option<String> = redis::cmd("GET").arg(format!("g2a:t:{id}")).query_async(&mut conn).await.unwrap();
        raw.map(|r| serde_json::from_str(&r).unwrap()).unwrap_or(Value::Null)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !record().await["pending"]["upstream_ref"].is_string() {
        assert!(Instant::now() < deadline, "the video's upstream post never reached the store");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (b, url_b) = spawn(&args, &[], &dir.path().join("b"));
    signal(&a, "STOP");
    // B takes the task over once A's lease lapses, collects the video and delivers the callback.
    let deadline = Instant::now() + Duration::from_secs(30);
    let ended = loop {
        let r = record().await;
        if r["callback"]["done"] == true {
            break r;
        }
        assert!(Instant::now() < deadline, "B never finished the task and delivered its callback: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(ended["status"], "success", "B collected the video A had started: {ended}");
    assert_eq!(rx.got.lock().unwrap().len(), 1, "B's callback");
    signal(&a, "CONT");
    // A's job ends now (the rest of the stream waited in its socket); its write is refused.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log_a).unwrap().contains("another replica took this task over") {
        assert!(Instant::now() < deadline, "A never tried to write the task it lost");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(record().await, ended, "the task ended once: B's record stands");
    assert_eq!(rx.got.lock().unwrap().len(), 1, "one callback, B's");
    let mut reads = Vec::new();
    for url in [&url_a, &url_b] {
        let r = http.get(format!("{url}/v1/video/tasks/{id}")).bearer_auth("rep-key-4a7f1c93e0b2d568").send().await;
        let v = r.unwrap().json::<Value>().await.unwrap();
        assert_eq!(v["data"]["status"], "success", "{url}: {v}");
        reads.push(v["data"].clone());
    }
    assert_eq!(reads[0], reads[1], "A dropped its own end: both replicas read B's");
    let stats: Value = reqwest::get(format!("{}/sim/stats", sim.url)).await.unwrap().json().await.unwrap();
    assert_eq!(stats["video_starts"], 1, "the video is never started twice");
    assert!(sigterm_and_wait(a).success());
    assert!(sigterm_and_wait(b).success());
}

/// Tokens made in the console of one replica are every replica's: an import on A is served by B within
/// a second (with its note), a change on B (switched off, a new note) reaches A, a removal on A leaves
/// B, and a replica that starts later holds what the book keeps.
#[tokio::test]
async fn console_made_tokens_reach_every_replica_and_later_ones() {
    if common::grok_web_only("console-made tokens") {
        return;
    }
    let (_redis, store) = redis(None).await;
    // Each replica's simulator knows the accounts the test imports.
    let start = || {
        let store = store.clone();
        builder()
            .sim(|s| s.tokens.extend(["tok-shared-aaaa-1111".into(), "tok-shared-bbbb-2222".into()]))
            .config(move |c| {
                c.store.url = Some(store);
                c.admin.api_key = Some("rep-admin".into());
            })
            .start()
    };
    let (a, b) = (start().await, start().await);
    let tokens = |h: &Harness| {
        let (http, url) = (h.http.clone(), h.url("/admin/tokens"));
        async move {
            let (s, v) = body(http.get(url).bearer_auth("rep-admin")).await;
            assert_eq!(s, 200, "{v}");
            v["data"].as_array().unwrap().clone()
        }
    };
    let find = |list: &[Value], id: &str| list.iter().find(|t| t["id"] == id).cloned();
    let file = "\"tok-shared-aaaa-1111\"\n{\"token\": \"tok-shared-bbbb-2222\", \"note\": \"spare\"}\n";
    let (s, report) =
        body(a.http.post(a.url("/admin/tokens/import")).bearer_auth("rep-admin").json(&json!({"content": file}))).await;
    assert_eq!((s, report["added"].as_u64()), (200, Some(2)), "{report}");
    let (one, two) = (report["lines"][0]["id"].as_str().unwrap(), report["lines"][1]["id"].as_str().unwrap());
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let on_b = tokens(&b).await;
        if let (Some(x), Some(y)) = (find(&on_b, one), find(&on_b, two)) {
            assert_eq!((x["source"].as_str(), y["note"].as_str()), (Some("admin"), Some("spare")), "{on_b:?}");
            break;
        }
        assert!(Instant::now() < deadline, "B did not hold A's import within a second: {on_b:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let change = json!({"enabled": false, "note": "off for now"});
    let (s, v) =
        body(b.http.patch(b.url(&format!("/admin/tokens/{two}"))).bearer_auth("rep-admin").json(&change)).await;
    assert_eq!(s, 200, "{v}");
    let deadline = Instant::now() + Duration::from_secs(1);
    while find(&tokens(&a).await, two).is_none_or(|t| t["status"] != "disabled" || t["note"] != "off for now") {
        assert!(Instant::now() < deadline, "A never heard of B's change");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Only the imported token is left to serve (the config tokens are removed on A, for every replica):
    // B's requests go out with a token imported on A.
    for t in tokens(&a).await.iter().filter(|t| t["source"] == "config") {
        let id = t["id"].as_str().unwrap();
        let (s, _) = body(a.http.delete(a.url(&format!("/admin/tokens/{id}"))).bearer_auth("rep-admin")).await;
        assert_eq!(s, 200);
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    while tokens(&b).await.len() != 2 {
        assert!(Instant::now() < deadline, "B still holds the removed tokens: {:?}", tokens(&b).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The other token is switched off: a 200 is the imported token at work.
    let (status, _, v) = b.generate(json!({"model": "grok-imagine-1.0", "prompt": "a lantern"})).await;
    assert_eq!(status, 200, "{v}");
    let (s, _) = body(a.http.delete(a.url(&format!("/admin/tokens/{one}"))).bearer_auth("rep-admin")).await;
    assert_eq!(s, 200);
    let deadline = Instant::now() + Duration::from_secs(1);
    while find(&tokens(&b).await, one).is_some() {
        assert!(Instant::now() < deadline, "B still serves a token removed on A");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A replica that starts now reads the book: the switched-off token, with its note; not the removed one.
    let c = start().await;
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let on_c = tokens(&c).await;
        if let Some(t) = find(&on_c, two) {
            assert_eq!((t["status"].as_str(), t["note"].as_str()), (Some("disabled"), Some("off for now")));
            assert!(find(&on_c, one).is_none(), "{on_c:?}");
            break;
        }
        assert!(Instant::now() < deadline, "a later replica never read the book: {on_c:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The console's overview on any replica shows the cluster: every live replica's row, and its counters
/// summed; a replica that stops drops out once its report lapses.
#[tokio::test]
async fn the_overview_of_any_replica_sums_the_cluster_and_lists_each_replica() {
    let (_redis, store) = redis(None).await;
    let admin = |c: &mut grok2api::config::Config| c.admin.api_key = Some("rep-admin".into());
    let (a, b) = (replica(&store, None, admin).await, replica(&store, None, admin).await);
    for _ in 0..3 {
        assert_eq!(body(b.get("/v1/models")).await.0, 200);
    }
    assert_eq!(body(a.get("/v1/models")).await.0, 200);
    let overview = |h: &Harness| {
        let (http, url) = (h.http.clone(), h.url("/admin/overview"));
        async move {
            let (s, v) = body(http.get(url).bearer_auth("rep-admin")).await;
            assert_eq!(s, 200, "{v}");
            v
        }
    };
    // Reports go out every 2 s: wait for both replicas' latest, with the requests above in them.
    let deadline = Instant::now() + Duration::from_secs(10);
    let o = loop {
        let o = overview(&a).await;
        let rows = o["replicas"].as_array().unwrap();
        let counted = |h: &Harness, n: u64| {
            let id = h.server.state.service.replica().unwrap().to_owned();
            rows.iter().any(|r| r["replica"] == id.as_str() && r["requests_total"].as_u64().unwrap() >= n)
        };
        if rows.len() == 2 && counted(&a, 1) && counted(&b, 3) {
            break o;
        }
        assert!(Instant::now() < deadline, "the overview never showed both replicas' requests: {o}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let rows = o["replicas"].as_array().unwrap();
    let summed: u64 = rows.iter().map(|r| r["requests_total"].as_u64().unwrap()).sum();
    assert_eq!(o["cluster"]["requests_total"].as_u64(), Some(summed), "{o}");
    assert_eq!(o["cluster"]["replicas"], 2);
    assert_eq!(o["replica"], a.server.state.service.replica().unwrap());
    assert!(o["cluster"]["requests_total"].as_u64().unwrap() > o["requests_total"].as_u64().unwrap());
    // How each token looks from every replica: one B alone takes for expired shows so on A's table.
    let id = a.server.state.runner.upstream().tokens().unwrap().snapshot()[0].id.clone();
    b.server
        .state
        .runner
        .upstream()
        .tokens()
        .unwrap()
        .apply(&grok2api::upstream::tokens::TokenEvent::Expired { token: id.clone() });
    let b_id = b.server.state.service.replica().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, list) = body(a.http.get(a.url("/admin/tokens")).bearer_auth("rep-admin")).await;
        let row = list["data"].as_array().unwrap().iter().find(|t| t["id"] == id.as_str()).unwrap().clone();
        if row["elsewhere"][&b_id] == "expired" {
            assert_eq!(row["status"], "active", "{row}");
            break;
        }
        assert!(Instant::now() < deadline, "A's table never showed B's view of the token: {row}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // B stops: its report lapses and it leaves the cluster view.
    let gone = b.server.state.service.replica().unwrap().to_owned();
    b.server.stop().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while overview(&a).await["replicas"].as_array().unwrap().iter().any(|r| r["replica"] == gone.as_str()) {
        assert!(Instant::now() < deadline, "a stopped replica stayed in the overview");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// With several replicas one of them refreshes quotas (the `refresh` role), so grok.com sees one
/// replica's paced calls, not each replica's; what it learns (the plan too) reaches the others.
#[tokio::test]
async fn one_replica_refreshes_the_quotas_and_every_replica_learns_them() {
    if common::grok_web_only("quota refreshes") {
        return;
    }
    let (_redis, store) = redis(None).await;
    let start = || {
        let store = store.clone();
        builder()
            .sim(|s| {
                s.plans.insert("tok-alpha-0001".into(), "super".into());
            })
            .config(move |c| {
                c.store.url = Some(store);
                c.grok.quota_refresh_secs = 1;
                c.grok.quota_refresh_per_sec = 50;
            })
            .start()
    };
    let (a, b) = (start().await, start().await);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let asked = |h: &Harness| h.sim.seen().iter().filter(|(p, _, _)| p == "/rest/media/imagine/quota_info").count();
    let (by_a, by_b) = (asked(&a), asked(&b));
    // Whichever replica takes the lease first keeps it; the other never asks.
    assert!((by_a > 0) != (by_b > 0), "exactly one replica refreshes: A asked {by_a} times, B {by_b}");
    let (lead, other) = if by_a > 0 { (&a, &b) } else { (&b, &a) };
    let plan = |h: &Harness| {
        let pool = h.server.state.runner.upstream().tokens().unwrap().snapshot();
        pool.iter().find(|t| t.id == grok2api::upstream::tokens::token_id("tok-alpha-0001")).and_then(|t| t.plan)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while plan(other) != Some("supergrok") {
        assert!(Instant::now() < deadline, "the other replica never learned the plan: {:?}", plan(other));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(plan(lead), Some("supergrok"));
}

/// A finished task's record expires after `tasks.ttl_secs`, and its id leaves the indexes with it
/// (its owner's list, the list of every task): a long run's Redis levels off instead of growing.
#[tokio::test]
async fn expired_tasks_leave_the_indexes_too() {
    let (_redis, store) = redis(None).await;
    let short = |c: &mut grok2api::config::Config| {
        c.tasks.ttl_secs = 1;
        c.store.lease_secs = 1;
    };
    let a = replica(&store, None, short).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let (s, v) = body(
            a.post("/v1/images/tasks").json(&json!({"model": "grok-imagine-1.0", "prompt": format!("a kite {i}")})),
        )
        .await;
        assert_eq!(s, 202, "{v}");
        ids.push(v["data"]["taskId"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        assert_eq!(wait_done(&a, &format!("/v1/images/tasks/{id}")).await["status"], "success");
    }
    let mut conn = redis::Client::open(store.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let owners: Vec<String> = redis::cmd("KEYS").arg("g2a:o:*").query_async(&mut conn).await.unwrap();
    assert_eq!(owners.len(), 1, "{owners:?}");
    let count = |key: String| {
        let mut conn = conn.clone();
        async move { redis::cmd("ZCARD").arg(key).query_async::<u64>(&mut conn).await.unwrap() }
    };
    assert_eq!(count(owners[0].clone()).await, 3);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = (count(owners[0].clone()).await, count("g2a:all".into()).await, count("g2a:expiring".into()).await);
        if left == (0, 0, 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ids of expired tasks stayed in the indexes: (owner, all, expiring) = {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (s, v) = body(a.get("/v1/images/tasks")).await;
    assert_eq!((s, v["data"]["tasks"].as_array().map(Vec::len)), (200, Some(0)), "{v}");
}

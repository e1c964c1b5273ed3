//! The soak test's client (`benches/soak.sh` starts everything and runs this; docs/benchmarks.md,
//! "Soak"): a webhook receiver on loopback, a capacity measurement, task creates at a fixed rate
//! spread over the replicas, a sampler (every replica's RSS and open files, Redis's memory and keys)
//! and the verdict. Exit code 0 when every check holds, 1 otherwise.
//!
//! `cargo build --release --example soak && target/release/examples/soak --help`

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use clap::Parser;
use hmac::{Hmac, Mac};
use rand::Rng;
use serde_json::{Value, json};
use sha2::Sha256;

#[derive(Debug, Parser)]
#[command(about = "Soak client: creates tasks at a fixed rate, receives their callbacks, samples the processes")]
struct Args {
    /// The replicas' addresses (host:port), comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    gateways: Vec<String>,
    /// The replicas' process ids, in the same order (for RSS and open files).
    #[arg(long, value_delimiter = ',', required = true)]
    pids: Vec<u32>,
    /// The simulator's process id (its RSS is sampled too, for information).
    #[arg(long)]
    sim_pid: Option<u32>,
    /// The shared store, redis://host:port/.
    #[arg(long)]
    redis: String,
    /// The client API key.
    #[arg(long)]
    key: String,
    /// The gateways' callbacks.secret (whsec_…): every delivery's signature is checked.
    #[arg(long)]
    secret: String,
    /// Length of the fixed-rate phase.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Creates per second; unset = half the completed-task rate measured first.
    #[arg(long)]
    rate: Option<f64>,
    /// Length of the capacity measurement (a closed loop of `calibrate_outstanding` tasks at once).
    #[arg(long, default_value_t = 30)]
    calibrate_secs: u64,
    /// Unfinished tasks the measurement keeps at once (twice the replicas' workers keeps every worker busy).
    #[arg(long, default_value_t = 48)]
    calibrate_outstanding: usize,
    /// Samples before this are warm-up (default: a quarter of the run, at least twice `ttl_secs` and the
    /// time each replica takes to fill its quality guard's window at the rate run, at most half the run
    /// unless twice the TTL is more).
    #[arg(long)]
    warmup_secs: Option<u64>,
    #[arg(long, default_value_t = 10)]
    sample_secs: u64,
    /// Share of prompts carrying one of the four fault tokens.
    #[arg(long, default_value_t = 0.05)]
    fault_share: f64,
    /// Share of tasks that are videos (the rest are images).
    #[arg(long, default_value_t = 0.10)]
    video_share: f64,
    /// After the fixed-rate phase, how long to wait for the last tasks and callbacks.
    #[arg(long, default_value_t = 180)]
    drain_secs: u64,
    /// Where samples.csv and summary.md go.
    #[arg(long)]
    out: PathBuf,
    /// The gateways' tasks.ttl_secs, for the summary.
    #[arg(long, default_value_t = 60)]
    ttl_secs: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
enum Fault {
    None,
    Fail,
    Disconnect,
    Slow,
    RateLimit,
}

impl Fault {
    fn pick(rng: &mut impl Rng, share: f64) -> (Fault, String) {
        if !rng.random_bool(share) {
            return (Fault::None, String::new());
        }
        match rng.random_range(0..4) {
            0 => (Fault::Fail, " [sim:fail]".into()),
            1 => (Fault::Disconnect, " [sim:disconnect]".into()),
            2 => (Fault::Slow, format!(" [sim:slow={}]", rng.random_range(100..=800))),
            _ => (Fault::RateLimit, " [sim:rate-limit]".into()),
        }
    }
    fn name(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::Fail => "fail",
            Fault::Disconnect => "disconnect",
            Fault::Slow => "slow",
            Fault::RateLimit => "rate-limit",
        }
    }
}

struct Made {
    video: bool,
    /// The replica that accepted it.
    replica: usize,
    fault: Fault,
    created: Instant,
}

/// One delivery seen by the receiver.
struct Delivery {
    webhook_id: String,
    status: String,
    at: Instant,
}

#[derive(Default)]
struct Hooks {
    by_task: HashMap<String, Vec<Delivery>>,
    deliveries: u64,
    bad_signature: u64,
    unreadable: u64,
}

#[derive(Default)]
struct Counters {
    created: AtomicU64,
    create_429: AtomicU64,
    create_errors: AtomicU64,
    reads_ok: AtomicU64,
    read_errors: AtomicU64,
}

struct Soak {
    args: Args,
    http: reqwest::Client,
    hook_url: String,
    tasks: Mutex<HashMap<String, Made>>,
    /// The receiver's record of every delivery.
    hooks: Arc<Mutex<Hooks>>,
    n: Counters,
    /// Examples of what went wrong (first few of each kind), for the summary.
    notes: Mutex<BTreeMap<String, Vec<String>>>,
    next_replica: AtomicU64,
    /// Creates not answered yet (a rising figure says the gateways fall behind).
    creating: AtomicU64,
}

impl Soak {
    fn note(&self, kind: &str, what: String) {
        let mut notes = self.notes.lock().unwrap();
        let v = notes.entry(kind.to_owned()).or_default();
        if v.len() < 5 {
            v.push(what);
        }
    }

    /// Creates one task (images mostly, some videos, some with a fault), retrying after a 429 or a 5xx
    /// until `until`. Returns its id.
    async fn create(self: &Arc<Self>, until: Instant) -> Option<String> {
        let (video, fault, body) = {
            let mut rng = rand::rng();
            let video = rng.random_bool(self.args.video_share);
            let (fault, token) = Fault::pick(&mut rng, self.args.fault_share);
            let n: u32 = rng.random();
            let body = if video {
                json!({"model": "grok-imagine-1.0-video", "prompt": format!("soak clip {n}{token}"),
                       "video_length": 6, "callback_url": self.hook_url})
            } else {
                json!({"model": "grok-imagine-1.0", "prompt": format!("soak picture {n}{token}"), "n": 1,
                       "callback_url": self.hook_url})
            };
            (video, fault, body)
        };
        let path = if video { "/v1/video/tasks" } else { "/v1/images/tasks" };
        loop {
            let r = self.next_replica.fetch_add(1, Relaxed) as usize % self.args.gateways.len();
            let url = format!("http://{}{path}", self.args.gateways[r]);
            self.creating.fetch_add(1, Relaxed);
            let sent = self.http.post(&url).bearer_auth(&self.args.key).json(&body).send().await;
            self.creating.fetch_sub(1, Relaxed);
            let wait = match sent {
                Ok(resp) if resp.status().as_u16() == 202 => {
                    let v: Value = resp.json().await.unwrap_or(Value::Null);
                    let Some(id) = v["data"]["taskId"].as_str().map(str::to_owned) else {
                        self.n.create_errors.fetch_add(1, Relaxed);
                        self.note("create: 202 without a taskId", v.to_string());
                        return None;
                    };
                    self.tasks
                        .lock()
                        .unwrap()
                        .insert(id.clone(), Made { video, fault, replica: r, created: Instant::now() });
                    self.n.created.fetch_add(1, Relaxed);
                    self.spawn_read(r, video, &id);
                    return Some(id);
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|h| h.to_str().ok()?.parse::<u64>().ok())
                        .unwrap_or(1)
                        .clamp(1, 10);
                    let text = resp.text().await.unwrap_or_default();
                    if status == 429 {
                        self.n.create_429.fetch_add(1, Relaxed);
                        self.note("create: 429 (retried)", text);
                    } else {
                        self.n.create_errors.fetch_add(1, Relaxed);
                        self.note(&format!("create: HTTP {status}"), text);
                        if status < 500 {
                            return None; // the request itself is wrong: retrying will not help
                        }
                    }
                    Duration::from_secs(retry)
                }
                Err(e) => {
                    // The gateway may have made the task: its callback then shows up as unexpected.
                    self.n.create_errors.fetch_add(1, Relaxed);
                    self.note("create: transport error", e.to_string());
                    return None;
                }
            };
            if Instant::now() + wait > until {
                return None;
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// One status read through another replica, a moment after the create (2 of 3 reads come from Redis).
    fn spawn_read(self: &Arc<Self>, made_on: usize, video: bool, id: &str) {
        let this = self.clone();
        let url = format!(
            "http://{}/v1/{}/tasks/{id}",
            self.args.gateways[(made_on + 1) % self.args.gateways.len()],
            if video { "video" } else { "images" }
        );
        tokio::spawn(async move {
            let ms = rand::rng().random_range(200..3000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            match this.http.get(&url).bearer_auth(&this.args.key).send().await {
                Ok(r) if r.status().is_success() => this.n.reads_ok.fetch_add(1, Relaxed),
                Ok(r) => {
                    let s = r.status();
                    this.note("read: not 200", format!("{url}: {s} {}", r.text().await.unwrap_or_default()));
                    this.n.read_errors.fetch_add(1, Relaxed)
                }
                Err(e) => {
                    this.note("read: transport error", format!("{url}: {e}"));
                    this.n.read_errors.fetch_add(1, Relaxed)
                }
            };
        });
    }

    fn has_callback(&self, id: &str) -> bool {
        self.hooks.lock().unwrap().by_task.contains_key(id)
    }

    /// Created tasks that have no callback yet.
    fn unended(&self) -> Vec<String> {
        let hooks = self.hooks.lock().unwrap();
        self.tasks.lock().unwrap().keys().filter(|id| !hooks.by_task.contains_key(*id)).cloned().collect()
    }

    fn ended(&self) -> u64 {
        self.hooks.lock().unwrap().by_task.len() as u64
    }
}

// ---- the webhook receiver ----

fn verify(secret: &str, headers: &axum::http::HeaderMap, body: &[u8]) -> bool {
    let Ok(key) = base64::engine::general_purpose::STANDARD.decode(secret.trim_start_matches("whsec_")) else {
        return false;
    };
    let get = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).unwrap_or("");
    let (id, ts, sigs) = (get("webhook-id"), get("webhook-timestamp"), get("webhook-signature"));
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key) else { return false };
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let expected = format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()));
    sigs.split(' ').any(|s| s == expected)
}

async fn start_receiver(secret: String) -> (Arc<Mutex<Hooks>>, String) {
    let hooks = Arc::new(Mutex::new(Hooks::default()));
    let state = hooks.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let state = state.clone();
            let ok = verify(&secret, &headers, &body);
            async move {
                let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let mut h = state.lock().unwrap();
                h.deliveries += 1;
                if !ok {
                    h.bad_signature += 1;
                }
                let webhook_id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                match event["taskId"].as_str() {
                    Some(task) if !webhook_id.is_empty() => {
                        let status = event["data"]["status"].as_str().unwrap_or("?").to_owned();
                        let d = Delivery { webhook_id, status, at: Instant::now() };
                        h.by_task.entry(task.to_owned()).or_default().push(d);
                    }
                    _ => h.unreadable += 1,
                }
                // Always 200: a retry would only ever come from a delivery the gateway lost track of.
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the receiver");
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.expect("receiver") });
    (hooks, url)
}

// ---- sampling ----

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse().ok()))
        .unwrap_or(0)
}

fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count() as u64).unwrap_or(0)
}

#[derive(Clone, Default)]
struct RedisSample {
    used_memory: u64,
    rss: u64,
    keys: u64,
    /// Keys per family (`t`, `o`, `i`, …: the part after `g2a:` up to the next colon).
    families: BTreeMap<String, u64>,
    /// Members of the task indexes: `g2a:all` (every task) and every owner's `g2a:o:*`.
    all_entries: u64,
    owner_entries: u64,
    queue: u64,
}

async fn sample_redis(c: &mut redis::aio::MultiplexedConnection) -> redis::RedisResult<RedisSample> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(c).await?;
    let field = |name: &str| {
        info.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse::<u64>().ok()).unwrap_or(0)
    };
    let mut s = RedisSample { used_memory: field("used_memory"), rss: field("used_memory_rss"), ..Default::default() };
    s.keys = redis::cmd("DBSIZE").query_async(c).await?;
    let mut cursor = 0u64;
    let mut zsets = vec![];
    loop {
        let (next, keys): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg("COUNT").arg(1000).query_async(c).await?;
        for k in keys {
            let rest = k.strip_prefix("g2a:").unwrap_or(&k);
            let family = rest.split(':').next().unwrap_or(rest).to_owned();
            if family == "o" {
                zsets.push(k.clone());
            }
            *s.families.entry(family).or_default() += 1;
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    for z in zsets {
        let n: u64 = redis::cmd("ZCARD").arg(&z).query_async(c).await?;
        s.owner_entries += n;
    }
    s.all_entries = redis::cmd("ZCARD").arg("g2a:all").query_async(c).await?;
    s.queue = redis::cmd("ZCARD").arg("g2a:queue").query_async(c).await?;
    Ok(s)
}

#[derive(Clone)]
struct Sample {
    t: f64,
    phase: &'static str,
    created: u64,
    ended: u64,
    creating: u64,
    create_429: u64,
    create_errors: u64,
    rss: Vec<u64>,
    fds: Vec<u64>,
    sim_rss: u64,
    redis: RedisSample,
}

async fn take_sample(soak: &Soak, c: &mut redis::aio::MultiplexedConnection, t: f64, phase: &'static str) -> Sample {
    let redis = match sample_redis(c).await {
        Ok(r) => r,
        Err(e) => {
            soak.note("redis sample failed", e.to_string());
            RedisSample::default()
        }
    };
    Sample {
        t,
        phase,
        created: soak.n.created.load(Relaxed),
        ended: soak.ended(),
        creating: soak.creating.load(Relaxed),
        create_429: soak.n.create_429.load(Relaxed),
        create_errors: soak.n.create_errors.load(Relaxed),
        rss: soak.args.pids.iter().map(|&p| rss_kib(p)).collect(),
        fds: soak.args.pids.iter().map(|&p| open_fds(p)).collect(),
        sim_rss: soak.args.sim_pid.map(rss_kib).unwrap_or(0),
        redis,
    }
}

// ---- phases ----

/// Keeps `outstanding` tasks unfinished at once for `secs` (each loop creates one and waits for its
/// callback) and returns the completed tasks per second after a 5 s ramp.
async fn measure_capacity(soak: &Arc<Soak>, secs: u64, outstanding: usize) -> f64 {
    let start = Instant::now();
    let stop = start + Duration::from_secs(secs);
    let ramp = start + Duration::from_secs(5.min(secs / 4));
    let done_in_window = Arc::new(AtomicU64::new(0));
    let mut loops = vec![];
    for _ in 0..outstanding {
        let (soak, done) = (soak.clone(), done_in_window.clone());
        loops.push(tokio::spawn(async move {
            while Instant::now() < stop {
                let Some(id) = soak.create(stop).await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                let deadline = Instant::now() + Duration::from_secs(120);
                while !soak.has_callback(&id) && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let now = Instant::now();
                if now > ramp && now <= stop {
                    done.fetch_add(1, Relaxed);
                }
            }
        }));
    }
    for l in loops {
        let _ = l.await;
    }
    let window = stop.duration_since(ramp).as_secs_f64();
    done_in_window.load(Relaxed) as f64 / window
}

/// Waits until every created task has its callback, or `deadline`.
async fn wait_all_ended(soak: &Soak, deadline: Instant) {
    while Instant::now() < deadline {
        if soak.unended().is_empty() && soak.creating.load(Relaxed) == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 }
}

/// Least-squares slope of `ys` over `ts` (seconds), per hour: what a steady trend would add in an hour.
fn slope_per_hour(ts: &[f64], ys: &[f64]) -> f64 {
    let (mt, my) = (mean(ts), mean(ys));
    let var: f64 = ts.iter().map(|t| (t - mt) * (t - mt)).sum();
    if var == 0.0 {
        return 0.0;
    }
    let cov: f64 = ts.iter().zip(ys).map(|(t, y)| (t - mt) * (y - my)).sum();
    cov / var * 3600.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    grok2api::install_crypto_provider();
    let args = Args::parse();
    assert_eq!(args.gateways.len(), args.pids.len(), "one pid per gateway");
    std::fs::create_dir_all(&args.out).expect("create the output directory");
    let (hooks, hook_url) = start_receiver(args.secret.clone()).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(256)
        .build()
        .expect("http client");
    let redis_conn = redis::Client::open(args.redis.as_str())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to redis");
    let soak = Arc::new(Soak {
        args,
        http,
        hook_url,
        tasks: Mutex::default(),
        hooks,
        n: Counters::default(),
        notes: Mutex::default(),
        next_replica: AtomicU64::new(0),
        creating: AtomicU64::new(0),
    });
    let pass = run(soak, redis_conn).await;
    std::process::exit(if pass { 0 } else { 1 });
}

async fn run(soak: Arc<Soak>, redis_conn: redis::aio::MultiplexedConnection) -> bool {
    let a = &soak.args;
    let soak_secs = (a.minutes * 60.0).round() as u64;

    // 1. Capacity: tasks created and run to their callback, as many as the replicas finish.
    let (rate, capacity) = match a.rate {
        Some(r) => (r, None),
        None => {
            eprintln!(
                "soak: measuring capacity for {} s ({} unfinished tasks at once)",
                a.calibrate_secs, a.calibrate_outstanding
            );
            let cap = measure_capacity(&soak, a.calibrate_secs, a.calibrate_outstanding).await;
            (cap / 2.0, Some(cap))
        }
    };
    if rate <= 0.0 {
        eprintln!("soak: no task finished while measuring capacity: is the simulator up?");
        return false;
    }
    // Twice the TTL at least: by then every replica's store and Redis hold a full TTL of finished tasks.
    // And until each replica's quality guard holds its window of 8,192 outputs (a 60-minute run at 20
    // tasks/s over three replicas climbed for 20 minutes, then stayed flat): half the run at most.
    let per_replica = rate / a.gateways.len().max(1) as f64;
    let guard_fill = (grok2api::upstream::quality::WINDOW as f64 / per_replica).ceil() as u64;
    let warmup = a
        .warmup_secs
        .unwrap_or((soak_secs / 4).max(2 * a.ttl_secs).max(guard_fill).min((soak_secs / 2).max(2 * a.ttl_secs)));
    wait_all_ended(&soak, Instant::now() + Duration::from_secs(30)).await;
    let calibration_tasks = soak.n.created.load(Relaxed);
    eprintln!(
        "soak: {}creating {rate:.1} tasks/s for {soak_secs} s, warm-up {warmup} s, then up to {} s to drain",
        capacity.map(|c| format!("capacity {c:.1} tasks/s completed; ")).unwrap_or_default(),
        a.drain_secs
    );

    // 2. The sampler, from the start of the fixed-rate phase.
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(soak_secs);
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_sampling = tokio_util::sync::CancellationToken::new();
    let sampler = {
        let (soak, samples, draining, stop) = (soak.clone(), samples.clone(), draining.clone(), stop_sampling.clone());
        let mut conn = redis_conn.clone();
        let csv_path = soak.args.out.join("samples.csv");
        tokio::spawn(async move {
            let mut csv = csv_header(soak.args.pids.len());
            let mut tick = tokio::time::interval(Duration::from_secs(soak.args.sample_secs));
            loop {
                let last = tokio::select! {
                    _ = tick.tick() => false,
                    _ = stop.cancelled() => true,
                };
                let phase = if draining.load(Relaxed) { "drain" } else { "soak" };
                let s = take_sample(&soak, &mut conn, t0.elapsed().as_secs_f64(), phase).await;
                csv_row(&mut csv, &s);
                let _ = std::fs::write(&csv_path, &csv);
                if s.phase == "soak" && (s.t as u64) % 60 < soak.args.sample_secs {
                    eprintln!("{}", progress_line(&s));
                }
                samples.lock().unwrap().push(s);
                if last {
                    return;
                }
            }
        })
    };

    // 3. Creates at a fixed rate, whatever the answers take (an open loop).
    let mut k = 0u64;
    loop {
        let at = t0 + Duration::from_secs_f64(k as f64 / rate);
        if at >= end {
            break;
        }
        tokio::time::sleep_until(at.into()).await;
        let s = soak.clone();
        tokio::spawn(async move { s.create(end + Duration::from_secs(30)).await });
        k += 1;
    }

    // 4. Drain: every task's end, then a while longer for late (duplicate) deliveries.
    draining.store(true, Relaxed);
    eprintln!("soak: fixed-rate phase over ({k} creates started); draining");
    wait_all_ended(&soak, end + Duration::from_secs(soak.args.drain_secs)).await;
    let drained_after = end.elapsed();
    tokio::time::sleep(Duration::from_secs(10)).await;
    stop_sampling.cancel();
    let _ = sampler.await;

    // 5. Tasks without a callback: did they end at all?
    let mut missing: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for id in soak.unended() {
        let video = soak.tasks.lock().unwrap().get(&id).is_some_and(|m| m.video);
        let url = format!("http://{}/v1/{}/tasks/{id}", a.gateways[0], if video { "video" } else { "images" });
        let what = match soak.http.get(&url).bearer_auth(&a.key).send().await {
            Ok(r) => {
                let code = r.status().as_u16();
                let v: Value = r.json().await.unwrap_or(Value::Null);
                match v["data"]["status"].as_str() {
                    Some(s) => format!("{s} (callback {})", v["data"]["callback"]),
                    None => format!("HTTP {code}"),
                }
            }
            Err(e) => format!("unreadable: {e}"),
        };
        missing.entry(what).or_default().push(id);
    }
    let mut conn = redis_conn.clone();
    let mut diagnoses = vec![];
    for id in missing.values().flatten().take(10) {
        diagnoses.push(diagnose(&soak, &mut conn, id).await.unwrap_or_else(|e| format!("`{id}`: redis: {e}")));
    }
    let samples = samples.lock().unwrap().clone();
    let params = Params { rate, capacity, calibration_tasks, soak_secs, warmup, drained_after };
    judge(&soak, &samples, params, missing, diagnoses)
}

/// Where a task without a callback stands in Redis: its record's status, whether it waits in the
/// shared queue, which replica's running set holds it, and which replicas are alive.
async fn diagnose(soak: &Soak, c: &mut redis::aio::MultiplexedConnection, id: &str) -> redis::RedisResult<String> {
    let raw: Option<String> = redis::cmd("GET").arg(format!("g2a:t:{id}")).query_async(c).await?;
    let record: Value = raw.as_deref().and_then(|r| serde_json::from_str(r).ok()).unwrap_or(Value::Null);
    let queued: Option<f64> = redis::cmd("ZSCORE").arg("g2a:queue").arg(id).query_async(c).await?;
    let mut running_in = vec![];
    let mut alive = vec![];
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg("COUNT").arg(1000).query_async(c).await?;
        for k in keys {
            if let Some(replica) = k.strip_prefix("g2a:r:") {
                let member: bool = redis::cmd("SISMEMBER").arg(&k).arg(id).query_async(c).await?;
                if member {
                    running_in.push(replica.to_owned());
                }
            } else if let Some(replica) = k.strip_prefix("g2a:alive:") {
                alive.push(replica.to_owned());
            }
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    let made = soak.tasks.lock().unwrap().get(id).map(|m| (m.replica + 1, m.fault, m.created.elapsed().as_secs()));
    Ok(format!(
        "`{id}`: made on replica {} (fault {}, {} s ago); record: status {}, progress {}, job kept: {}, \
         updated {} ms after creation; in the shared queue: {}; in the running set of: {:?}; alive replicas: {:?}",
        made.map_or("?".into(), |m| m.0.to_string()),
        made.map_or("?", |m| m.1.name()),
        made.map_or(0, |m| m.2),
        record["status"],
        record["progress"],
        !record["pending"].is_null(),
        record["updated_ms"].as_u64().unwrap_or(0).saturating_sub(record["created_ms"].as_u64().unwrap_or(0)),
        queued.map_or("no".into(), |s| format!("yes (score {s})")),
        running_in,
        alive
    ))
}

struct Params {
    rate: f64,
    capacity: Option<f64>,
    calibration_tasks: u64,
    soak_secs: u64,
    warmup: u64,
    drained_after: Duration,
}

fn csv_header(replicas: usize) -> String {
    let mut h = String::from("t_s,phase,created,ended,creates_in_flight,create_429,create_errors");
    for i in 1..=replicas {
        let _ = write!(h, ",r{i}_rss_kib,r{i}_fds");
    }
    h.push_str(",sim_rss_kib,redis_used_memory,redis_rss,redis_keys,redis_task_records,redis_all_entries,redis_owner_entries,redis_queue,redis_families\n");
    h
}

fn csv_row(csv: &mut String, s: &Sample) {
    let _ = write!(
        csv,
        "{:.0},{},{},{},{},{},{}",
        s.t, s.phase, s.created, s.ended, s.creating, s.create_429, s.create_errors
    );
    for (rss, fds) in s.rss.iter().zip(&s.fds) {
        let _ = write!(csv, ",{rss},{fds}");
    }
    let r = &s.redis;
    let families: Vec<String> = r.families.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = writeln!(
        csv,
        ",{},{},{},{},{},{},{},{},{}",
        s.sim_rss,
        r.used_memory,
        r.rss,
        r.keys,
        r.families.get("t").copied().unwrap_or(0),
        r.all_entries,
        r.owner_entries,
        r.queue,
        families.join(" ")
    );
}

fn progress_line(s: &Sample) -> String {
    let rss: Vec<String> = s.rss.iter().map(|k| format!("{:.1}", *k as f64 / 1024.0)).collect();
    let fds: Vec<String> = s.fds.iter().map(u64::to_string).collect();
    format!(
        "soak: t={:>5.0}s created {} ended {} | RSS MiB {} | fds {} | redis {:.2} MiB, {} keys, index entries {} all / {} owner",
        s.t,
        s.created,
        s.ended,
        rss.join("/"),
        fds.join("/"),
        s.redis.used_memory as f64 / 1048576.0,
        s.redis.keys,
        s.redis.all_entries,
        s.redis.owner_entries
    )
}

/// (mean of the middle third, mean of the last third) of a series.
fn thirds(v: &[f64]) -> (f64, f64) {
    let n = v.len();
    (mean(&v[n / 3..2 * n / 3]), mean(&v[2 * n / 3..]))
}

fn judge(
    soak: &Soak,
    samples: &[Sample],
    p: Params,
    missing: BTreeMap<String, Vec<String>>,
    diagnoses: Vec<String>,
) -> bool {
    let a = &soak.args;
    let mut md = String::new();
    let mut checks: Vec<(String, String, bool)> = vec![];
    let steady: Vec<&Sample> = samples.iter().filter(|s| s.phase == "soak" && s.t >= p.warmup as f64).collect();
    let enough = steady.len() >= 3;
    let times: Vec<f64> = steady.iter().map(|s| s.t).collect();
    let _ = writeln!(md, "# Soak run\n");
    let _ = writeln!(
        md,
        "{} replicas on one Redis, the simulator, callbacks to a local receiver. Fixed-rate phase {} s \
         ({:.1} min), warm-up {} s, samples every {} s, tasks.ttl_secs = {}, {:.0} % of prompts with a fault, \
         {:.0} % videos.\n",
        a.gateways.len(),
        p.soak_secs,
        p.soak_secs as f64 / 60.0,
        p.warmup,
        a.sample_secs,
        a.ttl_secs,
        a.fault_share * 100.0,
        a.video_share * 100.0
    );
    match p.capacity {
        Some(c) => {
            let _ = writeln!(
                md,
                "Capacity: {c:.1} tasks/s completed (created and run to their callback, {} unfinished at once, \
                 {} s, {} tasks); the soak creates at half of it: **{:.1} tasks/s**.\n",
                a.calibrate_outstanding, a.calibrate_secs, p.calibration_tasks, p.rate
            );
        }
        None => {
            let _ = writeln!(md, "Rate given: **{:.1} tasks/s** (no capacity measurement).\n", p.rate);
        }
    }

    // Samples: one a minute (and the last of each phase).
    let _ = writeln!(md, "## Samples\n");
    let mut head = String::from("| t (s) | phase | created | ended |");
    let mut rule = String::from("| --- | --- | --- | --- |");
    for i in 1..=a.gateways.len() {
        let _ = write!(head, " r{i} RSS (MiB) | r{i} fds |");
        rule.push_str(" --- | --- |");
    }
    head.push_str(" sim RSS (MiB) | Redis used (MiB) | keys | task records | `all` entries | `o:*` entries |");
    rule.push_str(" --- | --- | --- | --- | --- | --- |");
    let _ = writeln!(md, "{head}\n{rule}");
    for (i, s) in samples.iter().enumerate() {
        let next_phase = samples.get(i + 1).map(|n| n.phase);
        let minute = (s.t as u64) % 60 < a.sample_secs;
        if !(minute || next_phase != Some(s.phase) || i == 0) {
            continue;
        }
        let mut row = format!("| {:.0} | {} | {} | {} |", s.t, s.phase, s.created, s.ended);
        for (rss, fds) in s.rss.iter().zip(&s.fds) {
            let _ = write!(row, " {:.1} | {fds} |", *rss as f64 / 1024.0);
        }
        let _ = write!(
            row,
            " {:.1} | {:.2} | {} | {} | {} | {} |",
            s.sim_rss as f64 / 1024.0,
            s.redis.used_memory as f64 / 1048576.0,
            s.redis.keys,
            s.redis.families.get("t").copied().unwrap_or(0),
            s.redis.all_entries,
            s.redis.owner_entries
        );
        let _ = writeln!(md, "{row}");
    }
    if let Some(last) = samples.last() {
        let families: Vec<String> = last.redis.families.iter().map(|(k, v)| format!("`{k}` {v}")).collect();
        let _ = writeln!(md, "\nRedis keys by family at the end: {}.", families.join(", "));
    }

    // RSS after warm-up, per replica: the mean of the first three samples after it against the last three.
    let _ = writeln!(md, "\n## Checks\n");
    for r in 0..a.gateways.len() {
        let series: Vec<f64> = steady.iter().map(|s| s.rss[r] as f64).collect();
        let w = series.len().min(3);
        let (first, last) = if w > 0 { (mean(&series[..w]), mean(&series[series.len() - w..])) } else { (0.0, 0.0) };
        let growth = if first > 0.0 { last / first - 1.0 } else { f64::NAN };
        let fds: Vec<u64> = steady.iter().map(|s| s.fds[r]).collect();
        checks.push((
            format!("replica {} RSS growth after warm-up < 10 %", r + 1),
            format!(
                "{:.1} → {:.1} MiB ({:+.1} %; trend {:+.1} MiB/h); fds {}–{}",
                first / 1024.0,
                last / 1024.0,
                growth * 100.0,
                slope_per_hour(&times, &series) / 1024.0,
                fds.iter().min().unwrap_or(&0),
                fds.iter().max().unwrap_or(&0)
            ),
            enough && growth < 0.10,
        ));
    }

    // Every task ended; every owed callback exactly once.
    let tasks = soak.tasks.lock().unwrap();
    let hooks = soak.hooks.lock().unwrap();
    let created = tasks.len() as u64;
    let unended: u64 = missing.values().map(|v| v.len() as u64).sum();
    let never_ended: u64 = missing
        .iter()
        .filter(|(what, _)| !(what.starts_with("success") || what.starts_with("failed")))
        .map(|(_, v)| v.len() as u64)
        .sum();
    let mut once = 0u64;
    let mut repeated_ids = 0u64; // the same webhook-id delivered again (a retry of a delivery we answered 200)
    let mut second_events = 0u64; // another webhook-id for a task already told of
    let mut non_terminal = 0u64;
    let mut latencies = vec![];
    let mut outcomes: BTreeMap<(bool, Fault, String), u64> = BTreeMap::new();
    for (id, ds) in &hooks.by_task {
        let mut ids: Vec<&str> = ds.iter().map(|d| d.webhook_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        repeated_ids += (ds.len() - ids.len()) as u64;
        second_events += (ids.len() - 1) as u64;
        if ds.len() == 1 {
            once += 1;
        }
        non_terminal += ds.iter().filter(|d| !matches!(d.status.as_str(), "success" | "failed")).count() as u64;
        if let Some(m) = tasks.get(id) {
            latencies.push(ds[0].at.duration_since(m.created).as_secs_f64() * 1000.0);
            *outcomes.entry((m.video, m.fault, ds[0].status.clone())).or_default() += 1;
        }
    }
    let unexpected = hooks.by_task.keys().filter(|id| !tasks.contains_key(*id)).count() as u64;
    let ended = created - unended;
    checks.push((
        "every task ends".into(),
        format!(
            "{created} created, {ended} told ended by their callback, {} more ended without one, {never_ended} not ended \
             (drained {:.0} s after the fixed-rate phase)",
            unended - never_ended,
            p.drained_after.as_secs_f64()
        ),
        never_ended == 0 && created > 0,
    ));
    checks.push((
        "every owed callback received exactly once (by webhook-id)".into(),
        format!(
            "owed {created}; received {} deliveries: {once} tasks exactly once, {unended} missing, {repeated_ids} \
             repeated webhook-ids, {second_events} second events for a task, {unexpected} for unknown tasks, \
             {non_terminal} non-terminal, {} bad signatures, {} unreadable",
            hooks.deliveries, hooks.bad_signature, hooks.unreadable
        ),
        created > 0
            && once == created
            && unended == 0
            && repeated_ids == 0
            && second_events == 0
            && unexpected == 0
            && non_terminal == 0
            && hooks.bad_signature == 0
            && hooks.unreadable == 0,
    ));

    // Redis levels off: the last third of the post-warm-up samples against the middle third.
    let series = |f: &dyn Fn(&Sample) -> f64| -> Vec<f64> { steady.iter().map(|s| f(s)).collect() };
    let level = |name: &str, v: Vec<f64>, unit: &str, scale: f64, checks: &mut Vec<(String, String, bool)>| {
        let (mid, last) = if v.len() >= 3 { thirds(&v) } else { (0.0, 0.0) };
        let growth = if mid > 0.0 { last / mid - 1.0 } else { f64::NAN };
        let trend = slope_per_hour(&times, &v) / scale;
        checks.push((
            format!("Redis {name} levels off (last third of the steady samples < 5 % above the middle third)"),
            format!(
                "{:.2} → {:.2}{unit} ({:+.1} %; trend {trend:+.2}{unit}/h)",
                mid / scale,
                last / scale,
                growth * 100.0
            ),
            enough && growth < 0.05,
        ));
    };
    level("used_memory", series(&|s| s.redis.used_memory as f64), " MiB", 1048576.0, &mut checks);
    level("key count", series(&|s| s.redis.keys as f64), " keys", 1.0, &mut checks);
    level("`g2a:all` index", series(&|s| s.redis.all_entries as f64), " entries", 1.0, &mut checks);
    level("owner indexes (`g2a:o:*`)", series(&|s| s.redis.owner_entries as f64), " entries", 1.0, &mut checks);

    let n = &soak.n;
    let (c429, cerr) = (n.create_429.load(Relaxed), n.create_errors.load(Relaxed));
    checks.push((
        "no failed creates or reads (429s are retried and allowed)".into(),
        format!(
            "{c429} × 429, {cerr} other create failures; reads through another replica: {} ok, {} failed",
            n.reads_ok.load(Relaxed),
            n.read_errors.load(Relaxed)
        ),
        cerr == 0 && n.read_errors.load(Relaxed) == 0,
    ));
    if !enough {
        checks.push(("enough samples after warm-up".into(), format!("{} (at least 3)", steady.len()), false));
    }

    let _ = writeln!(md, "| check | measured | holds |\n| --- | --- | --- |");
    for (name, measured, ok) in &checks {
        let _ = writeln!(md, "| {name} | {measured} | {} |", if *ok { "yes" } else { "**no**" });
    }
    latencies.sort_by(f64::total_cmp);
    let _ = writeln!(
        md,
        "\nCreate → callback: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms over {} tasks.\n",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0.0),
        latencies.len()
    );
    let _ = writeln!(md, "| kind | fault | ended | tasks |\n| --- | --- | --- | --- |");
    for ((video, fault, status), count) in &outcomes {
        let _ = writeln!(md, "| {} | {} | {status} | {count} |", if *video { "video" } else { "image" }, fault.name());
    }
    if !missing.is_empty() {
        let _ = writeln!(md, "\n## Tasks without a callback\n");
        for (what, ids) in &missing {
            let shown: Vec<&str> = ids.iter().take(5).map(String::as_str).collect();
            let _ = writeln!(md, "- {what}: {} (e.g. {})", ids.len(), shown.join(", "));
        }
        let _ = writeln!(md, "\nIn Redis after the drain (first ten):\n");
        for d in &diagnoses {
            let _ = writeln!(md, "- {d}");
        }
    }
    let notes = soak.notes.lock().unwrap();
    if !notes.is_empty() {
        let _ = writeln!(md, "\n## Notes (first few of each)\n");
        for (kind, v) in notes.iter() {
            for s in v {
                let _ = writeln!(md, "- {kind}: `{}`", s.chars().take(300).collect::<String>().replace('`', "'"));
            }
        }
    }
    let pass = checks.iter().all(|(_, _, ok)| *ok);
    let _ = writeln!(md, "\n**{}**", if pass { "PASS" } else { "FAIL" });
    let _ = std::fs::write(a.out.join("summary.md"), &md);
    println!("{md}");
    pass
}

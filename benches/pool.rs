//! The token pool at the size of the largest deployments (issue 24): 64 concurrent requests picking
//! from 10,000 accounts, the `/readyz` / `/metrics` counts at 100 and 10,000 tokens, and a
//! 10,000-line import into a state dir.
//! Run: `cargo bench --bench pool` (`POOL_TOKENS`, `POOL_TASKS`, `POOL_PICKS` per task to change).
//! `cargo test --benches` runs it without `--bench`: a small smoke run (2,000 tokens, past the size
//! searched whole, so the sharded path runs too) whose figures mean nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use grok2api::config::Config;
use grok2api::upstream::grok_web::{GrokWebClient, PoolSettings, Product, SsoPool};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn tokens(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("bench-token-{i:06}-{:016x}", (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))).collect()
}

/// A pool whose accounts differ the way a real one's do: quotas spread out, a few resting, some at
/// zero for videos.
fn pool(n: usize) -> SsoPool {
    let p = SsoPool::new(
        &tokens(n),
        PoolSettings {
            max_concurrency: 2,
            default_cooldown: Duration::from_secs(60),
            max_cooldown: Duration::from_secs(120),
            fail_threshold: 2,
        },
    );
    let later = Some(Instant::now() + Duration::from_secs(3600));
    for i in 0..n {
        p.set_product_quota(i, Product::Image, Some((i * 7919 % 200) as u32), None);
        if i % 10 == 0 {
            p.set_product_quota(i, Product::Video, Some(0), later);
        }
    }
    p
}

fn pct(v: &mut [Duration], q: f64) -> Duration {
    v.sort_unstable();
    v[((v.len() as f64 * q) as usize).min(v.len() - 1)]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// `tasks` tokio tasks on the multi-thread runtime pick, hold the lease over a yield (a request in
/// flight, so leases overlap) and drop it; the latency is the pick alone.
async fn concurrent_picks(pool: Arc<SsoPool>, tasks: usize, picks: usize) {
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|k| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(picks);
                let product = if k % 4 == 0 { Product::Video } else { Product::Image };
                for _ in 0..picks {
                    let t = Instant::now();
                    let lease = pool.acquire(product, &[]);
                    lat.push(t.elapsed());
                    assert!(lease.is_ok(), "a 10k pool always has a free account");
                    tokio::task::yield_now().await;
                    drop(lease);
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::with_capacity(tasks * picks);
    for h in handles {
        all.extend(h.await.unwrap());
    }
    let wall = started.elapsed();
    let n = all.len();
    println!(
        "pick  {:>6} tokens x {tasks} tasks: n={n}  p50={:>8.2} us  p99={:>8.2} us  max={:>9.2} us  ({:.0} picks/s)",
        pool.len(),
        us(pct(&mut all, 0.50)),
        us(pct(&mut all, 0.99)),
        us(pct(&mut all, 1.0)),
        n as f64 / wall.as_secs_f64()
    );
}

/// What `/readyz` and `/metrics` ask of the pool on every call.
fn readiness(pool: &SsoPool, rounds: usize) {
    let t = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(pool.capacity());
    }
    let cap = t.elapsed() / rounds as u32;
    let t = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(pool.health());
    }
    let health = t.elapsed() / rounds as u32;
    println!("ready {:>6} tokens: capacity() {:>9.2} us   health() {:>9.2} us", pool.len(), us(cap), us(health));
}

/// A txt import of `n` new tokens through the client, kept in a state dir (as the console does).
async fn import(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let client =
        GrokWebClient::new(Config::default().grok, Default::default()).unwrap().with_saved_tokens(dir.path()).unwrap();
    let content = tokens(n).join("\n");
    let t = Instant::now();
    let report = client.import_tokens(&content, Some("tokens.txt")).await.unwrap();
    let took = t.elapsed();
    assert_eq!(report.added, n);
    println!("import {n:>5} lines (txt, state dir): {:>9.1} ms", took.as_secs_f64() * 1e3);
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` probes harness=false benches
    }
    grok2api::install_crypto_provider();
    let timing = std::env::args().any(|a| a == "--bench");
    let (size, tasks, picks) = if timing {
        (env("POOL_TOKENS", 10_000), env("POOL_TASKS", 64), env("POOL_PICKS", 2_000))
    } else {
        (2_000, 8, 20)
    };
    let big = Arc::new(pool(size));
    // Warm the caches and the runtime's workers once; the figures are of the second run.
    concurrent_picks(big.clone(), tasks, picks / 10 + 1).await;
    concurrent_picks(big.clone(), tasks, picks).await;
    concurrent_picks(Arc::new(pool(100)), tasks, picks).await;
    let rounds = if timing { 200 } else { 2 };
    readiness(&pool(100), rounds);
    readiness(&big, rounds);
    import(if timing { env("POOL_IMPORT", 10_000) } else { 200 }).await;
}

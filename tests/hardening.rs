//! The gateway against a hostile network (issue 20): slow and idle clients, guessing, amplification,
//! callbacks aimed inward, stored strings without bound. Every test runs the real server on an
//! ephemeral port with short limits, so what takes minutes in production takes a second here.

mod common;

use std::time::{Duration, Instant};

use common::webhooks::{self, SECRET};
use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ADMIN: &str = "admin-key-9f27c4e1b86d305a";

fn addr(h: &Harness) -> std::net::SocketAddr {
    h.server.addr
}

/// Short server limits for the slow-client tests.
fn slow_limits(c: &mut grok2api::config::Config) {
    c.server.header_read_timeout_secs = 0.5;
    c.server.idle_timeout_secs = 1.0;
    c.server.body_read_timeout_secs = 0.5;
}

/// Reads until the server closes the socket; how long that took, or `None` if it stays open past `max`.
async fn closed_within(s: &mut TcpStream, max: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = vec![0u8; 65536];
    tokio::time::timeout(max, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
    .map(|()| start.elapsed())
}

/// One HTTP/1.1 answer's status line from a raw socket.
async fn status_line(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(2).any(|w| w == b"\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.unwrap().unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).lines().next().unwrap_or_default().to_owned()
}

async fn metric(h: &Harness, name: &str) -> f64 {
    // A client of its own with no pooling: its connection is not one the test is counting.
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let text = http.get(h.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn idle_half_sent_and_keep_alive_sockets_are_closed_within_the_timeouts() {
    let h = builder().config(slow_limits).start().await;
    let mut idle = TcpStream::connect(addr(&h)).await.unwrap();
    let mut half = TcpStream::connect(addr(&h)).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
    let mut kept = TcpStream::connect(addr(&h)).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert!(status_line(&mut kept).await.contains("200"));
    for (what, s) in [("idle", &mut idle), ("half-sent head", &mut half), ("kept alive", &mut kept)] {
        let took = closed_within(s, Duration::from_secs(5)).await;
        assert!(took.is_some_and(|t| t < Duration::from_secs(3)), "{what} socket still open after 5 s");
    }
    assert!(metric(&h, "grok2api_connections_closed_total").await >= 2.0);
    // A client that keeps talking is not cut off: three requests over 1.2 s on one connection.
    let http = reqwest::Client::new();
    for _ in 0..3 {
        assert_eq!(http.get(h.url("/healthz")).send().await.unwrap().status(), 200);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}

#[tokio::test]
async fn a_body_that_stalls_or_trickles_is_answered_408() {
    let h = builder().config(slow_limits).start().await;
    let body = json!({"model": "grok-imagine-1.0", "prompt": "a cat"}).to_string();
    // Stalls: half the body, then nothing.
    let mut s = TcpStream::connect(addr(&h)).await.unwrap();
    let head = format!(
        "POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body.as_bytes()[..10]).await.unwrap();
    let started = Instant::now();
    assert!(status_line(&mut s).await.contains("408"));
    assert!(started.elapsed() < Duration::from_secs(3));
    // Trickles: a byte every 300 ms is under every gap limit but far under the minimum rate.
    let mut s = TcpStream::connect(addr(&h)).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let writer = tokio::spawn(async move {
        for b in body.as_bytes() {
            if s.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        s
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut s = writer.await.unwrap();
    assert!(status_line(&mut s).await.contains("408"), "a trickling body is cut off");
}

#[tokio::test]
async fn a_stalled_upload_is_answered_408_too() {
    let h = builder().config(slow_limits).start().await;
    let mut s = TcpStream::connect(addr(&h)).await.unwrap();
    let part = "--b\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nsharper\r\n--b\r\n";
    let head = format!(
        "POST /v1/images/edits HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n{part}"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    assert!(status_line(&mut s).await.contains("408"));
}

#[tokio::test]
async fn oversized_heads_are_refused() {
    let h = builder().config(|c| c.server.max_header_bytes = 16 * 1024).start().await;
    let big = "x".repeat(64 * 1024);
    let r = reqwest::Client::new().get(h.url("/healthz")).header("x-big", big).send().await;
    match r {
        Ok(r) => assert_eq!(r.status(), 431),
        Err(e) => assert!(e.is_request() || e.is_connect() || e.to_string().contains("closed"), "{e}"),
    }
    assert_eq!(h.http.get(h.url("/healthz")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn at_the_connection_cap_the_server_waits_and_recovers_when_sockets_close() {
    let h = builder()
        .config(|c| {
            c.server.max_connections = 4;
            c.server.header_read_timeout_secs = 1.0;
        })
        .start()
        .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(addr(&h)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let quick = reqwest::Client::builder().timeout(Duration::from_millis(400)).build().unwrap();
    assert!(quick.get(h.url("/healthz")).send().await.is_err(), "a fifth connection waits at the cap");
    // The held sockets say nothing: the header timeout frees their slots.
    let started = Instant::now();
    let patient = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    assert_eq!(patient.get(h.url("/healthz")).send().await.unwrap().status(), 200);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_and_http2_still_serves() {
    let h = builder().config(slow_limits).start().await;
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let r = h2.get(h.url("/healthz")).send().await.unwrap();
    assert_eq!((r.version(), r.status().as_u16()), (reqwest::Version::HTTP_2, 200));
    assert!(metric(&h, "grok2api_open_connections").await >= 2.0, "the HTTP/2 connection and this one");
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert_eq!(metric(&h, "grok2api_open_connections").await, 1.0, "only the metrics request's own connection");
    // A fresh HTTP/2 connection that never sends a stream is closed as well.
    let mut s = TcpStream::connect(addr(&h)).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(5)).await.is_some());
}

fn from(ip: &str) -> (&'static str, String) {
    ("x-forwarded-for", ip.to_owned())
}

#[tokio::test]
async fn wrong_keys_are_limited_per_address_and_one_address_cannot_lock_out_another() {
    let h = builder()
        .config(|c| {
            c.admin.api_key = Some(ADMIN.into());
            // Loopback is a trusted proxy here, so each test client can say where it is.
            c.server.trusted_proxies = vec!["127.0.0.1".into()];
        })
        .start()
        .await;
    let models = |key: &str, ip: &str| {
        let (k, v) = from(ip);
        h.http.get(h.url("/v1/models")).bearer_auth(key).header(k, v).send()
    };
    let mut statuses = Vec::new();
    for i in 0..25 {
        statuses.push(models(&format!("guess-{i}"), "198.51.100.1").await.unwrap().status().as_u16());
    }
    assert!(statuses[..20].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[20..].iter().all(|s| *s == 429), "{statuses:?}");
    let r = models(KEY, "198.51.100.1").await.unwrap();
    assert_eq!(r.status(), 429, "out of guesses: not even the right key is checked");
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(models(KEY, "198.51.100.2").await.unwrap().status(), 200, "another address is unaffected");

    // The admin key: bearer guesses from one address, then the operator logs in from another.
    let admin = |key: &str, ip: &str| {
        let (k, v) = from(ip);
        h.http.get(h.url("/admin/overview")).bearer_auth(key).header(k, v).send()
    };
    let mut statuses = Vec::new();
    for i in 0..12 {
        statuses.push(admin(&format!("admin-guess-{i}"), "203.0.113.5").await.unwrap().status().as_u16());
    }
    assert!(statuses[..10].iter().all(|s| *s == 401) && statuses[10..].iter().all(|s| *s == 429), "{statuses:?}");
    for _ in 0..12 {
        let (k, v) = from("203.0.113.5");
        h.http.post(h.url("/admin/login")).header(k, v).json(&json!({"key": "nope"})).send().await.unwrap();
    }
    let (k, v) = from("203.0.113.9");
    let r = h.http.post(h.url("/admin/login")).header(k, v).json(&json!({"key": ADMIN})).send().await.unwrap();
    assert_eq!(r.status(), 200, "the operator is not locked out by someone else's guesses");
    assert_eq!(admin(ADMIN, "203.0.113.9").await.unwrap().status(), 200);
}

#[tokio::test]
async fn the_login_reads_a_small_body_only_after_its_limiter() {
    let h = builder().config(|c| c.admin.api_key = Some(ADMIN.into())).start().await;
    let big = json!({"key": "x".repeat(64 * 1024)});
    let r = h.http.post(h.url("/admin/login")).json(&big).send().await.unwrap();
    assert_eq!(r.status(), 413);
}

#[test]
fn weak_keys_are_refused_at_start_outside_the_demo() {
    for (var, key) in [("GROK2API_API_KEY", "abc"), ("GROK2API_ADMIN_KEY", "aaaaaaaaaaaaaaaaaaaa")] {
        let out = std::process::Command::new(BIN)
            .args(["--listen", "127.0.0.1:0"])
            .env_remove("GROK2API_API_KEY")
            .env(var, key)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{var}={key} must not start");
        assert!(err.contains("too weak"), "{err}");
        assert!(!err.contains(key) || key.len() < 4, "the message does not repeat the key: {err}");
    }
}

#[tokio::test]
async fn a_callback_never_goes_through_a_fetch_host_override() {
    let (receiver, hook) = webhooks::receiver(vec![]).await;
    let base = hook.trim_end_matches("/hook").to_owned();
    let h = builder()
        .config(move |c| {
            c.callbacks.secret = Some(SECRET.into());
            c.callbacks.allow_private = false;
            c.fetch.host_overrides.insert("images.internal".into(), base);
        })
        .start()
        .await;
    let r = h
        .post("/v1/images/tasks")
        .json(&json!({"model": "grok-imagine-1.0", "prompt": "a cat", "callback_url": "http://images.internal/hook"}))
        .send()
        .await
        .unwrap();
    let (status, _, body) = split(r).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("callback_url"), "{body}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.got.lock().unwrap().is_empty(), "nothing reached the internal host");
}

#[tokio::test]
async fn racing_creates_never_pass_max_concurrent_tasks() {
    let (_receiver, hook) = webhooks::receiver(vec![]).await;
    let h = builder()
        .config(|c| {
            c.limits.max_concurrent_tasks = 3;
            webhooks::to_loopback(c);
        })
        .start()
        .await;
    // The callback lookup sits between the check and the insert: where the race was.
    let creates = (0..30).map(|_| {
        h.post("/v1/images/tasks")
            .json(&json!({"model": "grok-imagine-1.0", "prompt": "slow [sim:slow=1500]", "callback_url": hook}))
            .send()
    });
    let statuses: Vec<u16> =
        futures_util::future::join_all(creates).await.into_iter().map(|r| r.unwrap().status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 202).count(), 3, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 27, "{statuses:?}");
}

#[tokio::test]
async fn bodies_cost_what_their_route_allows() {
    let h = builder().config(|c| c.server.max_body_bytes_in_flight = 1536 * 1024).start().await;
    // An image task is a prompt and a few fields: the JSON limit, not the upload one.
    let big = json!({"model": "grok-imagine-1.0", "prompt": "a", "pad": "x".repeat(2 * 1024 * 1024)});
    let r = h.post("/v1/images/tasks").json(&big).send().await.unwrap();
    assert_eq!(r.status(), 413);
    // Many tiny values: small in bytes, large once parsed.
    let values = format!(r#"{{"model":"grok-imagine-1.0-video","messages":[],"pad":[{}0]}}"#, "0,".repeat(150_000));
    let r =
        h.post("/v1/chat/completions").header("content-type", "application/json").body(values).send().await.unwrap();
    let (status, _, body) = split(r).await;
    assert_eq!(status, 413, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("JSON values"), "{body}");
    // The server-wide budget: one body holds 1000 KB of the 1.5 MiB while a second of 700 KB arrives.
    let video = |pad: usize| {
        let pad = "x".repeat(pad * 1024);
        format!(r#"{{"model":"grok-imagine-1.0-video","messages":[{{"role":"user","content":"a"}}],"p":"{pad}"}}"#)
    };
    let (held, body) = (video(1000), video(700));
    let mut first = TcpStream::connect(addr(&h)).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        held.len() + 10
    );
    first.write_all(head.as_bytes()).await.unwrap();
    first.write_all(held.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = h.post("/v1/chat/completions").header("content-type", "application/json").body(body.clone()).send().await;
    let (status, headers, answer) = split(r.unwrap()).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(error_code(&answer), "server_busy");
    assert!(headers.contains_key("retry-after"));
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = h.post("/v1/chat/completions").header("content-type", "application/json").body(body).send().await;
    assert_ne!(r.unwrap().status(), 503, "the budget came back when the first body went away");
}

#[tokio::test]
async fn stored_and_echoed_strings_are_bounded() {
    let h = builder()
        .config(|c| {
            webhooks::to_loopback(c);
        })
        .start()
        .await;
    let url = format!("http://127.0.0.1:9/{}", "a".repeat(3000));
    let r = h
        .post("/v1/images/tasks")
        .json(&json!({"model": "grok-imagine-1.0", "prompt": "a cat", "callback_url": url}))
        .send()
        .await
        .unwrap();
    let (status, _, body) = split(r).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("2048"), "{body}");
    // Far longer ids never get past the header size limit; this one does.
    let long = "r".repeat(1000);
    let r = h.http.get(h.url("/healthz")).header("x-request-id", &long).send().await.unwrap();
    let echoed = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(echoed.len() <= 128 && echoed != long[..echoed.len()], "replaced by our own id: {echoed}");
    let r = h.http.get(h.url("/healthz")).header("x-request-id", "trace-42.a:b").send().await.unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-42.a:b", "a fit id is kept");
    let r = h.http.get(h.url("/healthz")).header("x-request-id", "line\tbreak").send().await.unwrap();
    assert_ne!(r.headers()["x-request-id"], "line\tbreak");
}

async fn wait_status(h: &Harness, id: &str) -> String {
    for _ in 0..200 {
        let (_, _, b) = split(h.get(&format!("/v1/images/tasks/{id}")).send().await.unwrap()).await;
        let s = b["data"]["status"].as_str().unwrap_or("gone").to_owned();
        if s == "success" || s == "failed" || s == "gone" {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("task {id} did not finish");
}

#[tokio::test]
async fn finished_tasks_are_capped_as_well_as_aged() {
    let h = builder()
        .config(|c| {
            c.tasks.max_finished = 2;
            c.tasks.ttl_secs = 4;
        })
        .start()
        .await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let r = h.post("/v1/images/tasks").json(&json!({"model": "grok-imagine-1.0", "prompt": format!("cat {i}")}));
        let (_, _, b) = split(r.send().await.unwrap()).await;
        let id = b["data"]["taskId"].as_str().unwrap().to_owned();
        assert_eq!(wait_status(&h, &id).await, "success");
        ids.push(id);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, _, page) = split(h.get("/v1/images/tasks?limit=50").send().await.unwrap()).await;
    let kept: Vec<&str> =
        page["data"]["tasks"].as_array().unwrap().iter().map(|t| t["taskId"].as_str().unwrap()).collect();
    assert_eq!(kept, vec![ids[3].as_str(), ids[2].as_str()], "the newest two, before their TTL");
}

#[tokio::test]
async fn private_files_are_not_for_shared_caches() {
    let h = builder().config(|c| c.files.require_auth = true).start().await;
    let (status, _, body) = h.generate(json!({"model": "grok-imagine-1.0", "prompt": "a cat"})).await;
    assert_eq!(status, 200, "{body}");
    let url = body["data"][0]["url"].as_str().unwrap();
    let r = h.http.get(url).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["cache-control"].to_str().unwrap().starts_with("private"));
}

#[tokio::test]
async fn anonymous_event_streams_are_counted_by_address_not_against_the_owner() {
    let h = builder()
        .config(|c| {
            c.auth.public_task_reads = true;
            c.limits.max_event_streams = 1;
            c.server.trusted_proxies = vec!["127.0.0.1".into()];
        })
        .start()
        .await;
    let r =
        h.post("/v1/video/tasks").json(&json!({"model": "grok-imagine-1.0-video", "prompt": "waves [sim:slow=3000]"}));
    let (_, _, b) = split(r.send().await.unwrap()).await;
    let id = b["data"]["taskId"].as_str().unwrap().to_owned();
    let events = |ip: &str| {
        let (k, v) = from(ip);
        h.http.get(h.url(&format!("/v1/video/tasks/{id}/events"))).header(k, v).send()
    };
    let first = events("198.51.100.20").await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(events("198.51.100.20").await.unwrap().status(), 429, "one stream per address");
    let other = events("198.51.100.21").await.unwrap();
    assert_eq!(other.status(), 200, "another reader is not refused because of the first");
    drop((first, other));
}

#[tokio::test]
async fn a_token_proxy_with_a_line_break_is_refused() {
    if grok_web_only("a_token_proxy_with_a_line_break_is_refused") {
        return;
    }
    let h = builder().config(|c| c.admin.api_key = Some(ADMIN.into())).start().await;
    let add = json!({"tokens": ["tok-echo-0006"]});
    let (_, _, list) =
        split(h.http.post(h.url("/admin/tokens")).bearer_auth(ADMIN).json(&add).send().await.unwrap()).await;
    let added = list["data"].as_array().unwrap().iter().find(|t| t["source"] == "admin").unwrap();
    let id = added["id"].as_str().unwrap().to_owned();
    let r = h
        .http
        .patch(h.url(&format!("/admin/tokens/{id}")))
        .bearer_auth(ADMIN)
        .json(&json!({"proxy": "http://127.0.0.1:3128\nplanted-token-0000"}))
        .send()
        .await
        .unwrap();
    let (status, _, body) = split(r).await;
    assert_eq!(status, 400, "{body}");
    // An import line whose proxy hides a second token behind a tab: the line is refused whole.
    let r = h
        .http
        .post(h.url("/admin/tokens/import"))
        .bearer_auth(ADMIN)
        .json(&json!({"content": "tok-delta-0004|http://127.0.0.1:3128\ttok-planted-0005\n", "filename": "t.txt"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, _, after) = split(h.http.get(h.url("/admin/tokens")).bearer_auth(ADMIN).send().await.unwrap()).await;
    assert!(!after.to_string().contains("planted"), "{after}");
}

#[tokio::test]
async fn one_key_cannot_fill_the_queue_or_make_another_wait_behind_it() {
    let h = builder()
        .config(|c| {
            c.tasks.workers = 1;
            c.tasks.queue_capacity = 6;
        })
        .start()
        .await;
    let create = |key: &'static str, prompt: String| {
        h.http
            .post(h.url("/v1/images/tasks"))
            .bearer_auth(key)
            .json(&json!({"model": "grok-imagine-1.0", "prompt": prompt}))
            .send()
    };
    // The first key: one task runs, three wait (half of six), the next is refused.
    let mut first = Vec::new();
    for i in 0..4 {
        let (status, _, b) = split(create(KEY, format!("a{i} [sim:slow=400]")).await.unwrap()).await;
        assert_eq!(status, 202, "{b}");
        first.push(b["data"]["taskId"].as_str().unwrap().to_owned());
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let (status, _, b) = split(create(KEY, "a4 [sim:slow=400]".into()).await.unwrap()).await;
    assert_eq!(status, 429, "{b}");
    assert!(b["message"].as_str().unwrap().contains("share"), "{b}");
    // The second key still gets in, and its task takes its turn instead of waiting out the backlog.
    let (status, _, b) = split(create(OTHER_KEY, "b0".into()).await.unwrap()).await;
    assert_eq!(status, 202, "{b}");
    let second = b["data"]["taskId"].as_str().unwrap().to_owned();
    let h = &h;
    let read = |id: String| async move {
        let r = h.http.get(h.url(&format!("/v1/images/tasks/{id}"))).bearer_auth(KEY).send().await.unwrap();
        let (_, _, b) = split(r).await;
        b["data"]["status"].as_str().unwrap_or_default().to_owned()
    };
    let started = Instant::now();
    loop {
        let r = h.http.get(h.url(&format!("/v1/images/tasks/{second}"))).bearer_auth(OTHER_KEY).send().await.unwrap();
        let (_, _, b) = split(r).await;
        if b["data"]["status"] == "success" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the second key's task never ran: {b}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let waiting = futures_util::future::join_all(first[2..].iter().cloned().map(read)).await;
    // Keys take turns: a1 ran, then b0; a2 at most just started, a3 still waits.
    assert!(waiting.iter().all(|s| s != "success") && waiting[1] == "pending", "{waiting:?}");
}

#[tokio::test]
async fn out_of_descriptors_the_accept_loop_backs_off_and_recovers() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("gateway.log");
    // So few descriptors that `accept` runs out before the connection cap (at least 64) is reached.
    let child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 40 && exec \"$0\" --demo --listen 127.0.0.1:0")
        .arg(BIN)
        .env_remove("GROK2API_API_KEY")
        .env("GROK2API_MEDIA_DIR", dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let mut running = Running(Some(child));
    let stdout = running.0.as_mut().unwrap().stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line.trim().split(" listening on ").nth(1).unwrap_or_else(|| panic!("{line:?}")).to_owned();
    let addr: std::net::SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    let mut held = Vec::new();
    for _ in 0..60 {
        if let Ok(s) = TcpStream::connect(addr).await {
            held.push(s);
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let errors = std::fs::read_to_string(&log_path).unwrap().matches("accept error").count();
    eprintln!("{errors} accept errors logged in 2 s with {} sockets held", held.len());
    assert!((1..=20).contains(&errors), "{errors} accept errors logged in 2 s: backing off, not spinning");
    drop(held);
    grok2api::install_crypto_provider();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    let started = Instant::now();
    loop {
        if http.get(format!("{url}/healthz")).send().await.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the gateway did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

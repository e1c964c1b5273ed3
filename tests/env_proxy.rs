//! User URLs never go through a proxy from the environment (issue 20): a proxy resolves the host
//! itself, so the address the gateway checked and pinned would not be the one reached. A test binary of
//! its own, because the variables it sets are the whole process's.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::webhooks;
use common::*;
use serde_json::json;

/// A listener that counts the connections it gets and answers none of them.
async fn trap() -> (Arc<AtomicUsize>, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    (hits, url)
}

#[tokio::test]
async fn callbacks_and_image_fetches_ignore_environment_proxies() {
    let (hits, proxy) = trap().await;
    // Set before the gateway builds any client; nothing else in this binary runs alongside.
    for var in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"] {
        // SAFETY: this test binary has this one test, and no other thread reads the environment yet.
        unsafe { std::env::set_var(var, &proxy) };
    }
    unsafe { std::env::remove_var("NO_PROXY") };
    unsafe { std::env::remove_var("no_proxy") };
    let (receiver, hook) = webhooks::receiver(vec![]).await;
    let images = image_server().await;
    let h = builder()
        .config(|c| {
            webhooks::to_loopback(c);
            c.callbacks.retry_delays_secs = vec![0.05];
            c.fetch.allow_private = true;
        })
        .start()
        .await;
    let body = json!({
        "model": "grok-imagine-1.0-video",
        "prompt": "make it move",
        "image_url": format!("http://{images}/img.png"),
        "callback_url": hook,
    });
    // The test's own client must not take the proxy either.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let post = http.post(h.url("/v1/video/tasks")).bearer_auth(KEY).json(&body);
    let (status, _, b) = split(post.send().await.unwrap()).await;
    assert_eq!(status, 202, "{b}");
    let id = b["data"]["taskId"].as_str().unwrap().to_owned();
    for _ in 0..400 {
        if !receiver.got.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let get = http.get(h.url(&format!("/v1/video/tasks/{id}"))).bearer_auth(KEY);
    let (_, _, task) = split(get.send().await.unwrap()).await;
    assert_eq!(task["data"]["status"], "success", "the image was fetched directly: {task}");
    assert_eq!(receiver.got.lock().unwrap().len(), 1, "the callback went straight to its receiver");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing went through the environment's proxy");
}

//! Real services the scale-out tests run on loopback: redis-server (Debian package) and moto's S3
//! server (PyPI, in .venv-test); both installed by scripts/test.sh.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use grok2api::config::S3Config;

use super::Running;

pub const BUCKET: &str = "grok2api-media-test";

/// moto's S3 on a free loopback port, with the test bucket made.
pub async fn moto() -> (Running, String) {
    grok2api::install_crypto_provider();
    let py = std::env::var("GROK2API_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let bin = std::path::Path::new(&py).with_file_name("moto_server");
    assert!(
        bin.exists(),
        "{} is missing: run the suite with scripts/test.sh (it installs tests/s3/requirements.txt into .venv-test)",
        bin.display()
    );
    let port = free_port();
    let child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let running = Running(Some(child));
    let endpoint = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(&endpoint).send().await.is_err() {
        assert!(Instant::now() < deadline, "moto did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let made = http.put(format!("{endpoint}/{BUCKET}")).send().await.unwrap();
    assert!(made.status().is_success(), "bucket: {}", made.status());
    (running, endpoint)
}

pub fn s3(endpoint: &str, presign_secs: u64) -> S3Config {
    S3Config {
        bucket: BUCKET.into(),
        endpoint: Some(endpoint.into()),
        region: "us-east-1".into(),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        path_style: true,
        prefix: "media".into(),
        presign_secs,
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A redis-server on `port` (a free one when `None`), without persistence; returns it and its URL.
pub async fn redis(port: Option<u16>) -> (Running, String) {
    let port = port.unwrap_or_else(free_port);
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server (Debian package redis-server; scripts/test.sh installs it)");
    let running = Running(Some(child));
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (running, format!("redis://127.0.0.1:{port}/"))
}

//! The real binary: `--demo` serving the official OpenAI Python SDK, the no-key safety rule, and a
//! graceful SIGTERM.

mod common;

use std::process::Command;

use common::{BIN, python, sigterm_and_wait, spawn, spawn_logging};

#[test]
fn openai_python_sdk_against_demo_binary() {
    let py = python();
    let probe =
        Command::new(&py).args(["-c", "import openai.resources.videos, openai; print(openai.__version__)"]).output();
    let Some(probe) = probe.ok().filter(|o| o.status.success()) else {
        panic!(
            "{py} cannot import openai with client.videos. Run the suite with scripts/test.sh (it installs \
             tests/sdk/requirements.txt into .venv-test), or set GROK2API_TEST_PYTHON to a python that has it."
        );
    };
    eprintln!("openai SDK {}", String::from_utf8_lossy(&probe.stdout).trim());
    // The same SDK calls on both upstreams (the demo simulates either).
    for upstream in ["grok-web", "xai"] {
        let media = tempfile::tempdir().unwrap();
        let (child, url) = spawn(
            &["--demo", "--listen", "127.0.0.1:0", "--upstream", upstream],
            &[("GROK2API_API_KEY", "sdk-key")],
            media.path(),
        );
        let out = Command::new(&py)
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/test_openai_sdk.py"))
            .env("GROK2API_BASE_URL", &url)
            .env("GROK2API_API_KEY", "sdk-key")
            .env("GROK2API_UPSTREAM", upstream)
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&out.stderr);
        eprintln!("{upstream}:\n{report}");
        let exit = sigterm_and_wait(child);
        assert!(out.status.success(), "OpenAI SDK tests failed against {upstream}:\n{report}");
        assert!(report.contains("OK"), "{report}");
        assert!(exit.success(), "gateway exited with {exit} after SIGTERM");
    }
}

#[test]
fn refuses_public_listen_without_a_key() {
    let out = Command::new(BIN)
        .args(["--listen", "0.0.0.0:0"])
        .env_remove("GROK2API_API_KEY")
        .env_remove("GROK2API_INSECURE_NO_AUTH")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to listen"), "{err}");
}

#[tokio::test]
async fn public_listen_with_a_key_serves_and_drains_on_sigterm() {
    let media = tempfile::tempdir().unwrap();
    let (child, url) = spawn(&["--demo", "--listen", "0.0.0.0:0"], &[("GROK2API_API_KEY", "k1,k2")], media.path());
    let port = url.rsplit(':').next().unwrap();
    grok2api::install_crypto_provider();
    let client = reqwest::Client::new();
    let ok = client.get(format!("http://127.0.0.1:{port}/v1/models")).bearer_auth("k2").send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let denied = client.get(format!("http://127.0.0.1:{port}/v1/models")).send().await.unwrap();
    assert_eq!(denied.status(), 401);
    assert!(sigterm_and_wait(child).success());
}

#[test]
fn bad_config_key_is_reported_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[media]\nmax_byte = 5\n").unwrap();
    let out = Command::new(BIN).arg("--config").arg(&path).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_byte"), "{err}");
}

/// The user document's §2.3 and §2.4 requests, byte for byte, against `--demo` (§2.4's
/// https://example.com image is answered by the demo simulator).
#[tokio::test]
async fn seed_video_examples_work_verbatim_in_demo() {
    let media = tempfile::tempdir().unwrap();
    let (child, url) = spawn(&["--demo", "--listen", "127.0.0.1:0"], &[], media.path());
    grok2api::install_crypto_provider();
    let client = reqwest::Client::new();
    let t2v = r#"{
    "model": "grok-imagine-1.0-video",
    "messages": [{"role":"user","content":"生成一段海边日落视频"}],
    "video_config": {
      "aspect_ratio": "3:2",
      "video_length": 6,
      "resolution_name": "480p",
      "preset": "normal"
    }
  }"#;
    let i2v = r#"{
    "model": "grok-imagine-1.0-video",
    "messages": [
      {
        "role": "user",
        "content": [
          {"type": "text", "text": "让这张图动起来，风吹动头发"},
          {"type": "image_url", "image_url": {"url": "https://example.com/input.jpg"}}
        ]
      }
    ],
    "video_config": {
      "aspect_ratio": "3:2",
      "video_length": 6,
      "resolution_name": "480p",
      "preset": "normal"
    }
  }"#;
    for body in [t2v, i2v] {
        let r = client
            .post(format!("{url}/v1/chat/completions"))
            .header("Content-Type", "application/json")
            .header("Authorization", "Bearer ")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let resp: serde_json::Value = r.json().await.unwrap();
        let link = resp["choices"][0]["message"]["video"]["url"].as_str().unwrap();
        let mp4 = client.get(link).send().await.unwrap();
        assert_eq!(mp4.headers()["content-type"], "video/mp4");
        assert_eq!(&mp4.bytes().await.unwrap()[4..8], b"ftyp");
    }
    assert!(sigterm_and_wait(child).success());
}

/// The user document's node examples (§3.4, §3.8), with the Authorization header on every request,
/// against `--demo`.
#[test]
fn seed_node_examples_succeed_against_demo() {
    let node = std::env::var("GROK2API_TEST_NODE").unwrap_or_else(|_| "node".into());
    let version = Command::new(&node).arg("--version").output();
    let Some(version) = version.ok().filter(|o| o.status.success()) else {
        panic!("{node} not found: install Node.js 18+ (or set GROK2API_TEST_NODE) to run the seed's node examples");
    };
    eprintln!("node {}", String::from_utf8_lossy(&version.stdout).trim());
    let media = tempfile::tempdir().unwrap();
    let (child, url) = spawn(&["--demo", "--listen", "127.0.0.1:0"], &[("GROK2API_API_KEY", "node-key")], media.path());
    let run = |file: &str| {
        let out = Command::new(&node)
            .arg(format!("{}/examples/node/{file}", env!("CARGO_MANIFEST_DIR")))
            .env("GROK2API_BASE_URL", &url)
            .env("GROK2API_API_KEY", "node-key")
            .output()
            .unwrap();
        let (stdout, stderr) =
            (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        assert!(out.status.success(), "{file} failed:\n{stdout}\n{stderr}");
        (stdout, stderr)
    };
    let (out, err) = run("node-async-await.js");
    let success = out
        .lines()
        .find_map(|l| l.strip_prefix("success "))
        .unwrap_or_else(|| panic!("no success line:\n{out}\n{err}"));
    let status: serde_json::Value = serde_json::from_str(success).unwrap();
    assert_eq!(status["code"], 200);
    assert!(["pending", "processing", "success"].contains(&status["data"]["status"].as_str().unwrap()));
    assert!(err.contains("exception") && err.contains("\"code\":404"), "unknown task must be a 404: {err}");
    assert!(err.contains("timeout AbortError") || out.contains("timeout case"), "{out}\n{err}");

    let (out, _) = run("node-promise.js");
    assert!(out.starts_with("status {\"code\":200"), "{out}");

    let (out, _) = run("poll-and-wait.js");
    let link = out.trim().strip_prefix("downloadUrl ").unwrap_or_else(|| panic!("{out}"));
    assert!(link.contains("/v1/files/video/") && link.ends_with(".mp4"));
    assert!(sigterm_and_wait(child).success());
}

/// The official OpenAI Node SDK (npm `openai`, installed into tests/sdk/node by scripts/test.sh):
/// `videos.create`, polling, `downloadContent`, `list`, `delete`, against `--demo`.
#[test]
fn openai_node_sdk_videos_against_demo() {
    let node = std::env::var("GROK2API_TEST_NODE").unwrap_or_else(|_| "node".into());
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/node");
    assert!(
        std::path::Path::new(dir).join("node_modules/openai").exists(),
        "the OpenAI Node SDK is not installed: run the suite with scripts/test.sh (npm ci in {dir})"
    );
    let media = tempfile::tempdir().unwrap();
    let (child, url) = spawn(&["--demo", "--listen", "127.0.0.1:0"], &[("GROK2API_API_KEY", "node-key")], media.path());
    let out = Command::new(&node)
        .arg(format!("{dir}/videos.mjs"))
        .env("GROK2API_BASE_URL", &url)
        .env("GROK2API_API_KEY", "node-key")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && stdout.contains("node SDK videos: OK"), "{stdout}\n{stderr}");
    assert!(sigterm_and_wait(child).success());
}

/// A task that fails upstream leaves a WARN line with its id, as a failed sync request does.
#[tokio::test]
async fn a_failed_task_is_logged_with_its_id() {
    let media = tempfile::tempdir().unwrap();
    let log_path = media.path().join("gateway.log");
    let log = std::process::Stdio::from(std::fs::File::create(&log_path).unwrap());
    let (child, url) = spawn_logging(&["--demo", "--listen", "127.0.0.1:0"], &[], media.path(), log);
    grok2api::install_crypto_provider();
    let client = reqwest::Client::new();
    let body = serde_json::json!({"model": "grok-imagine-1.0", "prompt": "a cat [sim:fail]"});
    let created: serde_json::Value =
        client.post(format!("{url}/v1/images/tasks")).json(&body).send().await.unwrap().json().await.unwrap();
    let id = created["data"]["taskId"].as_str().unwrap().to_owned();
    let mut status = String::new();
    for _ in 0..200 {
        let t: serde_json::Value =
            client.get(format!("{url}/v1/images/tasks/{id}")).send().await.unwrap().json().await.unwrap();
        status = t["data"]["status"].as_str().unwrap_or_default().to_owned();
        if status == "failed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(status, "failed");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(text.lines().any(|l| l.contains("WARN") && l.contains("task failed") && l.contains(&id)), "{text}");
    assert!(sigterm_and_wait(child).success());
}

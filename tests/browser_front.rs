//! A front end on another origin, in a real browser (issue 21, items 2–4): headless Chromium (driven
//! by Selenium from `tests/browser/front.py`) loads `examples/browser` from a static server on another
//! loopback port (`python3 -m http.server`, as the README says) and, against the real binary on the
//! simulator with a client key configured:
//! - runs the user document's §3.8 code as written (`tests/browser/seed-3.8.md`; only `baseUrl` and
//!   `apiKey` substituted) against a gateway that lists the page's origin and lets task reads go
//!   without a key (the document's `getTask` sends none): create, polling, `/result` 409 then 200,
//!   the AbortController timeout, `Promise.all` / `Promise.allSettled`, `requestWithRetry`;
//! - drives the example page against a gateway with the default CORS of a keyed one (any origin) and
//!   the key on every request: five creates at once, a video followed by live events (fetch +
//!   ReadableStream) and one by polling, the video seeked (HTTP ranges across origins), an image,
//!   events resumed with `Last-Event-ID`;
//! - checks that an origin not on a list is refused, and that `/admin` answers no other origin.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{Running, python, sigterm_and_wait, sim_process, spawn};

const KEY: &str = "front-end-key-6b1f0d93e2a4c875";
const ADMIN: &str = "front-admin-key-0c7e4a29d5b813f6";

/// Every step front.py runs, in order; each must report ok.
const STEPS: &[&str] = &[
    "page",
    "seed-async-await",
    "seed-promise",
    "seed-all-allSettled",
    "seed-retry",
    "poll-result-409-200",
    "abortcontroller",
    "five-all-allSettled",
    "video-events",
    "video-seek",
    "range-fetch",
    "video-poll",
    "image",
    "events-resume",
    "eventsource-public-reads",
    "docs-followTask",
    "key-not-in-urls",
    "origin-not-listed",
    "admin-same-origin",
    "browser-log",
];

/// `python3 -m http.server` serving examples/browser on an ephemeral loopback port; its origin.
fn static_server(py: &str) -> (Running, String) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/browser");
    let mut child = Command::new(py)
        .args(["-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", dir])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let running = Running(Some(child));
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    // "Serving HTTP on 127.0.0.1 port 40123 (http://127.0.0.1:40123/) ..."
    let port = line.split(" port ").nth(1).and_then(|r| r.split(' ').next());
    let port = port.unwrap_or_else(|| panic!("unexpected first line of http.server: {line:?}"));
    (running, format!("http://127.0.0.1:{port}"))
}

#[test]
fn a_page_on_another_origin_runs_the_documents_code_and_the_example() {
    let started = std::time::Instant::now();
    let py = python();
    let probe = Command::new(&py).args(["-c", "import selenium"]).output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "{py} cannot import selenium. Run the suite with scripts/test.sh (it installs chromium, chromium-driver \
         and tests/browser/requirements.txt), or set GROK2API_TEST_PYTHON to a python that has selenium."
    );
    // Long enough between frames that a video is seen running (~1 s), short enough for the suite.
    let sim = sim_process(120, None);
    let (page_server, page) = static_server(&py);
    let dir = tempfile::tempdir().unwrap();
    // Enough upstream slots and workers that the concurrent creates never queue behind each other.
    let upstream = format!("{}token_max_concurrency = 32\n[tasks]\nworkers = 32\n", sim.grok("tok-front-0001"));
    let doc_cfg = dir.path().join("doc.toml");
    std::fs::write(
        &doc_cfg,
        format!(
            "[server]\ncors_allowed_origins = [\"{page}\"]\n[auth]\napi_keys = [\"{KEY}\"]\n\
             public_task_reads = true\n[admin]\napi_key = \"{ADMIN}\"\n{upstream}"
        ),
    )
    .unwrap();
    let any_cfg = dir.path().join("any.toml");
    std::fs::write(&any_cfg, format!("[auth]\napi_keys = [\"{KEY}\"]\n{upstream}")).unwrap();
    let (doc_media, any_media) = (dir.path().join("doc-media"), dir.path().join("any-media"));
    let (doc_gw, doc_url) = spawn(&["--listen", "127.0.0.1:0", "--config", doc_cfg.to_str().unwrap()], &[], &doc_media);
    let (any_gw, any_url) = spawn(&["--listen", "127.0.0.1:0", "--config", any_cfg.to_str().unwrap()], &[], &any_media);

    let out = Command::new(&py)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/front.py"))
        .args(["--page", &page, "--doc-gateway", &doc_url, "--gateway", &any_url, "--key", KEY, "--admin-key", ADMIN])
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("{stdout}");
    assert!(out.status.success(), "the browser test failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(stdout.contains("browser front test passed"), "{stdout}");
    let done: Vec<&str> = stdout.lines().filter_map(|l| l.strip_prefix("step ")?.split(": ok").next()).collect();
    assert_eq!(done, STEPS, "steps that reported ok\n{stdout}");

    assert!(sigterm_and_wait(doc_gw).success());
    assert!(sigterm_and_wait(any_gw).success());
    assert!(sigterm_and_wait(sim.running).success());
    drop(page_server);
    eprintln!("browser front test: {:.1} s in all", started.elapsed().as_secs_f64());
}

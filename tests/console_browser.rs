//! The console in a real browser: headless Chromium (Debian's `chromium` + `chromium-driver`, driven
//! by Selenium from `tests/browser/console.py`) against the real binary on a simulator. It logs in,
//! imports a mixed token file, sees quotas, disables a token, makes a key, uses it, sees its usage,
//! cancels a task, revokes the key, logs out; then the gateway restarts on the same state dir and the
//! browser checks that tokens, keys and usage are still there. Screenshots land in
//! `GROK2API_SCREENSHOTS_DIR` (docs/img/console for the docs), else under the target dir.

mod common;

use std::process::Command;

use common::{python, sigterm_and_wait, spawn};

const ADMIN: &str = "browser-admin-key-5d2c";

fn run_phase(py: &str, url: &str, phase: &str, shots: &std::path::Path, state: &std::path::Path) {
    let out = Command::new(py)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/console.py"))
        .args(["--base", url, "--admin-key", ADMIN, "--phase", phase])
        .arg("--shots")
        .arg(shots)
        .arg("--state")
        .arg(state)
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "browser phase {phase} failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(stdout.contains("console test passed"), "{stdout}");
}

#[test]
fn console_in_headless_chromium_and_across_a_restart() {
    let py = python();
    let probe = Command::new(&py).args(["-c", "import selenium; print(selenium.__version__)"]).output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "{py} cannot import selenium. Run the suite with scripts/test.sh (it installs chromium, chromium-driver \
         and tests/browser/requirements.txt), or set GROK2API_TEST_PYTHON to a python that has selenium."
    );
    let sim = common::sim_process(20, None);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gw.toml");
    let state = dir.path().join("state");
    let text = format!(
        "[admin]\napi_key = \"{ADMIN}\"\n{}[state]\ndir = \"{}\"\n",
        sim.grok("tok-config-0001"),
        state.display()
    );
    std::fs::write(&cfg, text).unwrap();
    let shots = std::env::var_os("GROK2API_SCREENSHOTS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-shots"));
    std::fs::create_dir_all(&shots).unwrap();
    let state = dir.path().join("browser-state.json");
    let media = dir.path().join("media");
    let args = ["--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()];

    let (gw, url) = spawn(&args, &[], &media);
    run_phase(&py, &url, "main", &shots, &state);
    assert!(sigterm_and_wait(gw).success());

    let (gw, url) = spawn(&args, &[], &media);
    run_phase(&py, &url, "after-restart", &shots, &state);
    assert!(sigterm_and_wait(gw).success());
    assert!(sigterm_and_wait(sim.running).success());
}

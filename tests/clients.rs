//! Stock third-party clients against the real binary (issue 21): the Vercel AI SDK with its OpenAI, xAI
//! and OpenAI-compatible providers, LiteLLM's openai/ and xai/ providers, and the official OpenAI Python
//! and Node SDKs on the places where such clients broke: edit streams, `size: "auto"`, xAI's
//! `aspect_ratio` and JSON edits, clients that read only `b64_json`, `/v1/responses`,
//! `stream_options.include_usage`, a multipart `input_reference[file_id]`.
//! scripts/test.sh installs them (npm ci in tests/clients/node and tests/sdk/node; pip into .venv-test).

mod common;

use std::process::Command;

use common::{sigterm_and_wait, spawn};

const KEY: &str = "clients-key-3f9a2c71d4e8";

fn node() -> String {
    std::env::var("GROK2API_TEST_NODE").unwrap_or_else(|_| "node".into())
}

/// Runs `cmd` against a fresh `--demo` gateway with a key; asserts it exits 0 and prints `marker`.
fn against_demo(mut cmd: Command, marker: &str) {
    let media = tempfile::tempdir().unwrap();
    let (child, url) = spawn(&["--demo", "--listen", "127.0.0.1:0"], &[("GROK2API_API_KEY", KEY)], media.path());
    let out = cmd.env("GROK2API_BASE_URL", &url).env("GROK2API_API_KEY", KEY).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("{stdout}\n{stderr}");
    assert!(out.status.success(), "client failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(stdout.contains(marker) || stderr.contains(marker), "no `{marker}` in\n{stdout}\n{stderr}");
    assert!(sigterm_and_wait(child).success());
}

fn node_script(dir: &str, package: &str, script: &str) -> Command {
    let dir = format!("{}/{dir}", env!("CARGO_MANIFEST_DIR"));
    assert!(
        std::path::Path::new(&dir).join("node_modules").join(package).exists(),
        "{package} is not installed: run the suite with scripts/test.sh (npm ci in {dir})"
    );
    let mut cmd = Command::new(node());
    cmd.arg(format!("{dir}/{script}"));
    cmd
}

#[test]
fn vercel_ai_sdk_openai_xai_and_compatible_providers() {
    against_demo(node_script("tests/clients/node", "ai", "ai_sdk.mjs"), "AI SDK: OK");
}

#[test]
fn openai_node_sdk_edit_stream_size_auto_and_file_id() {
    against_demo(node_script("tests/sdk/node", "openai", "clients.mjs"), "node SDK clients: OK");
}

#[test]
fn litellm_and_the_openai_python_sdk() {
    let py = common::python();
    let probe =
        Command::new(&py).args(["-c", "import litellm, openai"]).env("LITELLM_LOCAL_MODEL_COST_MAP", "True").output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "{py} cannot import litellm: run the suite with scripts/test.sh (it installs tests/clients/requirements.txt \
         into .venv-test), or set GROK2API_TEST_PYTHON"
    );
    let mut cmd = Command::new(py);
    // LiteLLM would otherwise fetch its model price list from GitHub at import.
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/test_clients.py"))
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .env("LITELLM_TELEMETRY", "False");
    against_demo(cmd, "\nOK");
}

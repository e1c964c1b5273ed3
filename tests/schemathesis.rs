//! `/openapi.json` keeps its word: schemathesis (tests/schemathesis/requirements.txt) generates requests
//! for every operation from the document itself, sends them to the real binary (`--demo`: its
//! simulated upstream), and checks each answer against the document: no 5xx (`not_a_server_error`),
//! a documented status (`status_code_conformance`), a documented content type
//! (`content_type_conformance`) and a body the documented schema accepts
//! (`response_schema_conformance`). Three configurations, each a test of its own: a gateway with a
//! client key called with it, the same called without any key, and one with an admin key too, called
//! with the client key on `/v1` and the admin key on `/admin`. Any finding fails the test, with
//! schemathesis' report (each finding with a `curl` line that reproduces it) in the message.
//!
//! Fuzzed bodies name URLs the gateway would fetch (`image_url`, `callback_url`, …), so the gateway and
//! schemathesis run in a network namespace of their own (`unshare --net`, then `nsenter`) where only
//! loopback exists: nothing generated can reach another address.
//!
//! Bounds, for a run under three minutes in a debug build: 20 examples per operation in each phase
//! (examples, coverage, fuzzing, stateful), 20 s per request; the three configurations run at once.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use common::{BIN, Running, python};

const CLIENT_KEY: &str = "client-key-schemathesis-7c41";
const ADMIN_KEY: &str = "admin-key-schemathesis-2b9e";
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";
const MAX_EXAMPLES: &str = "20";

/// Who the fuzzer is.
#[derive(Clone, Copy, PartialEq)]
enum Caller {
    /// The gateway has a client key, and every request carries it.
    Client,
    /// The gateway has a client key, and no request carries any.
    Anonymous,
    /// The gateway has a client key and an admin key; `/v1` is called with the one, `/admin` with the other.
    Admin,
}

/// The gateway's config: the keys, and wrong-key limits high enough that the fuzzer's own bad keys
/// (it sends some on purpose) do not lock its address out of the rest of the run.
fn gateway_config(caller: Caller) -> String {
    let mut cfg = format!(
        "[auth]\napi_keys = [\"{CLIENT_KEY}\"]\n\n[limits]\nwrong_key_burst = 1000000\nwrong_key_rate = 1000000.0\n\n\
         [admin]\nwrong_key_burst = 1000000\nwrong_key_rate = 1000000.0\n"
    );
    if caller == Caller::Admin {
        cfg.push_str(&format!("api_key = \"{ADMIN_KEY}\"\n"));
    }
    cfg
}

/// schemathesis' config (`--config-file`): the headers each operation is sent with.
fn fuzzer_config(caller: Caller) -> String {
    let client = format!("headers = {{ Authorization = \"Bearer {CLIENT_KEY}\" }}\n");
    match caller {
        Caller::Client => client,
        Caller::Anonymous => String::new(),
        // As the admin, the fuzzer adds junk sso tokens and disables or deletes the good ones; the
        // simulated grok.com then refuses them and the gateway says so with its documented 502
        // (`upstream_auth_failed`). Every other 5xx still fails the run.
        Caller::Admin => format!(
            "{client}\n[checks.not_a_server_error]\nexpected-statuses = [\"2xx\", \"3xx\", \"4xx\", \"502\"]\n\n\
             [[operations]]\ninclude-path-regex = \"^/admin\"\nheaders = {{ Authorization = \"Bearer {ADMIN_KEY}\" }}\n"
        ),
    }
}

/// The binary in a network namespace of its own, loopback only; returns it with its base URL.
fn spawn_isolated(dir: &Path, caller: Caller) -> (Running, String) {
    let cfg = dir.join("gateway.toml");
    std::fs::write(&cfg, gateway_config(caller)).unwrap();
    let log = std::fs::File::create(dir.join("gateway.log")).unwrap();
    let mut child = Command::new("unshare")
        // `exec` keeps the pid: it is the gateway's, whose namespace `nsenter` joins below.
        .args(["--net", "--", "sh", "-c", "ip link set lo up && exec \"$0\" \"$@\"", BIN])
        .args(["--demo", "--listen", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .env_remove("GROK2API_API_KEY")
        .env_remove("GROK2API_ADMIN_KEY")
        .env("GROK2API_MEDIA_DIR", dir.join("media"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("unshare starts");
    let stdout = child.stdout.take().unwrap();
    let running = Running(Some(child));
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line.trim().split(" listening on ").nth(1).map(str::to_owned).unwrap_or_else(|| {
        let log = std::fs::read_to_string(dir.join("gateway.log")).unwrap_or_default();
        panic!(
            "the gateway did not start in a network namespace of its own (this test needs root, or \
             CAP_SYS_ADMIN, for `unshare --net`, and `ip` from iproute2); first line {line:?}\n{log}"
        )
    });
    (running, url)
}

fn fuzz(caller: Caller, name: &str) {
    let py = python();
    let probe = Command::new(&py).args(["-m", "schemathesis.cli", "--version"]).output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "{py} cannot run schemathesis. Run the suite with scripts/test.sh (it installs \
         tests/schemathesis/requirements.txt), or set GROK2API_TEST_PYTHON to a python that has it."
    );
    let dir = tempfile::tempdir().unwrap();
    let (gateway, url) = spawn_isolated(dir.path(), caller);
    let pid = gateway.0.as_ref().unwrap().id();
    let fuzzer = dir.path().join("schemathesis.toml");
    std::fs::write(&fuzzer, fuzzer_config(caller)).unwrap();

    let started = Instant::now();
    let out = Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["--", &py, "-m", "schemathesis.cli", "--no-color", "--config-file"])
        .arg(&fuzzer)
        .args(["run", &format!("{url}/openapi.json"), "--checks", CHECKS, "--max-examples", MAX_EXAMPLES])
        .args(["--request-timeout", "20", "--generation-database", "none", "--suppress-health-check", "all"])
        // Reports and caches land in the temporary directory, not in the work tree.
        .current_dir(dir.path())
        .output()
        .expect("nsenter starts");
    let took = started.elapsed();
    drop(gateway);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let log = std::fs::read_to_string(dir.path().join("gateway.log")).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
    assert!(
        out.status.success(),
        "schemathesis ({name}) found answers that break /openapi.json's word, in {took:?}:\n{stdout}\n{stderr}\n\
         --- the gateway's log, last lines\n{}",
        tail.join("\n")
    );
    // It really ran: every operation of the document was tested, none failed.
    let tested = stdout.lines().find(|l| l.trim_start().starts_with("Tested:")).unwrap_or("");
    let selected = stdout.lines().find(|l| l.trim_start().starts_with("Selected:")).unwrap_or("");
    let all = selected.split_whitespace().nth(1).and_then(|s| s.split('/').next_back()).unwrap_or("?");
    assert_eq!(tested.split_whitespace().nth(1), Some(all), "not every operation was tested:\n{stdout}");
    assert!(stdout.contains(" passed"), "{stdout}");
    eprintln!("schemathesis ({name}): {} in {took:?}", stdout.lines().last().unwrap_or("").trim_matches('='));
}

#[test]
fn schemathesis_with_a_client_key() {
    fuzz(Caller::Client, "client key");
}

#[test]
fn schemathesis_without_a_key() {
    fuzz(Caller::Anonymous, "no key");
}

#[test]
fn schemathesis_with_an_admin_key() {
    fuzz(Caller::Admin, "admin key");
}

#!/usr/bin/env python3
"""scripts/report.sh's bookkeeping: turns each phase's raw output into JSON, and the JSON into
docs/test-report.md.

  report.py suite LOG RC SECONDS             the test suite's log -> counts per cargo test pass
  report.py coverage DIR SECONDS             cargo llvm-cov's summary and the suite's log -> coverage
  report.py load-run RUN LOAD0 LOAD1 HWM_KIB CONNS METRICS  one load run's JSON line, with the machine's
      load around it, the connections open mid-run and what the gateway counted (its /metrics)
  report.py load DIR BUILD_SECS SECONDS PROMPT
  report.py render DATA_DIR                  -> markdown on stdout
"""

import datetime
import json
import os
import platform
import re
import shlex
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# The user document's §4 (grok2api-async-api.md), as printed there.
DOCUMENT = {
    "pass_rate": "100%",
    "coverage": "100%",
    "node": {"label": "Node.js 18", "qps": 1050, "p99_ms": 180, "error_rate": 0.0005},
    "chromium": {"label": "Chrome 最新版本 (latest)", "qps": 1005, "p99_ms": 195, "error_rate": 0.0008},
}


def stamp():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# ---------- suite ----------

def test_sh_passes():
    """The `cargo test` commands of scripts/test.sh, in order, as short labels."""
    text = open(os.path.join(ROOT, "scripts", "test.sh")).read().replace("\\\n", " ")
    passes = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#") or "cargo test" not in line:
            continue
        words = shlex.split(line)
        env = [w for w in words[: words.index("cargo")] if "=" in w]
        rest = words[words.index("test", words.index("cargo")) + 1:]
        targets = [rest[i + 1] for i, w in enumerate(rest) if w == "--test" and i + 1 < len(rest)]
        flags = [w for i, w in enumerate(rest) if w not in ("--locked", "$@", "--test") and not (i and rest[i - 1] == "--test")]
        label = "`" + " ".join(env + ["cargo test"]) + (" " + shlex.join(flags) if flags else "") + "`"
        if targets:
            label += f" ({len(targets)} test targets)"
        passes.append(label)
    return passes


def suite(log_path, rc, seconds):
    passes, not_run = parse_suite(log_path)
    json.dump(dict(date=stamp(), rc=int(rc), seconds=int(seconds), passes=passes, not_run=not_run,
                   commit=git_commit()), sys.stdout, indent=1)


def parse_suite(log_path):
    # One segment per cargo invocation: cargo prints "Finished `test` profile" once its build is done,
    # before it runs anything.
    segments = []
    for line in open(log_path, errors="replace"):
        if re.match(r"\s*Finished `test` profile", line):
            segments.append([])
        elif segments:
            segments[-1].append(line)
    labels = test_sh_passes()
    passes = []
    for i, lines in enumerate(segments):
        counts = dict(passed=0, failed=0, ignored=0, measured=0, filtered=0, results=0)
        failed_tests = []
        targets = 0
        for line in lines:
            if re.match(r"\s*Running ", line):
                targets += 1
            m = re.search(r"test result: (\w+)\. (\d+) passed; (\d+) failed; (\d+) ignored; (\d+) measured; (\d+) filtered out", line)
            if m:
                counts["results"] += 1
                for k, v in zip(("passed", "failed", "ignored", "measured", "filtered"), m.groups()[1:]):
                    counts[k] += int(v)
            m = re.match(r"test (\S+) \.\.\. FAILED", line)
            if m:
                failed_tests.append(m.group(1))
        label = labels[i] if i < len(labels) else f"`cargo test`, run {i + 1}"
        passes.append(dict(label=label, targets=targets, failed_tests=failed_tests, **counts))
    return passes, labels[len(segments):]


# ---------- coverage ----------

KINDS = ("lines", "regions", "functions")


def coverage(dir_, seconds):
    """cargo llvm-cov's JSON summary -> covered/count per kind, per top-level module of src/."""
    summary = json.load(open(os.path.join(dir_, "summary.json")))
    modules = {}
    for f in summary["data"][0]["files"]:
        rel = os.path.relpath(f["filename"], ROOT)
        if not rel.startswith("src" + os.sep):
            continue
        m = modules.setdefault(module_of(rel), dict(files=0, **{k: [0, 0] for k in KINDS}))
        m["files"] += 1
        for k in KINDS:
            m[k][0] += f["summary"][k]["covered"]
            m[k][1] += f["summary"][k]["count"]
    suite_run = parse_suite(os.path.join(dir_, "test.log"))
    rc = open(os.path.join(dir_, "test.rc")).read().strip()
    json.dump(dict(date=stamp(), seconds=int(seconds), modules=modules, rc=int(rc), suite=suite_run, tool=cmd("cargo", "llvm-cov", "--version"),
                   llvm=cmd("llvm-profdata-22", "--version").splitlines()[0], commit=git_commit()),
              sys.stdout, indent=1)


def module_of(rel):
    parts = rel.split(os.sep)
    if len(parts) == 2:
        return parts[1][:-3] if parts[1].endswith(".rs") else parts[1]
    return parts[1]


# ---------- load ----------

def load_run(path, load0, load1, hwm, conns, metrics):
    run = json.loads(open(path).read().strip().splitlines()[-1])
    answered = {}
    for line in open(metrics):
        m = re.match(r'grok2api_http_requests_total\{route="([^"]*)",status="(\d+)"\} (\d+)', line)
        if m and m.group(1) != "/metrics":
            answered[f"{m.group(1)} {m.group(2)}"] = int(m.group(3))
    run.update(loadavg_before=float(load0), loadavg_after=float(load1), gateway_peak_rss_kib=int(hwm or 0),
               connections=int(conns) if conns.strip() else None, answered=answered)
    json.dump(run, sys.stdout, indent=1)


def load(dir_, build_secs, seconds, prompt):
    order = ["node-poll", "node-create", "chromium-poll", "chromium-create"]
    runs = {k: json.load(open(os.path.join(dir_, k + ".json"))) for k in order if os.path.exists(os.path.join(dir_, k + ".json"))}
    json.dump(dict(date=stamp(), build_seconds=int(build_secs), seconds=int(seconds), create_prompt=prompt,
                   runs=runs, commit=git_commit(), versions=load_versions()), sys.stdout, indent=1)


def cmd(*args):
    try:
        return subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "not found"


def load_versions():
    return dict(
        node=cmd("node", "--version"),
        chromium=cmd("chromium", "--version"),
        chromedriver=cmd("chromedriver", "--version").split(" (")[0],
    )


def git_commit():
    commit = cmd("git", "-C", ROOT, "rev-parse", "--short=12", "HEAD")
    # Only what the build sees: the report itself and its raw data do not make the build dirty.
    dirty = cmd("git", "-C", ROOT, "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock", "tests", "benches")
    return commit + ("-dirty" if dirty and dirty != "not found" else "")


# ---------- render ----------

def pct(x, digits=1):
    return "–" if x is None else f"{x * 100:.{digits}f}%"


def machine():
    model, cores = "unknown", os.cpu_count()
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = 0
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal"):
            mem = int(line.split()[1]) / 1024 / 1024
    return f"{cores} cores ({model}), {mem:.0f} GiB RAM, {platform.system()} {platform.release()}"


def read(data, name):
    path = os.path.join(data, name)
    return json.load(open(path)) if os.path.exists(path) else None


def render(data):
    tests, cov, ld = read(data, "tests.json"), read(data, "coverage.json"), read(data, "load.json")
    out = []
    w = out.append
    w("# Test report")
    w("")
    w("The user document's §4 (pass rate, coverage, and QPS / P99 / error rate of its §3.8 `fetch` code from "
      "Node.js and from a browser), measured on this project. Generated by `scripts/report.sh`; do not edit by "
      "hand. How to regenerate it, and what each figure means, is below the table.")
    w("")
    w(f"- Written: {stamp()}")
    w(f"- Machine: {machine()}; the gateway, the simulator and the clients share it, and whatever else ran "
      "on it shows in the load averages recorded with each load run")
    w(f"- Versions: {cmd('rustc', '-V')}")
    if ld:
        v = ld["versions"]
        w(f"  · Node.js {v['node']} · {v['chromium']} (headless, {v['chromedriver']})")
    if cov:
        w(f"  · {cov['tool']}")
    for name, part in (("suite", tests), ("coverage", cov), ("load", ld)):
        if part:
            w(f"- {name.capitalize()} phase: run {part['date']} on commit `{part['commit']}`, took {duration(part['seconds'])}")
        else:
            w(f"- {name.capitalize()} phase: never run here")
    w("")
    w("## The document's figures beside ours")
    w("")
    w("| | the document (§4) | here |")
    w("| --- | --- | --- |")
    if tests:
        t = totals(tests)
        runnable = t["passed"] + t["failed"]
        rate = t["passed"] / runnable if runnable else None
        extra = f"; {len(tests['not_run'])} pass(es) not run" if tests["not_run"] else ""
        w(f"| pass rate | {DOCUMENT['pass_rate']} | **{pct(rate, 2)}**: {t['passed']:,} passed, {t['failed']} failed, "
          f"{t['ignored']} ignored, over {len(tests['passes'])} `cargo test` passes{extra} |")
    else:
        w(f"| pass rate | {DOCUMENT['pass_rate']} | not measured |")
    if cov:
        c, n = cov_total(cov["modules"], "lines")
        cs, ns = cov_total({k: v for k, v in cov["modules"].items() if k != "sim"}, "lines")
        w(f"| line coverage | {DOCUMENT['coverage']} | **{ratio(c, n)}** of `src/` ({c:,} of {n:,} lines); "
          f"{ratio(cs, ns)} without the simulator (`src/sim`, the stand-in for grok.com and xAI) |")
    else:
        w(f"| line coverage | {DOCUMENT['coverage']} | not measured |")
    if ld:
        for client in ("node", "chromium"):
            doc = DOCUMENT[client]
            for mode, what in (("poll", "status polls (`getTask`)"), ("create", "creates (`createTask`)")):
                r = ld["runs"].get(f"{client}-{mode}")
                if not r:
                    continue
                name = f"Node.js {ld['versions']['node']}" if client == "node" else "headless Chromium " + chromium_major(ld)
                w(f"| {doc['label']}: QPS / P99 / error rate | {doc['qps']} / {doc['p99_ms']} ms / {pct(doc['error_rate'], 2)} | "
                  f"{name}, {what}: **{r['qps']:,.0f} / {r['p99_ms']:.1f} ms / {pct(r['error_rate'], 2)}** |")
    else:
        w("| QPS / P99 / error rate | see §4.2 | not measured |")
    w("")

    if tests:
        w("## Pass rate")
        w("")
        w("`./scripts/test.sh`, the README's test command (what CI runs), once. Counts are the sums over every "
          "`test result:` line of each `cargo test` it runs; a target without the libtest harness (the "
          "criterion and custom benches, run once each in test mode) prints no such line and counts only as a target "
          "that ran. The pass rate is passed / (passed + failed); ignored tests are neither.")
        w("")
        w("| pass | targets run | passed | failed | ignored | filtered out |")
        w("| --- | --- | --- | --- | --- | --- |")
        for p in tests["passes"]:
            w(f"| {p['label']} | {p['targets']} | {p['passed']:,} | {p['failed']} | {p['ignored']} | {p['filtered']} |")
        t = totals(tests)
        w(f"| **total** | {t['targets']} | **{t['passed']:,}** | **{t['failed']}** | {t['ignored']} | {t['filtered']} |")
        for label in tests["not_run"]:
            w(f"| {label} | not run: an earlier pass failed | | | | |")
        w("")
        failed = [(p["label"], n) for p in tests["passes"] for n in p["failed_tests"]]
        w(f"`scripts/test.sh` exited with status {tests['rc']}." +
          ("" if not failed else " Failed: " + "; ".join(f"`{n}` (in {label})" for label, n in failed) + "."))
        w("")

    if cov:
        w("## Line coverage")
        w("")
        w("The whole suite again (`./scripts/test.sh`, every pass), built with LLVM's source-based coverage "
          f"(`-C instrument-coverage`) through `cargo llvm-cov show-env` ({cov['tool']}) in its own target dir "
          f"(`target/llvm-cov-target`), the profiles read with Debian's `llvm-22` ({cov['llvm']}).")
        w("")
        w(f"Why this tool: rustc is built on {llvm_version()}, and its instrumented binaries write profiles that "
          "only an `llvm-profdata` of that major version reads. rustup's "
          "`llvm-tools-preview` cannot be fetched on this machine, and Debian's default `llvm` (14) refuses those "
          "profiles (\"unsupported instrumentation profile format version\"), but bookworm-security ships "
          "`llvm-22`, whose `llvm-profdata-22` and `llvm-cov-22` read them. Source-based coverage runs the suite at "
          "close to its normal speed, so timing-bound tests behave as in the suite, and counts regions, not only "
          "lines. cargo-tarpaulin's ptrace engine (needs only debug info) works here as well (tried on a small "
          "crate, spawned binaries included with `--follow-exec`); it was not chosen because it runs every test "
          "process and every gateway it spawns under a tracer, and counts lines only.")
        w("")
        w("What it sees and what not: the test binaries (with the gateways most tests run in-process) and every "
          "`grok2api` process they spawn (the gateway, `grok2api sim`) write a profile when they exit, so the "
          "end-to-end tests count. A process that ends by SIGKILL writes none: the gateways `tests/durability.rs` "
          "and `tests/replicas.rs` kill on purpose, and every spawned process a test leaves to `tests/common`'s "
          "`Running` (it kills on drop) rather than stopping it with SIGTERM; what only those processes ran is "
          "missing, so the figures are a lower bound. A line counts as covered when code on it ran (one executed "
          "region is enough); generic code never instantiated and `cfg`'d-out code are not coverable. The "
          "browser, SDK and Python clients are not Rust and not counted.")
        w("")
        suite_t = totals(dict(passes=cov["suite"][0]))
        w(f"The instrumented run of the suite: {suite_t['passed']:,} passed, {suite_t['failed']} failed, "
          f"{suite_t['ignored']} ignored (exit status {cov['rc']})." +
          ("" if not suite_t["failed"] else " Failed there: " +
           ", ".join(f"`{n}`" for p in cov["suite"][0] for n in p["failed_tests"]) + "."))
        w("")
        w("| module (`src/…`) | files | lines covered | lines | line coverage | region coverage | function coverage |")
        w("| --- | --- | --- | --- | --- | --- | --- |")
        for name, m in sorted(cov["modules"].items(), key=lambda kv: -kv[1]["lines"][1]):
            kind = "/" if name in subdirs() else ".rs"
            w(f"| `{name}{kind}` | {m['files']} | {m['lines'][0]:,} | {m['lines'][1]:,} | {ratio(*m['lines'])} | "
              f"{ratio(*m['regions'])} | {ratio(*m['functions'])} |")
        row = {k: cov_total(cov["modules"], k) for k in KINDS}
        files = sum(m["files"] for m in cov["modules"].values())
        w(f"| **`src/` total** | {files} | **{row['lines'][0]:,}** | **{row['lines'][1]:,}** | **{ratio(*row['lines'])}** | "
          f"{ratio(*row['regions'])} | {ratio(*row['functions'])} |")
        w("")
        w("Per file: `target/report/coverage/lcov.info` (any lcov viewer), or `cargo llvm-cov report --html` with "
          "the environment `scripts/report.sh` sets.")
        w("")

    if ld:
        runs = ld["runs"]
        w("## QPS, P99 and error rate")
        w("")
        w(f"The document's §3.8 `createTask` and `getTask`, as written there (`scripts/report/load.js`), run by "
          f"{runs[next(iter(runs))]['concurrency']} concurrent loops for {runs[next(iter(runs))]['seconds']:.0f} s "
          "against `grok2api --demo` (release build, a key configured, so CORS answers every origin) on this "
          "machine: once from Node.js (`node.js`), once from a page on a second origin (`page.html`, served by "
          "`browser.py` on another port) in headless Chromium driven by Selenium. A fresh gateway for each run.")
        w("")
        w("| client | run | connections | requests | QPS | P50 | P99 | max | errors | error rate | load avg. before → after | gateway peak RSS |")
        w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for key, r in runs.items():
            client, mode = key.split("-")
            name = f"Node.js {ld['versions']['node']}" if client == "node" else "Chromium " + chromium_major(ld)
            conns = "–" if r.get("connections") is None else r["connections"]
            w(f"| {name} | {mode} | {conns} | {r['requests']:,} | {r['qps']:,.0f} | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms | "
              f"{r['max_ms']:.1f} ms | {r['errors']} | {pct(r['error_rate'], 2)} | {r['loadavg_before']:.2f} → "
              f"{r['loadavg_after']:.2f} | {r['gateway_peak_rss_kib'] / 1024:.0f} MiB |")
        for doc_key in ("node", "chromium"):
            d = DOCUMENT[doc_key]
            w(f"| {d['label']} (the document) | not said | – | – | {d['qps']} | – | {d['p99_ms']} ms | – | – | {pct(d['error_rate'], 2)} | – | – |")
        w("")
        statuses = {k: r["statuses"] for k, r in runs.items() if r.get("statuses")}
        w("What the figures mean:")
        w("")
        w("- **QPS** is completed calls of the document's function per second of the run, **P50/P99/max** the "
          "time one call took in the client (`performance.now()` around the `await`, the body read and parsed "
          "included), an **error** a call the document's code throws from (a non-2xx answer or a network error).")
        w("- **poll**: each loop first creates one task with the document's payload (a 6-second 480p video that the "
          "demo simulator really streams, progress and all), then calls `getTask` on it over and over, "
          "as a front end's task queue polls. The answers seen: " +
          "; ".join(f"{k}: " + ", ".join(f"{s} {n:,}" for s, n in v.items()) for k, v in statuses.items()) +
          ". The document's `getTask` sends no key, so the gateway runs with `auth.public_task_reads = true` "
          "(the task id, 122 random bits, is the capability); creating still needs the key.")
        w(f"- **create**: the loops call `createTask` back to back, with the document's payload whose prompt "
          f"carries a simulator token (`{ld['create_prompt']}`): the four workers sit in a stream the simulator "
          "keeps silent and every other task waits in a queue sized to hold them all (`tasks.queue_capacity`), so "
          "the figure is the gateway's accept path (auth, body checks, the task record, the queue, the 202 answer), "
          "not how fast videos are made; a queue that filled would answer 429 (by design) and measure its "
          "capacity instead. Each accepted task is a real one, owed a video: no upstream makes videos at that rate, "
          "so a real front end meets the queue's 429 long before the accept path's limit.")
        w("- The document does not say which calls its figures count, what machine or concurrency produced them, "
          "or what failed; ours run client, gateway and simulator on one machine, so the client's own CPU time "
          "is part of every figure (with 2 cores the client and the gateway compete), and load from other work on "
          "the machine shows in the load averages. `benches/load/run.sh` measures the gateway alone with `oha` "
          "([benchmarks.md](benchmarks.md)).")
        w("- **connections**: the gateway's `grok2api_open_connections` halfway through a run. Chromium opens at "
          "most 6 HTTP/1.1 connections per origin, so of its loops at most 6 have a request on the wire; the "
          "others queue inside the browser and that wait is in their latency. Node.js's `fetch` (undici) may "
          "hold more connections than it has loops: it opens another whenever none is idle at the moment of a call.")
        w("- What the gateway itself counted (`grok2api_http_requests_total`, by route template and status; the "
          "poll runs' creates of their tasks included): " +
          "; ".join(f"{k}: " + ", ".join(f"`{r}` {n:,}" for r, n in v.get("answered", {}).items()) for k, v in runs.items()) +
          ". Its counter does not tell methods apart: a CORS preflight counts as a 200 on the route it asks "
          "about, and creates answer 202.")
        preflights = ", ".join(
            f"{k} {v.get('answered', {}).get('/v1/video/generations/async 200', 0)}"
            for k, v in runs.items() if k.startswith("chromium"))
        w("- In Chromium a create needs a CORS preflight (`OPTIONS`, for `Authorization` and `Content-Type`); "
          "Chromium caches the answer (`Access-Control-Max-Age: 600`), so only the first creates, sent at once, "
          f"send one (preflights the gateway answered: {preflights}). `fetch` does not show preflights, so they are "
          "in no client count. The status reads are simple requests (nothing to preflight). Chromium rounds "
          "`performance.now()` to 0.1 ms.")
        w(f"- `cargo build --release` took {duration(ld['build_seconds'])} of the load phase" +
          (" (it was up to date)" if ld["build_seconds"] < 30 else "") +
          "; from nothing it takes several minutes on 2 cores (BoringSSL, thin LTO).")
        w("")

    w("## Regenerating it")
    w("")
    w("```sh")
    w("scripts/report.sh                        # everything: suite, coverage, load")
    w("REPORT_PHASES=load scripts/report.sh     # only the load runs; the other figures stay from their last run")
    w("REPORT_SECONDS=60 REPORT_CONCURRENCY=10 scripts/report.sh")
    w("```")
    w("")
    w("It installs what is missing as `scripts/test.sh` does (`scripts/deps.sh`, apt-get for `nodejs`, "
      "`chromium`, `chromium-driver`, `llvm-22`; Selenium into `.venv-test`; `cargo install --locked cargo-llvm-cov`). "
      "Raw data: `target/report/` (the suite's logs, the coverage summary and lcov, each load run's JSON). Files: "
      "`scripts/report.sh`, `scripts/report/` (`load.js` the client, `node.js`, `page.html` + `browser.py`, "
      "`report.py` this page).")
    w("")
    spent = sum(p["seconds"] for p in (tests, cov, ld) if p)
    w(f"Time each phase took ({duration(spent)} in all), its builds included: on a machine where nothing is "
      "built yet, each of the three (debug for the suite, instrumented for coverage, release for the load) first "
      "compiles BoringSSL and every dependency, which takes tens of minutes more on 2 cores:")
    w("")
    w("| phase | took |")
    w("| --- | --- |")
    for name, part in (("suite (`scripts/test.sh`)", tests), ("coverage (the suite, instrumented)", cov), ("load (release build + 4 runs)", ld)):
        if part:
            w(f"| {name} | {duration(part['seconds'])} |")
    print("\n".join(out))


def totals(tests):
    t = dict(passed=0, failed=0, ignored=0, filtered=0, targets=0)
    for p in tests["passes"]:
        for k in t:
            t[k] += p[k]
    return t


def cov_total(modules, kind):
    return sum(m[kind][0] for m in modules.values()), sum(m[kind][1] for m in modules.values())


def ratio(covered, count):
    return pct(covered / count if count else None)


def subdirs():
    src = os.path.join(ROOT, "src")
    return {d for d in os.listdir(src) if os.path.isdir(os.path.join(src, d))}


def chromium_major(ld):
    m = re.search(r"(\d+)\.", ld["versions"]["chromium"])
    return m.group(1) if m else ""


def llvm_version():
    m = re.search(r"LLVM version: (\S+)", cmd("rustc", "-vV"))
    return f"LLVM {m.group(1)}" if m else "its LLVM"


def duration(s):
    s = int(s)
    return f"{s // 3600} h {s % 3600 // 60} min" if s >= 3600 else f"{s // 60} min {s % 60} s"


def main():
    what, args = sys.argv[1], sys.argv[2:]
    {"suite": suite, "coverage": coverage, "load-run": load_run, "load": load, "render": render}[what](*args)


if __name__ == "__main__":
    main()

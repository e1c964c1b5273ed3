#!/usr/bin/env bash
# Regenerates docs/test-report.md: the user document's §4 test report (pass rate, line coverage, QPS /
# P99 / error rate from Node.js and from a browser), measured on this machine. Not part of CI.
#   scripts/report.sh
# Phases, each timed in the report: `tests` (./scripts/test.sh, the whole suite), `coverage` (the same
# suite built with LLVM's source-based coverage through cargo-llvm-cov, in target/llvm-cov-target),
# `load` (release build, then the document's fetch code from Node.js and from headless Chromium against
# `--demo`).
# Env: REPORT_SECONDS (20: each load run), REPORT_CONCURRENCY (10, the document's "5-10 per instance"),
#      REPORT_PHASES ("tests coverage load"; a phase left out keeps the figures of its last run, read from
#      target/report/ and dated as such in the report; empty: only rewrite the page), REPORT_OUT
#      (docs/test-report.md).
# Installs what is missing as scripts/test.sh does (apt-get, .venv-test, `cargo install cargo-llvm-cov`).
# Everything listens on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_RUN=${REPORT_SECONDS:-20}
CONCURRENCY=${REPORT_CONCURRENCY:-10}
PHASES=${REPORT_PHASES-tests coverage load}
OUT=${REPORT_OUT:-docs/test-report.md}
data=target/report
mkdir -p "$data"
want() { [[ " $PHASES " == *" $1 "* ]]; }
now() { date +%s; }

./scripts/deps.sh
packages=()
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v chromium >/dev/null 2>&1 || packages+=(chromium)
command -v chromedriver >/dev/null 2>&1 || packages+=(chromium-driver)
./scripts/apt-install.sh "${packages[@]}"
venv=.venv-test
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
if ! "$venv/bin/python" -c "import selenium" 2>/dev/null; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/browser/requirements.txt
fi
py="$venv/bin/python"

if want tests; then
  echo "== tests: ./scripts/test.sh (the whole suite)" >&2
  start=$(now)
  set +e
  ./scripts/test.sh 2>&1 | tee "$data/test.log"
  rc=${PIPESTATUS[0]}
  set -e
  "$py" scripts/report/report.py suite "$data/test.log" "$rc" "$(($(now) - start))" > "$data/tests.json"
fi

if want coverage; then
  echo "== coverage: ./scripts/test.sh again, built with -C instrument-coverage (cargo-llvm-cov, llvm-22)" >&2
  start=$(now)
  # rustc's LLVM is 22 (`rustc -vV`); Debian's default llvm (14) cannot read its profiles, and rustup's
  # llvm-tools-preview cannot be fetched here, but bookworm-security's llvm-22 can.
  command -v llvm-profdata-22 >/dev/null 2>&1 || ./scripts/apt-install.sh llvm-22
  command -v cargo-llvm-cov >/dev/null 2>&1 || cargo install --locked cargo-llvm-cov
  rm -rf "$data/coverage" && mkdir -p "$data/coverage"
  (
    export LLVM_COV=/usr/bin/llvm-cov-22 LLVM_PROFDATA=/usr/bin/llvm-profdata-22
    # Its own target dir: the instrumented build never replaces the normal one.
    export CARGO_TARGET_DIR="$PWD/target/llvm-cov-target"
    eval "$(cargo llvm-cov show-env --sh)"
    cargo llvm-cov clean --workspace
    set +e
    ./scripts/test.sh 2>&1 | tee "$data/coverage/test.log"
    echo "${PIPESTATUS[0]}" > "$data/coverage/test.rc"
    set -e
    cargo llvm-cov report --json --summary-only --output-path "$data/coverage/summary.json"
    cargo llvm-cov report --lcov --output-path "$data/coverage/lcov.info"
  )
  "$py" scripts/report/report.py coverage "$data/coverage" "$(($(now) - start))" > "$data/coverage.json"
fi

if want load; then
  echo "== load: release build, then Node.js and Chromium against --demo" >&2
  start=$(now)
  build_start=$(now)
  cargo build --locked --release --bin grok2api
  build_secs=$(($(now) - build_start))
  work=$(mktemp -d)
  gw_pid=""
  cleanup() {
    if [ -n "$gw_pid" ]; then kill -KILL "$gw_pid" 2>/dev/null || true; wait "$gw_pid" 2>/dev/null || true; fi
    rm -rf "$work"
  }
  trap cleanup EXIT
  KEY=report-key-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
  # public_task_reads: the document's getTask sends no key (the task id is the capability).
  # The queue holds every task a create run can make (tasks.queue_capacity; queue_per_key is half of
  # it), so creates measure the gateway's accept path and never meet a full queue's 429.
  cat > "$work/gw.toml" <<TOML
[auth]
api_keys = ["$KEY"]
public_task_reads = true
[tasks]
workers = 4
queue_capacity = 4000000
expected_tasks = 262144
[log]
level = "error"
TOML
  start_gateway() {
    target/release/grok2api --demo --listen 127.0.0.1:0 --config "$work/gw.toml" --media-dir "$work/media" \
      > "$work/gw.out" 2> "$work/gw.err" &
    gw_pid=$!
    for _ in $(seq 1 100); do
      base=$(sed -n 's/^grok2api listening on //p' "$work/gw.out")
      [ -n "$base" ] && return 0
      sleep 0.1
    done
    echo "the gateway did not start:" >&2; cat "$work/gw.err" >&2; exit 1
  }
  # SIGKILL: a create run leaves workers in streams the simulator keeps silent, and a graceful stop would
  # wait server.shutdown_grace_secs for them; shutting down is not what is measured.
  stop_gateway() { kill -KILL "$gw_pid"; wait "$gw_pid" 2>/dev/null || true; gw_pid=""; }
  # The token keeps the four workers in a stream the simulator leaves silent and every other task in the
  # queue (as benches/load/run.sh does): otherwise a create run's thousands of tasks would be made as
  # simulated videos on the same cores, and the figure would mix the simulator's work into the gateway's.
  CREATE_PROMPT='生成一段海边日落视频 [sim:slow=600000]'
  rm -rf "$data/load" && mkdir -p "$data/load"
  for client in node chromium; do
    for mode in poll create; do
      prompt=""
      [ "$mode" = create ] && prompt=$CREATE_PROMPT
      start_gateway
      echo "   $client $mode: ${SECONDS_PER_RUN}s, concurrency $CONCURRENCY, gateway $base" >&2
      load_before=$(cut -d' ' -f1 /proc/loadavg)
      # How many connections the client really holds, halfway through (the sampler's own is not counted).
      (sleep "$((SECONDS_PER_RUN / 2 + 2))"; "$py" -c 'import sys, urllib.request
for line in urllib.request.urlopen(sys.argv[1] + "/metrics").read().decode().splitlines():
    if line.startswith("grok2api_open_connections "): print(int(line.split()[1]) - 1)' "$base") > "$work/conns" &
      sampler=$!
      if [ "$client" = node ]; then
        (cd scripts/report && node node.js "$base" "$KEY" "$mode" "$SECONDS_PER_RUN" "$CONCURRENCY" "$prompt") \
          > "$work/run.json"
      else
        "$py" scripts/report/browser.py --base "$base" --key "$KEY" --mode "$mode" \
          --seconds "$SECONDS_PER_RUN" --concurrency "$CONCURRENCY" ${prompt:+--prompt "$prompt"} > "$work/run.json"
      fi
      wait "$sampler" || true
      # The gateway's own count of what it answered, by route and status (preflights included).
      "$py" -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1] + "/metrics").read().decode())' \
        "$base" > "$work/metrics.txt"
      "$py" scripts/report/report.py load-run "$work/run.json" "$load_before" "$(cut -d' ' -f1 /proc/loadavg)" \
        "$(awk '/VmHWM/ {print $2}' "/proc/$gw_pid/status")" "$(cat "$work/conns")" "$work/metrics.txt" \
        > "$data/load/$client-$mode.json"
      stop_gateway
    done
  done
  "$py" scripts/report/report.py load "$data/load" "$build_secs" "$(($(now) - start))" "$CREATE_PROMPT" \
    > "$data/load.json"
fi

"$py" scripts/report/report.py render "$data" > "$OUT"
echo "wrote $OUT" >&2

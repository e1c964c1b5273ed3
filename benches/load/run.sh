#!/usr/bin/env bash
# Load benchmark for the async task API (docs/benchmarks.md explains every number).
#   benches/load/run.sh            # ~3 minutes; needs oha (installed with cargo if missing)
# Every target is a share of the hello-world ceiling measured first in the same run, and so are the
# fixed create rates: 35 % of it in memory, 25 % with the durable journal (`--state-dir`).
# Env: DURATION (default 10s), CONNS (default 64), TASKS_LIVE (10000), TASKS_FINISHED (100000),
#      CREATE_RATE / JOURNAL_RATE (override the fixed rates), STATE_PARENT (where the journal lives;
#      default target/, a real disk: fsync on tmpfs costs nothing), REDIS (1 = also the shared-store
#      runs: 1 and 3 replicas on one redis-server; needs redis-server), PERF (1 = record the gateway
#      with perf during the unthrottled runs and write flamegraphs to FLAMEGRAPHS, default
#      docs/img/flamegraphs; needs perf and inferno, and the binary's symbols: run it as
#      `CARGO_PROFILE_RELEASE_STRIP=false PERF=1 benches/load/run.sh`; its figures are lower, perf
#      shares the cores), BIN (the gateway binary to measure; default the one built here).
# Everything listens on 127.0.0.1; the simulator stands in for grok.com.
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
TASKS_LIVE=${TASKS_LIVE:-10000}
TASKS_FINISHED=${TASKS_FINISHED:-100000}
SIM=127.0.0.1:18801
GW=127.0.0.1:18800
HELLO=127.0.0.1:18802
KEY=bench-key-7d41c9e2a05f3b86

command -v oha >/dev/null || cargo install oha --locked
cargo build --release --bin grok2api --example hello
# BIN=path measures another build of the gateway (an older commit's, for a before/after table).
BIN=${BIN:-target/release/grok2api}
work=$(mktemp -d)
mkdir -p "${STATE_PARENT:-target}"
state=$(mktemp -d -p "${STATE_PARENT:-target}" load-state.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work" "$state"
}
trap cleanup EXIT

wait_http() { for _ in $(seq 1 100); do curl -sf "$1" >/dev/null && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }

# A gateway config: $1 file, $2 listen address, $3 media dir, $4 tasks.expected_tasks, $5 (optional)
# the shared store's URL.
write_config() {
  {
    printf '[server]\nlisten = "%s"\n[auth]\napi_keys = ["%s"]\n' "$2" "$KEY"
    [ -n "${5:-}" ] && printf '[store]\nurl = "%s"\n' "$5"
    cat <<TOML
[grok]
base_url = "http://$SIM"
ws_url = "ws://$SIM"
assets_url = "http://$SIM"
tokens = ["bench-token"]
[media]
dir = "$3"
[tasks]
workers = 4
queue_capacity = 5000000
expected_tasks = $4
[log]
level = "error"
TOML
  } > "$1"
}

# $1: tasks.expected_tasks, the number of tasks the gateway is sized to hold; further arguments go to
# the gateway (`--state-dir DIR`).
start_gateway() {
  write_config "$work/gw.toml" "$GW" "$work/media" "$1"
  "$BIN" --config "$work/gw.toml" "${@:2}" >/dev/null &
  gw_pid=$!
  pids+=("$gw_pid")
  wait_http "http://$GW/healthz"
}

# SIGKILL: the workers sit in 10-minute simulated streams, and shutdown semantics are not measured here.
stop_gateway() { kill -KILL "$gw_pid"; wait "$gw_pid" 2>/dev/null || true; }

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# A replica on the shared store: $1 listen address, $2 redis URL.
start_replica() {
  write_config "$work/replica-$1.toml" "$1" "$work/media-$1" 1048576 "$2"
  "$BIN" --config "$work/replica-$1.toml" >/dev/null &
  pids+=($!)
  replica_pids+=($!)
  wait_http "http://$1/healthz"
}

"$BIN" sim --listen "$SIM" --frame-delay-ms 0 --tokens bench-token >/dev/null &
pids+=($!)
target/release/examples/hello "$HELLO" >/dev/null &
pids+=($!)
wait_http "http://$HELLO/"

oha_json() { oha --no-tui --output-format json "$@"; }

# PERF=1: samples the gateway while `oha_json` runs its phase, then folds the stacks into
# $FLAMEGRAPHS/$1.svg. $1: the phase's name; the rest: oha's arguments.
FLAMEGRAPHS=${FLAMEGRAPHS:-docs/img/flamegraphs}
profiled() {
  local name=$1; shift
  if [ "${PERF:-0}" != 1 ]; then oha_json "$@"; return; fi
  perf record -q -F 499 --call-graph dwarf,16384 -p "$gw_pid" -o "$work/$name.perf" >/dev/null 2>&1 &
  local perf_pid=$!
  oha_json "$@"
  kill -INT "$perf_pid"; wait "$perf_pid" || true
  mkdir -p "$FLAMEGRAPHS"
  perf script -i "$work/$name.perf" 2>/dev/null | inferno-collapse-perf > "$work/$name.folded"
  inferno-flamegraph --title "$name" --width 1600 --minwidth 0.5 < "$work/$name.folded" > "$FLAMEGRAPHS/$name.svg"
  # FOLDED=DIR keeps the folded stacks too, for reading the profile as text.
  if [ -n "${FOLDED:-}" ]; then mkdir -p "$FOLDED"; cp "$work/$name.folded" "$FOLDED/"; fi
  echo "   flamegraph: $FLAMEGRAPHS/$name.svg" >&2
}
AUTH=(-H "authorization: Bearer $KEY")
# Tasks that stay pending: the 4 workers sit in a 10-minute simulated stream, so creation is measured
# without the simulator competing for the CPU.
PENDING='{"model":"grok-imagine-1.0","prompt":"load [sim:slow=600000]"}'
# oha's arguments for creating one such task; the gateway's URL comes after them.
CREATE=(-m POST "${AUTH[@]}" -H 'content-type: application/json' -d "$PENDING")
CREATE_URL="http://$GW/v1/images/generations/async"

echo "== (c) ceiling: bare axum hello-world, unthrottled, $DURATION"
oha_json -z "$DURATION" -c "$CONNS" "http://$HELLO/" > "$work/hello.json"
ceiling=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["summary"]["requestsPerSec"]))' "$work/hello.json")
CREATE_RATE=${CREATE_RATE:-$((ceiling * 35 / 100))}
JOURNAL_RATE=${JOURNAL_RATE:-$((ceiling * 25 / 100))}
echo "   $ceiling requests/s: create at $CREATE_RATE/s in memory (35 %), $JOURNAL_RATE/s with the journal (25 %)"

# Sized for what phases (b) and (a) create: up to about 10k + 200k + 450k tasks.
start_gateway 1048576
echo "== (b) polling with $TASKS_LIVE live tasks"
oha_json -n "$TASKS_LIVE" -c "$CONNS" "${CREATE[@]}" "$CREATE_URL" > "$work/seed.json"
python3 - "$GW" "$KEY" "$work/urls.txt" <<'PY'
import json, sys, urllib.request
gw, key, out = sys.argv[1:4]
ids, after = [], ""
while True:
    req = urllib.request.Request(f"http://{gw}/v1/images/tasks?limit=100&after={after}", headers={"authorization": f"Bearer {key}"})
    data = json.load(urllib.request.urlopen(req))["data"]
    ids += [t["taskId"] for t in data["tasks"]]
    if not data["hasMore"]:
        break
    after = data["nextAfter"]
with open(out, "w") as f:
    f.writelines(f"http://{gw}/v1/images/tasks/{i}\n" for i in ids)
print(f"{len(ids)} live tasks")
PY
profiled poll -z "$DURATION" -c "$CONNS" "${AUTH[@]}" --urls-from-file "$work/urls.txt" > "$work/poll.json"

echo "== (a) create at a fixed $CREATE_RATE requests/s for $DURATION"
oha_json -z "$DURATION" -q "$CREATE_RATE" --latency-correction -c "$CONNS" "${CREATE[@]}" "$CREATE_URL" > "$work/create.json"
echo "== (a') create, unthrottled"
profiled create -z "$DURATION" -c "$CONNS" "${CREATE[@]}" "$CREATE_URL" > "$work/create_max.json"
stop_gateway

# The Docker image's default: every create waits for its record (and job) to be fsynced.
start_gateway 1048576 --state-dir "$state"
echo "== (d) create with the journal in $state, at a fixed $JOURNAL_RATE requests/s for $DURATION"
oha_json -z "$DURATION" -q "$JOURNAL_RATE" --latency-correction -c "$CONNS" "${CREATE[@]}" "$CREATE_URL" > "$work/journal.json"
echo "== (d') create with the journal, unthrottled"
profiled create-journal -z "$DURATION" -c "$CONNS" "${CREATE[@]}" "$CREATE_URL" > "$work/journal_max.json"
stop_gateway

echo "== RSS with $TASKS_FINISHED finished tasks"
start_gateway "$TASKS_FINISHED"
sleep 0.5
rss_before=$(rss_kib "$gw_pid")
# The first task rate-limits the only token; every later one fails at once ("every upstream token is
# rate limited") — a finished task with an error message, created and finished at full speed.
oha_json -n "$TASKS_FINISHED" -c "$CONNS" -m POST "${AUTH[@]}" -H 'content-type: application/json' \
  -d '{"model":"grok-imagine-1.0","prompt":"load [sim:rate-limit]"}' "http://$GW/v1/images/generations/async" > "$work/fill.json"
for _ in $(seq 1 100); do
  pending=$(curl -s -H "authorization: Bearer $KEY" "http://$GW/v1/images/tasks?status=pending&limit=1" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["data"]["tasks"]))')
  [ "$pending" = 0 ] && break; sleep 0.2
done
sleep 1
rss_after=$(rss_kib "$gw_pid")
stop_gateway

if [ "${REDIS:-0}" = 1 ]; then
  REDIS_PORT=18810
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
  pids+=($!)
  for _ in $(seq 1 50); do (exec 3<>/dev/tcp/127.0.0.1/$REDIS_PORT) 2>/dev/null && break; sleep 0.1; done
  for replicas in 1 3; do
    redis-cli -p "$REDIS_PORT" flushall >/dev/null
    replica_pids=()
    addrs=()
    for i in $(seq 1 "$replicas"); do addrs+=("127.0.0.1:$((18820 + i))"); start_replica "${addrs[-1]}" "redis://127.0.0.1:$REDIS_PORT/"; done
    echo "== redis, $replicas replica(s): create unthrottled, then poll $TASKS_LIVE live tasks across them"
    : > "$work/create-urls.txt"
    for a in "${addrs[@]}"; do echo "http://$a/v1/images/generations/async" >> "$work/create-urls.txt"; done
    oha_json -z "$DURATION" -c "$CONNS" "${CREATE[@]}" --urls-from-file "$work/create-urls.txt" \
      > "$work/redis-create-$replicas.json"
    # Poll tasks made on the first replica, through every replica (the others read the shared store).
    python3 - "${addrs[0]}" "$KEY" "$work/redis-poll-urls.txt" "$TASKS_LIVE" "${addrs[@]}" <<'PY'
import json, sys, urllib.request
gw, key, out, n, addrs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:]
ids, after = [], ""
while len(ids) < n:
    req = urllib.request.Request(f"http://{gw}/v1/images/tasks?limit=100&after={after}", headers={"authorization": f"Bearer {key}"})
    data = json.load(urllib.request.urlopen(req))["data"]
    ids += [t["taskId"] for t in data["tasks"]]
    if not data["hasMore"]:
        break
    after = data["nextAfter"]
with open(out, "w") as f:
    f.writelines(f"http://{addrs[i % len(addrs)]}/v1/images/tasks/{t}\n" for i, t in enumerate(ids[:n]))
PY
    oha_json -z "$DURATION" -c "$CONNS" "${AUTH[@]}" --urls-from-file "$work/redis-poll-urls.txt" > "$work/redis-poll-$replicas.json"
    for p in "${replica_pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    wait "${replica_pids[@]}" 2>/dev/null || true
  done
fi

python3 - "$work" "$CREATE_RATE" "$JOURNAL_RATE" "$rss_before" "$rss_after" "$TASKS_FINISHED" "$TASKS_LIVE" <<'PY'
import json, os, sys
work = sys.argv[1]
rate, jrate, before, after, n, live = (int(a) for a in sys.argv[2:8])
def load(name):
    with open(os.path.join(work, name)) as f:
        return json.load(f)
hello = load("hello.json")["summary"]["requestsPerSec"]
def row(label, d):
    s, p = d["summary"], d["latencyPercentiles"]
    codes = d.get("statusCodeDistribution", {})
    # oha counts requests still in flight when -z runs out as "aborted due to deadline": not server errors.
    aborted = sum(v for k, v in d.get("errorDistribution", {}).items() if "deadline" in k)
    errors = sum(v for k, v in codes.items() if not k.startswith("2")) + sum(d.get("errorDistribution", {}).values()) - aborted
    rps = s["requestsPerSec"]
    print(f"| {label} | {rps:,.0f} | {rps / hello:.0%} | {p['p50']*1000:.2f} ms | {p['p99']*1000:.2f} ms | {errors} | {codes}, {aborted} cut by the deadline |")
    return rps, p["p99"] * 1000, errors
print("\n| run | requests/s | share of the ceiling | p50 | p99 | errors | statuses |\n| --- | --- | --- | --- | --- | --- | --- |")
row("(c) hello-world ceiling", load("hello.json"))
poll, _, _ = row(f"(b) GET task, {live:,} live", load("poll.json"))
create_max, _, _ = row("(a') POST async, unthrottled", load("create_max.json"))
create, p99, errs = row(f"(a) POST async at a fixed {rate:,}/s", load("create.json"))
journal_max, _, _ = row("(d') POST async with `--state-dir`, unthrottled", load("journal_max.json"))
journal, jp99, jerrs = row(f"(d) same, at a fixed {jrate:,}/s", load("journal.json"))
per_task = (after - before) * 1024 / n
checks = [
    ("polling >= 75 % of the ceiling", f"{poll / hello:.0%}", poll >= 0.75 * hello),
    ("create unthrottled >= 60 % in memory", f"{create_max / hello:.0%}", create_max >= 0.60 * hello),
    ("create unthrottled >= 40 % with the journal", f"{journal_max / hello:.0%}", journal_max >= 0.40 * hello),
    (f"in memory at 35 % ({rate:,}/s): p99 < 5 ms, 0 errors", f"{create:,.0f}/s, p99 {p99:.2f} ms, {errs} errors",
     p99 < 5 and errs == 0 and create >= 0.98 * rate),
    (f"journal at 25 % ({jrate:,}/s): p99 < 10 ms, 0 errors", f"{journal:,.0f}/s, p99 {jp99:.2f} ms, {jerrs} errors",
     jp99 < 10 and jerrs == 0 and journal >= 0.98 * jrate),
    ("<= 2 KiB RSS per finished task", f"{before} KiB -> {after} KiB over {n:,} tasks: {per_task:.0f} bytes/task", per_task <= 2048),
]
print("\n| target | measured | holds |\n| --- | --- | --- |")
for name, measured, ok in checks:
    print(f"| {name} | {measured} | {'yes' if ok else '**no**'} |")
if os.path.exists(os.path.join(work, "redis-create-1.json")):
    print("\n| shared store (redis) | requests/s | share of the ceiling | p50 | p99 | errors | statuses |\n| --- | --- | --- | --- | --- | --- | --- |")
    for n_rep in (1, 3):
        c, _, _ = row(f"POST async, unthrottled, {n_rep} replica(s)", load(f"redis-create-{n_rep}.json"))
        g, _, _ = row(f"GET task, {n_rep} replica(s)", load(f"redis-poll-{n_rep}.json"))
        print(f"| ({n_rep} replica(s): create {c / create_max:.0%}, poll {g / poll:.0%} of the in-memory store) | | | | | | |")
PY

#!/usr/bin/env bash
# Soak test (docs/benchmarks.md, "Soak"; not in CI): three replicas on one redis-server, the simulator
# with 5 % of prompts carrying a fault ([sim:fail], [sim:disconnect], [sim:slow=MS], [sim:rate-limit]),
# every task with a callback to a local receiver, at half the capacity measured first, for SOAK_MINUTES.
# Every replica's RSS and open files and Redis's memory and keys are sampled every 10 s.
#   benches/soak.sh                        # 10 minutes of load, plus a few minutes around it
#   SOAK_MINUTES=60 benches/soak.sh        # the long run
# Passes (exit 0) when RSS after warm-up grows < 10 % on every replica, every task ends, every callback
# owed arrives exactly once (by webhook-id), and Redis's memory, key count and task indexes level off.
# Env: SOAK_MINUTES (10), RATE (creates/s; default half the completed-task rate measured first),
#      CALIBRATE_SECS (30), WORKERS (tasks.workers per replica, 8), TTL_SECS (tasks.ttl_secs, 60: short,
#      so expiry works within the run), WARMUP_SECS (default a quarter of the run, at least 2 × TTL and
#      the time a replica's quality guard takes to fill its 8,192-output window, at most half the run), DRAIN_SECS (180), SIM_FRAME_DELAY_MS (40, the simulator's default pacing),
#      FAULT_SHARE (0.05), VIDEO_SHARE (0.10), OUT (default target/soak/<timestamp>: samples.csv,
#      summary.md, the processes' logs), LOG_LEVEL (the replicas' log.level, warn), BIN (the gateway
#      binary; default the one built here). Needs redis-server and python3.
# Everything listens on 127.0.0.1, on free ports picked at start.
set -euo pipefail
cd "$(dirname "$0")/.."

SOAK_MINUTES=${SOAK_MINUTES:-10}
CALIBRATE_SECS=${CALIBRATE_SECS:-30}
WORKERS=${WORKERS:-8}
TTL_SECS=${TTL_SECS:-60}
DRAIN_SECS=${DRAIN_SECS:-180}
SIM_FRAME_DELAY_MS=${SIM_FRAME_DELAY_MS:-40}
FAULT_SHARE=${FAULT_SHARE:-0.05}
VIDEO_SHARE=${VIDEO_SHARE:-0.10}
LOG_LEVEL=${LOG_LEVEL:-warn}
REPLICAS=3
OUT=${OUT:-target/soak/$(date +%Y%m%d-%H%M%S)}

command -v redis-server >/dev/null || { echo "soak: needs redis-server" >&2; exit 2; }
cargo build --release --bin grok2api --example soak
BIN=${BIN:-target/release/grok2api}
CLIENT=target/release/examples/soak

mkdir -p "$OUT"
work=$(mktemp -d)
pids=()
# shellcheck disable=SC2317  # called by the trap
cleanup() {
  # SIGTERM first (the replicas drain and leave Redis cleanly), SIGKILL whatever is left after 10 s.
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for _ in $(seq 1 100); do
    alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 150); do curl -sf "$1" >/dev/null && return 0; sleep 0.1; done; echo "soak: no answer from $1" >&2; exit 1; }

KEY=soak-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
SECRET=whsec_$(head -c 32 /dev/urandom | base64)
# Enough accounts that a rate-limited one (rested 2 s) never starves the others: 24 × 4 requests at once.
tokens=()
for i in $(seq -w 1 24); do tokens+=("soak-token-$i"); done
toml_tokens=$(printf '"%s",' "${tokens[@]}")
csv_tokens=$(IFS=,; echo "${tokens[*]}")

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no > "$OUT/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null && break; sleep 0.1; done
STORE="redis://127.0.0.1:$REDIS_PORT/"

SIM=127.0.0.1:$(free_port)
"$BIN" sim --listen "$SIM" --frame-delay-ms "$SIM_FRAME_DELAY_MS" --tokens "$csv_tokens" > "$OUT/sim.log" 2>&1 &
sim_pid=$!
pids+=("$sim_pid")
wait_http "http://$SIM/sim/stats"

addrs=()
replica_pids=()
for i in $(seq 1 "$REPLICAS"); do
  addr=127.0.0.1:$(free_port)
  cat > "$work/replica-$i.toml" <<TOML
[server]
listen = "$addr"
[auth]
api_keys = ["$KEY"]
[store]
url = "$STORE"
[grok]
base_url = "http://$SIM"
ws_url = "ws://$SIM"
assets_url = "http://$SIM"
tokens = [${toml_tokens%,}]
rate_limit_cooldown_secs = 2
cooldown_max_secs = 2
[media]
dir = "$work/media-$i"
max_bytes = 268435456
[tasks]
workers = $WORKERS
ttl_secs = $TTL_SECS
[callbacks]
secret = "$SECRET"
allow_private = true
[log]
level = "$LOG_LEVEL"
TOML
  "$BIN" --config "$work/replica-$i.toml" > "$OUT/replica-$i.log" 2>&1 &
  pids+=($!)
  replica_pids+=($!)
  addrs+=("$addr")
  wait_http "http://$addr/readyz"
done

echo "soak: redis $STORE, simulator $SIM, replicas ${addrs[*]} (pids ${replica_pids[*]}); results in $OUT" >&2
rc=0
"$CLIENT" \
  --gateways "$(IFS=,; echo "${addrs[*]}")" \
  --pids "$(IFS=,; echo "${replica_pids[*]}")" \
  --sim-pid "$sim_pid" \
  --redis "$STORE" \
  --key "$KEY" \
  --secret "$SECRET" \
  --minutes "$SOAK_MINUTES" \
  ${RATE:+--rate "$RATE"} \
  --calibrate-secs "$CALIBRATE_SECS" \
  --calibrate-outstanding $((REPLICAS * WORKERS * 2)) \
  ${WARMUP_SECS:+--warmup-secs "$WARMUP_SECS"} \
  --drain-secs "$DRAIN_SECS" \
  --fault-share "$FAULT_SHARE" \
  --video-share "$VIDEO_SHARE" \
  --ttl-secs "$TTL_SECS" \
  --out "$OUT" || rc=$?

# What the processes logged at error level (a panic, a lost store connection) is worth a look either way.
errors=$(grep -c -E 'ERROR|panicked' "$OUT"/replica-*.log "$OUT/sim.log" 2>/dev/null | awk -F: '{s += $2} END {print s + 0}')
echo "soak: $errors error lines in the replicas' and simulator's logs ($OUT/*.log)" >&2
echo "soak: $( [ "$rc" = 0 ] && echo PASS || echo FAIL ) — $OUT/summary.md, $OUT/samples.csv" >&2
exit "$rc"

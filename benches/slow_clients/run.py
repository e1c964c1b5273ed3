#!/usr/bin/env python3
"""Slow-client benchmark: the gateway under a crowd of sockets that never finish (docs/benchmarks.md).

    benches/slow_clients/run.py            # ~1 minute; builds the release binary first

What it does, all on 127.0.0.1 against a gateway in production posture (a config file, client keys
and an admin key, the simulator as upstream):
  1. opens IDLE connections that send nothing, HALF connections that send part of a request head
     (a few KB, then a byte every few seconds), KEEP connections that make one request and then idle,
     and BODY connections that POST /admin/login with a large Content-Length and trickle the body;
  2. meanwhile a normal client asks /healthz every 100 ms on a fresh connection and records latency;
  3. samples the gateway's RSS every 250 ms;
  4. records when each attacking socket was closed by the server.
It prints a table: /healthz p50/p99/max, RSS before/peak/after, and per kind how many sockets the
server closed and the slowest close, next to the configured timeouts. Exit status 1 when a target is
missed (/healthz p99 over 50 ms, RSS over RSS_LIMIT_MB, a socket open past its timeout + 2 s).

Then a second phase sends BIG (3) bodies of 57 MiB at once, each a JSON array of small numbers (the
shape that costs most once parsed), to /v1/video/generations/async with a valid key, and reports the
peak RSS.

Env: IDLE (2000), HALF (1000), KEEP (500), BODY (300), HEADER_TIMEOUT (5), IDLE_TIMEOUT (10),
BODY_TIMEOUT (5), RSS_LIMIT_MB (300), BIG (3), BIG_RSS_LIMIT_MB (448), LEGACY (1 = a binary from before
these settings existed: leave them out of its config), BIN (gateway binary; default target/release/grok2api).
"""

import asyncio
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IDLE = int(os.environ.get("IDLE", 2000))
HALF = int(os.environ.get("HALF", 1000))
KEEP = int(os.environ.get("KEEP", 500))
BODY = int(os.environ.get("BODY", 300))
HEADER_TIMEOUT = float(os.environ.get("HEADER_TIMEOUT", 5))
IDLE_TIMEOUT = float(os.environ.get("IDLE_TIMEOUT", 10))
BODY_TIMEOUT = float(os.environ.get("BODY_TIMEOUT", 5))
RSS_LIMIT_MB = float(os.environ.get("RSS_LIMIT_MB", 300))
BIG = int(os.environ.get("BIG", 3))
# A body is held twice while it is gathered into one buffer: twice the server's body budget (192 MiB by
# default), plus the idle process.
BIG_RSS_LIMIT_MB = float(os.environ.get("BIG_RSS_LIMIT_MB", 2 * 192 + 64))
KEY = "bench-key-7d41c9e2a05f3b86"
ADMIN = "bench-admin-3c8e51f07a9d24b6"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def wait_http(port, path="/healthz", tries=200):
    for _ in range(tries):
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            await w.drain()
            line = await r.readline()
            w.close()
            if b" 200 " in line:
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    sys.exit(f"no answer on port {port}")


async def watch_close(reader, started, closes, kind):
    """Waits for EOF from the server; records how long after `started` it came."""
    try:
        while await reader.read(65536):
            pass
    except (OSError, asyncio.IncompleteReadError):
        pass
    closes[kind].append(time.monotonic() - started)


# How long an attacker keeps at it before it counts its socket as left open by the server.
GIVE_UP = HEADER_TIMEOUT + IDLE_TIMEOUT + BODY_TIMEOUT + 10


async def attacker(port, kind, closes, stop):
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        closes["refused"].append(0.0)
        return
    started = time.monotonic()
    watcher = asyncio.ensure_future(watch_close(reader, started, closes, kind))
    try:
        if kind == "half":
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 4000)
            await writer.drain()
            while not watcher.done() and time.monotonic() - started < GIVE_UP:
                await asyncio.sleep(2)
                writer.write(b"a")
                await writer.drain()
        elif kind == "keep":
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            started = time.monotonic()
        elif kind == "body":
            writer.write(
                b"POST /admin/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 2000000\r\n\r\n{\"key\":\""
            )
            await writer.drain()
            while not watcher.done() and time.monotonic() - started < GIVE_UP:
                await asyncio.sleep(2)
                writer.write(b"a")
                await writer.drain()
    except OSError:
        pass
    try:
        await asyncio.wait_for(watcher, timeout=max(0.1, GIVE_UP - (time.monotonic() - started)))
    except asyncio.TimeoutError:
        closes[kind + "_open"].append(time.monotonic() - started)
    writer.close()


async def healthz_probe(port, latencies, stop):
    while not stop.is_set():
        t = time.monotonic()
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
            w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            await w.drain()
            line = await asyncio.wait_for(r.readline(), 5)
            w.close()
            latencies.append((time.monotonic() - t) * 1000 if b" 200 " in line else float("inf"))
        except (OSError, asyncio.TimeoutError):
            latencies.append(float("inf"))
        await asyncio.sleep(0.1)


async def big_body(port, body):
    """POSTs one large body; returns the status line."""
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(f"POST /v1/video/generations/async HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                .encode())
        w.write(body)
        await w.drain()
        line = await asyncio.wait_for(r.readline(), 120)
        w.close()
        return line.decode(errors="replace").strip()
    except (OSError, asyncio.TimeoutError) as e:
        return f"error: {e}"


async def rss_sampler(pid, samples, stop):
    while not stop.is_set():
        samples.append(rss_mb(pid))
        await asyncio.sleep(0.25)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else float("nan")


async def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    bin_path = os.environ.get("BIN") or os.path.join(ROOT, "target/release/grok2api")
    if "BIN" not in os.environ:
        subprocess.run(["cargo", "build", "--release", "--bin", "grok2api"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="slow-clients.")
    sim_port, gw_port = free_port(), free_port()
    sim = subprocess.Popen([bin_path, "sim", "--listen", f"127.0.0.1:{sim_port}", "--tokens", "bench-token"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    config = os.path.join(work, "gateway.toml")
    # LEGACY=1: a gateway from before these limits existed (for a before/after table); it refuses
    # settings it does not know.
    limits = "" if os.environ.get("LEGACY") == "1" else (
        f"header_read_timeout_secs = {HEADER_TIMEOUT}\nidle_timeout_secs = {IDLE_TIMEOUT}\n"
        f"body_read_timeout_secs = {BODY_TIMEOUT}\n")
    with open(config, "w") as f:
        f.write(f"""[server]
listen = "127.0.0.1:{gw_port}"
{limits}[auth]
api_keys = ["{KEY}"]
[admin]
api_key = "{ADMIN}"
[grok]
base_url = "http://127.0.0.1:{sim_port}"
ws_url = "ws://127.0.0.1:{sim_port}"
assets_url = "http://127.0.0.1:{sim_port}"
tokens = ["bench-token"]
[media]
dir = "{work}/media"
[state]
dir = "{work}/state"
[log]
level = "error"
""")
    gw = subprocess.Popen([bin_path, "--config", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_http(gw_port)
        before = rss_mb(gw.pid)
        latencies, samples = [], []
        closes = {k: [] for k in ["idle", "half", "keep", "body", "refused", "idle_open", "half_open",
                                  "keep_open", "body_open"]}
        stop = asyncio.Event()
        background = [asyncio.ensure_future(healthz_probe(gw_port, latencies, stop)),
                      asyncio.ensure_future(rss_sampler(gw.pid, samples, stop))]
        kinds = ["idle"] * IDLE + ["half"] * HALF + ["keep"] * KEEP + ["body"] * BODY
        attack_started = time.monotonic()
        attackers = []
        for i, kind in enumerate(kinds):
            attackers.append(asyncio.ensure_future(attacker(gw_port, kind, closes, stop)))
            if i % 200 == 199:
                await asyncio.sleep(0.05)
        opened = time.monotonic() - attack_started
        await asyncio.gather(*attackers)
        stop.set()
        await asyncio.gather(*background)
        await asyncio.sleep(1)
        after = rss_mb(gw.pid)
        # Phase 2: large bodies of many small values, all at once.
        pad = b"0," * (57 * 1024 * 1024 // 2 - 64)
        body = b'{"model":"grok-imagine-1.0-video","messages":[{"role":"user","content":"a"}],"pad":[' + pad + b'0]}'
        big_samples, big_stop = [], asyncio.Event()
        sampler = asyncio.ensure_future(rss_sampler(gw.pid, big_samples, big_stop))
        big_before = rss_mb(gw.pid)
        answers = await asyncio.gather(*[big_body(gw_port, body) for _ in range(BIG)])
        await asyncio.sleep(0.5)
        big_stop.set()
        await sampler
        big_after = rss_mb(gw.pid)
    finally:
        for p in (gw, sim):
            p.terminate()
        for p in (gw, sim):
            p.wait()

    finite = [x for x in latencies if x != float("inf")]
    failed = len(latencies) - len(finite)
    peak = max(samples) if samples else 0
    limits = {"idle": HEADER_TIMEOUT, "half": HEADER_TIMEOUT, "keep": HEADER_TIMEOUT, "body": BODY_TIMEOUT}
    print(f"attack: {IDLE} idle, {HALF} half-sent heads, {KEEP} keep-alive idle, {BODY} trickled login bodies "
          f"(opened in {opened:.1f} s)")
    print(f"timeouts: header {HEADER_TIMEOUT:g} s, idle {IDLE_TIMEOUT:g} s, body {BODY_TIMEOUT:g} s")
    print(f"/healthz during the attack: {len(latencies)} probes, p50 {pct(finite, 0.5):.1f} ms, "
          f"p99 {pct(finite, 0.99):.1f} ms, max {max(finite) if finite else float('nan'):.1f} ms, failed {failed}")
    print(f"gateway RSS: {before:.0f} MB before, {peak:.0f} MB peak, {after:.0f} MB after")
    print("| kind | sockets | closed by the server | slowest close | limit |")
    print("| --- | --- | --- | --- | --- |")
    missed = []
    for kind, limit in limits.items():
        n = {"idle": IDLE, "half": HALF, "keep": KEEP, "body": BODY}[kind]
        got = closes[kind]
        slowest = max(got) if got else float("nan")
        print(f"| {kind} | {n} | {len(got)} | {slowest:.1f} s | {limit:g} s |")
        if closes[kind + "_open"] or (got and slowest > limit + 2):
            missed.append(f"{kind}: {len(closes[kind + '_open'])} still open, slowest close {slowest:.1f} s")
    big_peak = max(big_samples) if big_samples else 0
    print(f"{BIG} bodies of {len(body) / 2**20:.0f} MiB at once (JSON arrays of small numbers): RSS "
          f"{big_before:.0f} MB before, {big_peak:.0f} MB peak, {big_after:.0f} MB after; answers: "
          + ", ".join(sorted(set(a.split(" ", 1)[1] if " " in a else a for a in answers))))
    if closes["refused"]:
        print(f"connections refused outright: {len(closes['refused'])}")
    p99 = pct(finite, 0.99)
    if failed or p99 > 50:
        missed.append(f"/healthz p99 {p99:.1f} ms, {failed} failed")
    if peak > RSS_LIMIT_MB:
        missed.append(f"RSS peak {peak:.0f} MB over {RSS_LIMIT_MB:g} MB")
    if big_peak > BIG_RSS_LIMIT_MB:
        missed.append(f"RSS peak under large bodies {big_peak:.0f} MB over {BIG_RSS_LIMIT_MB:g} MB")
    if missed:
        print("MISSED: " + "; ".join(missed))
        sys.exit(1)
    print("all targets met")


if __name__ == "__main__":
    asyncio.run(main())

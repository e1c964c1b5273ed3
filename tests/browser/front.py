#!/usr/bin/env python3
"""A front end on another origin, in headless Chromium: the user document's §3.8 code and examples/browser.

  front.py --page ORIGIN --doc-gateway URL --gateway URL --key KEY --admin-key KEY

--page serves examples/browser (python3 -m http.server, as the README says). --doc-gateway lists only
that origin in server.cors_allowed_origins and has auth.public_task_reads (the document's getTask sends
no key) and an admin key; --gateway has the default CORS of a keyed gateway (any origin) and needs the
key on every read. Both take --key.

Each step prints `step NAME: ok ...`; the first failure prints `FAILED at step NAME` and exits 1.
The §3.8 code is tests/browser/seed-3.8.md, the document's section verbatim; only its baseUrl and apiKey
lines are replaced, and the free names its fragments use (baseUrl, apiKey, payloadA..C) are supplied.

Uses the system Chromium and chromedriver only, so Selenium Manager never downloads anything.
"""

import argparse
import functools
import http.server
import json
import os
import re
import shutil
import sys
import threading
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.normpath(os.path.join(HERE, "..", "..", "examples", "browser"))
WAIT = 20  # seconds for one condition; a simulated video takes about a second

# Runs one fragment of the document in the page: `console` is a recorder, the other free names are
# arguments. Resolves with what it logged once `expected` lines are in (or after 20 s), plus what the
# fragment returned (`exports`, kept on window.seed for later steps).
RUN_SEED = r"""
const [code, names, values, expected, exportNames, done] = arguments;
const show = (v) => {
  if (v instanceof Error) return {error: v.name, message: v.message};
  if (typeof Response !== "undefined" && v instanceof Response) return {response: v.status};
  try { return JSON.parse(JSON.stringify(v)); } catch (e) { return String(v); }
};
const lines = [];
const rec = (level) => (...args) => lines.push({level, args: args.map(show)});
const recorder = {log: rec("log"), info: rec("log"), warn: rec("error"), error: rec("error")};
const body = code + (exportNames.length ? `\n;return {${exportNames.join(", ")}};` : "");
try {
  window.seed = Object.assign(window.seed || {}, new Function("console", ...names, body)(recorder, ...values));
} catch (e) {
  done({thrown: String(e), lines});
  return;
}
const deadline = Date.now() + 20000;
(function wait() {
  if (lines.length >= expected || Date.now() > deadline) done({lines});
  else setTimeout(wait, 50);
})();
"""


class Failed(Exception):
    pass


def seed_blocks():
    """The §3.8 code blocks by file name (the heading's last word)."""
    with open(os.path.join(HERE, "seed-3.8.md"), encoding="utf-8") as f:
        text = f.read()
    blocks = re.findall(r"#### (.*?)\n\n```js\n(.*?)```", text, re.S)
    names = ["node-async-await.js", "node-promise.js", "concurrency", "retry"]
    if len(blocks) != 4:
        raise Failed(f"seed-3.8.md has {len(blocks)} code blocks, expected 4")
    return dict(zip(names, (code for _, code in blocks)))


def substitute(code, base, key):
    """The two lines a reader changes: where the gateway is and which key to use."""
    for old, new in (('const baseUrl = "http://localhost:8000";', f"const baseUrl = {json.dumps(base)};"),
                     ("const apiKey = process.env.GROK2API_API_KEY;", f"const apiKey = {json.dumps(key)};")):
        if code.count(old) != 1:
            raise Failed(f"the seed code does not have exactly one {old!r}")
        code = code.replace(old, new)
    return code


def other_origin():
    """A second static server for examples/browser: an origin no gateway list names."""
    handler = functools.partial(QuietHandler, directory=EXAMPLE)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class Front:
    def __init__(self, args):
        self.page = args.page.rstrip("/")
        self.doc = args.doc_gateway.rstrip("/")
        self.gw = args.gateway.rstrip("/")
        self.key = args.key
        self.admin_key = args.admin_key
        self.step = "start"
        self.results = []
        opts = Options()
        opts.binary_location = "/usr/bin/chromium"
        for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900",
                  "--autoplay-policy=no-user-gesture-required"):
            opts.add_argument(a)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
        self.d = webdriver.Chrome(service=service, options=opts)
        self.d.set_script_timeout(45)
        self.network = []  # performance-log entries, drained as they are read
        self.browser_lines = []

    # ---------- plumbing ----------

    def ok(self, detail=""):
        self.results.append(self.step)
        print(f"step {self.step}: ok {detail}".rstrip(), flush=True)

    def wait(self, cond, what, timeout=WAIT):
        try:
            return WebDriverWait(
                self.d, timeout, poll_frequency=0.1,
                ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
            ).until(cond)
        except TimeoutException:
            raise Failed(f"timed out after {timeout}s waiting for {what}") from None

    def by_id(self, id_):
        return self.d.find_element(By.ID, id_)

    def js(self, script, *args):
        """Runs an async function body in the page: `return` its value, `throw` to fail the step."""
        wrapped = ("const done = arguments[arguments.length - 1];"
                   "(async (...args) => {" + script + "})(...Array.from(arguments).slice(0, -1))"
                   ".then(v => done({ok: v}), e => done({err: e && e.name ? e.name + ': ' + e.message : String(e)}));")
        out = self.d.execute_async_script(wrapped, *args)
        if not isinstance(out, dict):
            raise Failed(f"page script answered {out!r}")
        if "err" in out:
            raise Failed(f"page script failed: {out['err']}")
        return out.get("ok")

    def open(self, origin):
        self.d.get(origin + "/index.html")
        self.wait(lambda d: d.execute_script("return document.documentElement.dataset.ready === 'true' && !!window.grok2api"),
                  f"examples/browser to load from {origin}")

    def drain_logs(self):
        for e in self.d.get_log("performance"):
            self.network.append(json.loads(e["message"])["message"])
        self.browser_lines += self.d.get_log("browser")

    def responses(self, url):
        self.drain_logs()
        return [m["params"]["response"] for m in self.network
                if m.get("method") == "Network.responseReceived" and m["params"]["response"]["url"] == url]

    def run_seed(self, name, base, key, expected, exports=(), free=None):
        code = substitute(blocks[name], base, key) if name.startswith("node-") else blocks[name]
        free = free or {}
        out = self.d.execute_async_script(RUN_SEED, code, list(free), list(free.values()), expected, list(exports))
        if "thrown" in out:
            raise Failed(f"{name} threw when run: {out['thrown']}")
        lines = out["lines"]
        if len(lines) < expected:
            raise Failed(f"{name} logged {len(lines)} lines in 20 s, expected {expected}: {lines}")
        return lines

    def settings(self, base, key):
        self.d.execute_script("""
            const [base, key] = arguments;
            for (const [id, v] of [["base-url", base], ["api-key", key]]) {
              const el = document.getElementById(id);
              el.value = v;
              el.dispatchEvent(new Event("change"));
            }""", base, key)

    def fail(self, err):
        print(f"FAILED at step '{self.step}': {err}", file=sys.stderr)
        try:
            self.drain_logs()
            print(f"url: {self.d.current_url}", file=sys.stderr)
            log = self.d.execute_script("const l = document.getElementById('log'); return l ? l.innerText : ''")
            if log:
                print("the page's log:\n" + log, file=sys.stderr)
        except Exception as e:  # a dead browser must not hide the first error
            print(f"(no page state: {e})", file=sys.stderr)
        for e in self.browser_lines:
            print(f"  [{e.get('level')}] {e.get('message')}", file=sys.stderr)

    def http(self, method, url, headers=None):
        req = urllib.request.Request(url, method=method, headers=dict(headers or {}))
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    # ---------- the document's §3.8, as written, against --doc-gateway ----------

    def seed_async_await(self):
        self.step = "seed-async-await"
        lines = self.run_seed("node-async-await.js", self.doc, self.key, 3,
                              exports=["createTask", "getTask", "getTaskWithTimeout"])
        by = {l["args"][0]: l for l in lines}
        if "error" in by:
            raise Failed(f"main() logged its error branch: {by['error']}")
        success = by.get("success")
        if not success or success["level"] != "log":
            raise Failed(f"no 'success' line: {lines}")
        status = success["args"][1]
        if status.get("code") != 200 or status["data"].get("status") not in ("pending", "processing", "success"):
            raise Failed(f"getTask answered {status}")
        exc = by.get("exception")
        if not exc or '"code":404' not in exc["args"][1].get("message", ""):
            raise Failed(f"getTask('not-exist') must throw the 404 envelope: {exc}")
        timeout = by.get("timeout")
        if not timeout or timeout["args"][1].get("error") != "AbortError":
            raise Failed(f"getTaskWithTimeout(taskId, 1) must abort (AbortError): {lines}")
        self.ok(f"created {status['data']['taskId']} ({status['data']['status']}), 404 for not-exist, 1 ms timeout aborted")

    def seed_promise(self):
        self.step = "seed-promise"
        lines = self.run_seed("node-promise.js", self.doc, self.key, 1)
        line = lines[0]
        if line["args"][0] != "status" or line["args"][1].get("code") != 200:
            raise Failed(f"node-promise.js logged {lines}")
        self.ok(f"status {line['args'][1]['data']['status']}")

    def seed_concurrency(self):
        self.step = "seed-all-allSettled"
        payload = lambda text: {"model": "grok-imagine-1.0-video", "messages": [{"role": "user", "content": text}],
                                "video_config": {"aspect_ratio": "16:9", "video_length": 6}}
        free = {"baseUrl": self.doc, "apiKey": self.key, "payloadA": payload("a kite over dunes"),
                "payloadB": payload("rain on a window"), "payloadC": payload("a paper boat on a river")}
        lines = self.run_seed("concurrency", self.doc, self.key, 2, free=free)
        by = {l["args"][0]: l["args"][1] for l in lines}
        if "all failed" in by or set(by) != {"all success", "allSettled"}:
            raise Failed(f"Promise.all / allSettled logged {lines}")
        ids = {r["data"]["taskId"] for r in by["all success"] if r.get("code") == 202}
        if len(ids) != 3:
            raise Failed(f"Promise.all: expected 3 accepted tasks, got {by['all success']}")
        settled = by["allSettled"]
        if [s["status"] for s in settled] != ["fulfilled"] * 3 or {s["value"]["data"]["taskId"] for s in settled} != ids:
            raise Failed(f"allSettled: {settled}")
        self.ok("3 creates: Promise.all fulfilled, allSettled 3 fulfilled, same tasks")

    def seed_retry(self):
        self.step = "seed-retry"
        self.run_seed("retry", self.doc, self.key, 0, exports=["requestWithRetry"])
        out = self.js("""
            const [base, key] = args;
            const taskId = await window.seed.createTask();
            const ok = await window.seed.requestWithRetry(`${base}/v1/video/tasks/${taskId}`,
                                                          {headers: {Authorization: `Bearer ${key}`}});
            let missing = null;
            try { await window.seed.requestWithRetry(`${base}/v1/video/tasks/not-exist`, {}, 1); }
            catch (e) { missing = e.message; }
            return {ok, missing};""", self.doc, self.key)
        if out["ok"].get("code") != 200 or '"code":404' not in (out["missing"] or ""):
            raise Failed(f"requestWithRetry: {out}")
        self.ok("status read; a 404 thrown after its retries")

    def poll_and_result(self):
        self.step = "poll-result-409-200"
        out = self.js("""
            const [baseUrl] = args;
            const taskId = await window.seed.createTask();
            const early = await fetch(`${baseUrl}/v1/video/tasks/${taskId}/result`);
            const first = {status: early.status, retryAfter: early.headers.get("Retry-After"), body: await early.json()};
            const seen = [];
            for (let i = 0; i < 200; i++) {
              const s = await window.seed.getTask(taskId);
              seen.push([s.data.status, s.data.progress]);
              if (s.data.status === "success" || s.data.status === "failed") break;
              await new Promise(r => setTimeout(r, 100));
            }
            const late = await fetch(`${baseUrl}/v1/video/tasks/${taskId}/result`);
            return {taskId, first, seen, last: {status: late.status, body: await late.json()}};""", self.doc)
        first, seen, last = out["first"], out["seen"], out["last"]
        if first["status"] != 409 or first["body"].get("code") != 409 or not first["retryAfter"]:
            raise Failed(f"/result while running: expected 409 with a readable Retry-After, got {first}")
        if seen[-1][0] != "success" or not any(s != "success" for s, _ in seen):
            raise Failed(f"getTask polling saw {seen}")
        progress = [p for _, p in seen]
        if progress != sorted(progress):
            raise Failed(f"progress went back: {seen}")
        url = last["body"].get("data", {}).get("result", {}).get("downloadUrl", "")
        if last["status"] != 200 or not url.endswith(".mp4"):
            raise Failed(f"/result after success: {last}")
        self.ok(f"409 (Retry-After {first['retryAfter']}), {len(seen)} polls {seen[0]} .. {seen[-1]}, then 200")

    def timeout_paths(self):
        self.step = "abortcontroller"
        out = self.js("""
            const taskId = await window.seed.createTask();
            let aborted = null;
            try { await window.seed.getTaskWithTimeout(taskId, 1); } catch (e) { aborted = e.name; }
            const inTime = await window.seed.getTaskWithTimeout(taskId, 8000);
            return {aborted, inTime};""")
        if out["aborted"] != "AbortError" or out["inTime"].get("code") != 200:
            raise Failed(f"getTaskWithTimeout: {out}")
        self.ok("1 ms: AbortError; 8000 ms: the status")

    # ---------- examples/browser against --gateway (any origin, a key on every request) ----------

    def five(self):
        self.step = "five-all-allSettled"
        self.settings(self.gw, self.key)
        self.by_id("create-five").click()
        self.wait(lambda d: self.by_id("five-all").get_attribute("data-outcome"), "Promise.all's outcome")
        if self.by_id("five-all").get_attribute("data-outcome") != "fulfilled":
            raise Failed(f"five valid creates: Promise.all {self.by_id('five-all').text}")
        self.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#five-body td[data-status]")) == 5,
                  "the five tasks to finish")
        finals = [td.get_attribute("data-status") for td in self.d.find_elements(By.CSS_SELECTOR, "#five-body td[data-status]")]
        if finals != ["success"] * 5:
            raise Failed(f"five tasks ended {finals}")
        ids = {tr.get_attribute("data-task-id") for tr in self.d.find_elements(By.CSS_SELECTOR, "#five-body tr")}
        if len(ids) != 5:
            raise Failed(f"five creates made {len(ids)} distinct tasks")

        self.by_id("five-one-invalid").click()
        self.by_id("create-five").click()
        self.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#five-body td[data-status]")) == 4,
                  "the four valid tasks to finish")
        outcome = self.by_id("five-all").get_attribute("data-outcome")
        rows = [tr.get_attribute("data-outcome") for tr in self.d.find_elements(By.CSS_SELECTOR, "#five-body tr")]
        if outcome != "rejected" or "HTTP 400" not in self.by_id("five-all").text:
            raise Failed(f"Promise.all with one invalid create: {outcome} {self.by_id('five-all').text!r}")
        if rows != ["fulfilled", "fulfilled", "rejected", "fulfilled", "fulfilled"]:
            raise Failed(f"allSettled rows {rows}")
        self.by_id("five-one-invalid").click()
        self.ok("5 valid: all fulfilled, 5 succeeded; 1 invalid: Promise.all rejected (400), allSettled 4 + 1")

    def video_events(self):
        self.step = "video-events"
        Select(self.by_id("follow-mode")).select_by_value("events")
        self.by_id("create-video").click()
        self.wait(lambda d: self.by_id("task-status").get_attribute("data-status") in ("success", "failed")
                  and not self.by_id("create-video").get_property("disabled"), "the video task to end")
        if self.by_id("task-status").get_attribute("data-status") != "success":
            raise Failed(f"the video task ended {self.by_id('task-result').text}")
        events = [(li.get_attribute("data-event"), int(li.get_attribute("data-event-id")))
                  for li in self.d.find_elements(By.CSS_SELECTOR, "#events li")]
        ids = [i for _, i in events]
        if len(events) < 3 or events[-1][0] != "success" or ids != sorted(set(ids)):
            raise Failed(f"events seen: {events}")
        self.ok(f"{len(events)} events, ids {ids[0]}..{ids[-1]}, ends {events[-1][0]}")

    def video_seek(self):
        self.step = "video-seek"
        url = self.by_id("task-result").text.strip()
        out = self.js("""
            const v = document.getElementById("result-video");
            if (v.readyState < 1) await new Promise((ok, no) => {
              v.addEventListener("loadedmetadata", ok, {once: true});
              v.addEventListener("error", () => no(new Error("video error " + (v.error && v.error.code))), {once: true});
            });
            const seekable = v.seekable.length ? [v.seekable.start(0), v.seekable.end(0)] : null;
            const target = Math.round(v.duration / 2 * 10) / 10;
            const seeked = new Promise(ok => v.addEventListener("seeked", ok, {once: true}));
            v.currentTime = target;
            await seeked;
            if (v.readyState < 2) await new Promise(ok => v.addEventListener("canplay", ok, {once: true}));
            const buffered = [];
            for (let i = 0; i < v.buffered.length; i++) buffered.push([v.buffered.start(i), v.buffered.end(i)]);
            return {src: v.currentSrc, duration: v.duration, seekable, target, currentTime: v.currentTime,
                    buffered, width: v.videoWidth, height: v.videoHeight};""")
        if out["src"] != url or abs(out["duration"] - 6) > 0.5 or not out["width"]:
            raise Failed(f"the video element: {out}")
        if not out["seekable"] or out["seekable"][1] < out["duration"] - 0.5:
            raise Failed(f"the video is not seekable (no ranges across origins?): {out}")
        if abs(out["currentTime"] - out["target"]) > 0.1:
            raise Failed(f"seeked to {out['currentTime']}, asked {out['target']}: {out}")
        if not any(a <= out["target"] <= b for a, b in out["buffered"]):
            raise Failed(f"nothing buffered at the seek target: {out}")
        ranged = [r for r in self.responses(url) if r["status"] == 206]
        if not ranged:
            raise Failed(f"no 206 answer for the video: {[r['status'] for r in self.responses(url)]}")
        headers = {k.lower(): v for k, v in ranged[0]["headers"].items()}
        if headers.get("access-control-allow-origin") != "*" or not headers.get("content-range"):
            raise Failed(f"the video's range answer lacks CORS or Content-Range: {headers}")
        self.video_url = url
        self.ok(f"{out['width']}x{out['height']}, {out['duration']:.1f} s, seekable {out['seekable']}, "
                f"seeked to {out['currentTime']}, buffered {out['buffered']}, 206 {headers['content-range']}")

    def range_fetch(self):
        self.step = "range-fetch"
        # bytes=N-M needs no preflight; a suffix range (the last N bytes) is not CORS-safelisted and does.
        out = self.js("""
            const got = {};
            for (const range of ["bytes=100-199", "bytes=-100"]) {
              try {
                const r = await fetch(args[0], {headers: {Range: range}});
                got[range] = {status: r.status, range: r.headers.get("Content-Range"),
                              accept: r.headers.get("Accept-Ranges"), length: (await r.arrayBuffer()).byteLength};
              } catch (e) { got[range] = {rejected: e.name + ": " + e.message}; }
            }
            return got;""", self.video_url)
        mid, tail = out["bytes=100-199"], out["bytes=-100"]
        if mid.get("status") != 206 or not (mid["range"] or "").startswith("bytes 100-199/") or mid["length"] != 100:
            raise Failed(f"fetch with Range across origins: {out}")
        size = int(mid["range"].rsplit("/", 1)[1])
        if tail.get("status") != 206 or tail["range"] != f"bytes {size - 100}-{size - 1}/{size}" or tail["length"] != 100:
            raise Failed(f"fetch with a suffix Range (preflighted) across origins: {out}")
        self.ok(f"206 {mid['range']}, Accept-Ranges {mid['accept']}; suffix: 206 {tail['range']}")

    def video_poll(self):
        self.step = "video-poll"
        Select(self.by_id("follow-mode")).select_by_value("poll")
        self.by_id("create-video").click()
        self.wait(lambda d: self.by_id("task-status").get_attribute("data-status") in ("success", "failed")
                  and not self.by_id("create-video").get_property("disabled"), "the polled video task to end")
        polls = int(self.by_id("task-status").get_attribute("data-polls") or 0)
        if self.by_id("task-status").get_attribute("data-status") != "success" or polls < 2:
            raise Failed(f"polled task: {self.by_id('task-result').text} after {polls} polls")
        if self.d.find_elements(By.CSS_SELECTOR, "#events li"):
            raise Failed("the polling mode showed events")
        self.wait(lambda d: d.execute_script("return document.getElementById('result-video').readyState >= 1"),
                  "the polled video to load")
        self.ok(f"{polls} polls, video loaded")

    def image(self):
        self.step = "image"
        self.by_id("create-image").click()
        self.wait(lambda d: self.by_id("image-status").get_attribute("data-status"), "the image task to end")
        if self.by_id("image-status").get_attribute("data-status") != "success":
            raise Failed(f"image task: {self.by_id('image-status').text}")
        out = self.js("""
            const img = document.getElementById("result-image");
            if (!img.complete) await new Promise((ok, no) => { img.onload = ok; img.onerror = () => no(new Error("image failed to load")); });
            // Reading pixels works only if the file answered with CORS headers (crossorigin=anonymous).
            const c = document.createElement("canvas");
            c.width = img.naturalWidth; c.height = img.naturalHeight;
            const ctx = c.getContext("2d");
            ctx.drawImage(img, 0, 0);
            const px = ctx.getImageData(c.width >> 1, c.height >> 1, 1, 1).data;
            return {src: img.currentSrc, w: img.naturalWidth, h: img.naturalHeight, px: Array.from(px)};""")
        if not out["w"] or "/v1/files/image/" not in out["src"] or out["px"][3] == 0:
            raise Failed(f"the image: {out}")
        self.ok(f"{out['w']}x{out['h']} in <img crossorigin>, pixels readable")

    def events_resume(self):
        self.step = "events-resume"
        out = self.js("""
            const c = window.grok2api.client();
            const taskId = await c.createTask("video", {model: "grok-imagine-1.0-video",
              messages: [{role: "user", content: "a lighthouse at dusk"}]});
            // First connection: hang up after the first event, as a dropped line would.
            const hangUp = new AbortController();
            const before = [];
            let hungUp = null;
            try {
              await c.followEvents("video", taskId, {signal: hangUp.signal,
                onEvent: e => { before.push([e.event, Number(e.id)]); hangUp.abort(); }});
            } catch (e) { hungUp = e.name; }
            const lastId = before[before.length - 1][1];
            await new Promise(r => setTimeout(r, 300));
            const after = [];
            const resumed = await c.followEvents("video", taskId, {lastEventId: lastId,
              onEvent: e => after.push([e.event, Number(e.id)])});
            // Past the end: a resume sends nothing; a fresh follow gets the terminal event alone.
            const past = [];
            await c.followEvents("video", taskId, {lastEventId: resumed.lastEventId, onEvent: e => past.push(e.event)});
            const fresh = [];
            await c.followEvents("video", taskId, {onEvent: e => fresh.push(e.event)});
            let anonymous = null;
            try { await window.grok2api.connect({baseUrl: c.base}).followEvents("video", taskId); }
            catch (e) { anonymous = e.status || e.name; }
            return {hungUp, before, after, terminal: resumed.terminal && resumed.terminal.status, past, fresh, anonymous};""")
        before, after = out["before"], out["after"]
        last = before[-1][1]
        if out["hungUp"] != "AbortError" or len(before) != 1:
            raise Failed(f"first connection: {out}")
        if not after or any(i <= last for _, i in after) or after[-1][0] != "success" or out["terminal"] != "success":
            raise Failed(f"resumed after id {last}: {after}")
        if out["past"] != [] or out["fresh"] != ["success"]:
            raise Failed(f"Last-Event-ID past the end sent {out['past']}; a fresh follow sent {out['fresh']}")
        if out["anonymous"] != 401:
            raise Failed(f"events without the key: {out['anonymous']} (expected a readable 401)")
        self.ok(f"hung up after {before}, resumed with Last-Event-ID {last}: {after}; past the end: nothing; "
                "no key: 401")

    def eventsource_public(self):
        self.step = "eventsource-public-reads"
        out = self.js("""
            const [base] = args;
            const taskId = await window.seed.createTask();
            // Only where task reads need no key (auth.public_task_reads): EventSource sends no header.
            const es = new EventSource(`${base}/v1/video/tasks/${taskId}/events`);
            const seen = [];
            return await new Promise((ok, no) => {
              const timer = setTimeout(() => { es.close(); no(new Error("no terminal event in 15 s: " + JSON.stringify(seen))); }, 15000);
              for (const name of ["pending", "processing", "success", "failed"]) {
                es.addEventListener(name, e => {
                  seen.push([name, Number(e.lastEventId)]);
                  // The server ends the stream after this; without close() EventSource would reconnect.
                  if (name === "success" || name === "failed") { clearTimeout(timer); es.close(); ok(seen); }
                });
              }
              es.onerror = () => { if (es.readyState === EventSource.CLOSED) { clearTimeout(timer); no(new Error("EventSource failed")); } };
            });""", self.doc)
        if out[-1][0] != "success" or len(out) < 2:
            raise Failed(f"EventSource saw {out}")
        self.ok(f"{len(out)} events without a key, ends {out[-1]}")

    def docs_snippet(self):
        self.step = "docs-followTask"
        with open(os.path.join(HERE, "..", "..", "docs", "browser.md"), encoding="utf-8") as f:
            found = re.search(r"^(// Follows a task's events.*?^}\n)", f.read(), re.S | re.M)
        if not found:
            raise Failed("docs/browser.md has no followTask function")
        out = self.js("""
            const [code, base, key] = args;
            const followTask = new Function(code + "\\nreturn followTask;")();
            const c = window.grok2api.client();
            const taskId = await c.createTask("images", {model: "grok-imagine-1.0", prompt: "a red fox in snow"});
            const seen = [];
            const task = await followTask(base, key, "images", taskId, (name, t) => seen.push([name, t.progress]));
            let refused = null;
            try { await followTask(base, "not-the-key-0000000000", "images", taskId, () => {}); }
            catch (e) { refused = e.message.slice(0, 8); }
            return {seen, status: task.status, images: (task.result || {}).images, refused};""",
                      found.group(1), self.gw, self.key)
        if out["status"] != "success" or not out["images"] or out["seen"][-1][0] != "success" or out["refused"] != "HTTP 401":
            raise Failed(f"followTask from docs/browser.md: {out}")
        self.ok(f"{len(out['seen'])} events, ends {out['seen'][-1]}; a wrong key: {out['refused']}")

    def key_never_in_urls(self):
        self.step = "key-not-in-urls"
        self.drain_logs()
        urls = [m["params"]["request"]["url"] for m in self.network if m.get("method") == "Network.requestWillBeSent"]
        leaked = [u for u in urls if self.key in u or self.admin_key in u]
        if leaked or not urls:
            raise Failed(f"{len(urls)} requests; with a key in the URL: {leaked}")
        self.ok(f"{len(urls)} requests, none with a key in its URL")

    # ---------- what the gateways refuse ----------

    def refused_origin(self):
        self.step = "origin-not-listed"
        probe = """
            const [url, key] = args;
            try { const r = await fetch(url, {headers: {Authorization: `Bearer ${key}`}}); return {status: r.status}; }
            catch (e) { return {rejected: e.name + ": " + e.message}; }"""
        listed = self.js(probe, self.doc + "/v1/models", self.key)
        if listed.get("status") != 200:
            raise Failed(f"from the listed origin {self.page}: {listed}")
        other = other_origin()
        self.open(other)
        self.drain_logs()
        refused = self.js(probe, self.doc + "/v1/models", self.key)
        anyone = self.js(probe, self.gw + "/v1/models", self.key)
        self.drain_logs()
        blocked = [e["message"] for e in self.browser_lines if "blocked by CORS policy" in e["message"] and other in e["message"]]
        if "TypeError" not in refused.get("rejected", "") or not blocked:
            raise Failed(f"from {other}, not on the list: {refused}; CORS messages: {blocked}")
        if anyone.get("status") != 200:
            raise Failed(f"from {other} to the gateway that allows any origin: {anyone}")
        self.ok(f"{other}: {refused['rejected']} ({blocked[0][:90]}…); the any-origin gateway answers it")

    def admin_same_origin(self):
        self.step = "admin-same-origin"
        self.open(self.page)
        status, body = self.http("GET", self.doc + "/admin/overview", {"Authorization": f"Bearer {self.admin_key}"})
        if status != 200:
            raise Failed(f"the admin API itself answers {status}: {body[:200]!r}")
        out = self.js("""
            const [base, key] = args;
            const tries = {};
            for (const [name, path, init] of [
                ["overview+key", "/admin/overview", {headers: {Authorization: `Bearer ${key}`}}],
                ["session", "/admin/session", {}],
                ["page", "/admin", {}]]) {
              try { tries[name] = (await fetch(base + path, init)).status; } catch (e) { tries[name] = e.name; }
            }
            return tries;""", self.doc, self.admin_key)
        if set(out.values()) != {"TypeError"}:
            raise Failed(f"cross-origin fetches to /admin must fail: {out}")
        self.ok(f"cross-origin: {out}; same-origin (urllib): 200")

    def browser_log(self):
        self.step = "browser-log"
        self.drain_logs()
        bad = [e["message"] for e in self.browser_lines if "Uncaught" in e["message"]]
        if bad:
            raise Failed("script errors:\n  " + "\n  ".join(bad))
        self.ok()

    def run(self):
        self.step = "page"
        self.open(self.page)
        self.ok(f"examples/browser from {self.page}")
        self.seed_async_await()
        self.seed_promise()
        self.seed_concurrency()
        self.seed_retry()
        self.poll_and_result()
        self.timeout_paths()
        self.five()
        self.video_events()
        self.video_seek()
        self.range_fetch()
        self.video_poll()
        self.image()
        self.events_resume()
        self.eventsource_public()
        self.docs_snippet()
        self.key_never_in_urls()
        self.refused_origin()
        self.admin_same_origin()
        self.browser_log()


blocks = {}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--page", required=True)
    p.add_argument("--doc-gateway", required=True)
    p.add_argument("--gateway", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--admin-key", required=True)
    args = p.parse_args()
    blocks.update(seed_blocks())
    started = time.monotonic()
    try:
        f = Front(args)
    except Exception as e:
        print(f"FAILED: cannot start Chromium/chromedriver: {e}", file=sys.stderr)
        return 1
    try:
        f.run()
    except Exception as e:  # Failed, or Selenium trouble: same report either way
        f.fail(e if isinstance(e, Failed) else f"{type(e).__name__}: {e}")
        return 1
    finally:
        f.d.quit()
    print(f"steps: {', '.join(f.results)}")
    print(f"browser front test passed in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

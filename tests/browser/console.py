#!/usr/bin/env python3
"""Browser test of the operators' console (/admin), driven through headless Chromium.

  console.py --base http://127.0.0.1:PORT --admin-key KEY --shots DIR [--phase main|after-restart] [--state FILE]

Phase `main` logs in, imports tokens from a file, creates an API key and uses it (urllib), checks usage,
cancels a task, revokes the key, looks at two views on a phone-sized window and logs out; it writes
--state for phase `after-restart`, which (after the gateway restarted on the same state dir) checks that
the tokens, the disabled flag, the revoked key and the usage survived.

Uses the system Chromium and chromedriver only, so Selenium Manager never downloads anything.
The DOM hooks it relies on are listed at the top of src/console/assets/console.js.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

WAIT = 20  # seconds for one UI condition; the simulator answers in milliseconds
TOKENS = ["tok-browser-0001", "tok-browser-0002", "tok-browser-0003"]
KEY_NAME = "browser-test"


class Failed(Exception):
    pass


def token_id(token):
    return hashlib.sha256(token.encode()).hexdigest()[:12]


class Console:
    def __init__(self, args):
        self.base = args.base.rstrip("/")
        self.admin_key = args.admin_key
        self.shots = args.shots
        self.step = "start"
        os.makedirs(self.shots, exist_ok=True)
        opts = Options()
        opts.binary_location = "/usr/bin/chromium"
        for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,800"):
            opts.add_argument(a)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
        self.d = webdriver.Chrome(service=service, options=opts)

    # ---------- plumbing ----------

    def wait(self, cond, what, timeout=WAIT):
        """Waits until cond(driver) is truthy; a DOM re-render mid-check just means 'not yet'."""
        try:
            return WebDriverWait(
                self.d, timeout, poll_frequency=0.1,
                ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
            ).until(cond)
        except TimeoutException:
            raise Failed(f"timed out after {timeout}s waiting for {what}") from None

    def by_id(self, id_):
        return self.d.find_element(By.ID, id_)

    def css(self, sel):
        return self.d.find_element(By.CSS_SELECTOR, sel)

    def visible(self, id_):
        return self.wait(EC.visibility_of_element_located((By.ID, id_)), f"#{id_} to be visible")

    def text(self, sel):
        return self.css(sel).text.strip()

    def shot(self, name):
        self.d.save_screenshot(os.path.join(self.shots, name))

    def go(self, view):
        self.d.execute_script("location.hash = arguments[0]", view)
        self.visible(f"view-{view}")

    def click(self, sel):
        el = self.wait(EC.element_to_be_clickable((By.CSS_SELECTOR, sel)), f"{sel} to be clickable")
        el.click()

    def accept_confirm(self):
        alert = self.wait(EC.alert_is_present(), "a confirm dialog")
        alert.accept()

    def page_alerts(self):
        try:
            return [a.text for a in self.d.find_elements(By.CSS_SELECTOR, "#alerts [data-testid=alert] > span")]
        except Exception:  # the page itself may be what is broken
            return []

    def no_error_alerts(self, where):
        errs = self.d.find_elements(By.CSS_SELECTOR, "#alerts .alert-error > span")
        if errs:
            raise Failed(f"{where}: the page shows errors: {[e.text for e in errs]}")

    def browser_log(self):
        try:
            return self.d.get_log("browser")
        except Exception:
            return []

    def check_browser_log(self):
        """Script errors and CSP refusals are failures; 4xx answers the page handled are not."""
        bad = [e["message"] for e in self.browser_log()
               if "Uncaught" in e["message"] or "Refused to" in e["message"]
               or "Content Security Policy" in e["message"]]
        if bad:
            raise Failed("browser console has script errors or CSP violations:\n  " + "\n  ".join(bad))

    def fail(self, err):
        print(f"FAILED at step '{self.step}': {err}", file=sys.stderr)
        try:
            path = os.path.join(self.shots, f"failure-{self.step}.png")
            self.d.save_screenshot(path)
            print(f"screenshot: {path}", file=sys.stderr)
            print(f"url: {self.d.current_url}", file=sys.stderr)
        except Exception as e:  # a dead browser must not hide the first error
            print(f"(no screenshot: {e})", file=sys.stderr)
        alerts = self.page_alerts()
        if alerts:
            print("alerts on the page:\n  " + "\n  ".join(alerts), file=sys.stderr)
        log = self.browser_log()
        if log:
            print("browser console:", file=sys.stderr)
            for e in log:
                print(f"  [{e.get('level')}] {e.get('message')}", file=sys.stderr)

    # ---------- HTTP outside the browser ----------

    def http(self, method, path, body=None, headers=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=dict(headers or {}))
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    # ---------- shared steps ----------

    def login(self, screenshot=False):
        self.d.get(self.base + "/admin")
        self.visible("login-key")
        if not self.by_id("app-view").get_attribute("hidden"):
            raise Failed("the app shows before logging in")
        if screenshot:
            self.shot("login.png")
        self.by_id("login-key").send_keys(self.admin_key)
        self.click("#login-submit")
        self.visible("app-view")
        self.visible("nav")
        self.wait(lambda d: not self.by_id("login-view").is_displayed(), "the login form to go away")
        session = self.d.execute_async_script(
            "const done = arguments[0];"
            "fetch('/admin/session', {credentials: 'same-origin'}).then(r => r.json()).then(done, e => done(String(e)));")
        if not isinstance(session, dict) or "persistent" not in session:
            raise Failed(f"GET /admin/session from the page answered {session!r}")
        banner = self.by_id("banner-persistent").is_displayed()
        if banner != (session["persistent"] is False):
            raise Failed(f"persistent={session['persistent']} but the no-state-dir banner visible={banner}")
        return session

    def token_row(self, tid):
        return f'#tokens-body tr[data-token-id="{tid}"]'

    def wait_token_status(self, tid, status):
        self.wait(lambda d: self.text(self.token_row(tid) + " [data-col=status]") == status,
                  f"token {tid} to show status {status}")

    def key_row(self, kid):
        return f'#keys-body tr[data-key-id="{kid}"]'

    def usage_row(self, kid):
        """The key's usage row as {data-col: text}, or None."""
        rows = self.d.find_elements(By.CSS_SELECTOR, f'#usage-body tr[data-key-id="{kid}"]')
        if not rows:
            return None
        return {c.get_attribute("data-col"): c.text.strip() for c in rows[0].find_elements(By.TAG_NAME, "td")}

    def wait_usage(self, kid, ok, what):
        """Re-applies the usage filter until the key's row satisfies ok (usage may be counted a moment later)."""
        seen = [None]

        def ready(d):
            cells = seen[0] = self.usage_row(kid)
            if cells and ok(cells):
                return cells
            self.by_id("usage-apply").click()
            time.sleep(0.3)
            return False

        try:
            return self.wait(ready, what)
        except Failed as e:
            raise Failed(f"{e}; last row seen: {seen[0]}") from None

    # ---------- phase main ----------

    def main_phase(self, state_file):
        self.step = "login"
        self.login(screenshot=True)

        self.step = "overview"
        self.go("overview")
        self.wait(lambda d: re.fullmatch(r"\d+", self.text("#ov-queue")), "a queue depth number")
        self.wait(lambda d: re.fullmatch(r"\d+", self.text("#ov-tasks-pending")), "task counts")
        self.wait(lambda d: re.fullmatch(r"\d+", self.text("#ov-tokens-active")), "token counts")
        self.wait(lambda d: re.fullmatch(r"\d+(\.\d+)?", self.text("#ov-rps")), "requests/s from two samples", 10)
        self.shot("overview.png")

        self.step = "tokens-import"
        self.go("tokens")
        self.visible("tokens-panel")
        tmp = tempfile.mkdtemp(prefix="console-test-")
        path = os.path.join(tmp, "tokens.jsonl")
        lines = [
            json.dumps({"token": TOKENS[0], "note": "first"}),
            json.dumps(TOKENS[1]),
            json.dumps({"sso": TOKENS[2], "proxy": "http://127.0.0.1:3128"}),
            json.dumps({"token": TOKENS[0]}),
            "this line is not json",
            json.dumps({"note": "an object without a token"}),
            json.dumps({"token": "tok-browser 0004"}),
        ]
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.by_id("import-file").send_keys(path)
        self.click("#import-submit")
        self.visible("import-report")
        counts = {k: self.text(f"#import-{k}") for k in ("added", "duplicates", "rejected")}
        if counts != {"added": "3", "duplicates": "1", "rejected": "3"}:
            raise Failed(f"import report counts {counts}, expected 3 added, 1 duplicate, 3 rejected")
        report = self.d.find_elements(By.CSS_SELECTOR, "#import-report-body tr[data-testid=import-line]")
        if len(report) != 7:
            raise Failed(f"import report has {len(report)} lines, expected 7")
        for tr in report:
            result = tr.get_attribute("data-result")
            reason = tr.find_element(By.CSS_SELECTOR, "[data-col=reason]").text.strip()
            if result == "rejected" and reason in ("", "–"):
                line = tr.find_element(By.CSS_SELECTOR, "[data-col=line]").text
                raise Failed(f"rejected line {line} shows no reason")
        ids = [token_id(t) for t in TOKENS]
        for tid in ids:
            self.wait(lambda d, tid=tid: d.find_elements(By.CSS_SELECTOR, self.token_row(tid)),
                      f"token row {tid} after the import")
        self.no_error_alerts("after the import")

        self.step = "tokens-check"
        for tid in ids:
            box = self.css(self.token_row(tid) + " input[data-action=select]")
            if not box.is_selected():
                box.click()
        self.wait(lambda d: self.text("#tokens-selected-count") == "3", "3 tokens selected")
        self.click("#bulk-refresh")
        # 0003 goes through a proxy nobody listens on: its check fails, and the page must say so for
        # that token alone. Then the alert is dismissed, so later steps see no stale error.
        self.wait(lambda d: any("1 of 3 failed" in a and ids[2] in a for a in self.page_alerts()),
                  "the failed check of the proxied token reported")
        for close in self.d.find_elements(By.CSS_SELECTOR, "#alerts .alert-error .alert-close"):
            close.click()
        self.no_error_alerts("after dismissing the failed check")
        for tid in ids[:2]:
            self.wait(lambda d, tid=tid: re.fullmatch(
                r"\d+", self.text(self.token_row(tid) + " [data-col=q-image] [data-testid=quota-remaining]")),
                f"an image quota number for token {tid}")
        q3 = self.text(self.token_row(ids[2]) + " [data-col=q-image]")
        err3 = self.text(self.token_row(ids[2]) + " [data-col=last-error]")
        print(f"note: proxied token {ids[2]}: image quota {q3!r}, last error {err3!r}")
        self.shot("tokens.png")

        self.step = "tokens-disable"
        disabled = ids[1]
        self.click(self.token_row(disabled) + " button[data-action=toggle]")
        self.wait_token_status(disabled, "disabled")

        # The server searches and sorts (a pool can hold 10,000 tokens): the page shows what it answered.
        self.step = "tokens-search-sort"

        def rows():
            return [tr.get_attribute("data-token-id")
                    for tr in self.d.find_elements(By.CSS_SELECTOR, "#tokens-body tr[data-testid=token-row]")]

        every = rows()
        search = self.by_id("tokens-search")
        search.send_keys("first")
        self.wait(lambda d: rows() == [ids[0]], "the search to leave the token noted 'first'")
        if not self.text("#tokens-page").endswith("of 1 found"):
            raise Failed(f"the pager says {self.text('#tokens-page')!r} for one token found")
        search.send_keys(Keys.BACKSPACE * len("first"))
        self.wait(lambda d: len(rows()) == len(every), "every token back once the search is empty")
        self.click('#tokens-table th[data-sort="id"]')
        self.wait(lambda d: rows() == sorted(every), "the rows sorted by id")
        self.click('#tokens-table th[data-sort="id"]')
        self.wait(lambda d: rows() == sorted(every, reverse=True), "the rows sorted by id, descending")
        if self.css('#tokens-table th[data-sort="id"]').get_attribute("aria-sort") != "descending":
            raise Failed("the id header does not show the descending sort")
        if self.by_id("tokens-next").is_enabled():
            raise Failed("a next page offered with every token on this one")

        self.step = "keys-create"
        self.go("keys")
        self.visible("key-create-form")
        self.by_id("key-name").send_keys(KEY_NAME)
        self.by_id("key-rps").send_keys("5")
        self.by_id("key-concurrency").send_keys("2")
        for box in self.d.find_elements(By.CSS_SELECTOR, "#key-models input[name=key-model]"):
            if box.is_selected():  # none checked = all models
                box.click()
        self.click("#key-create-submit")
        self.visible("key-secret-box")
        key = self.wait(lambda d: self.text("#key-secret"), "the shown-once key")
        if self.text("#key-secret-name") != KEY_NAME:
            raise Failed(f"the key box names {self.text('#key-secret-name')!r}")
        kid = self.wait(lambda d: self.find_key_row(key), "the new key's row (by prefix)")
        row = {c: self.text(f"{self.key_row(kid)} [data-col={c}]") for c in ("name", "status", "rps", "concurrency", "models")}
        if row != {"name": KEY_NAME, "status": "active", "rps": "5", "concurrency": "2", "models": "all"}:
            raise Failed(f"key row shows {row}")
        self.shot("keys.png")
        self.click("#key-secret-dismiss")
        self.wait(lambda d: not self.by_id("key-secret-box").is_displayed() and self.by_id("key-secret").get_attribute("textContent") == "",
                  "the key box to close and forget the key")

        self.step = "use-key-image"
        auth = {"Authorization": f"Bearer {key}"}
        status, body = self.http("POST", "/v1/images/generations",
                                 {"model": "grok-imagine-1.0", "prompt": "a lighthouse at dusk", "n": 1}, auth)
        if status != 200:
            raise Failed(f"image generation with the new key: HTTP {status} {body[:300]!r}")
        image = json.loads(body)
        if not image.get("data") or not image["data"][0].get("url"):
            raise Failed(f"image generation answered without data[0].url: {body[:300]!r}")

        self.step = "use-key-video"
        status, body = self.http("POST", "/v1/video/tasks",
                                 {"model": "grok-imagine-1.0-video", "prompt": "a slow boat on a lake [sim:slow=2500]"}, auth)
        if status != 202:
            raise Failed(f"video task with the new key: HTTP {status} {body[:300]!r}")
        created = json.loads(body)
        data = created.get("data") or {}
        task = data.get("task_id") or data.get("taskId") or data.get("id") or created.get("id")
        if not task:
            raise Failed(f"video task answer without a task id: {created}")

        self.step = "usage"
        self.go("usage")
        cells = self.wait_usage(kid, lambda c: int(c["requests"]) >= 2 and c["images"] == "1",
                                f"usage for {KEY_NAME}: requests >= 2 and images = 1")
        if cells["name"] != KEY_NAME:
            raise Failed(f"usage row names {cells['name']!r}")
        self.shot("usage.png")

        self.step = "tasks"
        self.go("tasks")
        row = f'#tasks-body tr[data-task-id="{task}"]'

        def task_listed(d):
            if d.find_elements(By.CSS_SELECTOR, row):
                return True
            self.by_id("tasks-apply").click()
            time.sleep(0.3)
            return False

        self.wait(task_listed, f"task {task} in the list")
        self.click(row)
        self.visible("task-detail")
        self.wait(lambda d: self.text("#task-detail-id") == task, "the detail of the video task")
        st = self.text("#task-detail-fields dd[data-field=status]")
        if st not in ("pending", "processing"):
            raise Failed(f"the slow video task is already {st}; cannot test Cancel")
        self.click("#task-cancel")
        self.accept_confirm()
        self.wait(lambda d: self.text("#task-detail-fields dd[data-field=status]") == "failed",
                  "the task detail to show status failed")
        self.wait(lambda d: self.text("#task-detail-fields dd[data-field=error-code]") == "cancelled",
                  "the task detail to show error code cancelled")
        self.wait(lambda d: self.text(row + " [data-col=status]") == "failed", "the task row to show failed")
        if self.by_id("task-cancel").is_displayed():
            raise Failed("Cancel is still offered for a finished task")
        self.no_error_alerts("after cancelling")
        self.shot("tasks.png")

        self.step = "keys-revoke"
        self.go("keys")
        self.click(self.key_row(kid) + " button[data-action=revoke]")
        self.accept_confirm()
        self.wait(lambda d: self.text(self.key_row(kid) + " [data-col=status]") == "revoked", "the key to show revoked")
        if self.d.find_elements(By.CSS_SELECTOR, self.key_row(kid) + " [data-action]"):
            raise Failed("a revoked key still offers actions")
        status, body = self.http("POST", "/v1/images/generations",
                                 {"model": "grok-imagine-1.0", "prompt": "a lighthouse at dusk", "n": 1}, auth)
        if status != 401:
            raise Failed(f"the revoked key answered HTTP {status}, expected 401: {body[:300]!r}")

        self.step = "phone"
        self.d.set_window_size(390, 844)
        try:
            self.go("tokens")
            self.wait(lambda d: d.find_elements(By.CSS_SELECTOR, self.token_row(ids[0])), "token rows on a phone")
            # Earlier clicks scrolled the table sideways; show it as an operator opening the tab sees it.
            self.d.execute_script("document.querySelectorAll('.table-wrap').forEach(w => { w.scrollLeft = 0; })")
            self.assert_no_page_overflow("tokens")
            self.shot("tokens-phone.png")
            self.go("overview")
            self.wait(lambda d: re.fullmatch(r"\d+", self.text("#ov-queue")), "overview numbers on a phone")
            self.assert_no_page_overflow("overview")
            self.shot("overview-phone.png")
        finally:
            self.d.set_window_size(1280, 800)

        self.step = "logout"
        cookie = next((c for c in self.d.get_cookies() if c["name"] == "grok2api_session"), None)
        if not cookie:
            raise Failed(f"no grok2api_session cookie; cookies: {[c['name'] for c in self.d.get_cookies()]}")
        jar = {"Cookie": f"grok2api_session={cookie['value']}"}
        status, _ = self.http("GET", "/admin/session", headers=jar)
        if status != 200:
            raise Failed(f"the session cookie before logout answered HTTP {status}, expected 200")
        self.click("#logout-btn")
        self.visible("login-form")
        self.wait(lambda d: not self.by_id("app-view").is_displayed(), "the app to hide after logout")
        status, _ = self.http("GET", "/admin/session", headers=jar)
        if status != 401:
            raise Failed(f"the old session cookie after logout answered HTTP {status}, expected 401")

        self.step = "browser-log"
        self.check_browser_log()

        if state_file:
            with open(state_file, "w") as f:
                json.dump({"key_id": kid, "token_ids": ids, "disabled_id": disabled}, f)

    def find_key_row(self, key):
        """The row whose shown prefix ("g2a_<id>_…tail", not secret) matches the full key: names need not be unique."""
        for tr in self.d.find_elements(By.CSS_SELECTOR, "#keys-body tr[data-testid=key-row]"):
            head, _, tail = tr.find_element(By.CSS_SELECTOR, "[data-col=prefix]").text.strip().partition("…")
            if head and key.startswith(head) and key.endswith(tail):
                return tr.get_attribute("data-key-id")
        return None

    def assert_no_page_overflow(self, view):
        sw, iw = self.d.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
        if sw > iw + 1:
            raise Failed(f"{view} on a phone is wider than the screen ({sw}px > {iw}px): a table escaped its wrapper")

    # ---------- phase after-restart ----------

    def after_restart_phase(self, state_file):
        if not state_file:
            raise Failed("--phase after-restart needs --state FILE from phase main")
        with open(state_file) as f:
            saved = json.load(f)
        self.step = "restart-login"
        self.login()

        self.step = "restart-tokens"
        self.go("tokens")
        for tid in saved["token_ids"]:
            self.wait(lambda d, tid=tid: d.find_elements(By.CSS_SELECTOR, self.token_row(tid)),
                      f"imported token {tid} after the restart")
        self.wait_token_status(saved["disabled_id"], "disabled")

        self.step = "restart-keys"
        self.go("keys")
        kid = saved["key_id"]
        self.wait(lambda d: self.text(self.key_row(kid) + " [data-col=status]") == "revoked",
                  f"key {kid} listed as revoked after the restart")
        name = self.text(self.key_row(kid) + " [data-col=name]")
        if name != KEY_NAME:
            raise Failed(f"key {kid} is named {name!r} after the restart")

        self.step = "restart-usage"
        self.go("usage")
        self.wait_usage(kid, lambda c: c["images"] == "1", f"usage for {KEY_NAME} still showing images = 1")

        self.step = "browser-log"
        self.check_browser_log()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True)
    p.add_argument("--admin-key", required=True)
    p.add_argument("--shots", required=True)
    p.add_argument("--phase", choices=["main", "after-restart"], default="main")
    p.add_argument("--state")
    args = p.parse_args()

    try:
        c = Console(args)
    except Exception as e:
        print(f"FAILED: cannot start Chromium/chromedriver: {e}", file=sys.stderr)
        return 1
    try:
        if args.phase == "main":
            c.main_phase(args.state)
        else:
            c.after_restart_phase(args.state)
    except Exception as e:  # Failed, or Selenium/HTTP trouble: same report either way
        c.fail(e if isinstance(e, Failed) else f"{type(e).__name__}: {e}")
        return 1
    finally:
        c.d.quit()
    print("console test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

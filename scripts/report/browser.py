#!/usr/bin/env python3
"""scripts/report.sh's browser client: headless Chromium runs load.js against the gateway.

  browser.py --base http://127.0.0.1:PORT --key KEY --mode poll|create --seconds N --concurrency N [--prompt P]

Serves this directory on a second origin (127.0.0.1, another port), opens page.html there in the system
Chromium through the system chromedriver (Selenium Manager never downloads anything), calls the page's
window.reportRun and prints its figures as one JSON line.
"""

import argparse
import functools
import http.server
import json
import os
import shutil
import sys
import threading

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait


class Quiet(http.server.SimpleHTTPRequestHandler):
    # Module scripts need a JavaScript MIME type; older Pythons do not map .js to one everywhere.
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript"}

    def log_message(self, *args):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--mode", choices=["poll", "create"], required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--concurrency", type=int, required=True)
    ap.add_argument("--prompt")
    args = ap.parse_args()

    here = os.path.dirname(os.path.abspath(__file__))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=here))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    page = f"http://127.0.0.1:{server.server_address[1]}/page.html"

    opts = Options()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    d = webdriver.Chrome(service=service, options=opts)
    try:
        d.get(page)
        WebDriverWait(d, 20).until(lambda d: d.execute_script("return typeof window.reportRun === 'function'"))
        # The run itself, the pool of poll tasks made before it, and room for the last calls to end.
        d.set_script_timeout(args.seconds + 120)
        params = {
            "baseUrl": args.base,
            "apiKey": args.key,
            "mode": args.mode,
            "seconds": args.seconds,
            "concurrency": args.concurrency,
            "prompt": args.prompt,
        }
        result = d.execute_async_script(
            """
            const done = arguments[arguments.length - 1];
            window.reportRun(arguments[0]).then(
              r => done({ client: navigator.userAgent, ...r }),
              e => done({ failed: String(e && e.stack ? e.stack : e) }));
            """,
            params,
        )
        if "failed" in result:
            for entry in d.get_log("browser"):
                print(entry.get("message"), file=sys.stderr)
            print(f"the page's run failed: {result['failed']}", file=sys.stderr)
            sys.exit(1)
        result["origin"] = f"http://127.0.0.1:{server.server_address[1]}"
        print(json.dumps(result))
    finally:
        d.quit()
        server.shutdown()


if __name__ == "__main__":
    main()

"""Open the service's /docs in a real headless Chromium and check that Swagger UI rendered.

    .venv/bin/python scripts/check_docs_browser.py RUN_DIR [--screenshot docs.png]

Needs Debian's chromium (`apt-get install chromium`). Starts `ur4rec serve RUN_DIR` on a free
loopback port with no network beyond it, lets Chromium render /docs (its scripts run, so the
operations appear only if Swagger UI's assets were served by the app itself), dumps the DOM
and saves a screenshot. Exits 0 when every operation of the API is listed on the page.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

OPERATIONS = ("/health", "/users/{raw_id}/recommendations", "/recommendations")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--virtual-time-budget=10000", "--window-size=1280,1600",
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--data-dir")
    parser.add_argument("--screenshot", default="docs-screenshot.png")
    args = parser.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 2
    port = free_port()
    cmd = [sys.executable, "-m", "ur4rec.cli", "serve", args.run_dir, "--port", str(port)]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/docs"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                print(server.stderr.read()[-2000:], file=sys.stderr)
                return 1
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    print("the server did not start", file=sys.stderr)
                    return 1
                time.sleep(0.2)
        with tempfile.TemporaryDirectory() as profile:
            common = [browser, *FLAGS, f"--user-data-dir={profile}"]
            dom = subprocess.run(
                [*common, "--dump-dom", url], capture_output=True, text=True, timeout=120
            ).stdout
            subprocess.run(
                [*common, f"--screenshot={Path(args.screenshot).resolve()}", url],
                capture_output=True,
                timeout=120,
            )
    finally:
        server.terminate()
        server.wait(timeout=30)
    found = [op for op in OPERATIONS if f'data-path="{op}"' in dom]
    missing = [op for op in OPERATIONS if op not in found]
    print(f"/docs rendered {len(found)} of {len(OPERATIONS)} operations: {', '.join(found)}")
    print(f"screenshot: {args.screenshot}")
    if missing:
        print(f"missing: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Screenshot the live dashboard while ``tvcache bench sql --workers 4`` runs, for the README.

Starts the benchmark, finds the ``tvcache serve`` it starts for its service mode (a child
process listening on loopback, no token), opens the dashboard in headless Chromium and keeps
the last frame taken while the page was live. Needs scripts/install-chromium.sh and the dev
extras (selenium).

    .venv/bin/python scripts/dashboard-screenshot.py [--out docs/images/dashboard.png] [--quick]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

# select the root with the most calls, then open its tree and show a snapshotted node
BUSIEST_ROOT = """
const rows = [...document.querySelectorAll('#roots tbody tr')];
const calls = (r) => Number(r.cells[4].textContent.replace(/,/g, ''));
rows.sort((a, b) => calls(b) - calls(a));
if (rows.length) rows[0].click();
"""
ROOTS = "return document.querySelectorAll('#roots tbody tr[data-root]').length"
SESSIONS = "return document.getElementById('c-sessions').textContent"
OPEN_TREE = """
document.getElementById('expand-all').click();
setTimeout(() => {
  const rows = [...document.querySelectorAll('#tree .row')];
  const pick = rows.find((r) => r.querySelector('.m-snap')) || rows[0];
  if (pick) pick.click();
}, 1500);
"""


def serve_url(bench: psutil.Process) -> str | None:
    """The URL of the benchmark's ``tvcache serve`` child, once it listens."""
    try:
        children = bench.children(recursive=True)
    except psutil.NoSuchProcess:
        return None
    for child in children:
        try:
            if "serve" not in child.cmdline():
                continue
            for conn in child.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    return f"http://{conn.laddr.ip}:{conn.laddr.port}"
        except psutil.Error:
            continue
    return None


def browser(width: int, height: int) -> webdriver.Chrome:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        sys.exit("dashboard-screenshot: run scripts/install-chromium.sh first")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--window-size={width},{height}", "--hide-scrollbars"):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images/dashboard.png")
    parser.add_argument("--quick", action="store_true", help="bench sql --quick (a small run)")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1500)
    args = parser.parse_args()
    command = [sys.executable, "-m", "tvcache.cli", "bench", "sql", "--workers", "4"]
    command += ["--quick"] if args.quick else []
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (read at the end)
    bench = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    driver = browser(args.width, args.height)
    kept = Path(tempfile.mkdtemp()) / "frame.png"
    frames = 0
    try:
        url = None
        while url is None and bench.poll() is None:
            url = serve_url(psutil.Process(bench.pid))
            time.sleep(0.2)
        if url is None:
            log.seek(0)
            sys.exit(f"dashboard-screenshot: the benchmark ended before it served:\n{log.read()}")
        print(f"dashboard at {url}", file=sys.stderr)
        driver.get(url)
        ticks = 0  # 2-second ticks since the busiest root was chosen (-1: not yet)
        while bench.poll() is None and serve_url(psutil.Process(bench.pid)) == url:
            time.sleep(2.0)
            status = driver.execute_script("return document.getElementById('status').textContent")
            if not str(status).startswith("live"):
                continue
            if ticks == 0:
                if driver.execute_script(ROOTS) < 5:
                    continue  # the service mode has only just started
                driver.execute_script(BUSIEST_ROOT)
            if ticks % 5 == 0:  # again now and then: the tree grows while rollouts run
                driver.execute_script(OPEN_TREE)
            ticks += 1
            if ticks < 2:
                continue
            if driver.execute_script(SESSIONS) not in ("0", "–") and driver.save_screenshot(
                str(kept)
            ):
                frames += 1  # the last frame with rollouts in flight
        bench.wait()
    finally:
        driver.quit()
        if bench.poll() is None:
            bench.terminate()
    if not frames:
        sys.exit("dashboard-screenshot: no live frame was taken (the service mode was too short)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(kept, out)
    log.seek(0)
    print(log.read())
    print(f"wrote {out} (last of {frames} live frames)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

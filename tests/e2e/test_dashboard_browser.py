"""The dashboard in headless Chromium (Debian's, driven by Selenium through chromedriver),
served by a real ``tvcache serve`` whose cache is filled by real calls (local backend).

Install the browser with scripts/install-chromium.sh; without it these tests skip, and fail
under CI.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dashboard_support import build, wide_tree
from integration.needs import unavailable

from tvcache.client import Client
from tvcache.service import ServerProcess
from tvcache.service._guard import COOKIE

TOKEN = "browser-test-token"
COMMANDS = [["echo hello > f", "cat f"], ["echo hello > f", "ls"], ["echo other > f", "cat f"]]
NODES = 5  # the three rollouts above share their first call once
Served = tuple[ServerProcess, Path]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_path:
        unavailable("Chromium and ChromeDriver are needed: run scripts/install-chromium.sh")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        unavailable("selenium is needed: pip install -e '.[dev]'")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,1000"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def browser(chromium: Any) -> Iterator[Any]:
    """The shared browser on a blank page with an empty console, left blank again after the
    test (a page left open would log its event stream's reconnects into the next test)."""
    chromium.get("about:blank")
    chromium.execute_cdp_cmd("Network.clearBrowserCookies", {})  # every site's, not one's
    chromium.get_log("browser")
    yield chromium
    chromium.get("about:blank")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ServerProcess, Path]]:
    template = tmp_path / "template"
    template.mkdir()
    (template / "README").write_text("dashboard test\n")
    server = ServerProcess(tmp_path / "home", "--pool-size", "0", env={"TVCACHE_TOKEN": TOKEN})
    with server:
        yield server, template


def rollouts(url: str, template: Path, commands: list[list[str]]) -> None:
    with Client(url, token=TOKEN) as client:
        for calls in commands:
            with client.session("demo", template=str(template)) as session:
                for command in calls:
                    session.call("bash", command=command)


def wait_for(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {check}")
        time.sleep(0.05)


def log_in(driver: Any, url: str) -> None:
    driver.get(f"{url}/?token={TOKEN}")
    wait_for(lambda: driver.execute_script("return document.body.dataset.ready === '1'"))


TREE_DONE = (
    "const t = document.getElementById('tree'); return !t.dataset.loading && t.dataset.nodes"
)


def tree_nodes(driver: Any) -> int:
    return int(driver.execute_script("return document.querySelectorAll('#tree li.node').length"))


def expand_all(driver: Any) -> None:
    driver.find_element("id", "expand-all").click()
    wait_for(lambda: driver.execute_script(TREE_DONE))


def console_errors(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_page_tree_detail_and_live_counters(browser: Any, served: Served) -> None:
    server, template = served
    rollouts(server.url, template, COMMANDS)
    log_in(browser, server.url)
    assert "token" not in browser.current_url  # the redirect took it out of the address
    wait_for(lambda: browser.find_element("id", "c-calls").text == "6")
    expand_all(browser)
    assert tree_nodes(browser) == NODES
    # clicking a node shows its observation
    rows = browser.find_elements("css selector", "#tree .row")
    [cat] = [r for r in rows if '"cat f"' in r.text and r.find_elements("xpath", "../../..")
             and "hello" in r.find_element("xpath", "../../..").text]  # fmt: skip
    cat.click()
    shown = wait_for(lambda: browser.find_elements("css selector", "#detail pre.observation"))
    assert shown[0].text == "hello"
    restore = browser.find_element("css selector", "#detail pre.restore").text
    assert restore.startswith("tvcache --home ") and " restore " in restore and "--node" in restore
    # more calls: counters and tree follow without a reload
    browser.execute_script("window.notReloaded = true")
    rollouts(server.url, template, [["echo hello > f", "cat f"], ["echo third > f"]])
    wait_for(lambda: browser.find_element("id", "c-calls").text == "9")
    wait_for(lambda: tree_nodes(browser) == NODES + 1)
    assert browser.execute_script("return window.notReloaded") is True
    assert browser.find_element("id", "c-hit-rate").text == f"{100 * 3 / 9:.1f}%"
    assert console_errors(browser) == []


def test_a_100k_node_root_opens_in_under_two_seconds(browser: Any, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    build(home / "cache.db", wide_tree(100_000, 10))
    with ServerProcess(home, "--pool-size", "0", env={"TVCACHE_TOKEN": TOKEN}) as server:
        log_in(browser, server.url)  # the cookie; the first page load warms nothing up
        browser.get("about:blank")
        started = time.perf_counter()
        browser.get(server.url)
        wait_for(lambda: browser.execute_script(TREE_DONE))
        elapsed = time.perf_counter() - started
        assert tree_nodes(browser) == 10
        assert "100,000 nodes" in browser.find_element("id", "tree-title").text
        first = browser.find_element("css selector", "#tree .toggle")
        first.click()
        wait_for(lambda: tree_nodes(browser) == 20)
        assert console_errors(browser) == []
    print(f"100k-node root: page open to first tree level drawn in {elapsed:.3f} s")
    assert elapsed < 2.0, f"the 100k-node root took {elapsed:.2f} s to open"


def test_a_wrong_token_is_refused(browser: Any, served: tuple[ServerProcess, Path]) -> None:
    server, _template = served
    browser.delete_all_cookies()
    browser.get(f"{server.url}/?token=not-the-token")
    assert "wrong token" in browser.find_element("tag name", "h1").text
    assert browser.get_cookies() == []
    browser.get(server.url)
    assert "token needed" in browser.find_element("tag name", "h1").text
    port = server.url.rsplit(":", 1)[1]
    answer = httpx.get(f"{server.url}/v1/dashboard/roots", cookies={f"{COOKIE}_{port}": TOKEN})
    assert answer.status_code == 401  # the token itself is not a valid cookie
    browser.get_log("browser")  # the 401s above are expected console entries


def test_the_html_export_works_from_a_file(
    browser: Any, served: tuple[ServerProcess, Path]
) -> None:
    server, template = served
    rollouts(server.url, template, COMMANDS)
    page = server.home.parent / "tree.html"
    command = [sys.executable, "-m", "tvcache.cli", "--home", str(server.home), "tree", "demo",
               "--html", str(page)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    server.stop()  # the file needs no server
    browser.get(page.as_uri())
    wait_for(lambda: browser.execute_script("return document.body.dataset.ready === '1'"))
    assert browser.find_element("id", "c-calls").text == "6"
    expand_all(browser)
    assert tree_nodes(browser) == NODES
    browser.find_elements("css selector", "#tree .row")[0].click()
    shown = wait_for(lambda: browser.find_elements("css selector", "#detail pre.observation"))
    assert shown[0].text == ""  # `echo hello > f` prints nothing
    assert console_errors(browser) == []


def test_shutdown_is_not_held_by_an_open_event_stream(
    served: tuple[ServerProcess, Path],
) -> None:
    server, _template = served
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.stream("GET", f"{server.url}/v1/dashboard/events", headers=headers) as stream:
        lines = stream.iter_lines()
        wait_for(lambda: next(lines).startswith("event: live"))
        started = time.monotonic()
        assert server.stop(timeout=30) == 0
    assert time.monotonic() - started < 15

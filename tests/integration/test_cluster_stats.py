"""The cluster's counters in one place: ``tvcache stats --cluster``, ``/metrics/cluster`` and
``tvcache doctor``'s cluster checks, over real servers sharing a real PostgreSQL store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sandbox import DoctorCheck
from tvcache._doctor import cluster_checks
from tvcache._settings import Settings
from tvcache.cluster import ClusterClient
from tvcache.service import ServerProcess

pytestmark = pytest.mark.postgres
TOKEN = "stats-token"


@pytest.fixture
def servers(tmp_path: Path, postgres_url: str) -> Iterator[list[ServerProcess]]:
    env = {"TVCACHE_STORE_URL": postgres_url, "TVCACHE_TOKEN": TOKEN}
    started: list[ServerProcess] = []
    try:
        for i in range(2):
            home = tmp_path / f"home{i}"
            started.append(ServerProcess(home, "--advertise", "--log-level", "warning", env=env))
        yield started
    finally:
        for server in started:
            if server.proc.poll() is None:
                server.stop()


def _tvcache(store: str, *args: str, **env: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "tvcache.cli", "--store-url", store, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TVCACHE_TOKEN": TOKEN, **env},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def _calls(cluster: ClusterClient, template: Path) -> set[str]:
    """Eight tasks, each a miss then a hit: 16 calls, 8 hits; the servers they went to."""
    used = set()
    for task in range(8):
        for _ in range(2):
            with cluster.session(f"stats-{task}", template=str(template)) as session:
                session.call("bash", command=f"echo {task}")
                used.add(session.server)
    return used


def test_stats_and_metrics_sum_over_the_live_servers_and_say_who_answered(
    servers: list[ServerProcess], postgres_url: str, tmp_path: Path
) -> None:
    urls = sorted(server.url for server in servers)
    (tmp_path / "template").mkdir()
    with ClusterClient(urls, token=TOKEN) as cluster:
        assert _calls(cluster, tmp_path / "template") == set(urls)  # both served some
    view = _tvcache(postgres_url, "stats", "--cluster", "--json")["cluster"]
    assert view["servers_answered"] == urls and view["servers_failed"] == {}
    assert (view["total"]["calls"], view["total"]["hits"]) == (16, 8)
    assert view["total"]["calls"] == sum(s["calls"] for s in view["by_server"].values())
    auth = {"Authorization": f"Bearer {TOKEN}"}
    text = httpx.get(f"{urls[0]}/metrics/cluster", headers=auth, timeout=30).text
    up = _samples(text, "tvcache_cluster_server_up")
    assert up == {(("server", url),): 1.0 for url in urls}
    counts = _samples(text, "tvcache_call_seconds_count")
    assert (counts[(("result", "hit"),)], counts[(("result", "miss"),)]) == (8.0, 8.0)
    own = _samples(httpx.get(f"{urls[0]}/metrics", headers=auth).text, "tvcache_call_seconds_count")
    assert sum(own.values()) < 16  # a server's own /metrics is its own

    dead = next(s for s in servers if s.url == urls[1])
    dead.stop(signal.SIGKILL)  # still on the live list until its entry expires
    view = _tvcache(postgres_url, "stats", "--cluster", "--json")["cluster"]
    assert view["servers_answered"] == urls[:1] and list(view["servers_failed"]) == urls[1:]
    text = httpx.get(f"{urls[0]}/metrics/cluster", headers=auth, timeout=30).text
    assert _samples(text, "tvcache_cluster_server_up")[(("server", urls[1]),)] == 0.0


class _Registry(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/v2/" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_doctor_checks_the_cluster_parts(
    servers: list[ServerProcess], postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def checks(**env: str) -> dict[str, DoctorCheck]:
        for name, value in {"TVCACHE_TOKEN": TOKEN, **env}.items():
            monkeypatch.setenv(name, value)
        return {c.name: c for c in cluster_checks(Settings(store_url=postgres_url))}

    registry = HTTPServer(("127.0.0.1", 0), _Registry)
    threading.Thread(target=registry.serve_forever, daemon=True).start()
    address = f"http://127.0.0.1:{registry.server_address[1]}"
    try:
        found = checks(TVCACHE_REGISTRY=address)
    finally:
        registry.shutdown()
        registry.server_close()
    for server in servers:
        check = found[f"cluster: server {server.url}"]
        assert check.ok and "version" in check.detail, check
    assert found["cluster: leases table"].ok and found["cluster: live servers"].ok
    assert found["cluster: registry"].ok, found["cluster: registry"]
    away = checks(TVCACHE_REGISTRY=address)["cluster: registry"]
    assert not away.ok and "TVCACHE_REGISTRY" in away.fix
    servers[0].stop()  # a clean stop leaves the live list at once
    found = checks(TVCACHE_TOKEN="wrong")
    assert f"cluster: server {servers[0].url}" not in found
    bad = found[f"cluster: server {servers[1].url}"]
    assert not bad.ok and "TVCACHE_TOKEN" in bad.fix
    assert checks()[f"cluster: server {servers[1].url}"].ok


def test_doctor_has_no_cluster_checks_without_a_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TVCACHE_REGISTRY", raising=False)
    assert cluster_checks(Settings(home=tmp_path, store_url=None)) == []

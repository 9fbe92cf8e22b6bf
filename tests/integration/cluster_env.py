"""Real ``tvcache serve`` processes on loopback sharing one store, for cluster tests."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tvcache.service import ServerProcess

COMMANDS = ["echo one >> log; cat log", "echo two >> log; cat log", "wc -l < log"]
"""A trajectory whose every call depends on the calls before it (hits prove the history)."""


@pytest.fixture
def template(tmp_path: Path) -> Path:
    """The root's files: one data file."""
    path = tmp_path / "template"
    path.mkdir()
    (path / "data.txt").write_text("data\n")
    return path


def start_servers(
    home: Path, store_url: str, count: int, *, lease_ttl: float = 2.0, first: int = 0
) -> list[ServerProcess]:
    """``count`` advertised servers with homes ``home/home<i>`` (i from ``first``)."""
    env = {"TVCACHE_STORE_URL": store_url}
    args = ("--advertise", "--lease-ttl", f"{lease_ttl:g}", "--log-level", "warning")
    started: list[ServerProcess] = []
    try:
        for i in range(first, first + count):
            started.append(ServerProcess(home / f"home{i}", *args, env=env))
    except BaseException:
        stop_all(started)
        raise
    return started


def stop_all(servers: list[ServerProcess]) -> None:
    """Stop every server still running (SIGCONT first: a paused one cannot stop)."""
    for server in servers:
        if server.proc.poll() is None:
            server.proc.send_signal(signal.SIGCONT)
            server.stop()


@contextmanager
def cluster(
    home: Path, store_url: str, count: int = 3, *, lease_ttl: float = 2.0
) -> Iterator[list[ServerProcess]]:
    servers = start_servers(home, store_url, count, lease_ttl=lease_ttl)
    try:
        yield servers
    finally:
        stop_all(servers)

"""Hostile commands, on the local and the Docker backend: every attempt fails, the store stays
byte-identical, the host is fine, and a normal workload gives the same outputs as before.

A cache that a sandbox can write cannot keep the guarantee (DESIGN.md, Trust). Each test first
records a normal workload through an engine with a real SQLite store, closes it, then runs one
attack in a fresh sandbox of the same backend, then checks the store, the host and the workload.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from sandbox import Backend, LocalBackend, Observation, RootSpec, Sandbox, ToolCall
from sandbox._isolation import Isolation, Limits
from tvcache._engine import Engine
from tvcache._settings import Settings
from tvcache._store import Store

FILE_MB = 8  # the file-size limit the tests give sandboxes
PROCESSES = 64  # and their process limit (a fork bomb is held to it)
WORKLOAD: list[tuple[str, dict[str, Any]]] = [
    ("bash", {"command": "mkdir -p d && echo hello > d/f && cat d/f && pwd && echo $HOME"}),
    ("sqlite", {"sql": "CREATE TABLE t(a); INSERT INTO t VALUES (1), (2)"}),
    ("bash", {"command": "cd d && ls -l --time-style=+ | sort && wc -c f"}),
    ("sqlite", {"sql": "SELECT sum(a) FROM t"}),
]


@dataclass
class Arena:
    """One backend, the store it serves, and host objects an attack aims at."""

    backend: Backend
    home: Path  # $TVCACHE_HOME: store file, snapshots, sandboxes
    settings: Settings
    secret: Path  # a root-only host file outside every sandbox
    victim: Sandbox  # another sandbox: nothing may reach it
    options: dict[str, Any]  # the roots' options

    @property
    def store_file(self) -> Path:
        return self.home / "cache.db"

    def spec(self, task: str) -> RootSpec:
        return RootSpec(task, backend=self.backend.name, options=self.options)

    def workload(self, task: str) -> list[tuple[str, int, bool]]:
        """(output, exit code, hit) of each call of :data:`WORKLOAD` in a session on ``task``."""
        store = Store(self.settings.resolved_store_url())
        engine = Engine(self.backend, store, settings=self.settings)
        try:
            with engine.session(self.spec(task)) as rollout:
                results = [rollout.call(tool, **args) for tool, args in WORKLOAD]
            return [(r.output, r.exit_code, r.hit) for r in results]
        finally:
            engine.close()
            store.close()

    def store_digest(self) -> str:
        """sha256 of the store file and its journal/WAL files: the whole persistent cache."""
        digest = hashlib.sha256()
        for found in sorted(self.home.glob("cache.db*")):  # the node journal is a directory
            for path in [found] if found.is_file() else sorted(found.rglob("*")):
                digest.update(path.name.encode() + b"\0" + path.read_bytes())
        return digest.hexdigest()


def _local(tmp_path: Path, request: pytest.FixtureRequest) -> Backend:
    limits = Limits(file_mb=FILE_MB, tmp_mb=16, processes=PROCESSES, cpu_seconds=20)
    backend = LocalBackend(
        tmp_path / "snapshots",
        work_dir=tmp_path / "sandboxes",
        default_timeout=20,
        isolation=Isolation(limits=limits),
    )
    if not backend.isolated:
        from needs import unavailable

        unavailable("the hostile suite needs bubblewrap; run sh scripts/install-bubblewrap.sh")
    return backend


def _docker(tmp_path: Path, request: pytest.FixtureRequest) -> Backend:
    make = request.getfixturevalue("make_backend")
    backend: Backend = make("fs", default_timeout=20)
    return backend


@pytest.fixture(params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def arena(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Arena]:
    home = tmp_path.resolve()
    backend = (_local if request.param == "local" else _docker)(home, request)
    secret = home / f"secret-{uuid.uuid4().hex}"
    secret.write_text("TOP-SECRET-" + uuid.uuid4().hex)
    secret.chmod(0o600)
    settings = Settings(home=home)
    options: dict[str, Any] = {}
    if backend.name == "docker":
        options = {"file_mb": FILE_MB, "pids": PROCESSES}
    victim = backend.start(RootSpec("victim", backend=backend.name, options=options))
    victim.run(ToolCall("bash", {"command": "echo untouched > v"}))
    try:
        yield Arena(backend, home, settings, secret, victim, options)
    finally:
        victim.close()


def _run(box: Sandbox, command: str, timeout: float = 20) -> Observation:
    return box.run(ToolCall("bash", {"command": command, "timeout": timeout}))


@dataclass
class Host:
    """Host-side targets an attack is given, made fresh for each attack."""

    pid: int  # a process outside the sandbox
    port: int  # a TCP port the test listens on
    marker: Path  # a host path that must not appear


Attack = Callable[[Arena, Host], tuple[str, Callable[[Observation], None]]]


def _read_outside(arena: Arena, host: Host) -> tuple[str, Callable[[Observation], None]]:
    token = arena.secret.read_text()
    rel = os.path.relpath(arena.secret, arena.home / "sandboxes" / "x" / "home")
    command = f"cat /etc/shadow {shlex.quote(str(arena.secret))} {rel} ../../{rel}"

    def check(out: Observation) -> None:
        assert token not in out.output
        assert out.exit_code != 0
        if arena.backend.name == "local":  # Docker's /etc/shadow is the image's own
            assert "root:" not in out.output

    return command, check


def _write_outside(arena: Arena, host: Host) -> tuple[str, Callable[[Observation], None]]:
    m = shlex.quote(str(host.marker))
    command = (
        f"echo pwned > {m}; echo pwned > ../../{host.marker.name}; echo pwned > ../../../"
        f"{host.marker.name}; for f in {shlex.quote(str(arena.home))}/sandboxes/*/home/v "
        f"../../*/home/v; do echo pwned > $f; done; touch /etc/{host.marker.name} "
        f"/usr/{host.marker.name}; echo pwned > {shlex.quote(str(arena.secret))}; true"
    )

    def check(out: Observation) -> None:
        for where in (arena.home, Path("/etc"), Path("/usr")):
            assert not (where / host.marker.name).exists()
        assert not host.marker.exists()
        assert "pwned" not in arena.secret.read_text()

    return command, check


def _signal_outside(arena: Arena, host: Host) -> tuple[str, Callable[[Observation], None]]:
    command = f"kill -9 {host.pid}; kill -STOP {host.pid}; true"

    def check(out: Observation) -> None:
        status = psutil.Process(host.pid).status()
        assert status not in (psutil.STATUS_ZOMBIE, psutil.STATUS_STOPPED), status

    return command, check


def _reach_port(arena: Arena, host: Host) -> tuple[str, Callable[[Observation], None]]:
    targets = ["127.0.0.1", "localhost", socket.gethostname()]
    command = "; ".join(
        f"(exec 3<>/dev/tcp/{t}/{host.port} && echo CONNECTED-{t}) 2>/dev/null" for t in targets
    )

    def check(out: Observation) -> None:
        assert "CONNECTED" not in out.output

    return command, check


def _open_store(arena: Arena, host: Host) -> tuple[str, Callable[[Observation], None]]:
    store = shlex.quote(str(arena.store_file))
    poison = "UPDATE nodes SET output='POISONED'"
    command = (
        f'cat {store} | head -c 16; sqlite3 {store} "{poison}"; '
        "for db in ../../cache.db ../../../cache.db /sandbox/../cache.db; do "
        f'sqlite3 $db "{poison}"; printf POISONED >> $db; done; printf POISONED >> {store}; true'
    )

    def check(out: Observation) -> None:
        assert "SQLite format 3" not in out.output

    return command, check


def _fork_bomb(arena: Arena, host: Host) -> tuple[str, Callable[[Observation], None]]:
    command = "bomb() { bomb | bomb & }; bomb; sleep 30"

    def check(out: Observation) -> None:
        assert out.timed_out or out.exit_code != 0
        assert subprocess.run(["true"], check=False).returncode == 0  # the host can still fork

    return command, check


def _fill_disk(arena: Arena, host: Host) -> tuple[str, Callable[[Observation], None]]:
    command = (
        f"head -c {4 * FILE_MB}M /dev/zero > big; echo rc=$?; "
        f"head -c {4 * FILE_MB}M /dev/zero > /tmp/big; echo tmp=$?; ls -l big"
    )

    def check(out: Observation) -> None:
        assert "rc=0" not in out.output and "tmp=0" not in out.output, out.output

    return command, check


ATTACKS: dict[str, Attack] = {
    "read-outside": _read_outside,
    "write-outside": _write_outside,
    "signal-outside": _signal_outside,
    "reach-port": _reach_port,
    "open-store": _open_store,
    "fork-bomb": _fork_bomb,
    "fill-disk": _fill_disk,
}


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    sleeper = subprocess.Popen(["sleep", "300"])
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", 0))
    listener.listen(8)
    listener.setblocking(False)
    marker = Path("/tmp") / f"tvcache-pwned-{uuid.uuid4().hex}"
    try:
        yield Host(sleeper.pid, listener.getsockname()[1], marker)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing connected to the service's port
    finally:
        listener.close()
        sleeper.send_signal(signal.SIGKILL)
        sleeper.wait()
        for where in (marker.parent, Path("/etc"), Path("/usr")):  # should isolation regress
            (where / marker.name).unlink(missing_ok=True)


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_hostile_command_fails_and_changes_nothing(arena: Arena, host: Host, attack: str) -> None:
    # Docker: a timed-out fork bomb sometimes survives (the container cannot be frozen to kill
    # it), leaving that sandbox unusable; the host, the store and other sandboxes are fine
    survives = arena.backend.name == "docker" and attack == "fork-bomb"
    before = arena.workload("task")
    assert not any(hit for _, _, hit in before)
    digest = arena.store_digest()
    command, check = ATTACKS[attack](arena, host)

    start = time.monotonic()
    with arena.backend.start(arena.spec("attacker")) as box:
        out = _run(box, command, timeout=4)
        assert time.monotonic() - start < 60, "the attack was not bounded"
        check(out)
        if not survives:
            assert _run(box, "echo still-usable").output == "still-usable\n"

    assert arena.store_digest() == digest, f"{attack}: the store changed"
    assert _run(arena.victim, "cat v").output == "untouched\n"
    assert arena.workload("task") == [(o, c, True) for o, c, _ in before]  # served, unpoisoned
    fresh = arena.workload("fresh-task")  # and executing it again gives the same outputs
    assert [(o, c) for o, c, _ in fresh] == [(o, c) for o, c, _ in before]

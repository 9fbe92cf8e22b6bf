"""The runtime helper (:mod:`sandbox._runc_spawn`) under failure: killed between or during
requests, a hung runtime, forked callers, many threads, a runtime binary upgraded on disk.

The helper runs real processes (``sleep``, ``true``, a script standing in for an upgraded
runtime) so that these run without root; a fork through the real runc path checks the whole
way once (Docker, runc and crun needed).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest
from docker_env import sh, start
from runc_env import CLEAN, leftovers

from sandbox import _runc, _runc_spawn
from sandbox._runc_exec import alive
from sandbox._runc_spawn import Spawner


def _helper(spawner: Spawner) -> int:
    """The pid of ``spawner``'s helper (started now if it is not running)."""
    assert spawner.run("true", [], None, 30) == 0
    process = spawner._process
    assert process is not None
    return process.pid


def _child_of(helper: int, deadline: float = 30.0, pause: float = 0.005) -> int:
    """The pid of the helper's one runtime child, once it has one."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        with_children = psutil.Process(helper).children()
        if with_children:
            return with_children[0].pid
        time.sleep(pause)
    raise AssertionError("the helper started no child")


@pytest.fixture
def spawner() -> Iterator[Spawner]:
    made = Spawner()
    yield made
    made.close()


def _kill_dead(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    end = time.monotonic() + 30
    while alive(pid) and time.monotonic() < end:
        time.sleep(0.002)


def test_a_helper_killed_between_requests_is_replaced_by_the_next_request(spawner: Spawner) -> None:
    for _ in range(8):  # killed (OOM, SIGKILL) right before a request: no request fails
        os.kill(_helper(spawner), signal.SIGKILL)
        assert spawner.run("true", [], None, 30) == 0


def test_a_helper_killed_during_a_request_fails_it_clearly_and_its_runtime_dies_first(
    spawner: Spawner,
) -> None:
    helper = _helper(spawner)
    errors: list[BaseException] = []

    def request() -> None:
        try:
            spawner.run("sleep", ["300"], None, 120)
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=request)
    thread.start()
    runtime = _child_of(helper)
    os.kill(helper, signal.SIGKILL)
    thread.join(60)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], OSError), errors
    assert "helper exited while sleep ran" in str(errors[0])
    assert not alive(runtime)  # nothing it was making can appear after the caller cleaned up
    assert spawner.run("true", [], None, 30) == 0  # the next request gets a new helper


def test_a_runtime_that_ran_is_never_sent_again_when_its_helper_dies(
    spawner: Spawner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A create resent after its runtime had run fails with "already exists" (seen in CI:
    the helper was killed while it took the cgroup lock, before it had said it forked)."""
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    ledger = tmp_path / "runs"
    script = tmp_path / "fake-oci"
    script.write_text(f"#!/bin/sh\necho ran >> {ledger}\nexec sleep 300\n")
    script.chmod(0o755)

    def request(errors: list[BaseException]) -> None:
        try:
            spawner.run("fake-oci", [], None, 120, warm=True)
        except BaseException as error:
            errors.append(error)

    for attempt in range(1, 7):
        helper = _helper(spawner)
        errors: list[BaseException] = []
        thread = threading.Thread(target=request, args=(errors,))
        thread.start()
        end = time.monotonic() + 30
        while len(ledger.read_text().splitlines() if ledger.exists() else []) < attempt:
            assert time.monotonic() < end, "the runtime never ran"
            time.sleep(0.0005)
        os.kill(helper, signal.SIGKILL)
        thread.join(60)
        assert len(errors) == 1 and "helper exited while fake-oci ran" in str(errors[0]), errors
        assert len(ledger.read_text().splitlines()) == attempt  # ran once, never resent


def test_a_hung_runtime_times_out_and_is_dead_when_the_caller_hears_of_it(spawner: Spawner) -> None:
    helper = _helper(spawner)
    runtime: list[int] = []
    heard: list[tuple[BaseException, bool]] = []

    def request() -> None:
        try:
            spawner.run("sleep", ["300"], None, 2.0)
        except BaseException as error:  # is the runtime still alive as the caller hears?
            heard.append((error, alive(runtime[0])))

    thread = threading.Thread(target=request)
    thread.start()
    runtime.append(_child_of(helper))
    thread.join(60)
    assert len(heard) == 1 and isinstance(heard[0][0], TimeoutError), heard
    assert heard[0][1] is False
    assert spawner.run("true", [], None, 30) == 0


def test_many_threads_creating_at_once_each_get_their_own_answer(spawner: Spawner) -> None:
    codes = [str(n % 7) for n in range(48)]
    with ThreadPoolExecutor(16) as pool:
        got = list(
            pool.map(lambda code: spawner.run("sh", ["-c", f"exit {code}"], None, 60), codes)
        )
    assert got == [int(code) for code in codes]


def test_a_namespace_that_cannot_be_made_is_an_error_that_says_which_step(
    spawner: Spawner,
) -> None:
    # a host whose cgroup v2 hierarchy is not where crun's hiding expects it, or no CAP_SYS_ADMIN
    with pytest.raises(OSError, match=r"could not hide /proc/no-such-mount from true: .+"):
        spawner.run("true", [], "/proc/no-such-mount", 30)
    assert spawner.run("true", [], None, 30) == 0


FORKED = """
import os, sys, time
from sandbox._runc_spawn import SPAWNER
assert SPAWNER.run("true", [], None, 30) == 0
print(SPAWNER._process.pid, flush=True)
child = os.fork()
if child == 0:  # a worker forked off (multiprocessing, Ray) outlives its parent
    time.sleep(120)
    os._exit(0)
print(child, flush=True)
"""


def test_a_forked_worker_does_not_keep_its_parents_helper_alive() -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", FORKED], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert process.stdout is not None
    helper, worker = int(process.stdout.readline()), int(process.stdout.readline())
    try:
        process.wait(60)
        end = time.monotonic() + 30
        while alive(helper) and time.monotonic() < end:
            time.sleep(0.01)
        assert alive(worker)
        assert not alive(helper)  # the parent ended: so did its helper, whatever it forked
    finally:
        _kill_dead(worker)
        if alive(helper):
            _kill_dead(helper)


def _runtime(directory: Path, code: int) -> None:
    """A stand-in runtime binary at ``directory/fake-oci``, installed as a package manager
    does (a new file renamed over the old one)."""
    new = directory / "fake-oci.new"
    new.write_text(f"#!/bin/sh\nexit {code}\n")
    new.chmod(0o755)
    new.rename(directory / "fake-oci")


def test_a_runtime_upgraded_on_disk_runs_at_the_next_request(
    spawner: Spawner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    _runtime(tmp_path, 3)
    assert spawner.run("fake-oci", [], None, 30) == 3
    _runtime(tmp_path, 4)  # apt upgrade: a security fix takes effect without a restart
    assert spawner.run("fake-oci", [], None, 30) == 4
    (tmp_path / "fake-oci").unlink()
    with pytest.raises(OSError, match="no fake-oci binary on PATH"):
        spawner.run("fake-oci", [], None, 30)


@pytest.mark.docker
def test_a_fork_after_the_helper_was_killed_succeeds_and_leaves_nothing(
    runc_backend: Any,
) -> None:
    backend = runc_backend()
    with start(backend) as source:
        sh(source, "echo base > /f")
        handle = source.snapshot("helper")
    for _ in range(2):
        process = _runc_spawn.SPAWNER._process
        if process is not None:
            _kill_dead(process.pid)
        with backend.fork(handle) as fork:
            assert sh(fork, "cat /f").output == "base\n"
    backend.delete_snapshot(handle)
    assert leftovers(backend) == CLEAN


CRASHED = """
import os, sys
from pathlib import Path
from sandbox.docker import DockerBackend
backend = DockerBackend(Path(sys.argv[1]), "fs", runtime="runc", work_dir=Path(sys.argv[2]))
assert backend.runc is not None
backend.runc._refill()  # the directories of its next sandboxes, laid out ahead
print(" ".join(backend.runc._skeletons), flush=True)
os._exit(0)  # crashed: nothing closed
"""


@pytest.mark.docker
def test_directories_laid_out_ahead_by_a_crashed_process_are_removed_by_reconcile(
    runc_backend: Any,
) -> None:
    backend = runc_backend()  # another backend, alive, on the same store
    runc = backend.runc
    assert runc is not None
    runc._refill()
    mine = set(runc._skeletons)
    done = subprocess.run(
        [sys.executable, "-c", CRASHED, str(backend.snapshot_dir), str(backend.work_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    left = done.stdout.split()
    assert len(left) == 2, done.stderr
    assert all((runc.boxes / name).is_dir() for name in left)
    report = backend.reconcile({})
    assert sorted(report.orphans_removed) == sorted(f"container:{name}" for name in left)
    for name in left:
        assert not (runc.boxes / name).exists() and not (backend.work_dir / name).exists()
    for name in mine:  # the live backend's stay
        assert (runc.boxes / name).is_dir() and (backend.work_dir / name).is_dir()


@pytest.mark.docker
def test_a_command_that_kills_everything_it_can_is_contained_and_leaves_nothing(
    runc_backend: Any,
) -> None:
    backend = runc_backend()
    with start(backend) as source:
        handle = source.snapshot("victim")
    with backend.fork(handle) as fork:
        assert fork.box is not None
        init = fork.box.pid
        said = sh(fork, "kill -9 1; kill -TERM 1; kill -HUP 1; echo alive", timeout=20)
        assert said.output == "alive\n"  # the supervisor is the namespace's init: unkillable
        assert alive(init)
        sh(fork, "kill -9 -1; kill -9 $PPID; kill -9 $$", timeout=20)  # shell, harness: gone
        name = fork.box.name
    assert not alive(init)
    backend.delete_snapshot(handle)
    assert leftovers(backend) == CLEAN
    assert name not in _runc.containers()


def _fork_into(backend: Any, handle: Any, outcome: list[BaseException | None]) -> None:
    """Fork ``handle``, run a command, close; append the error (None when it worked)."""
    try:
        with backend.fork(handle) as box:
            sh(box, "true")
        outcome.append(None)
    except BaseException as error:
        outcome.append(error)


@pytest.mark.docker
def test_a_fork_whose_helper_dies_during_create_fails_clearly_and_leaves_nothing(
    runc_backend: Any,
) -> None:
    backend = runc_backend()
    with start(backend) as source:
        handle = source.snapshot("helper-dies")
    failed: list[BaseException] = []
    for _ in range(4):  # the kill may come after a fast create: then the fork just works
        helper = _helper(_runc_spawn.SPAWNER)
        outcome: list[BaseException | None] = []
        thread = threading.Thread(target=_fork_into, args=(backend, handle, outcome))
        thread.start()
        with contextlib.suppress(AssertionError):
            _child_of(helper, deadline=10, pause=0.0)
            os.kill(helper, signal.SIGKILL)
        thread.join(120)
        assert len(outcome) == 1
        if outcome[0] is not None:
            failed.append(outcome[0])
            assert isinstance(outcome[0], _runc.RuncError), outcome[0]
            assert "the runtime helper exited while" in str(outcome[0])
            break
    assert failed, "the helper was never killed during a create"
    with backend.fork(handle) as box:  # and the next fork works
        assert sh(box, "echo ok").output == "ok\n"
    backend.delete_snapshot(handle)
    assert leftovers(backend) == CLEAN

"""The local backend's isolation beyond the hostile suite: what works where, the opt-out, the
options and limits, and what a command inside sees."""

from __future__ import annotations

import os
import socket
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from needs import unavailable

from sandbox import LocalBackend, RootSpec, ToolCall
from sandbox import _isolation as iso
from sandbox.local import LocalBackendError
from tvcache._factory import local_backend
from tvcache._settings import Settings


@pytest.fixture(autouse=True)
def _bubblewrap() -> None:
    """Skip without a working bubblewrap; under CI fail (CI must never pass by skipping)."""
    found = iso.probe()
    if not found.ok:
        unavailable(f"these tests need working bubblewrap: {found.detail}; {found.fix}")


@pytest.fixture
def no_bwrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A ``$PATH`` without bubblewrap (yields the real one), process-wide caches and warning
    reset."""
    real = os.environ.get("PATH", "")
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(iso, "_warned", [])
    iso._tools.cache_clear()
    iso._probe.cache_clear()
    yield real
    monkeypatch.undo()
    iso._tools.cache_clear()
    iso._probe.cache_clear()


def test_doctor_says_whether_isolation_works(tmp_path: Path) -> None:
    checks = {c.name: c for c in local_backend(Settings(home=tmp_path)).doctor()}
    assert checks["local: isolation"].ok and "bubblewrap" in checks["local: isolation"].detail


def test_doctor_says_why_not(tmp_path: Path, no_bwrap: str) -> None:
    with pytest.warns(RuntimeWarning):
        backend = local_backend(Settings(home=tmp_path))
    check = {c.name: c for c in backend.doctor()}["local: isolation"]
    assert not check.ok and "bubblewrap (bwrap) is not installed" in check.detail
    assert "install-bubblewrap.sh" in check.fix


def test_library_without_isolation_warns_once_and_keys_roots_apart(
    tmp_path: Path, no_bwrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.warns(RuntimeWarning, match="WITHOUT isolation.*not installed"):
        plain = LocalBackend(tmp_path / "a" / "snapshots")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second backend: no second warning
        again = LocalBackend(tmp_path / "b" / "snapshots")
    assert not plain.isolated and not again.isolated
    monkeypatch.setenv("PATH", no_bwrap)
    iso._tools.cache_clear()
    iso._probe.cache_clear()
    isolated = LocalBackend(tmp_path / "c" / "snapshots")
    # outputs differ with isolation (paths, /tmp, hostname): their roots never share entries
    isolated_id = isolated.root_identity(RootSpec("t"))
    assert isolated.isolated and plain.root_identity(RootSpec("t")) != isolated_id


def test_network_option_is_validated_and_opens_the_network(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "snapshots", default_timeout=10)
    with pytest.raises(LocalBackendError, match="'network' must be true or false"):
        backend.start(RootSpec("t", options={"network": "yes"}))
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        probe = f"(exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected) 2>/dev/null || echo no"
        with backend.start(RootSpec("t")) as closed:
            assert closed.run(ToolCall("bash", {"command": probe})).output == "no\n"
        with backend.start(RootSpec("t", options={"network": True})) as opened:
            assert opened.run(ToolCall("bash", {"command": probe})).output == "connected\n"


def test_limits_come_from_the_environment_and_bad_values_say_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TVCACHE_SANDBOX_FILE_MB", "3")
    monkeypatch.setenv("TVCACHE_SANDBOX_PROCESSES", "0")
    limits = iso.Limits.from_env()
    assert limits.file_mb == 3 and limits.processes == 0 and limits.memory_mb == 4096
    monkeypatch.setenv("TVCACHE_SANDBOX_MEMORY_MB", "lots")
    with pytest.raises(iso.IsolationError, match="TVCACHE_SANDBOX_MEMORY_MB='lots'"):
        iso.Limits.from_env()
    monkeypatch.setenv("TVCACHE_SANDBOX_ISOLATION", "maybe")
    with pytest.raises(iso.IsolationError, match="neither 'on' nor 'off'"):
        iso.Isolation.from_env()


def test_commands_see_only_their_sandbox_and_their_limits(tmp_path: Path) -> None:
    limits = iso.Limits(memory_mb=512, processes=50, cpu_seconds=7, file_mb=2)
    backend = LocalBackend(tmp_path / "snapshots", isolation=iso.Isolation(limits=limits))
    with backend.start(RootSpec("t")) as box:
        out = box.run(ToolCall("bash", {"command": "ulimit -H -v -u -t -f; pwd; hostname"}))
        assert out.output.splitlines() == [
            "virtual memory              (kbytes, -v) 524288",
            "max user processes                  (-u) 50",
            "cpu time                   (seconds, -t) 7",
            "file size                   (blocks, -f) 2048",
            "/sandbox",
            "sandbox",
        ]
        mounts = box.run(ToolCall("bash", {"command": "cat /proc/mounts"})).output
        assert str(tmp_path) not in mounts


# ordinary commands; not ``cd ..`` above the root or ``ls /``: there isolation shows another system
STEPS = [
    "mkdir -p d/e && cd d",
    "cd $HOME/d 2>/dev/null && cd ..; pwd",
    "echo hello > f && cat f",
    "echo $((7 * 6)) >> f; wc -l f",
    "export X=$PWD/x; echo $X",
    "echo ${X:-unset}",
    "pwd; ls | sort",
    "ln -sf $HOME/f link 2>&1; readlink link; cat link",
    "stat -c '%A %N' f link 2>&1",  # not owners nor link sizes: real paths differ outside
    "printf 'a\\nb\\n' | sort -r | head -1",
    "echo $HOME; cd ~; pwd",
    "cat missing 2>&1; echo rc=$?",
    "sqlite3 db.sqlite 'CREATE TABLE IF NOT EXISTS t(a); INSERT INTO t VALUES (1)'",
    "sqlite3 db.sqlite 'SELECT count(*) FROM t' 2>&1",
]


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.sampled_from(STEPS), min_size=1, max_size=5))
def test_ordinary_commands_give_the_same_outputs_isolated_or_not(
    tmp_path_factory: pytest.TempPathFactory, steps: list[str]
) -> None:
    base = tmp_path_factory.mktemp("same")
    isolated = LocalBackend(base / "isolated" / "snapshots")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        plain = LocalBackend(base / "plain" / "snapshots", isolation=iso.Isolation(enabled=False))
    with isolated.start(RootSpec("t")) as boxed, plain.start(RootSpec("t")) as free:
        for step in steps:
            call = ToolCall("bash", {"command": step})
            assert boxed.run(call).same_as(free.run(call)), step
        snap = boxed.snapshot("s")
        with isolated.fork(snap) as fork:  # and a fork of the isolated one goes on alike
            call = ToolCall("bash", {"command": "pwd; echo $X; ls -R | sort; cat link 2>&1"})
            assert fork.run(call).same_as(free.run(call))


@pytest.mark.parametrize("supervised", [True, False], ids=["supervised", "bwrap-per-call"])
def test_both_ways_end_every_process_with_the_call(tmp_path: Path, supervised: bool) -> None:
    isolation = iso.Isolation(supervised=supervised)
    backend = LocalBackend(tmp_path / "snapshots", isolation=isolation)
    with backend.start(RootSpec("t")) as box:
        run = lambda command, **kw: box.run(ToolCall("bash", {"command": command, **kw}))  # noqa: E731
        assert run("sleep 60 & setsid sleep 61 & echo started").output == "started\n"
        assert run("ps -eo user,args | grep -c '[s]leep 6'; id -u").output == "0\n65534\n"
        slow = run("sleep 62 & echo x; sleep 30", timeout=1)
        assert slow.timed_out and slow.output.startswith("x\n")
        assert run("ps -eo args | grep -c '[s]leep 6'").output == "0\n"
        assert run("kill -9 1; kill -STOP 1; echo $?").output.endswith("1\n")  # PID 1 untouchable
        assert run("echo still").output == "still\n"
        caps = run("grep -E '^(CapEff|CapAmb|NoNewPrivs)' /proc/self/status").output.split()
        assert caps == ["CapEff:", "0" * 16, "CapAmb:", "0" * 16, "NoNewPrivs:", "1"]
        if supervised:  # PID 1 keeps exactly CAP_KILL, CAP_SETGID, CAP_SETUID
            assert run("grep CapEff /proc/1/status").output.split()[1] == "00000000000000e0"


def test_the_supervisor_ends_with_its_sandbox_and_with_the_server(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "snapshots")
    assert backend.isolation is not None and backend.isolation.uses_supervisor
    with backend.start(RootSpec("t")) as box:
        box.run(ToolCall("bash", {"command": "sleep 300 & true"}))
        supervisor = box._ctx.supervisor
        assert supervisor is not None and supervisor._proc is not None
        proc = supervisor._proc
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        assert proc.stdin is not None
        proc.stdin.close()  # what the server's death does to the request pipe
        _, alive = psutil.wait_procs(tree, timeout=10)
        assert alive == []
        # the next call starts a new supervisor
        assert box.run(ToolCall("bash", {"command": "echo again"})).output == "again\n"
        second = box._ctx.supervisor._proc  # type: ignore[union-attr]
        assert second is not None and second.pid != proc.pid
        tree = [psutil.Process(second.pid), *psutil.Process(second.pid).children(recursive=True)]
    _, alive = psutil.wait_procs(tree, timeout=10)  # closing the sandbox ends it
    assert alive == []


def test_a_supervisor_killed_from_outside_mid_call_is_an_error_not_an_observation(
    tmp_path: Path,
) -> None:
    backend = LocalBackend(tmp_path / "snapshots")
    with backend.start(RootSpec("t")) as box:
        box.run(ToolCall("bash", {"command": "true"}))
        supervisor = box._ctx.supervisor
        assert supervisor is not None and supervisor._proc is not None
        pid1 = psutil.Process(supervisor._proc.pid).children()[0]
        threading.Timer(0.5, pid1.kill).start()
        with pytest.raises(iso.IsolationError, match="ended during the call"):
            box.run(ToolCall("bash", {"command": "echo partial; sleep 5"}))
        assert box.run(ToolCall("bash", {"command": "echo fine"})).output == "fine\n"


@pytest.mark.parametrize("supervised", [True, False], ids=["supervised", "bwrap-per-call"])
def test_a_private_template_works(tmp_path: Path, supervised: bool) -> None:
    template = tmp_path / "template"
    template.mkdir(mode=0o700)  # as pytest's and mkdtemp's directories are
    (template / "data.txt").write_text("a\n")
    isolation = iso.Isolation(supervised=supervised)
    backend = LocalBackend(tmp_path / "snapshots", isolation=isolation)
    with backend.start(RootSpec("t", template=str(template))) as box:
        out = box.run(ToolCall("bash", {"command": "echo b >> data.txt; cat data.txt; pwd"}))
        assert out.output == "a\nb\n/sandbox\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root server hands files to a sandbox uid")
def test_the_sqlite_tool_hands_over_its_database_and_nothing_else(tmp_path: Path) -> None:
    """The database and its journal become the sandbox uid's, so later commands can write them;
    the rest of the sandbox is left as it is (no walk of the whole tree after every call)."""
    isolation = iso.Isolation()
    backend = LocalBackend(tmp_path / "snapshots", isolation=isolation)
    with backend.start(RootSpec("t")) as box:
        box.run(ToolCall("bash", {"command": "mkdir data"}))
        stray = box.root / "data" / "stray"
        stray.write_text("made by the server\n")  # root's, as a file the server made would be
        out = box.run(ToolCall("sqlite", {"sql": "CREATE TABLE t(x)", "db": "data/db.sqlite"}))
        assert out.exit_code == 0, out.output
        database = stray.parent / "db.sqlite"
        assert (database.stat().st_uid, stray.stat().st_uid) == (isolation.uid, 0)
        out = box.run(ToolCall("bash", {"command": "test -w data/db.sqlite && echo writable"}))
        assert out.output == "writable\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root server hands files to a sandbox uid")
def test_sqlite_hands_files_to_the_sandbox_only_when_a_call_may_have_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read the tool proved read-only left the files, owners included, as they were: nothing
    to hand over (the path checks cost every read ~0.2 ms). A write still hands over."""
    handed: list[str] = []
    real = iso.Isolation.hand_over
    monkeypatch.setattr(
        iso.Isolation, "hand_over", lambda self, path: (handed.append(path.name), real(self, path))
    )
    backend = local_backend(Settings(home=tmp_path))
    with backend.start(RootSpec("t", template=None)) as sandbox:
        sandbox.run(ToolCall("sqlite", {"sql": "CREATE TABLE t(a); INSERT INTO t VALUES (1)"}))
        assert "db.sqlite" in handed
        handed.clear()
        read = sandbox.run(ToolCall("sqlite", {"sql": "SELECT a FROM t"}))
        assert read.output == "(1,)" and read.read_only and handed == []
        write = sandbox.run(ToolCall("sqlite", {"sql": "UPDATE t SET a = 2"}))
        assert not write.read_only and "db.sqlite" in handed
        said = sandbox.run(ToolCall("bash", {"command": "test -w db.sqlite && echo ok"}))
        assert said.output.strip() == "ok"  # the sandbox uid owns what the tool made

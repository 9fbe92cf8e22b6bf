"""The local backend end to end: real bash, real sqlite3, real directory copies (no Docker)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from sandbox import (
    Backend,
    LocalBackend,
    LocalBackendError,
    LocalSandbox,
    RootSpec,
    Sandbox,
    ToolCall,
    ToolCallError,
)
from sandbox._types import Observation
from snapshots import SnapshotError, SnapshotHandle
from snapshots import directory as sdir


@pytest.fixture
def backend(tmp_path: Path) -> LocalBackend:
    return LocalBackend(tmp_path / "snapshots", max_output_bytes=2000, default_timeout=10)


@pytest.fixture
def template(tmp_path: Path) -> Path:
    root = tmp_path / "template"
    (root / "src").mkdir(parents=True)
    (root / "src" / "main.txt").write_text("hello\n")
    (root / "run.sh").write_text("echo run\n")
    (root / "run.sh").chmod(0o755)
    return root


@pytest.fixture
def box(backend: LocalBackend, template: Path) -> Iterator[LocalSandbox]:
    with backend.start(RootSpec("task", template=str(template))) as sandbox:
        yield sandbox


def sh(sandbox: Sandbox, command: str, **args: object) -> Observation:
    return sandbox.run(ToolCall("bash", {"command": command, **args}))


def sql(sandbox: Sandbox, text: str, **args: object) -> Observation:
    return sandbox.run(ToolCall("sqlite", {"sql": text, **args}))


def test_implements_the_protocols(backend: LocalBackend, box: LocalSandbox) -> None:
    assert isinstance(backend, Backend) and isinstance(box, Sandbox)
    assert backend.name == "local" and set(backend.tool_specs()) == {"bash", "sqlite"}
    assert sh(box, "cat src/main.txt; ./run.sh").output == "hello\nrun\n"


# --------------------------------------------------------------------------- fork independence


def test_forks_are_independent(backend: LocalBackend, box: LocalSandbox) -> None:
    sh(box, "echo base > f.txt")
    sql(box, "CREATE TABLE t(x); INSERT INTO t VALUES (1)")
    snap = box.snapshot("s1")
    assert snap.level == "fs" and snap.backend == "local" and snap.size_bytes > 0
    with backend.fork(snap) as a, backend.fork(snap) as b:
        sh(a, "echo A >> f.txt; echo new > only-a.txt; echo x >> src/main.txt")
        sql(a, "INSERT INTO t VALUES (2)")
        assert sh(b, "cat f.txt src/main.txt; ls").output == (
            "base\nhello\ndb.sqlite\nf.txt\nrun.sh\nsrc\n"
        )
        assert sql(b, "SELECT x FROM t").output == "(1,)"
        assert sql(a, "SELECT x FROM t").output == "(1,)\n(2,)"
        with backend.fork(snap) as c:  # the snapshot itself is untouched
            assert sh(c, "cat f.txt; test -e only-a.txt || echo absent").output == "base\nabsent\n"
    assert sh(box, "cat f.txt").output == "base\n"
    assert sql(box, "SELECT count(*) FROM t").output == "(1,)"


def test_writes_in_source_after_snapshot_do_not_reach_it(
    backend: LocalBackend, box: LocalSandbox
) -> None:
    sh(box, "echo 1 > f")
    snap = box.snapshot("s")
    sh(box, "echo 2 > f; rm run.sh")
    with backend.fork(snap) as fork:
        assert sh(fork, "cat f; ls run.sh").output == "1\nrun.sh\n"


def test_absolute_symlinks_into_the_sandbox_follow_the_copy(
    backend: LocalBackend, template: Path
) -> None:
    (template / "tlink").symlink_to(template / "src")
    look = "ls -l --time-style=+%s; readlink abs tlink"
    with backend.start(RootSpec("t", template=str(template))) as box:
        sh(box, 'ln -s "$PWD/src" abs && ln -s src rel && touch -h -d 2020-01-01 abs')
        listing = sh(box, look).output
        assert listing.endswith("/sandbox/src\n/sandbox/src\n")
        with backend.fork(box.snapshot("s")) as fork:
            assert sh(fork, look).output == listing  # same links, same times
            sh(fork, "echo leak > abs/a; echo leak > tlink/b; echo leak > rel/c")
            assert sh(fork, "ls src").output == "a\nb\nc\nmain.txt\n"
        assert sh(box, "ls src").output == "main.txt\n"
        assert sorted(p.name for p in (template / "src").iterdir()) == ["main.txt"]


# ---------------------------------------------------------------------------------- shell state


def test_cd_and_export_persist_across_calls_and_forks(
    backend: LocalBackend, box: LocalSandbox
) -> None:
    sh(box, "mkdir -p a/b && cd a/b && export GREETING='hi there' P=$PWD")
    assert sh(box, 'pwd; echo "$GREETING"; echo $P').output == (
        "/sandbox/a/b\nhi there\n/sandbox/a/b\n"
    )
    sh(box, "unset GREETING; cd ..")
    assert sh(box, 'pwd; echo "${GREETING-unset}"; cd - >/dev/null; pwd').output == (
        "/sandbox/a\nunset\n/sandbox/a/b\n"
    )
    snap = box.snapshot("s")
    with backend.fork(snap) as fork:
        out = sh(fork, 'pwd; echo "${GREETING-unset}" $P $HOME; test "$P" = "$(pwd)" && echo real')
        assert out.output == "/sandbox/a/b\nunset /sandbox/a/b /sandbox\nreal\n"


def test_exit_keeps_state_and_code(box: LocalSandbox) -> None:
    assert sh(box, "cd src; export X=1; exit 7").exit_code == 7
    assert sh(box, "pwd; echo $X").output == "/sandbox/src\n1\n"


def test_functions_aliases_and_unexported_variables_do_not_persist(box: LocalSandbox) -> None:
    """Documented: each call is a fresh bash; only cwd and exported variables carry over."""
    sh(box, "f() { echo f; }; alias ll=ls; Y=1")
    out = sh(box, 'type f >/dev/null 2>&1 || echo nofunc; echo "${Y-unset}"')
    assert out.output == "nofunc\nunset\n"


def test_stdout_stderr_merged_in_order_stdin_empty(box: LocalSandbox) -> None:
    out = sh(box, "echo 1; echo 2 >&2; echo 3; cat; nosuchcmd")
    assert out.output == "1\n2\n3\nbash: line 1: nosuchcmd: command not found\n"
    assert out.exit_code == 127


def test_same_history_same_output_in_two_forks(backend: LocalBackend, box: LocalSandbox) -> None:
    sh(box, "mkdir d && cd d && touch -d 2020-01-01 x && export W=$PWD/x")
    snap = box.snapshot("s")
    history = ["pwd; echo $HOME $W", "ls -l; realpath x", "cd ..; ls -la d | tail -n 1; pwd"]
    with backend.fork(snap) as a, backend.fork(snap) as b:
        assert a.root != b.root
        outputs_a = [sh(a, c).output for c in history]
        outputs_b = [sh(b, c).output for c in history]
    assert outputs_a == outputs_b
    assert outputs_a[0] == "/sandbox/d\n/sandbox /sandbox/d/x\n"


# ------------------------------------------------------------------------ timeouts and caps


def _gone(command: str) -> bool:
    """No host process runs ``command`` (commands see only their own PID namespace, so the
    sandbox cannot name its processes by host pid)."""
    for _ in range(50):
        alive = [
            p
            for p in psutil.process_iter(["cmdline", "status"])
            if p.info["cmdline"] == command.split() and p.info["status"] != psutil.STATUS_ZOMBIE
        ]
        if not alive:
            return True
        time.sleep(0.02)
    return False


def _unique_sleep() -> str:
    return f"sleep {3000 + uuid.uuid4().int % 10**6}"


def test_timeout_kills_the_group_and_sandbox_stays_usable(box: LocalSandbox) -> None:
    start = time.monotonic()
    sleep = _unique_sleep()
    out = sh(box, f"{sleep} & echo started; sleep 30", timeout=1)
    assert time.monotonic() - start < 2.5
    assert out.timed_out and out.exit_code == 124
    assert out.output.startswith("started\n") and "timed out after 1 s" in out.output
    assert _gone(sleep)
    assert sh(box, "echo ok").output == "ok\n"


def test_background_children_do_not_block_or_survive(box: LocalSandbox) -> None:
    start = time.monotonic()
    sleep = _unique_sleep()
    out = sh(box, f"{sleep} & echo done")
    assert time.monotonic() - start < 2 and out.output == "done\n" and not out.timed_out
    assert _gone(sleep)


def test_run_timeout_argument_and_validation(box: LocalSandbox) -> None:
    out = box.run(ToolCall("bash", {"command": "sleep 5"}), timeout=0.3)
    assert out.timed_out
    with pytest.raises(ToolCallError, match="timeout"):
        sh(box, "true", timeout=-1)


def test_output_is_capped_with_visible_marker(box: LocalSandbox) -> None:
    out = sh(box, "head -c 5000 /dev/zero | tr '\\0' a")
    assert out.truncated and out.output.startswith("a" * 2000)
    assert "[tvcache: output truncated to 2000 of 5000 bytes]" in out.output
    flood = sh(box, "yes", timeout=1)  # memory stays bounded while a command floods
    assert flood.truncated and flood.timed_out and len(flood.output) < 2500


# --------------------------------------------------------------------------------------- sqlite


def test_sqlite_formats_rows_and_writes_persist(box: LocalSandbox) -> None:
    assert sql(box, "CREATE TABLE p(name TEXT, n INT)").output == "OK, 0 rows changed"
    assert sql(box, "INSERT INTO p VALUES ('Alice', 3), ('Bob', NULL)").output == (
        "OK, 2 rows changed"
    )
    assert sql(box, "SELECT * FROM p ORDER BY name").output == "('Alice', 3)\n('Bob', None)"
    assert sql(box, "SELECT * FROM p WHERE n > 10").output == ""
    assert sql(box, "UPDATE p SET n = 4 WHERE name = 'Alice'; SELECT n FROM p").output == (
        "(4,)\n(None,)"
    )
    assert sh(box, "ls").output == "db.sqlite\nrun.sh\nsrc\n"


def test_sqlite_errors_are_observations(box: LocalSandbox, tmp_path: Path) -> None:
    bad = sql(box, "SELEC 1")
    assert (bad.output, bad.exit_code) == ('Error: near "SELEC": syntax error', 1)
    assert sql(box, "SELECT * FROM nope").output == "Error: no such table: nope"
    sh(box, "echo 'not sql' > notes.sqlite")
    broken = sql(box, "SELECT * FROM sqlite_master", db="notes.sqlite")
    assert broken.exit_code == 1 and "'notes.sqlite' is not a SQLite database" in broken.output
    for outside in ("../x.sqlite", "/etc/passwd", str(tmp_path / "x.sqlite")):
        escaped = sql(box, "SELECT 1", db=outside)
        assert escaped.exit_code == 1 and "outside the sandbox" in escaped.output
    sh(box, f"ln -s {tmp_path} link")
    assert "outside the sandbox" in sql(box, "SELECT 1", db="link/x.sqlite").output


def test_sqlite_timeout_interrupts(box: LocalSandbox) -> None:
    forever = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    )
    start = time.monotonic()
    out = sql(box, forever, timeout=0.5)
    assert out.timed_out and out.exit_code == 124 and time.monotonic() - start < 1.5
    assert sql(box, "SELECT 1").output == "(1,)"


def test_sqlite_default_db_option_and_env_option(backend: LocalBackend) -> None:
    spec = RootSpec("t", options={"sqlite_db": "data/app.db", "env": {"MODE": "test"}})
    with backend.start(spec) as box:
        sh(box, "mkdir data")
        sql(box, "CREATE TABLE t(x)")
        assert sh(box, "ls data; echo $MODE").output == "app.db\ntest\n"
        with backend.fork(box.snapshot("opt")) as fork:
            assert sql(fork, "SELECT name FROM sqlite_master").output == "('t',)"
    with pytest.raises(LocalBackendError, match="unknown local backend option"):
        backend.start(RootSpec("t", options={"sqlite": "x"}))


def test_unknown_tool_and_bad_args_are_clear_errors(box: LocalSandbox) -> None:
    with pytest.raises(ToolCallError, match=r"unknown tool 'python'.*bash, sqlite"):
        box.run(ToolCall("python", {"code": "1"}))
    with pytest.raises(ToolCallError, match="needs argument"):
        box.run(ToolCall("bash", {}))


# ------------------------------------------------------------------- snapshots and reconcile


def test_snapshot_is_atomic_and_failed_one_leaves_nothing(
    backend: LocalBackend, box: LocalSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(src: Path, dst: Path) -> None:
        dst.mkdir()
        (dst / "half").write_text("x")
        raise SnapshotError("disk full")

    monkeypatch.setattr(sdir, "copy_tree", boom)
    with pytest.raises(SnapshotError):
        box.snapshot("s")
    assert list(backend.snapshot_dir.iterdir()) == []
    monkeypatch.undo()
    box.snapshot("s")
    with pytest.raises(SnapshotError, match="already exists"):
        box.snapshot("s")
    with pytest.raises(SnapshotError, match="not a safe file name"):
        box.snapshot("../evil")


def test_reconcile_removes_orphans_and_reports_missing(
    backend: LocalBackend, box: LocalSandbox
) -> None:
    kept, orphan = box.snapshot("kept"), box.snapshot("orphan")
    ghost = SnapshotHandle("ghost", "local", "fs", "/nowhere", 0)
    leftover = backend.snapshot_dir / ".tmp-crashed"  # a crash mid-snapshot
    (leftover / "home").mkdir(parents=True)
    foreign = backend.snapshot_dir / "not-ours"
    foreign.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = backend.work_dir / "local-stale"
    (stale / "home").mkdir(parents=True)
    (stale / "owner").write_text(f"{dead.pid} 1.000")
    other = SnapshotHandle("img", "docker", "fs", "x", 0)

    report = backend.reconcile({"kept": kept, "ghost": ghost, "img": other})

    assert sorted(report.orphans_removed) == [".tmp-crashed", "orphan", "sandbox:local-stale"]
    assert report.missing == ["ghost"]
    assert sorted(p.name for p in backend.snapshot_dir.iterdir()) == ["kept", "not-ours"]
    assert box.root.exists() and not stale.exists()
    with pytest.raises(SnapshotError, match="missing"):
        backend.fork(orphan)


def test_reconcile_judges_only_its_own_home_on_a_shared_store(
    tmp_path: Path, backend: LocalBackend, box: LocalSandbox
) -> None:
    """Servers sharing one store, each with its own snapshot directory: a server starting up
    reports missing only the snapshots it took (or records from before homes), never another
    server's, which stay forkable there."""
    kept, gone = box.snapshot("a-kept"), box.snapshot("a-gone")
    sdir.delete_tree(Path(gone.location))
    old = SnapshotHandle("old", "local", "fs", "/nowhere", 0)  # a record without a home
    known = {"a-kept": kept, "a-gone": gone, "old": old}
    other = LocalBackend(tmp_path / "other-snapshots", default_timeout=10)

    assert other.reconcile(known).missing == ["old"]
    assert backend.reconcile(known).missing == ["a-gone", "old"]
    with backend.fork(kept) as fork:
        assert sh(fork, "cat src/main.txt").output == "hello\n"


def test_delete_and_close_are_idempotent(backend: LocalBackend, box: LocalSandbox) -> None:
    snap = box.snapshot("s")
    sh(box, "mkdir locked && chmod 000 locked")
    backend.delete_snapshot(snap)
    backend.delete_snapshot(snap)
    assert not Path(snap.location).exists()
    root = box.root
    box.close()
    box.close()
    assert not root.parent.exists()
    with pytest.raises(LocalBackendError, match="closed"):
        sh(box, "true")


def test_a_close_does_not_wait_for_the_deletion_and_the_backend_close_does(
    backend: LocalBackend, template: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = backend.start(RootSpec("task", template=str(template)))
    sh(box, "mkdir locked && echo x > locked/f && chmod 000 locked")
    root = box.root
    may_delete = threading.Event()
    real_delete = sdir.delete_tree

    def slow_delete(path: Path) -> None:
        may_delete.wait(30)
        real_delete(path)

    monkeypatch.setattr(sdir, "delete_tree", slow_delete)
    closer = threading.Thread(target=box.close)
    closer.start()
    closer.join(10)
    assert not closer.is_alive(), "close waited for the sandbox's files to be deleted"
    assert not root.parent.exists()  # gone under its name at once: nothing can reach it
    trash = [p for p in backend.work_dir.iterdir() if p.name.startswith(sdir.TMP_PREFIX)]
    assert len(trash) == 1 and root.parent.name in trash[0].name
    may_delete.set()
    backend.close()
    assert list(backend.work_dir.iterdir()) == []
    backend.close()  # idempotent, and the backend still serves
    with backend.start(RootSpec("task", template=str(template))) as again:
        assert sh(again, "cat src/main.txt").output == "hello\n"
    backend.close()
    assert list(backend.work_dir.iterdir()) == []


def test_trash_a_crash_left_is_removed_by_reconcile_of_another_process(
    backend: LocalBackend, template: Path
) -> None:
    # the process dies after a close, before its background deleter ran
    code = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "import sandbox.local\n"
        "sandbox.local._delete_logged = lambda doomed: None\n"
        "backend = sandbox.local.LocalBackend(Path(sys.argv[1]))\n"
        "backend.start(sandbox.local.RootSpec('task', template=sys.argv[2])).close()\n"
        "os._exit(0)\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(backend.snapshot_dir), str(template)], check=True
    )
    left = list(backend.work_dir.iterdir())
    assert len(left) == 1 and left[0].name.startswith(sdir.TMP_PREFIX)
    report = backend.reconcile({})
    assert report.orphans_removed == [left[0].name]
    assert list(backend.work_dir.iterdir()) == []


def test_snapshot_record_and_handle(backend: LocalBackend, box: LocalSandbox) -> None:
    sh(box, "cd src")
    snap = box.snapshot("s")
    assert snap.meta == {"cwd": "src", "home": backend.home}
    assert SnapshotHandle.from_json(snap.to_json()) == snap
    record = json.loads((Path(snap.location) / "sandbox.json").read_text())
    assert record["shell"]["cwd"] == "src" and str(box.root) not in record["shell"]["env"]
    assert snap.size_bytes == sdir.size_on_disk(Path(snap.location))


# ---------------------------------------------------------------------------- root identity


def test_root_identity_follows_content(
    backend: LocalBackend, template: Path, tmp_path: Path
) -> None:
    spec = RootSpec("t", template=str(template))
    first = backend.root_identity(spec)
    copy = tmp_path / "copy"
    sdir.copy_tree(template, copy)
    os.utime(copy / "run.sh", (0, 0))  # times do not matter, content does
    assert backend.root_identity(RootSpec("t", template=str(copy))) == first
    (template / "src" / "main.txt").write_text("hellO\n")
    second = backend.root_identity(spec)
    (template / "run.sh").chmod(0o644)
    third = backend.root_identity(spec)
    (template / "new").mkdir()
    fourth = backend.root_identity(spec)
    assert len({first, second, third, fourth}) == 4
    assert backend.root_identity(RootSpec("t")) != first


def test_missing_template_is_a_clear_error(backend: LocalBackend, tmp_path: Path) -> None:
    spec = RootSpec("t", template=str(tmp_path / "nope"))
    with pytest.raises(LocalBackendError, match=r"template directory .* does not exist"):
        backend.root_identity(spec)
    with pytest.raises(LocalBackendError):
        backend.start(spec)
    with pytest.raises(LocalBackendError, match="backend 'docker'"):
        backend.start(RootSpec("t", backend="docker"))


def test_empty_template_and_doctor(backend: LocalBackend) -> None:
    with backend.start(RootSpec("t")) as box:
        assert sh(box, "ls -A; pwd").output == "/sandbox\n"
    checks = {c.name: c for c in backend.doctor()}
    assert checks["local: bash"].ok and checks["local: storage"].ok
    assert checks["local: reflink"].detail.split(":")[0] in {"yes", "no"}


def test_copy_tree_is_independent_not_hard_linked(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("1")
    sdir.copy_tree(src, tmp_path / "dst")
    assert (tmp_path / "dst" / "f").stat().st_ino != (src / "f").stat().st_ino
    (tmp_path / "dst" / "f").write_text("2")
    assert (src / "f").read_text() == "1"

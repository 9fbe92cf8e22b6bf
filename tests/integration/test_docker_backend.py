"""The Docker backend end to end: a real daemon, real CRIU, the tvcache base image.

The fixtures (``docker_env``) skip without a daemon, fail under CI, and check that each test's
store is left empty.
Measurements print with ``pytest -s -k measurements``.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
import pytest
from docker_env import BackendFactory, cgroup_limits, sh, start

from sandbox import Backend, LocalBackend, RootSpec, Sandbox, ToolCall
from sandbox.docker import DEFAULT_IMAGE, DockerBackendError, Level
from snapshots import (
    SnapshotError,
    SnapshotHandle,
    SnapshotRefusedError,
)
from snapshots.docker_fs import LABEL_STORE

pytestmark = pytest.mark.docker


# ------------------------------------------------------------------------------------- basics


def test_implements_the_protocols_and_local_tool_specs(make_backend: BackendFactory) -> None:
    backend = make_backend()
    local = LocalBackend(backend.snapshot_dir.parent / "local" / "snapshots")
    assert isinstance(backend, Backend) and backend.name == "docker"
    assert dict(backend.tool_specs()) == dict(local.tool_specs())
    with start(backend) as box:
        assert isinstance(box, Sandbox) and isinstance(box.fingerprint(), str)
        out = sh(box, "echo out; echo err >&2; hostname; exit 3")
        assert (out.output, out.exit_code) == ("out\nerr\nsandbox\n", 3)
        assert sh(box, "cat /sys/class/net/*/address 2>/dev/null | wc -l").output == "1\n"


def test_root_identity_is_the_image_id(make_backend: BackendFactory, api: Any) -> None:
    backend = make_backend()
    image_id = api.inspect_image(DEFAULT_IMAGE)["Id"]
    assert backend.root_identity(RootSpec("t", backend="docker")) == f"docker:{image_id}"
    with pytest.raises(DockerBackendError, match=r"does not exist.*build or import"):
        backend.root_identity(RootSpec("t", backend="docker", template="tvcache/nope:0"))
    with pytest.raises(DockerBackendError, match="unknown docker backend option"):
        start(backend, gpus=1)


def test_options_set_limits_and_env(make_backend: BackendFactory, api: Any) -> None:
    options: dict[str, Any] = {"memory": "256m", "pids": 64, "cpus": 0.5, "file_mb": 3}
    with start(make_backend(), **options, env={"GREETING": "hi"}) as box:
        assert cgroup_limits(box) == (256 << 20, 64, 50_000, ["lo"])
        assert sh(box, "echo $GREETING").output == "hi\n"
        assert sh(box, "ulimit -H -f; ulimit -HS -f unlimited").output.startswith("3072\n")
        sh(box, "head -c 5M /dev/zero > big")
        assert sh(box, "stat -c %s big").output == f"{3 << 20}\n"  # one file cannot fill the disk


def test_sqlite_matches_the_local_backend(make_backend: BackendFactory, tmp_path: Path) -> None:
    local = LocalBackend(tmp_path / "local" / "snapshots", max_output_bytes=300)
    script = [
        "CREATE TABLE t(x, y); INSERT INTO t VALUES (1, 'a'), (2, NULL)",
        "SELECT * FROM t ORDER BY x",
        "SELECT * FROM t WHERE x > 5",
        "SELECT * FROM missing",
        "UPDATE t SET y = 'b'; SELECT count(*) FROM t",
        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c LIMIT 200) SELECT * FROM c",
    ]
    with (
        start(make_backend(max_output_bytes=300)) as box,
        local.start(RootSpec("t")) as here,
    ):
        for sql in script:
            call = ToolCall("sqlite", {"sql": sql})
            ours, theirs = box.run(call), here.run(call)
            assert ours.same_as(theirs), sql
            assert ours.read_only == theirs.read_only, sql
        other = ToolCall("sqlite", {"sql": "SELECT 1", "db": "sub/other.db"})
        assert box.run(other).same_as(here.run(other))


def test_output_is_capped_with_a_marker(make_backend: BackendFactory) -> None:
    with start(make_backend(max_output_bytes=2000)) as box:
        out = sh(box, "head -c 100000 /dev/zero | tr '\\0' a")
        assert out.truncated and out.output.startswith("a" * 2000)
        assert "[tvcache: output truncated to 2000 of 100000 bytes]" in out.output


# ------------------------------------------------------------------------------ shell state


def test_shell_state_persists_between_calls(make_backend: BackendFactory) -> None:
    with start(make_backend()) as box:
        sh(box, "mkdir -p /w/a && cd /w/a && export G='hi there' && U=local && f() { echo f$1; }")
        assert sh(box, 'pwd; echo "$G" $U; f 1').output == "/w/a\nhi there local\nf1\n"
        assert sh(box, "cd /tmp; export X=1; exit 7").exit_code == 7
        assert sh(box, "pwd; echo $X; f 2").output == "/tmp\n1\nf2\n"  # restarted from state


def test_the_whole_shell_state_survives_a_snapshot(
    make_backend: BackendFactory, level: Level
) -> None:
    backend = make_backend(level)
    setup = (
        "mkdir -p /w/b && cd /w/b && export G='a b' && U='u v' && declare -a A=(1 '2 3') "
        "&& declare -i N=4 && f() { echo f$1; } && set -o pipefail && shopt -s extglob "
        "&& shopt -s expand_aliases && alias hi='echo hi' && umask 027"
    )
    probe = (
        'pwd; echo "$G|$U|${A[1]}|$N"; N+=1; echo $N; f 3; false | true; echo $?; '
        "shopt -q extglob && echo extglob; hi; umask; cd - >/dev/null; pwd"
    )
    with start(backend) as box:
        sh(box, setup)
        snap = box.snapshot(f"s-{level}")
        assert snap.level == level and snap.size_bytes > 0
        expected = sh(box, probe).output
        assert expected == "/w/b\na b|u v|2 3|4\n5\nf3\n1\nextglob\nhi\n0027\n/work\n"
        with backend.fork(snap) as fork:
            assert fork.restore_fallback is None
            assert sh(fork, probe).output == expected


def test_forks_are_independent(make_backend: BackendFactory, level: Level) -> None:
    backend = make_backend(level)
    with start(backend) as box:
        # level fs refuses a state with running processes (it would lose them)
        sh(box, "echo base > /work/f" + ("; sleep 600 &" if level == "full" else ""))
        snap = box.snapshot("s1")
        with backend.fork(snap) as a, backend.fork(snap) as b:
            sh(a, "echo A >> /work/f; touch /work/only-a; rm /etc/issue")
            assert sh(b, "cat /work/f; ls /work /etc/issue").output == (
                "base\n/etc/issue\n\n/work:\nf\n"
            )
            assert sh(a, "cat /work/f").output == "base\nA\n"
            sh(b, "echo B > /work/f")
            with backend.fork(snap) as c:
                assert sh(c, "cat /work/f; ls /work").output == "base\nf\n"
        sh(box, "echo after >> /work/f")
        assert sh(box, "cat /work/f; ls /work").output == "base\nafter\nf\n"
        with backend.fork(snap) as d:
            assert sh(d, "cat /work/f").output == "base\n"


# --------------------------------------------------------------------------------- processes


COUNTER = (
    "(i=0; while :; do i=$((i+1)); echo $i > /tmp/n.new; mv /tmp/n.new /tmp/n; sleep 0.05; done) &"
)
"""A background counter in /tmp/n, replaced atomically: a reader never sees it half written."""


def test_processes_keep_running_in_a_full_fork(
    make_backend: BackendFactory, full_runtime: str
) -> None:
    backend = make_backend("full")
    with start(backend) as box:
        sh(box, COUNTER)
        sh(box, "cd /srv 2>/dev/null || mkdir -p /srv && cd /srv && echo page > index.html")
        sh(box, "python3 -m http.server 8000 --bind 127.0.0.1 >/dev/null 2>&1 &")
        wait = "for i in $(seq 200); do curl -s localhost:8000/index.html && break; sleep 0.1; done"
        assert "page" in sh(box, wait).output  # python starts slowly under load
        at_snapshot = int(sh(box, "cat /tmp/n").output)
        snap = box.snapshot("s")
        assert snap.level == "full", snap.meta.get("full_failure")  # CRIU < 4.2: sockets fail
        with backend.fork(snap) as fork:
            assert fork.restore_fallback is None and fork.boot_id == box.boot_id
            first = int(sh(fork, "cat /tmp/n").output)
            later = int(sh(fork, "sleep 0.3; cat /tmp/n").output)
            assert at_snapshot <= first < later  # continues, never restarts from 1
            assert sh(fork, "curl -s localhost:8000/index.html").output == "page\n"
            assert "python3 -m http.server" in sh(fork, "jobs").output
        assert sh(box, "curl -s localhost:8000/index.html").output == "page\n"


def test_concurrent_forks_of_one_checkpoint(
    make_backend: BackendFactory, full_runtime: str
) -> None:
    backend = make_backend("full")
    with start(backend) as box:
        sh(box, "sleep 600 &")
        snap = box.snapshot("s")
    with ThreadPoolExecutor(3) as pool:
        forks = list(pool.map(lambda _: backend.fork(snap), range(3)))
    try:
        assert [f.restore_fallback for f in forks] == [None, None, None]
        assert all("sleep 600" in sh(f, "jobs").output for f in forks)
    finally:
        for fork in forks:
            fork.close()


def test_forks_of_forks(make_backend: BackendFactory, level: Level) -> None:
    backend = make_backend(level)
    box = start(backend)
    if level == "full":  # level fs refuses to snapshot running processes
        sh(box, COUNTER)
    handles: list[SnapshotHandle] = []
    for generation in range(11):
        sh(box, f"mkdir -p /g/{generation} && cd /g/{generation} && echo {generation} >> /g/log")
        sh(box, f"export GEN={generation}")
        handles.append(box.snapshot(f"gen-{generation}"))
        box.close()
        box = backend.fork(handles[-1])
        assert box.restore_fallback is None
    with box:
        out = sh(box, "pwd; echo $GEN; paste -sd, /g/log")
        assert out.output == "/g/10\n10\n" + ",".join(map(str, range(11))) + "\n"
        if level == "full":
            alive = sh(box, "a=$(cat /tmp/n); sleep 0.3; b=$(cat /tmp/n); [ $b -gt $a ] && echo on")
            assert alive.output == "on\n"
        assert handles[-1].meta["depth"] == handles[0].meta["depth"] + 10
    for handle in handles:
        backend.delete_snapshot(handle)


def test_trajectory_of_200_calls_flattens_images(
    make_backend: BackendFactory, store: Path, api: Any
) -> None:
    """A commit at every call and a fork after two calls of three: 134 forks stack 134 layers
    (Docker fails at 125) unless flattened; ``flatten_depth=60`` makes the chain cross it twice.
    The container forked from a snapshot at depth 60 flattens each of its commits (two here).
    """
    backend = make_backend("fs", flatten_depth=60)
    box, previous = start(backend), None
    started = time.perf_counter()
    for step in range(200):
        sh(box, f"echo {step} >> /work/log")
        handle = box.snapshot(f"step-{step}")
        assert handle.meta["depth"] <= backend.flatten_depth
        if previous is not None:
            backend.delete_snapshot(previous)  # the chain's images stay while children need them
        previous = handle
        if step % 3 != 2:
            box.close()
            box = backend.fork(handle)
    with box:
        assert sh(box, "wc -l < /work/log; tail -1 /work/log").output == "200\n199\n"
    assert previous is not None
    backend.delete_snapshot(previous)  # the last one: Docker prunes the untagged chain with it
    assert api.images(all=True, filters={"label": f"{LABEL_STORE}={store}"}) == []
    if backend.runc is None:
        assert (backend.counters["forks"], backend.counters["flattens"]) == (134, 4)
    else:  # layers flatten in the background from half the depth on; none is left
        backend.close()
        assert backend.counters["forks"] == 134 and backend.counters["flattens"] >= 4
        assert backend.runc.layers.layers() == []
    print(f"\n200 calls, 200 snapshots, 134 forks: {time.perf_counter() - started:.1f} s")


# ----------------------------------------------------------------------------------- timeouts


def test_timeout_ends_the_command_not_the_sandbox(make_backend: BackendFactory) -> None:
    with start(make_backend()) as box:
        sh(box, "cd /tmp; export KEEP=1; sleep 600 &")
        started = time.perf_counter()
        out = sh(box, "cd /; export LOST=1; echo before; sleep 30", timeout=2)
        assert 2 <= time.perf_counter() - started < 3.5
        assert out.timed_out and out.exit_code == 124 and out.output.startswith("before\n")
        after = sh(box, "pwd; echo $KEEP ${LOST-unset}; pgrep -fc 'sleep 600'; pgrep -c -x sleep")
        assert after.output == "/tmp\n1 unset\n1\n1\n"  # the earlier job survives, sleep 30 not
        spin = sh(box, "while :; do :; done", timeout=1)  # a builtin loop: the shell itself
        assert spin.timed_out and sh(box, "echo ok").output == "ok\n"
        assert box._backend.counters["timeouts"] == 2


# ---------------------------------------------------------------------------- restore proofs


def test_a_restore_that_cannot_prove_itself_falls_back(
    make_backend: BackendFactory, full_runtime: str
) -> None:
    backend = make_backend("full")
    with start(backend) as box:
        sh(box, "cd /tmp; export K=v; echo data > /tmp/f")
        snap = box.snapshot("s")
        sh(box, "sleep 600 &")
        with_process = box.snapshot("p")
    tampered = replace(snap, meta={**snap.meta, "boot": "not-the-boot-id"})
    with backend.fork(tampered) as fork:
        assert fork.restore_fallback is not None and "not restored" in fork.restore_fallback
        assert sh(fork, "pwd; echo $K; cat f; jobs | wc -l").output == "/tmp\nv\ndata\n0\n"
    pages = list((backend.snapshot_dir / snap.meta["checkpoint"]).rglob("pages-*.img"))
    assert pages
    for image in pages:
        image.unlink()
    with backend.fork(snap) as fork:
        assert fork.restore_fallback is not None and "restore" in fork.restore_fallback
        assert sh(fork, "pwd; echo $K; cat f").output == "/tmp\nv\ndata\n"
    # a checkpoint that held a background process cannot fall back faithfully: the fork fails
    # (the engine then forks an earlier snapshot and replays)
    tampered = replace(with_process, meta={**with_process.meta, "boot": "not-the-boot-id"})
    with pytest.raises(SnapshotError, match="cannot come back"):
        backend.fork(tampered)
    assert backend.counters["full_restore_fallbacks"] == 3
    assert backend.fallback_reasons == {"not_restored": 2, "restore_failed": 1}
    backend.delete_snapshot(snap)
    backend.delete_snapshot(with_process)


def test_a_checkpoint_criu_refuses_is_refused_when_processes_would_be_lost(
    make_backend: BackendFactory, api: Any, full_runtime: str
) -> None:
    backend = make_backend("full")
    with start(backend) as box:
        sh(box, "python3 -m http.server 8000 --bind 127.0.0.1 >/dev/null 2>&1 & sleep 0.5")
        # an open TCP connection (once the server listens: python starts slowly under load)
        sh(box, "until exec 5<>/dev/tcp/127.0.0.1/8000; do sleep 0.1; done 2>&-; echo data > f")
        with pytest.raises(SnapshotRefusedError, match="established TCP"):
            box.snapshot("s")
        assert backend.counters["full_snapshot_fallbacks"] == 1
        assert sh(box, "cat f; jobs | wc -l").output == "data\n1\n"  # the source is untouched
    label = f"{LABEL_STORE}={backend.snapshot_dir}"
    assert api.images(filters={"label": label}) == []  # the fs-only image was removed


# ------------------------------------------------------------------------------------ orphans

_CRASHER = """
import sys, time
from pathlib import Path
from sandbox import RootSpec, ToolCall
from sandbox.docker import DockerBackend
backend = DockerBackend(Path(sys.argv[1]), "full", runtime="docker")
box = backend.start(RootSpec("t", backend="docker"))
box.run(ToolCall("bash", {"command": "echo x > /work/x; sleep 600 &"}))
handle = box.snapshot("orphan")
print(box.sandbox_id, handle.location, flush=True)
time.sleep(600)
"""


def test_reconcile_removes_what_a_killed_process_left(
    make_backend: BackendFactory, store: Path, api: Any
) -> None:
    crasher = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_CRASHER), str(store)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert crasher.stdout is not None
    name, ref = crasher.stdout.readline().split()
    os.kill(crasher.pid, signal.SIGKILL)
    crasher.wait()
    survivor = make_backend()
    mine = start(survivor)  # a live sandbox of a live owner: kept
    foreign = api.create_container(DEFAULT_IMAGE, ["true"])["Id"]  # no labels: never touched
    try:
        assert api.inspect_container(name)["State"]["Running"]
        report = make_backend().reconcile({})
        assert sorted(report.orphans_removed) == [
            "checkpoint:orphan",
            f"container:{name}",  # with its protocol directory
            "image:orphan",
        ]
        assert not (survivor.work_dir / name).exists()
        assert api.containers(all=True, filters={"name": name}) == []
        assert not api.images(name=ref) and not (store / "orphan").exists()
        assert psutil.pid_exists(mine.init_pid)
        assert api.inspect_container(foreign)["Id"] == foreign
    finally:
        mine.close()
        api.remove_container(foreign, force=True)


def test_reconcile_reports_missing_and_keeps_known(make_backend: BackendFactory) -> None:
    backend = make_backend("full")
    with start(backend) as box:
        kept, gone = box.snapshot("kept"), box.snapshot("gone")
    backend.delete_snapshot(gone)
    report = make_backend().reconcile({"a": kept, "b": gone})
    assert report.orphans_removed == [] and report.missing == ["gone"]
    with backend.fork(kept) as fork:
        assert fork.restore_fallback is None
    backend.delete_snapshot(kept)


def test_doctor_finds_everything_working(make_backend: BackendFactory) -> None:
    checks = make_backend().doctor()
    assert [c.name for c in checks if not c.ok] == [], checks
    assert {"docker: fingerprints", "docker: level full"} <= {c.name for c in checks}


# ------------------------------------------------------------------------------- measurements


def test_measurements(make_backend: BackendFactory) -> None:
    """Snapshot and fork p50 at each level (10 samples), per-call overhead of ``bash true``."""
    lines = []
    for level in ("fs", "full"):
        backend = make_backend(level)
        with start(backend) as box:
            sh(box, "echo data > /work/f" + ("; sleep 600 &" if level == "full" else ""))
            snaps, forks = [], []
            for index in range(10):
                started = time.perf_counter()
                handle = box.snapshot(f"m-{level}-{index}")
                snaps.append(time.perf_counter() - started)
                started = time.perf_counter()
                fork = backend.fork(handle)
                forks.append(time.perf_counter() - started)
                assert fork.restore_fallback is None
                fork.close()
                backend.delete_snapshot(handle)
            calls = []
            for _ in range(100):
                started = time.perf_counter()
                sh(box, "true")
                calls.append(time.perf_counter() - started)
            lines.append(
                f"{level:4}: snapshot p50 {statistics.median(snaps) * 1000:4.0f} ms, "
                f"fork p50 {statistics.median(forks) * 1000:4.0f} ms, "
                f"size {handle.size_bytes / 1e3:.0f} kB; "
                f"bash true p50 {statistics.median(calls) * 1000:.2f} ms"
            )
            assert statistics.median(snaps) < 2 and statistics.median(forks) < 3
            assert statistics.median(calls) < 0.05
    print("\n" + "\n".join(lines))


# ------------------------------------------------------------------- with the engine on top


def test_engine_never_forks_a_state_whose_processes_it_could_not_keep(
    make_backend: BackendFactory, tmp_path: Path
) -> None:
    """At level fs a state with a running service is not snapshotted; a later miss forks an
    earlier snapshot and replays the call that started the service, so the service answers."""
    from tvcache import AlwaysSnapshot, Engine, Settings

    backend = make_backend("fs")
    engine = Engine(backend, None, settings=Settings(home=tmp_path), policy=AlwaysSnapshot())
    serve = (
        "cd /tmp && echo hello > index.html && { python3 -m http.server 8000 >/dev/null 2>&1 & }"
    )
    fetch = (
        "import urllib.request as u; "
        "print(u.urlopen('http://127.0.0.1:8000/index.html').read().decode().strip())"
    )
    ask = f'for i in $(seq 50); do python3 -c "{fetch}" 2>/dev/null && break; sleep 0.1; done'
    try:
        with engine.session(RootSpec("svc", backend="docker")) as a:
            a.call("bash", command="echo setup > /tmp/setup")
            a.call("bash", command=serve)
            assert a.call("bash", command=ask).output == "hello\n"
        assert engine.stats()["snapshots_refused"] >= 1
        with engine.session(RootSpec("svc", backend="docker")) as b:
            b.call("bash", command="echo setup > /tmp/setup")
            assert b.call("bash", command=serve).hit
            fresh = b.call("bash", command="cat /tmp/index.html; " + ask)
        assert not fresh.hit and fresh.output == "hello\nhello\n"
    finally:
        engine.close()
        for node in engine.graph.snapshotted():
            if node.snapshot is not None:
                backend.delete_snapshot(node.snapshot)

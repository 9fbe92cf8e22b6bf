"""Fingerprints of Docker sandboxes against a real daemon: equal exactly when no later call can
tell the states apart — reads, commuting writes and forks keep them; every kind of write, shell
state and running process changes or withholds them."""

from __future__ import annotations

from pathlib import Path

import pytest
from docker_env import BackendFactory, sh, start

from sandbox import RootSpec, ToolCall
from sandbox.docker import Level
from tvcache import AlwaysSnapshot, Engine, Settings
from tvcache._settings import StateAwareness

pytestmark = pytest.mark.docker

WRITES = [
    "echo data > /work/f",
    "echo more >> /work/f",
    "chmod 600 /work/f",
    "chown 1:1 /work/f",
    "ln -s /work/f /work/link",
    "mkdir /work/d",
    "rm /etc/issue",
    "mkdir /etc/issue",
    "touch /etc/issue/inside",
    "echo x > /dev/shm/seg",
    "echo '10.0.0.1 h' >> /etc/hosts",
    "cd /tmp",
    "X=1",
    "X=2",
    "export X",
    "declare -a ARR=(1 2)",
    "f() { :; }",
    "set -o pipefail",
    "shopt -s extglob",
    "alias ll='ls -l'",
    "umask 077",
]
READS = [
    "ls -la / /etc >/dev/null; cat /etc/os-release",
    "grep -r root /etc/passwd; find /usr/share/doc -maxdepth 1 | wc -l",
    "touch /tmp/t && rm /tmp/t",  # created and removed: nothing changed
    "python3 -c 'print(1)'",
]


def test_reads_keep_the_fingerprint_and_every_write_changes_it(
    make_backend: BackendFactory, level: Level
) -> None:
    with start(make_backend(level)) as box:
        seen = [box.fingerprint()]
        for command in READS:
            assert sh(box, command).exit_code == 0, command
            assert box.fingerprint() == seen[0], command
        for command in WRITES:
            assert sh(box, command).exit_code == 0, command
            seen.append(box.fingerprint())
            assert seen[-1] not in seen[:-1], f"{command!r} left the fingerprint as it was"


def test_commuting_writes_and_forks_give_equal_fingerprints(
    make_backend: BackendFactory, level: Level
) -> None:
    backend = make_backend(level)
    with start(backend) as a, start(backend) as b, start(backend) as c:
        for command in ("echo 1 > /work/a", "echo 2 > /work/b", "X=1", "cd /tmp"):
            sh(a, command)
        for command in ("cd /tmp", "X=1", "echo 2 > /work/b", "echo 1 > /work/a"):
            sh(b, command)
        assert a.fingerprint() == b.fingerprint()
        snapshot = a.snapshot(f"a-{level}")
        with backend.fork(snapshot) as fork:
            assert fork.fingerprint() == a.fingerprint()  # same state, other layers
            sh(fork, "rm /work/a")  # a whiteout over the snapshot's layer
            for command in ("echo 2 > /work/b", "X=1", "cd /tmp"):
                sh(c, command)
            assert fork.fingerprint() == c.fingerprint()
            sh(fork, "cp -a /etc/issue /tmp/i && rm /etc/issue && cp -a /tmp/i /etc/issue")
            sh(fork, "rm /tmp/i")
            second = fork.snapshot(f"fork-{level}")
        with backend.fork(second) as grandchild:  # deleted and restored across two layers
            assert grandchild.fingerprint() == c.fingerprint()
            assert sh(grandchild, "cat /work/b; echo $X; pwd").output == "2\n1\n/tmp\n"


def test_a_running_process_withholds_the_fingerprint(make_backend: BackendFactory) -> None:
    with start(make_backend("full")) as box:
        before = box.fingerprint()
        sh(box, "sleep 600 &")
        assert box.fingerprint() is None  # what it does next is in no file
        sh(box, "kill %1; wait")
        assert box.fingerprint() == before


def test_sqlite_files_count_by_logical_content(make_backend: BackendFactory) -> None:
    def sql(statement: str) -> None:
        assert box.run(ToolCall("sqlite", {"sql": statement})).exit_code == 0

    with start(make_backend()) as box:
        sql("CREATE TABLE t(x)")
        created = box.fingerprint()
        sql("INSERT INTO t VALUES (1)")
        inserted = box.fingerprint()
        sql("DELETE FROM t")
        assert box.fingerprint() == created != inserted  # other bytes, same database


def test_engine_merges_commuting_docker_writes_and_reuses_reads(
    make_backend: BackendFactory, tmp_path: Path
) -> None:
    """With fingerprints on, bash reads are read-only nodes and different orders of the same
    writes share their future; every served output equals what a fresh container prints."""
    backend = make_backend("fs")
    aware = StateAwareness(fingerprint_tools=frozenset({"bash"}))
    settings = Settings(home=tmp_path, state=aware)
    engine = Engine(backend, None, settings=settings, policy=AlwaysSnapshot())
    spec = RootSpec("merge", backend="docker")
    listing = "cat /work/a /work/b; ls /work"
    try:
        with engine.session(spec) as first:
            first.call("bash", command="echo 1 > /work/a")
            first.call("bash", command="echo 2 > /work/b")
            first.call("bash", command="cat /etc/hostname")
            assert first.call("bash", command=listing).output == "1\n2\na\nb\n"
        with engine.session(spec) as second:  # other order, no read before the listing
            second.call("bash", command="echo 2 > /work/b")
            second.call("bash", command="echo 1 > /work/a")
            merged = second.call("bash", command=listing)
            read = second.call("bash", command="cat /etc/hostname")
            fresh = second.call("bash", command="echo 3 > /work/c; ls /work")
        assert merged.hit and merged.output == "1\n2\na\nb\n"
        assert read.hit and read.output == "sandbox\n"
        assert not fresh.hit and fresh.output == "a\nb\nc\n"  # the merged state is real
        stats = engine.stats()
        assert stats["read_only_nodes"] >= 1 and stats["merged_nodes"] == 1
    finally:
        engine.close()
        for node in engine.graph.snapshotted():
            if node.snapshot is not None:
                backend.delete_snapshot(node.snapshot)

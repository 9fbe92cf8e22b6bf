"""Fingerprints of Docker sandboxes against a real daemon: equal exactly when no later call can
tell the states apart — reads, commuting writes and forks keep them; every kind of write, shell
state and running process changes or withholds them."""

from __future__ import annotations

from pathlib import Path

import pytest
from docker_env import BackendFactory, sh, start
from test_sqlite_state import CRASH, MODES, SCHEMA, call

from sandbox import RootSpec, ToolCall
from sandbox.docker import DockerSandbox, Level
from tvcache import AlwaysSnapshot, Engine, Settings
from tvcache._settings import StateAwareness

pytestmark = pytest.mark.docker

WRITES = [
    "touch /tmp/t && rm /tmp/t",  # /tmp's modification time moved (ls -ld /tmp shows it)
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


SET_TIMES = "touch -d @1700000000 /work /work/* 2>/dev/null; true"
"""Writes in another order leave other modification times, which ``ls -t`` and ``make`` can
see; setting them makes two orders the same state."""


def test_commuting_writes_and_forks_give_equal_fingerprints(
    make_backend: BackendFactory, level: Level
) -> None:
    backend = make_backend(level)
    with start(backend) as a, start(backend) as b, start(backend) as c:
        for command in ("echo 1 > /work/a", "echo 2 > /work/b", "X=1", "cd /tmp", SET_TIMES):
            sh(a, command)
        for command in ("cd /tmp", "X=1", "echo 2 > /work/b", "echo 1 > /work/a"):
            sh(b, command)
        sh(b, SET_TIMES)
        assert a.fingerprint() == b.fingerprint()
        snapshot = a.snapshot(f"a-{level}")
        with backend.fork(snapshot) as fork:
            assert fork.fingerprint() == a.fingerprint()  # same state, other layers
            sh(fork, "rm /work/a && " + SET_TIMES)  # a whiteout over the snapshot's layer
            for command in ("echo 2 > /work/b", "X=1", "cd /tmp", SET_TIMES):
                sh(c, command)
            assert fork.fingerprint() == c.fingerprint()
            skel = "/etc/skel"  # a directory of the image (not of Docker's init layer)
            sh(fork, f"cp -a {skel}/.bashrc /dev/shm/ && touch -r {skel} /dev/shm/skel")
            sh(fork, f"rm {skel}/.bashrc && cp -a /dev/shm/.bashrc {skel}/")
            sh(fork, f"touch -r /dev/shm/skel {skel} && rm -f /dev/shm/* /dev/shm/.bashrc")
            # /etc was copied up with the time Docker gave it at this container's creation: a
            # missed merge with c, never a wrong one
            restored = fork.fingerprint()
            second = fork.snapshot(f"fork-{level}")
        with backend.fork(second) as grandchild:  # deleted and restored across two layers
            assert grandchild.fingerprint() == restored
            assert sh(grandchild, "cat /work/b; echo $X; pwd").output == "2\n1\n/tmp\n"


def test_the_order_of_modification_times_is_state(make_backend: BackendFactory) -> None:
    """``make`` rebuilds when a source is newer than its target: equal content, other future."""
    backend = make_backend()
    with start(backend) as built, start(backend) as stale:
        for box, first, last in ((built, "src", "bin"), (stale, "bin", "src")):
            sh(box, f"echo x > /work/{first}")
            sh(box, f"sleep 1.1; echo x > /work/{last}; touch -d @1700000000 /work")
        assert built.fingerprint() != stale.fingerprint()  # clock times: their order counts
        for box in (built, stale):
            sh(box, "touch -d @1700000001 /work/bin && touch -d @1700000002 /work/src")
        assert built.fingerprint() == stale.fingerprint()


def test_a_running_process_withholds_the_fingerprint(make_backend: BackendFactory) -> None:
    with start(make_backend("full")) as box:
        before = box.fingerprint()
        sh(box, "sleep 600 &")
        assert box.fingerprint() is None  # what it does next is in no file
        sh(box, "kill %1; wait")
        assert box.fingerprint() == before


def test_sqlite_files_count_by_bytes(make_backend: BackendFactory) -> None:
    """SQL sees a database's layout (``page_count``, ``freelist_count``, ``rootpage``) and bash
    its bytes, so a write undone is another state; a read keeps it, byte-equal files match."""

    def sql(box: DockerSandbox, statement: str) -> str:
        observation = box.run(ToolCall("sqlite", {"sql": statement}))
        assert observation.exit_code == 0, observation.output
        sh(box, SET_TIMES)  # the writes' times may fall in other seconds: their order is state
        return observation.output

    md5 = "md5sum /work/db.sqlite"
    with start(make_backend()) as box, start(make_backend()) as other:
        for each in (box, other):
            sql(each, "CREATE TABLE t(x)")
        created = box.fingerprint()
        assert other.fingerprint() == created  # the same history writes the same bytes
        digest = sh(box, md5).output
        assert sql(box, "SELECT count(*) FROM t") == "(0,)"
        assert box.fingerprint() == created
        sql(box, "INSERT INTO t VALUES (1)")
        sql(box, "DELETE FROM t")
        assert box.fingerprint() != created and sh(box, md5).output != digest


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
            first.call("bash", command="echo 2 > /work/b && " + SET_TIMES)
            first.call("bash", command="cat /etc/hostname")
            assert first.call("bash", command=listing).output == "1\n2\na\nb\n"
        with engine.session(spec) as second:  # other order, no read before the listing
            second.call("bash", command="echo 2 > /work/b")
            second.call("bash", command="echo 1 > /work/a && " + SET_TIMES)
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


@pytest.mark.parametrize("mode", ["read-only", "fingerprint"])
def test_a_sqlite_read_that_recovers_a_journal_is_a_write_on_docker(
    make_backend: BackendFactory, tmp_path: Path, mode: str
) -> None:
    """The issue's reproducer in the container (the sqlite tool runs there): a read after a
    writer died mid-transaction rolls the hot journal back, so what ``ls`` shows next is what a
    fresh container shows, not the listing cached before the read."""
    backend = make_backend("fs")
    engine = Engine(backend, None, settings=Settings(home=tmp_path, state=MODES[mode]))
    spec = RootSpec("journal", backend="docker")
    setup = [("sqlite", SCHEMA), ("bash", CRASH)]
    first = [*setup, ("bash", "ls"), ("bash", "md5sum db.sqlite")]
    second = [*setup, ("sqlite", "SELECT count(*) FROM t"), *first[2:]]
    try:
        served = []
        for history in (first, second):
            with engine.session(spec) as rollout:
                served.append([rollout.call(t, **call(t, text).args).output for t, text in history])
        with start(backend) as box:
            fresh = [box.run(call(*step)).output for step in second]
        assert served[0][2] != fresh[3]  # the crash left a journal that the read removed
        assert served[1] == fresh
    finally:
        engine.close()

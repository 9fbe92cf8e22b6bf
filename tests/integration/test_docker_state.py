"""What a Docker sandbox shows is a function of its history, and the harness is not in it.

PIDs come out equal in fresh starts, after harness work (state dumps, fingerprints,
snapshots) and in ``fs`` and ``full`` forks; the state dump forks nothing; ``ps`` and
``/proc`` show plain ``bash`` processes; a call that leaves a background process able to
write into later calls' output is flagged nondeterministic, and the engine never serves its
subtree as a plain hit.
"""

from __future__ import annotations

import time
import uuid

from docker_env import BackendFactory, sh, start

from sandbox.docker import DockerSandbox, Level
from tvcache._engine import Engine
from tvcache._policy import NeverSnapshot

_PIDS = "echo $$; sleep 0 & wait; echo $!; ps -eo pid,comm"
BEFORE = [_PIDS, "cd /tmp; (true); exit 3", _PIDS]
"""Up to the snapshot: pids of the shell, of a job and of every process; a shell restart."""
AFTER = [_PIDS, "true | true; " + _PIDS]


def _harness_work(box: DockerSandbox) -> None:
    box.fingerprint()
    box.fingerprint()
    box._channel.full_state()


def test_pids_are_a_function_of_history(make_backend: BackendFactory, level: Level) -> None:
    backend = make_backend(level)
    with start(backend) as fresh:
        reference = [sh(fresh, command).output for command in BEFORE + AFTER]
    with start(backend) as box:
        observed = []
        for command in BEFORE:
            _harness_work(box)
            observed.append(sh(box, command).output)
        snap = box.snapshot(f"pids-{uuid.uuid4().hex[:8]}")
        for command in AFTER:
            _harness_work(box)
            observed.append(sh(box, command).output)
        assert observed == reference
        with backend.fork(snap) as fork:
            assert fork.restore_fallback is None
            assert [sh(fork, command).output for command in AFTER] == reference[len(BEFORE) :]
        backend.delete_snapshot(snap)
    assert reference[0].startswith("10\n") and "      1 bash\n     10 bash\n" in reference[0]


def test_the_state_dump_forks_nothing(make_backend: BackendFactory) -> None:
    last = "IFS= read -r L </proc/sys/kernel/ns_last_pid; echo $L"
    with start(make_backend()) as box:
        sh(box, "x=1; declare -a y=(1 2); shopt -s extglob; alias a=b")
        before = sh(box, last).output
        for _ in range(3):
            assert "declare -- x=" in box._channel.full_state().vars
        assert sh(box, last).output == before


def test_the_harness_looks_like_a_plain_shell(make_backend: BackendFactory) -> None:
    with start(make_backend()) as box:
        listing = sh(box, "ps -eo pid,comm,args").output
        rows = [line.split() for line in listing.splitlines()[1:]]
        assert rows[:2] == [["1", "bash", "bash"], ["10", "bash", "bash"]]
        assert rows[2][1:] == ["ps", "ps", "-eo", "pid,comm,args"] and len(rows) == 3
        proc = sh(box, "cat /proc/[0-9]*/comm; tr '\\0' ' ' </proc/1/cmdline; echo $0").output
        assert "tvcache" not in listing + proc, listing + proc
        assert proc == "bash\nbash\nbash bash\n"  # comm of 1 and 10, cmdline of 1, $0


def test_a_background_writer_makes_calls_nondeterministic(make_backend: BackendFactory) -> None:
    backend = make_backend()
    with start(backend) as box:
        assert not sh(box, "echo quiet; sleep 0 & wait").nondeterministic
        sh(box, "nohup sleep 30 >/dev/null 2>&1 &")  # flagged if caught while starting
        for _ in range(50):  # and so are the next calls while it starts (longer when loaded)
            if not sh(box, "true").nondeterministic:
                break
            time.sleep(0.1)
        assert not sh(box, "echo still quiet").nondeterministic  # a sleeping job
    with start(backend) as box:
        assert sh(box, "(sleep 30; echo late) &").nondeterministic
        assert sh(box, "echo later").nondeterministic  # the writer may print into this one


_LOADER = (
    "python3 -c 'import time\nt = time.time()\nwhile time.time() < t + 1: pass\n"
    'open("/tmp/state", "w").write("loaded")\ntime.sleep(60)\' >/dev/null 2>&1 &'
)
"""Like the http-service task's server: busy for a second, then writes a file and idles."""


def test_a_busy_or_self_timed_background_makes_calls_nondeterministic(
    make_backend: BackendFactory,
) -> None:
    with start(make_backend()) as box:
        sh(box, _LOADER)
        assert sh(box, "cat /tmp/state").nondeterministic  # loading: what cat sees is timing
        time.sleep(1.5)
        assert sh(box, "cat /tmp/state").nondeterministic  # it wrote since the last call
        assert not sh(box, "cat /tmp/state").nondeterministic  # idle now: as in every run
        sh(box, "(sleep 0.3; echo x > /tmp/timer) >/dev/null 2>&1 &")
        time.sleep(1.0)
        assert sh(box, "ls /tmp").nondeterministic  # it wrote between calls, on its clock
        assert not sh(box, "ls /tmp").nondeterministic


def test_what_the_background_did_before_a_checkpoint_is_not_forgotten(
    make_backend: BackendFactory,
) -> None:
    backend = make_backend("full")
    with start(backend) as box:
        sh(box, _LOADER)
        time.sleep(1.5)  # it loads and writes /tmp/state after the call, before the checkpoint
        snap = box.snapshot(f"moved-{uuid.uuid4().hex[:8]}")
        assert snap.level == "full", snap.meta.get("full_failure")
        assert sh(box, "cat /tmp/state").nondeterministic
        assert not sh(box, "cat /tmp/state").nondeterministic
        with backend.fork(snap) as fork:
            assert sh(fork, "cat /tmp/state").nondeterministic
            assert not sh(fork, "cat /tmp/state").nondeterministic
        backend.delete_snapshot(snap)


def test_the_engine_never_serves_background_output_as_a_plain_hit(
    make_backend: BackendFactory,
) -> None:
    engine = Engine(make_backend(), None, policy=NeverSnapshot())
    calls = ["echo start", "(sleep 0.2; echo late) & sleep 0.1", "sleep 0.3; echo after"]
    try:
        with engine.session("task") as first:
            results = [first.call("bash", command=c) for c in calls]
        assert [r.tainted for r in results] == [False, True, True]
        with engine.session("task") as second:
            served = [second.call("bash", command=c) for c in calls]
        assert all(r.hit for r in served)
        assert [r.tainted for r in served] == [False, True, True]
    finally:
        engine.close()

"""``full`` sandboxes on the runc path: ``runc checkpoint --leave-running`` and ``runc restore``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from docker_env import BackendFactory, sh, start

from sandbox import ToolCall, _runc, _runc_full_mounts
from sandbox._runc_full import CHECKPOINTS

pytestmark = pytest.mark.docker

COUNTER = (
    "(i=0; while :; do i=$((i+1)); echo $i > /tmp/n.new; mv /tmp/n.new /tmp/n; sleep 0.05; done) &"
)


def _runc_backend(make_backend: BackendFactory, **kwargs: Any) -> Any:
    backend = make_backend("full", runtime="runc", **kwargs)
    assert backend.runc is not None
    return backend


def test_a_fork_resumes_the_processes_with_their_memory(make_backend: BackendFactory) -> None:
    backend = _runc_backend(make_backend)
    with start(backend) as box:
        sh(box, "cd /work 2>/dev/null || mkdir -p /work && cd /work; echo snap > f; " + COUNTER)
        sh(box, "SECRET=in-memory-only; big=$(head -c 2000000 /dev/zero | tr '\\0' x)")
        at_snapshot = int(sh(box, "until [ -s /tmp/n ]; do sleep 0.01; done; cat /tmp/n").output)
        snap = box.snapshot("s")
        assert (snap.level, snap.meta["runtime"]) == ("full", "runc"), snap.meta
        sh(box, "echo later > f; SECRET=changed")
        with backend.fork(snap) as fork:
            assert fork.restore_fallback is None and fork.boot_id == box.boot_id
            assert fork.box is not None and fork.box.name != box.container_id
            out = sh(fork, "pwd; cat f; echo $SECRET ${#big}; jobs -p | wc -l").output
            assert out == "/work\nsnap\nin-memory-only 2000000\n1\n"
            first = int(sh(fork, "cat /tmp/n").output)
            assert at_snapshot <= first < int(sh(fork, "sleep 0.3; cat /tmp/n").output)
        assert sh(box, "cat f; echo $SECRET").output == "later\nchanged\n"  # the source ran on
    backend.delete_snapshot(snap)


def test_forks_are_independent_of_each_other_and_of_the_source(
    make_backend: BackendFactory,
) -> None:
    backend = _runc_backend(make_backend)
    with start(backend) as box:
        sh(box, "echo base > /tmp/f; N=0; sleep 600 &")
        sh(box, "rm /etc/issue; rm -rf /etc/apt; mkdir /etc/apt")  # a whiteout, an opaque dir
        snap = box.snapshot("s")
        with backend.fork(snap) as a, backend.fork(snap) as b:
            sh(a, "echo A >> /tmp/f; touch /tmp/only-a; N=1; kill %1")
            assert sh(
                b, "cat /tmp/f; ls /tmp/only-a 2>/dev/null; echo $N; jobs -p | wc -l"
            ).output == ("base\n0\n1\n")
            assert sh(a, "cat /tmp/f; echo $N").output == "base\nA\n1\n"
            assert sh(a, "ls /etc/issue /etc/apt 2>&1").output == (
                "ls: cannot access '/etc/issue': No such file or directory\n/etc/apt:\n"
            )
            with backend.fork(snap) as c:  # a fork of a fork's snapshot sees neither
                sh(c, "echo C > /tmp/f")
                inner = c.snapshot("c")
                with backend.fork(inner) as d:
                    assert sh(d, "cat /tmp/f; jobs -p | wc -l").output == "C\n1\n"
                backend.delete_snapshot(inner)
        assert sh(box, "cat /tmp/f; ls /tmp/only-a 2>&1 | wc -l").output == "base\n1\n"
    backend.delete_snapshot(snap)


def _leftovers(store: Path) -> dict[str, list[str]]:
    boxes = store / "runc"
    containers = [
        name
        for name in _runc.containers()
        if Path(str((_runc.state(name) or {}).get("bundle", ""))).parent == boxes
    ]
    listed = {
        "containers": containers,
        "mounts": [str(m) for m in _runc.mounted_under(store.parent)],
    }
    for sub in ("runc", CHECKPOINTS, "layers"):
        listed[sub] = (
            sorted(p.name for p in (store / sub).glob("*")) if (store / sub).exists() else []
        )
    listed["sandboxes"] = sorted(p.name for p in (store.parent / "sandboxes").glob("*"))
    return listed


def test_nothing_is_left_on_disk(make_backend: BackendFactory, store: Path) -> None:
    backend = _runc_backend(make_backend, restore_ahead=1)
    with start(backend) as box:
        sh(box, "head -c 3000000 /dev/urandom > /tmp/blob; sleep 600 &")
        snap = box.snapshot("s")
        assert snap.level == "full", snap.meta.get("full_failure")
        assert (backend.snapshot_dir / snap.meta["checkpoint"]).parent == store / CHECKPOINTS
        assert backend.ahead is not None
        for rep in range(3):  # the second makes it hot: the third is restored ahead
            if rep == 2:
                assert backend.ahead.wait_ready(snap.snapshot_id, 60)
            with backend.fork(snap) as fork:
                assert sh(fork, "jobs -p | wc -l").output == "1\n"
        assert backend.ahead.wait_ready(snap.snapshot_id, 60)  # and one more is, paused
        backend.delete_snapshot(snap)
    backend.close()
    assert backend.counters["full_ahead_takes"] == 1
    left = _leftovers(store)
    assert {key: names for key, names in left.items() if names} == {}


def test_criu_reads_its_kernel_probe_cache(make_backend: BackendFactory) -> None:
    """CRIU probes the kernel for 60-110 ms per run unless it reads /run/criu.kdat, which it
    only writes on a tmpfs /run (not on this kind of host): tvcache makes it read one."""
    backend = _runc_backend(make_backend)
    with start(backend) as box:
        sh(box, "sleep 600 &")
        snap = box.snapshot("s")
        with backend.fork(snap) as fork:
            assert fork.box is not None
            log = (fork.box.box / "restore-work" / "restore.log").read_text()
            assert "Loaded kdat cache" in log, log[:600]
            assert sh(fork, "jobs -p | wc -l").output == "1\n"
    backend.delete_snapshot(snap)


def test_a_fork_cannot_write_the_directories_shared_in_place_of_tmpfs(
    make_backend: BackendFactory,
) -> None:
    """/dev, the masked directories and /sys/fs/cgroup of a restored sandbox are binds of host
    directories every sandbox shares (CRIU copies no tmpfs for them): nothing may be added."""
    backend = _runc_backend(make_backend)
    with start(backend) as box:
        sh(box, "sleep 600 &")
        snap = box.snapshot("s")
        with backend.fork(snap) as fork:
            targets = [
                p
                for p in ("/dev", "/sys/fs/cgroup", "/sys/firmware", "/proc/acpi")
                if Path(p).is_dir()
            ]
            for target in targets:
                done = fork.run(
                    ToolCall("bash", {"command": f"touch {target}/x || mkdir {target}/y"})
                )
                assert done.exit_code != 0, (target, done.output)
            controllers = "ls /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu"
            assert sh(fork, f"{controllers} >/dev/null && echo mounted").output == "mounted\n"
            assert sh(fork, "jobs -p | wc -l").output == "1\n"
    backend.delete_snapshot(snap)
    for directory in (_runc_full_mounts.MOUNTS / name for name in ("dev", "empty", "cgroup")):
        assert not any(p.name in ("x", "y") for p in directory.iterdir())


def test_a_checkpoint_holds_processes_not_file_systems(make_backend: BackendFactory) -> None:
    """CRIU copied every tmpfs (/dev, /dev/shm, /sys/fs/cgroup, the masked directories) into
    each checkpoint, 20-110 ms apiece; a full box has none for it to copy. /dev/shm's files
    still come back in a fork, and the loopback of its given network namespace is up."""
    backend = _runc_backend(make_backend)
    with start(backend) as box:
        sh(box, "echo kept > /dev/shm/a; sleep 600 &")
        snap = box.snapshot("s")
        images = backend.checkpoint_dir(snap)
        assert sorted(p.name for p in images.iterdir() if p.name.startswith("tmpfs")) == []
        with backend.fork(snap) as fork:
            sh(fork, "echo fork >> /dev/shm/a")
            out = sh(fork, "cat /dev/shm/a; cat /sys/class/net/lo/flags").output
            assert out == "kept\nfork\n0x9\n"  # IFF_UP | IFF_LOOPBACK
        assert sh(box, "cat /dev/shm/a").output == "kept\n"
    backend.delete_snapshot(snap)

"""``tvcache bench terminal --levels``: ``full`` forks and snapshots beside their floors, one run.

One interleaved loop (so that load on the host hits every line alike), ``--reps`` rounds of,
on each path (``docker``: Docker's checkpoint API plus a commit; ``runc``: runc and CRIU
directly, :mod:`sandbox._runc_full`): a ``full`` snapshot of a sandbox with a background job;
a cold ``full`` fork of it (twice: the second makes the snapshot hot); a fork restored ahead of
time (the backend's ``restore_ahead`` stash; the wait for it is not timed); each fork also with
its first command. And the floors: ``runc checkpoint`` and ``runc restore`` of a small process
tree in a bundle made of the same image's layers, with CRIU's network lock and without it,
without CRIU's kernel-probe cache, and of a process with 100 MB resident (the
memory-proportional part of a restore). Prints p50/p90 and ratios to the floor. The floors'
bundles keep runc's tmpfs mounts (/dev, /dev/shm, ...), which CRIU copies on every dump and
restore; ``full`` sandboxes have none (:mod:`sandbox._runc_full_mounts`).
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

from sandbox import RootSpec, ToolCall
from sandbox.docker import DEFAULT_IMAGE, DockerBackend, DockerSandbox, Runtime
from snapshots import SnapshotHandle, TvcacheError, docker_fs
from snapshots import runc_checkpoint as rc

FLOOR = "runc restore, no network lock"
PROCESSES = ("bash", "-c", "sleep 600 & exec sleep 601")
RSS_MEMORY = bytes(range(256)) * (100 << 12)
RSS_PROCESSES = (
    "python3",
    "-c",
    "import hashlib, os, time\n"
    "kept = bytearray(range(256)) * (100 << 12)\n"
    "while True:\n"
    "    if os.path.exists('/tmp/go'):\n"
    "        os.remove('/tmp/go')\n"
    "        open('/tmp/sum.new', 'w').write(hashlib.md5(kept).hexdigest())\n"
    "        os.rename('/tmp/sum.new', '/tmp/sum')\n"
    "    time.sleep(0.002)\n",
)
"""A process with 100 MB of its own memory resident (every page written); on ``/tmp/go`` it
reads all of it and writes its md5 to ``/tmp/sum``."""
RSS = "no network lock, 100 MB RSS"
NO_KDAT = "no network lock, kernel probed"
"""CRIU without its kernel-probe cache (as on a host whose /run is no tmpfs, before tvcache
made it read one: :mod:`snapshots.criu_kdat`)."""
PATHS: tuple[Runtime, ...] = ("docker", "runc")
PROBE = ToolCall("bash", {"command": "echo ok"})
P = ParamSpec("P")
T = TypeVar("T")


def _layers(backend: DockerBackend, image: str) -> list[str]:
    data = docker_fs.inspect_image(backend.api, image).get("GraphDriver") or {}
    if data.get("Name") != "overlay2":
        raise TvcacheError(
            f"the floors need Docker's overlay2 storage driver, not {data.get('Name')!r}"
        )
    found = data.get("Data") or {}
    return [found["UpperDir"], *filter(None, str(found.get("LowerDir", "")).split(":"))]


def _timed(
    samples: dict[str, list[float]],
    name: str,
    action: Callable[P, T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    started = time.perf_counter()
    result = action(*args, **kwargs)
    samples.setdefault(name, []).append(time.perf_counter() - started)
    return result


def _floor_round(
    samples: dict[str, list[float]], name: str, bundle: rc.Bundle, work: Path, rep: int
) -> None:
    images = work / f"images-{rep}"
    _timed(samples, f"runc checkpoint, {name}", rc.checkpoint, bundle, "floor", images)
    _timed(samples, f"runc restore, {name}", rc.restore, bundle, "floor", images)
    if name == RSS:  # and its memory read through, restored eagerly or lazily
        for lazy in (False, True):
            rc.delete(bundle, "floor")
            how = "lazy pages" if lazy else "eager"
            line = f"  restore + read 100 MB, {how}"
            _timed(samples, line, _restore_and_read, bundle, images, "floor", lazy)
    rc.delete(bundle, "floor")
    rc.run(bundle, "floor")


def _restore_and_read(bundle: rc.Bundle, images: Path, container: str, lazy: bool) -> None:
    """Restore the 100 MB process and wait until it read all of its memory; check its md5."""
    answer = bundle.rootfs / "tmp/sum"
    answer.unlink(missing_ok=True)
    daemon = rc.restore(bundle, container, images, lazy=lazy)
    (bundle.rootfs / "tmp/go").touch()
    deadline = time.monotonic() + 60
    while not answer.exists():
        if time.monotonic() > deadline:
            raise TvcacheError("the restored 100 MB process did not answer within 60 s")
        time.sleep(0.001)
    if answer.read_text() != hashlib.md5(RSS_MEMORY).hexdigest():
        raise TvcacheError(f"a {'lazy ' if lazy else ''}restore lost memory: wrong md5")
    if daemon is not None:
        daemon.wait(60)


def _project_round(
    samples: dict[str, list[float]], path: str, backend: DockerBackend, box: DockerSandbox, rep: int
) -> None:
    """A ``full`` snapshot of ``box``, two cold forks (the second makes it hot), a fork
    restored ahead of time (the wait for it is not timed), each with its first command."""
    assert backend.ahead is not None
    handle = _timed(samples, f"{path}: full snapshot", box.snapshot, f"levels-{path}-{rep}")
    if handle.level != "full":
        raise TvcacheError(f"CRIU refused the snapshot: {handle.meta.get('full_failure')}")
    for _ in range(2):
        _first_command(samples, f"{path}: full fork, cold", backend, handle)
    if not backend.ahead.wait_ready(handle.snapshot_id, timeout=120):
        raise TvcacheError("no fork was restored ahead of time within 120 s")
    _first_command(samples, f"{path}: full fork, restored ahead", backend, handle)
    backend.delete_snapshot(handle)


def _first_command(
    samples: dict[str, list[float]], name: str, backend: DockerBackend, handle: SnapshotHandle
) -> None:
    started = time.perf_counter()
    fork = _timed(samples, name, backend.fork, handle)
    try:
        if fork.restore_fallback is not None:
            raise TvcacheError(f"the fork did not restore: {fork.restore_fallback}")
        fork.run(PROBE)
        samples.setdefault(f"{name} + 1st command", []).append(time.perf_counter() - started)
    finally:
        fork.close()


def measure(reps: int, work: Path) -> dict[str, list[float]]:
    """Seconds per line, ``reps`` samples each."""
    backends = {
        path: DockerBackend(work / f"snapshots-{path}", "full", restore_ahead=1, runtime=path)
        for path in PATHS
    }
    layers = _layers(backends["docker"], DEFAULT_IMAGE)
    bundles = {
        "network lock": rc.make_bundle(work / "lock", layers, PROCESSES),
        "no network lock": rc.make_bundle(work / "skip", layers, PROCESSES, network_lock=False),
        NO_KDAT: rc.make_bundle(work / "probe", layers, PROCESSES, network_lock=False, kdat=False),
        RSS: rc.make_bundle(work / "rss", layers, RSS_PROCESSES, network_lock=False),
    }
    samples: dict[str, list[float]] = {}
    boxes: dict[str, DockerSandbox] = {}
    try:
        for path, backend in backends.items():
            boxes[path] = backend.start(RootSpec("levels", backend="docker"))
            boxes[path].run(ToolCall("bash", {"command": "echo data > /work/f; sleep 600 &"}))
        for bundle in bundles.values():
            rc.run(bundle, "floor")
        time.sleep(1.0)  # the 100 MB process fills its memory
        for rep in range(reps):
            for path, backend in backends.items():
                _project_round(samples, path, backend, boxes[path], rep)
            for name, bundle in bundles.items():
                _floor_round(samples, name, bundle, work / name.replace(" ", "-"), rep)
    finally:
        for box in boxes.values():
            box.close()
        for backend in backends.values():
            backend.close()
        for bundle in bundles.values():
            rc.remove_bundle(bundle, ["floor"])
    return samples


def report(samples: dict[str, list[float]]) -> str:
    floor = statistics.median(samples[FLOOR])
    lines = [f"{'':<52}{'p50 ms':>9}{'p90 ms':>9}{'x floor':>9}"]
    for name, values in samples.items():
        ordered = sorted(values)
        p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
        p50 = statistics.median(values)
        lines.append(f"{name:<52}{p50 * 1000:>9.0f}{p90 * 1000:>9.0f}{p50 / floor:>8.2f}x")
    lines.append(f"floor: {FLOOR} (a bash and its background sleep, runc and CRIU directly)")
    return "\n".join(lines)


def run_levels_bench(args: argparse.Namespace) -> int:
    reps = 5 if args.quick else args.reps
    with tempfile.TemporaryDirectory(prefix="tvcache-bench-levels-") as tmp:
        samples = measure(reps, Path(tmp))
    print(f"{reps} interleaved rounds; one sample per line per round (two for a cold fork)")
    print(report(samples))
    return 0

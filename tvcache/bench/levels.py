"""``tvcache bench terminal --levels``: a ``full`` fork and snapshot beside their floors, one run.

One interleaved loop (so that load on the host hits every line alike), ``--reps`` rounds of:
a ``full`` snapshot of a sandbox with a background job (Docker's checkpoint API plus a commit);
a cold ``full`` fork of it (twice: the second makes the snapshot hot); a fork restored ahead of
time (the backend's ``restore_ahead`` stash; the wait for it is not timed); and the floors:
``runc checkpoint`` and ``runc restore`` of a small process tree in a bundle made of the same
image's layers, with CRIU's network lock and without it. Prints p50/p90 and ratios to the floor.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

from sandbox import RootSpec, ToolCall
from sandbox.docker import DEFAULT_IMAGE, DockerBackend
from snapshots import TvcacheError, docker_fs
from snapshots import runc_checkpoint as rc

FLOOR = "runc restore, no network lock"
PROCESSES = ("bash", "-c", "sleep 600 & exec sleep 601")
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
    rc.delete(bundle, "floor")
    rc.run(bundle, "floor")


def measure(reps: int, work: Path) -> dict[str, list[float]]:
    """Seconds per line, ``reps`` samples each."""
    backend = DockerBackend(work / "snapshots", "full", restore_ahead=1)
    assert backend.ahead is not None
    layers = _layers(backend, DEFAULT_IMAGE)
    bundles = {
        "network lock": rc.make_bundle(work / "lock", layers, PROCESSES),
        "no network lock": rc.make_bundle(work / "skip", layers, PROCESSES, network_lock=False),
    }
    samples: dict[str, list[float]] = {}
    box = backend.start(RootSpec("levels", backend="docker"))
    try:
        for bundle in bundles.values():
            rc.run(bundle, "floor")
        box.run(ToolCall("bash", {"command": "echo data > /work/f; sleep 600 &"}))
        for rep in range(reps):
            handle = _timed(samples, "full snapshot", box.snapshot, f"levels-{rep}")
            if handle.level != "full":
                raise TvcacheError(f"CRIU refused the snapshot: {handle.meta.get('full_failure')}")
            for _ in range(2):
                _timed(samples, "full fork, cold", backend.fork, handle).close()
            if not backend.ahead.wait_ready(handle.snapshot_id, timeout=120):
                raise TvcacheError("no fork was restored ahead of time within 120 s")
            _timed(samples, "full fork, restored ahead", backend.fork, handle).close()
            backend.delete_snapshot(handle)
            for name, bundle in bundles.items():
                _floor_round(samples, name, bundle, work / name.replace(" ", "-"), rep)
    finally:
        box.close()
        backend.close()
        for bundle in bundles.values():
            rc.remove_bundle(bundle, ["floor"])
    return samples


def report(samples: dict[str, list[float]]) -> str:
    floor = statistics.median(samples[FLOOR])
    lines = [f"{'':<34}{'p50 ms':>9}{'p90 ms':>9}{'x floor':>9}"]
    for name, values in samples.items():
        ordered = sorted(values)
        p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
        p50 = statistics.median(values)
        lines.append(f"{name:<34}{p50 * 1000:>9.0f}{p90 * 1000:>9.0f}{p50 / floor:>8.2f}x")
    lines.append(f"floor: {FLOOR} (a bash and its background sleep, runc and CRIU directly)")
    return "\n".join(lines)


def run_levels_bench(args: argparse.Namespace) -> int:
    reps = 5 if args.quick else args.reps
    with tempfile.TemporaryDirectory(prefix="tvcache-bench-levels-") as tmp:
        samples = measure(reps, Path(tmp))
    print(f"{reps} interleaved rounds; one sample per line per round (two for a cold fork)")
    print(report(samples))
    return 0

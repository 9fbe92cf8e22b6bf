"""``tvcache bench forks``: what a fork and a snapshot cost, next to what the kernel allows.

One interleaved loop (every case once per repetition, so load hits all alike) measures:

- the floors, with each OCI runtime installed (runc, crun): ``run`` of ``true`` on a fresh
  overlay mount whose lowers are a frozen upper directory plus the image's layers, and
  ``start`` of a container created ahead of time (mount, unmount and delete are outside the
  timed part of the second);
- tvcache's ``fs`` fork plus a first command, on the runc path with each OCI runtime and on
  the Docker path;
- a hand-out of a fork started ahead of time (:meth:`DockerBackend.prefork`: what the pool
  keeps at hot snapshots) plus a first command;
- an ``fs`` snapshot after writing 0, 50 and 500 MB (``--quick``: 0, 5, 20), every path,
  alone and with the source's next command (on the runc path the source goes on in a new
  container that starts in the background; its next command waits for it).

It prints p50/p90 per case, the ratio of each to its floor, and a fork's phases on the runc
path per OCI runtime (directories and overlay mount, the config, ``create``, ``start``, the
shell handshake, the first command).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sandbox import RootSpec, ToolCall, _runc
from sandbox.docker import DEFAULT_IMAGE, DockerBackend, DockerSandbox
from snapshots import SnapshotHandle
from tvcache.bench._report import percentile_ms

FULL_SIZES = (0, 50, 500)
QUICK_SIZES = (0, 5, 20)


def _sh(box: DockerSandbox, command: str) -> str:
    observation = box.run(ToolCall("bash", {"command": command, "timeout": 600}))
    if observation.exit_code != 0:
        raise RuntimeError(f"{command!r} failed: {observation.output[-300:]}")
    return observation.output


class _Floors:
    """``run``/``start`` of ``true`` with nothing of tvcache around them, per OCI runtime."""

    def __init__(self, backend: DockerBackend, work: Path) -> None:
        runc = backend.runc
        assert runc is not None
        self.work = work
        self.image = runc.image(backend.api.inspect_image(DEFAULT_IMAGE)["Id"])
        upper = work / "frozen"
        upper.mkdir(parents=True)
        (upper / "file").write_text("frozen\n")
        self.lowers = [str(upper), *self.image.lowers]

    def _bundle(self) -> tuple[str, Path]:
        name = f"tvcache-floor-{uuid.uuid4().hex[:12]}"
        _runc.bare_bundle(self.work / name, name, self.lowers, ["true"])
        return name, self.work / name

    def run(self, oci: str) -> float:
        """Mount a fresh overlay and ``run`` ``true`` in it."""
        started = time.perf_counter()
        name, bundle = self._bundle()
        _runc.runc("run", "--bundle", str(bundle), name, log=bundle / "log", runtime=oci)
        seconds = time.perf_counter() - started
        _runc.remove_bundle(name, bundle)
        return seconds

    def start(self, oci: str) -> float:
        """``start`` of a container created beforehand (until ``true`` has ended)."""
        name, bundle = self._bundle()
        _runc.runc("create", "--bundle", str(bundle), name, log=bundle / "log", runtime=oci)
        started = time.perf_counter()
        _runc.runc("start", name, log=bundle / "log", runtime=oci)
        while (_runc.state(name) or {}).get("status") == "running":
            time.sleep(0.0005)
        seconds = time.perf_counter() - started
        _runc.remove_bundle(name, bundle)
        return seconds


def _timed(action: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action(*args)
    return time.perf_counter() - started, result


def _fork_first(backend: DockerBackend, handle: SnapshotHandle) -> DockerSandbox:
    """A fork that has answered its first command (on the runc path, the time from the
    fork's return to that answer is its phase ``first command``)."""
    box = backend.fork(handle)
    started = time.perf_counter()
    _sh(box, "cat /work/p/f >/dev/null")
    if box.box is not None:
        box.box.phases["first command"] = time.perf_counter() - started
    return box


def _ocis() -> list[str]:
    """The OCI runtimes installed here, in the order they are measured."""
    return [oci for oci in ("runc", "crun") if shutil.which(oci) is not None]


def _quiet(backend: DockerBackend) -> None:
    """Let the background work of the last case end (a removed container's ``delete``) before
    the next case's clock starts: it would land on whichever case runs next."""
    if backend.runc is not None:
        backend.runc.drain()


def run_forks_bench(args: argparse.Namespace) -> int:
    quick = bool(getattr(args, "quick", False))
    reps = 8 if quick else 15
    sizes = QUICK_SIZES if quick else FULL_SIZES
    home = Path(tempfile.mkdtemp(prefix="tvcache-bench-forks-"))
    ocis = _ocis()
    backends = {
        **{
            oci: DockerBackend(home / oci / "snapshots", "fs", runtime="runc", oci=oci)
            for oci in ocis
        },
        "docker": DockerBackend(home / "docker" / "snapshots", "fs", runtime="docker"),
    }
    samples: dict[str, list[float]] = {}
    phases: dict[str, dict[str, list[float]]] = {}

    def add(case: str, seconds: float) -> None:
        samples.setdefault(case, []).append(seconds)

    spec = RootSpec("bench-forks", backend="docker")
    sources: dict[str, DockerSandbox] = {}
    handles: dict[str, SnapshotHandle] = {}
    try:
        floors = _Floors(backends[ocis[0]], home / "floors")
        for name, backend in backends.items():
            sources[name] = backend.start(spec)
            _sh(sources[name], "mkdir -p /work/p && echo base > /work/p/f")
            handles[name] = sources[name].snapshot(f"base-{name}")
        for _ in range(reps):
            for oci in ocis:
                add(f"floor: {oci} run (fresh overlay)", floors.run(oci))
                add(f"floor: {oci} start (created ahead)", floors.start(oci))
            for name, backend in backends.items():
                seconds, fork = _timed(_fork_first, backend, handles[name])
                add(f"{name}: fs fork + first command", seconds)
                if fork.box is not None:
                    for phase, value in fork.box.phases.items():
                        phases.setdefault(name, {}).setdefault(phase, []).append(value)
                fork.close()
                _quiet(backend)
            for oci in ocis:
                backends[oci].prefork(handles[oci], 1)
                seconds, fork = _timed(_fork_first, backends[oci], handles[oci])
                add(f"{oci}: pool hand-out + first command", seconds)
                fork.close()
                _quiet(backends[oci])
            for size in sizes:
                for name, backend in backends.items():
                    box = backend.fork(handles[name])
                    if size:
                        _sh(box, f"head -c {size}M /dev/urandom > /work/data")
                    _quiet(backend)
                    seconds, handle = _timed(box.snapshot, f"s{size}-{uuid.uuid4().hex[:8]}")
                    add(f"{name}: fs snapshot at {size} MB", seconds)
                    more, _ = _timed(_sh, box, "true")  # on runc: waits for the source's move
                    add(f"{name}: snapshot at {size} MB + next command", seconds + more)
                    box.close()
                    backend.delete_snapshot(handle)
                    _quiet(backend)
    finally:
        for box in sources.values():
            box.close()
        for name, handle in handles.items():
            backends[name].delete_snapshot(handle)
        for backend in backends.values():
            backend.close()
        shutil.rmtree(home, ignore_errors=True)
    return _report(samples, phases, sizes, ocis, bool(getattr(args, "json", False)))


def _report(
    samples: dict[str, list[float]],
    phases: dict[str, dict[str, list[float]]],
    sizes: tuple[int, ...],
    ocis: list[str],
    as_json: bool,
) -> int:
    summary = {
        case: {
            "p50_ms": percentile_ms(values, 50),
            "p90_ms": percentile_ms(values, 90),
            "n": len(values),
        }
        for case, values in samples.items()
    }
    breakdown = {
        name: {phase: percentile_ms(values, 50) for phase, values in found.items()}
        for name, found in phases.items()
    }
    if as_json:
        print(json.dumps({"cases": summary, "fork_phases_p50_ms": breakdown}))
        return 0
    # every ratio is to runc's floor (the default before crun), measured in this run
    run_floor = summary[f"floor: {ocis[0]} run (fresh overlay)"]["p50_ms"] or 1.0
    start_floor = summary[f"floor: {ocis[0]} start (created ahead)"]["p50_ms"] or 1.0
    print(f"{'case':<42}{'p50 ms':>10}{'p90 ms':>10}{f'x {ocis[0]} floor':>16}")
    for case, row in summary.items():
        floor = start_floor if "hand-out" in case or "start" in case else run_floor
        ratio = "" if "snapshot" in case else f"{(row['p50_ms'] or 0) / floor:.2f}"
        print(f"{case:<42}{row['p50_ms']:>10.1f}{row['p90_ms']:>10.1f}{ratio:>16}")
    for size in sizes:
        docker_ms = summary[f"docker: fs snapshot at {size} MB"]["p50_ms"] or 0.0
        for oci in ocis:
            ms = summary[f"{oci}: fs snapshot at {size} MB"]["p50_ms"] or 0.0
            print(f"snapshot at {size} MB: docker / {oci} = {docker_ms / max(ms, 1e-9):.1f}x")
    for name, found in breakdown.items():
        print(
            f"{name} fork by phase (p50 ms): "
            + ", ".join(f"{k} {v:.1f}" for k, v in found.items() if v is not None)
        )
    return 0

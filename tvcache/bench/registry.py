"""``python -m tvcache.bench.registry``: a snapshot between hosts, next to a local fork.

A typical terminal-task snapshot (``tvcache/task-py-package`` after an install step: a venv
and the task's bytecode) is taken by one backend (home A) and forked by another (home B,
its own layer store) through a registry. Every repetition, interleaved so load hits all alike:

- ``snapshot``: the snapshot call on A (the push runs in the background: it must not grow),
  next to ``no registry``: the same on a backend without one;
- ``local fork``: a fork on A plus a first command (the snapshot is on A's disk);
- ``push cold``: pushing the snapshot's stack to a registry that has none of it;
- ``push warm``: pushing a snapshot one small step later (its lower layers are there);
- ``pull + fork``: a fork on B with B's copy deleted first (pull, unpack, fork, first command).

``--full``: a ``full`` snapshot and its checkpoint instead (:mod:`tvcache.bench.registry_full`).
It prints p50/p90 per case, bytes moved, and each case's ratio to the local fork. Without
``--registry`` it starts ``docker-registry`` (scripts/install-registry.sh) on a free loopback
port with its storage in a temporary directory.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import httpx

from sandbox import RootSpec, ToolCall
from sandbox.docker import DockerBackend, DockerSandbox
from snapshots import SnapshotHandle
from snapshots import _registry_stack as stack
from snapshots.registry import Registry
from tvcache.bench import registry_full
from tvcache.bench._report import percentile_ms

IMAGE = "tvcache/task-py-package"
STEP = "python3 -m venv /work/.venv && python3 -m compileall -q /work/textkit"
"""An install step: a venv (pip and setuptools installed into it, ~25 MB) and bytecode."""
REGISTRY_CONFIG = """version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {data}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
  secret: tvcache-local
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve_registry(base: Path, log: Path | None = None) -> Iterator[str]:
    """Run ``docker-registry serve`` on a free loopback port, storage under ``base`` and
    deletion on, until the block ends; its URL. Its access log goes to ``log``."""
    binary = shutil.which("docker-registry")
    if binary is None:
        raise RuntimeError("docker-registry is missing: run scripts/install-registry.sh")
    port = _free_port()
    config = base / "config.yml"
    config.write_text(REGISTRY_CONFIG.format(data=base / "data", port=port))
    with (log or base / "registry.log").open("wb") as out:
        process = subprocess.Popen([binary, "serve", str(config)], stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/v2/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"docker-registry did not start; see {log or base}")
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _sh(box: DockerSandbox, command: str) -> str:
    observation = box.run(ToolCall("bash", {"command": command, "timeout": 600}))
    if observation.exit_code != 0:
        raise RuntimeError(f"{command!r} failed: {observation.output[-300:]}")
    return observation.output


def _timed(samples: list[float], work: Callable[..., Any], *args: Any) -> Any:
    started = time.perf_counter()
    result = work(*args)
    samples.append(time.perf_counter() - started)
    return result


def run(reps: int, url: str | None, work: Path, full: bool = False) -> dict[str, Any]:
    """Measure; a dict of samples (seconds) per case and bytes per push."""
    with nullcontext(url) if url else serve_registry(work) as address:
        if full:
            return registry_full.measure(reps, address, work, IMAGE)
        return _measure(reps, address, work)


def _fork_and_run(backend: DockerBackend, handle: SnapshotHandle) -> None:
    with backend.fork(handle) as fork:
        _sh(fork, "true")


def _measure(reps: int, url: str, work: Path) -> dict[str, Any]:
    samples: dict[str, list[float]] = {
        k: []
        for k in ("snapshot", "no registry", "local fork", "push cold", "push warm", "pull + fork")
    }
    sizes: dict[str, list[int]] = {"push cold": [], "push warm": [], "pull + fork": []}
    home_a = DockerBackend(work / "a" / "snapshots", "fs", runtime="runc", registry=url)
    home_b = DockerBackend(work / "b" / "snapshots", "fs", runtime="runc", registry=url)
    plain = DockerBackend(work / "n" / "snapshots", "fs", runtime="runc", registry="")
    assert home_a.runc is not None and home_b.runc is not None and home_b.registry is not None
    spec = RootSpec("registry-bench", backend="docker", template=IMAGE)
    try:
        for rep in range(reps):
            with plain.start(spec) as other:  # the same snapshot where nothing is pushed
                _sh(other, STEP)
                unpushed = _timed(samples["no registry"], other.snapshot, f"plain-{rep}")
            plain.delete_snapshot(unpushed)
            with home_a.start(spec) as source:
                _sh(source, STEP)
                handle: SnapshotHandle = _timed(
                    samples["snapshot"], source.snapshot, f"bench-{rep}-{time.time_ns()}"
                )
                _sh(source, "echo one more step > /work/step")
                later = source.snapshot(f"bench-{rep}-later-{time.time_ns()}")
            _timed(samples["local fork"], _fork_and_run, home_a, handle)
            assert home_a.registry is not None
            home_a.registry.drain()  # the background pushes, to a registry of their own:
            cold = Registry(url, f"bench/cold-{rep}-{time.time_ns()}")
            layer, warm_layer = str(handle.meta["layer"]), str(later.meta["layer"])
            for digests in home_a.runc.layers.root.glob("*/blob.json"):
                digests.unlink()  # forget the digests: a cold push tars again
            layers = home_a.runc.layers
            pushed = _timed(samples["push cold"], stack.push, cold, layers, layer, "s", IMAGE)
            sizes["push cold"].append(pushed.bytes)
            warm = _timed(samples["push warm"], stack.push, cold, layers, warm_layer, "w", IMAGE)
            sizes["push warm"].append(warm.bytes)
            cold.close()
            for held in home_b.runc.layers.layers():  # B has none of it: the fork pulls
                home_b.runc.layers.delete(held)
            home_b.runc.drain()
            home_b.runc.gc()
            before = home_b.registry.counters["bytes_pulled"]
            _timed(samples["pull + fork"], _fork_and_run, home_b, handle)
            sizes["pull + fork"].append(int(home_b.registry.counters["bytes_pulled"] - before))
            for done in (handle, later):
                home_a.delete_snapshot(done)
    finally:
        for backend in (home_a, home_b, plain):
            backend.close()
            if backend.registry is not None:
                backend.registry.close()
    return {"samples": samples, "bytes": sizes}


def report(result: dict[str, Any]) -> str:
    samples, sizes = result["samples"], result["bytes"]
    local = percentile_ms(samples.get("local fork") or samples["local full fork"], 50) or 1.0
    lines = [
        f"{'case':<16} {'p50 ms':>9} {'p90 ms':>9} {'× local fork':>13} {'MB moved':>9}",
    ]
    for case, values in samples.items():
        p50, p90 = percentile_ms(values, 50), percentile_ms(values, 90)
        moved = sizes.get(case)
        mb = f"{sum(moved) / len(moved) / 1e6:9.3f}" if moved else f"{'':>9}"
        lines.append(f"{case:<16} {p50:9.1f} {p90:9.1f} {(p50 or 0) / local:13.2f} {mb}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tvcache.bench.registry", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2 repetitions instead of 5")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--registry", default=None, help="a registry URL (default: start one)")
    parser.add_argument(
        "--full", action="store_true", help="a full snapshot (Docker path) and its checkpoint"
    )
    args = parser.parse_args(argv)
    reps = args.reps or (2 if args.quick else 5)
    with tempfile.TemporaryDirectory(prefix="tvcache-registry-bench-") as temp:
        result = run(reps, args.registry, Path(temp), args.full)
    what = f"a full snapshot ({registry_full.MEMORY_MB} MB process)" if args.full else ""
    print(f"registry bench: {IMAGE} {what or 'after an install step'}, {reps} repetitions")
    print(report(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

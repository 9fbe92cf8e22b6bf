"""``python -m tvcache.bench.registry --full``: a ``full`` snapshot (Docker path) between hosts.

Home A takes a ``full`` snapshot of ``tvcache/task-py-package`` running a process that holds
``MEMORY_MB`` of memory; every repetition, side by side:

- ``local full fork``: a fork on A restoring the processes, plus a first command;
- ``push checkpoint``: the checkpoint directory as one blob to a registry that lacks it;
- ``pull + full fork``: a fork on B after A's copy is deleted (``docker pull`` of the image,
  the checkpoint blob pulled and unpacked, the restore, a first command).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sandbox import RootSpec
from sandbox.docker import DockerBackend
from snapshots import _checkpoint_blob as checkpoint_blob
from snapshots.registry import Registry

MEMORY_MB = 64
PROCESS = (
    f"python3 -c 'import os, time; x = os.urandom({MEMORY_MB} << 20); "
    'open("/tmp/ready", "w").close(); time.sleep(3600)\' > /dev/null 2>&1 & '
    "while [ ! -e /tmp/ready ]; do sleep 0.1; done"
)
"""A process holding ``MEMORY_MB`` of random bytes; the call returns once they are there."""


def measure(reps: int, url: str, work: Path, image: str) -> dict[str, Any]:
    """Samples (seconds) per case and bytes moved by the checkpoint push and the pull."""
    from tvcache.bench.registry import _fork_and_run, _sh, _timed

    samples: dict[str, list[float]] = {
        k: [] for k in ("local full fork", "push checkpoint", "pull + full fork")
    }
    sizes: dict[str, list[int]] = {"push checkpoint": [], "pull + full fork": []}
    home_a = DockerBackend(work / "fa" / "snapshots", "full", runtime="docker", registry=url)
    home_b = DockerBackend(work / "fb" / "snapshots", "full", runtime="docker", registry=url)
    assert home_a.registry is not None and home_b.registry is not None
    spec = RootSpec("registry-bench-full", backend="docker", template=image)
    try:
        for rep in range(reps):
            with home_a.start(spec) as source:
                _sh(source, PROCESS)
                handle = source.snapshot(f"bench-full-{rep}-{time.time_ns()}")
            if handle.level != "full":
                raise RuntimeError(f"no full snapshot here: {handle.meta.get('full_failure')}")
            _timed(samples["local full fork"], _fork_and_run, home_a, handle)
            home_a.registry.drain()
            cold = Registry(url, f"bench/checkpoints-{rep}-{time.time_ns()}")
            name = str(handle.meta["checkpoint"])
            push = checkpoint_blob.push
            pushed = _timed(samples["push checkpoint"], push, cold, home_a.snapshot_dir, name, "c")
            sizes["push checkpoint"].append(pushed.bytes)
            cold.close()
            home_a.delete_snapshot(handle)  # the image too: B's fork pulls both
            before = home_b.registry.counters["bytes_pulled"]
            _timed(samples["pull + full fork"], _fork_and_run, home_b, handle)
            sizes["pull + full fork"].append(int(home_b.registry.counters["bytes_pulled"] - before))
            if home_b.counters["full_restores"] != rep + 1:
                raise RuntimeError("the fork on home B did not restore the processes")
            home_b.delete_snapshot(handle)
    finally:
        for backend in (home_a, home_b):
            backend.close()
            if backend.registry is not None:
                backend.registry.close()
    return {"samples": samples, "bytes": sizes}

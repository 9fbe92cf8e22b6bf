"""What routing by root costs per call: hits through ``Client`` (one server) and through
``ClusterClient`` (N servers, fixed list) side by side, plus the cost of one placement.

``python -m tvcache.bench.cluster_routing [--servers 3] [--tasks 6] [--calls 100]``. A first
session of each task records ``--calls`` calls; a second replays them, all hits, timed. The
seed of ``tvcache bench load --cluster N`` (docs/cluster.md, next steps).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import timeit
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from tvcache.bench._report import percentile_ms
from tvcache.client import Client
from tvcache.cluster import ClusterClient, Servers
from tvcache.service import ServerProcess


def hit_seconds(
    make: Callable[[], AbstractContextManager[Any]], template: Path, tasks: int, calls: int
) -> list[float]:
    """Seconds of each replayed call (every one a hit) of ``tasks`` recorded trajectories."""
    out: list[float] = []
    with make() as client:
        for task in range(tasks):
            with client.session(f"task{task}", template=str(template)) as session:
                for i in range(calls):
                    session.call("bash", command=f"echo {i}")
            with client.session(f"task{task}", template=str(template)) as session:
                for i in range(calls):
                    start = time.perf_counter()
                    result = session.call("bash", command=f"echo {i}")
                    out.append(time.perf_counter() - start)
                    if not result.hit:
                        raise AssertionError(f"call {i} of task{task} replayed as a miss")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=6)
    parser.add_argument("--calls", type=int, default=100)
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="tvcache-bench-routing-"))
    (tmp / "template").mkdir()
    servers = [
        ServerProcess(tmp / f"home{i}", "--log-level", "warning") for i in range(args.servers)
    ]
    try:
        urls = [server.url for server in servers]
        ways: dict[str, Callable[[], AbstractContextManager[Any]]] = {
            "Client, 1 server": lambda: Client(urls[0]),
            f"ClusterClient, {len(urls)} servers": lambda: ClusterClient(urls),
        }
        rows: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(2):  # interleaved rounds: a loaded machine hurts both alike
            for name, make in ways.items():
                rows[name] += hit_seconds(make, tmp / "template", args.tasks, args.calls)
        base = percentile_ms(rows["Client, 1 server"], 50) or 1.0
        for name, samples in rows.items():
            p50, p99 = percentile_ms(samples, 50) or 0.0, percentile_ms(samples, 99) or 0.0
            print(f"{name:26s} hit p50 {p50:6.3f} ms  p99 {p99:6.3f} ms  p50 x{p50 / base:.2f}")
        ring = Servers(urls)
        pick = timeit.timeit(lambda: ring.pick("task0"), number=20_000) / 20_000
        print(f"placement of one session (Servers.pick, {len(urls)} servers): {pick * 1e6:.1f} us")
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

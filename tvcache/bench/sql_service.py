"""``tvcache bench sql --workers N``: the SQL workload through ``tvcache serve``.

The same rollouts as ``tvcache bench sql``, run side by side with no cache (the reference),
the naive cache and in-process tvcache, plus a fourth mode: a ``tvcache serve`` process and
N client processes. Groups are dealt round-robin to the workers; within a group, rollouts
advance one step each in turn, as in the in-process modes. Every hit is compared with the
no-cache observation (wrong observations), and latencies are as the worker saw them (HTTP).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import signal
import sys
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from sandbox import Observation
from tvcache.bench._report import ModeResult, table
from tvcache.bench.sql import ROWS, Workload, make_workload, run_naive, run_no_cache, run_tvcache
from tvcache.client import Client, RemoteSession
from tvcache.service import ServerProcess

Step = tuple[int, int, int, str, str, str, bool]  # group, rollout, step, sql, task, template, last
Answer = tuple[int, int, int, dict[str, object], bool, bool, float]


def _worker(url: str, steps: list[Step]) -> list[Answer]:
    answers: list[Answer] = []
    sessions: dict[tuple[int, int], RemoteSession] = {}
    with Client(url) as client:
        for g, r, step, sql, task, template, last in steps:
            session = sessions.get((g, r)) or client.session(task, template=template)
            sessions[(g, r)] = session
            started = time.perf_counter()
            got = session.call("sqlite", sql=sql)
            elapsed = time.perf_counter() - started
            answers.append((g, r, step, got.observation.to_dict(), got.hit, got.tainted, elapsed))
            if last:
                sessions.pop((g, r)).close()
    return answers


def run_service(work: Workload, home: Path, truth: ModeResult, workers: int) -> ModeResult:
    """The workload from ``workers`` client processes against one server."""
    shares: list[list[Step]] = [[] for _ in range(workers)]
    for g, r, step, sql in work.steps():
        spec = work.specs[g]
        last = step == len(work.groups[g].rollouts[r].actions) - 1
        shares[g % workers].append((g, r, step, sql, spec.task_id, str(spec.template), last))
    result = ModeResult(f"service x{workers}")
    with ServerProcess(home, "--log-level", "warning", *work.tool_flags) as server:
        started = time.perf_counter()
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            answers = pool.starmap(_worker, [(server.url, share) for share in shares])
        result.wall_seconds = time.perf_counter() - started
        with Client(server.url) as client:
            stats = client.stats()
        rss = server.rss()
        server.stop(signal.SIGTERM)
    for g, r, step, observation, hit, tainted, elapsed in (a for share in answers for a in share):
        result.calls += 1
        result.call_latencies.append(elapsed)
        if hit:
            result.hits += 1
            result.hit_latencies.append(elapsed)
            served = Observation.from_dict(observation)
            result.wrong += not served.same_as(truth.outputs[(g, r, step)]) and not tainted
    result.tool_seconds = float(stats["executed_seconds"]) + float(stats["replayed_seconds"])
    result.executed_calls = int(stats["misses"]) + int(stats["replayed_calls"])
    result.extra = {
        "forks": stats["forks"],
        "pool_takes": stats["pool_takes"],
        "shared_hits": stats["shared_hits"],
        "server_rss_mib": round(rss / 2**20, 1),
    }
    return result


def run_sql_workers(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="tvcache-bench-") as tmp:
        workdir = Path(tmp)
        work = make_workload(args, workdir)
        homes = {name: workdir / name for name in ("no-cache", "naive", "tvcache", "service")}
        for home in homes.values():
            home.mkdir()
        with tqdm(total=3 * work.total_calls, file=sys.stderr, disable=None, leave=False) as bar:
            truth = run_no_cache(work, homes["no-cache"], bar)
            naive = run_naive(work, homes["naive"], truth, bar)
            local = run_tvcache("tvcache", work, homes["tvcache"], truth, bar)
        service = run_service(work, homes["service"], truth, args.workers)
    results = [truth, naive, local, service]
    if args.json:
        print(json.dumps({r.name.replace(" ", "_"): r.summary() for r in results}))
    else:
        print(f"{len(work.groups)} groups, {work.total_calls} calls per mode")
        print(table(results, ROWS, first_cached=2))
    return 0

"""``tvcache bench load``: many sessions from several client processes against one server.

A GRPO-like load on the local backend: each session picks one of a few tasks and walks a
branching trajectory (``echo STEP-CHOICE >> log; sha256sum log``: the output is a function of
the whole history, so the client knows what every answer must be), pausing between calls as
an LLM would. At the end the server is stopped with SIGTERM and the run is audited: every
answered node must be in the store with the answered output (nothing lost), no sandbox may
remain (nothing left behind), and every answer must equal the history's output (no wrong
observation).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing
import random
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from snapshots import TvcacheError
from tvcache._cli_service import tool_flags
from tvcache._store import Store
from tvcache.bench._report import percentile_ms
from tvcache.client import AsyncClient, AsyncRemoteSession, Client
from tvcache.cluster import AsyncClusterClient
from tvcache.service import ServerProcess

TASKS, STEPS, BRANCHES, STAY = 4, 8, 3, 0.7  # STAY: probability of the group's usual choice
QUICK_SECONDS = 20.0
SERVER_STATS = ("misses", "shared_hits", "starts", "forks", "pool_takes", "replayed_calls", "nodes")


def command(step: int, choice: int) -> str:
    return f"echo {step}-{choice} >> log; sha256sum log | cut -c1-16"


def expected(history: list[tuple[int, int]]) -> str:
    text = "".join(f"{step}-{choice}\n" for step, choice in history)
    return hashlib.sha256(text.encode()).hexdigest()[:16] + "\n"


@dataclass
class Tally:
    """What one client process saw."""

    calls: int = 0
    hits: int = 0
    wrong: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    hit_seconds: list[float] = field(default_factory=list)
    miss_seconds: list[float] = field(default_factory=list)
    answered: dict[str, str] = field(default_factory=dict)

    def error(self, error: BaseException) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(repr(error))

    def merge(self, other: Tally) -> None:
        for name in ("calls", "hits", "wrong", "errors"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.error_samples += other.error_samples[: 5 - len(self.error_samples)]
        self.hit_seconds += other.hit_seconds
        self.miss_seconds += other.miss_seconds
        self.answered.update(other.answered)


async def _rollout(
    session: AsyncRemoteSession, rng: random.Random, think: float, deadline: float, tally: Tally
) -> None:
    history: list[tuple[int, int]] = []
    for step in range(STEPS):
        await asyncio.sleep(rng.expovariate(1 / think) if think > 0 else 0)
        if time.monotonic() >= deadline:
            return
        choice = 0 if rng.random() < STAY else rng.randrange(1, BRANCHES)
        history.append((step, choice))
        started = time.perf_counter()
        result = await session.acall("bash", command=command(step, choice))
        elapsed = time.perf_counter() - started
        tally.calls += 1
        tally.hits += result.hit
        (tally.hit_seconds if result.hit else tally.miss_seconds).append(elapsed)
        tally.wrong += result.output != expected(history)
        tally.answered[result.node_id] = result.output


async def _sessions(
    urls: list[str], count: int, seconds: float, think: float, templates: list[str], seed: int
) -> Tally:
    """``count`` sessions in one event loop; one URL: a plain client, more: routed by root."""
    tally = Tally()
    deadline = time.monotonic() + seconds

    async def loop(rng: random.Random) -> None:
        while time.monotonic() < deadline:
            task = rng.randrange(TASKS)
            try:
                session = await client.session(f"load-{task}", template=templates[task])
                try:
                    await _rollout(session, rng, think, deadline, tally)
                finally:
                    await session.aclose()
            except TvcacheError as error:
                tally.error(error)

    opened = AsyncClient(urls[0], timeout=120.0) if len(urls) == 1 else None
    async with opened or AsyncClusterClient(urls, timeout=120.0) as client:
        await asyncio.gather(*(loop(random.Random(seed * 1000 + i)) for i in range(count)))
    return tally


def client_process(
    urls: list[str], count: int, seconds: float, think: float, templates: list[str], seed: int
) -> Tally:
    """One client process's share of the load (``multiprocessing`` runs it)."""
    return asyncio.run(_sessions(urls, count, seconds, think, templates, seed))


def run_clients(
    urls: list[str],
    sessions: int,
    processes: int,
    seconds: float,
    think: float,
    templates: list[str],
) -> Tally:
    """``sessions`` sessions spread over ``processes`` client processes; what they all saw."""
    shares = [sessions // processes + (i < sessions % processes) for i in range(processes)]
    jobs = [(urls, n, seconds, think, templates, i) for i, n in enumerate(shares)]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        tallies = pool.starmap(client_process, jobs)
    total = Tally()
    for tally in tallies:
        total.merge(tally)
    return total


def make_templates(where: Path) -> list[str]:
    """The tasks' template directories (each with the empty ``log`` the commands append to)."""
    templates = []
    for task in range(TASKS):
        template = where / f"task-{task}"
        template.mkdir()
        (template / "log").write_text("")
        templates.append(str(template))
    return templates


def _server_hit_bounds(client: Client) -> dict[str, float | None]:
    """Upper bounds of the server-side p50 and p99 of hits (time inside the handler), read
    from the ``tvcache_call_seconds`` histogram: what the service adds, without the network,
    the HTTP parsing or the clients' own scheduling."""
    text = client.metrics()
    buckets = [
        (float(sample.labels["le"]), sample.value)
        for family in text_string_to_metric_families(text)
        if family.name == "tvcache_call_seconds"
        for sample in family.samples
        if sample.name.endswith("_bucket") and sample.labels.get("result") == "hit"
    ]
    total = max((count for _bound, count in buckets), default=0.0)
    return {
        f"p{q}": next((bound * 1000 for bound, count in buckets if count >= total * q / 100), None)
        for q in (50, 99)
    }


def audit(store_url: str, answered: dict[str, str]) -> int:
    """Answered nodes missing from the store or stored with another output."""
    with Store(store_url) as store:
        lost = 0
        for node_id, output in answered.items():
            record = store.get_node(node_id)
            lost += (
                record is None or record.observation is None or record.observation.output != output
            )
        return lost


def run_load_bench(args: argparse.Namespace) -> int:
    sessions, processes = args.sessions, args.workers or 8
    seconds = QUICK_SECONDS if args.quick else args.duration
    think = args.think_ms / 1000
    with tempfile.TemporaryDirectory(prefix="tvcache-load-") as tmp:
        home = Path(tmp) / "home"
        templates = make_templates(Path(tmp))
        server = ServerProcess(home, "--log-level", "warning", *tool_flags(args))
        rss: list[int] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(1.0):
                rss.append(server.rss())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        total = run_clients([server.url], sessions, processes, seconds, think, templates)
        stop.set()
        sampler.join()
        with Client(server.url) as client:
            stats = client.stats()
            stats["hit_bounds_ms"] = _server_hit_bounds(client)
        exit_code = server.stop(signal.SIGTERM, timeout=120)
        left = [p.name for p in (home / "sandboxes").iterdir()]
        lost = audit(f"sqlite:///{home / 'cache.db'}", total.answered)
        report = _report(args, total, stats, seconds, rss, exit_code, left, lost)
    print(json.dumps(report) if args.json else "\n".join(f"{k}: {v}" for k, v in report.items()))
    failed = report["errors"] or report["wrong"] or report["lost"] or left or exit_code
    return 1 if failed else 0


def _report(
    args: argparse.Namespace,
    total: Tally,
    stats: dict[str, Any],
    seconds: float,
    rss: list[int],
    exit_code: int,
    left: list[str],
    lost: int,
) -> dict[str, Any]:
    return {
        "sessions": args.sessions,
        "client_processes": args.workers or 8,
        "seconds": seconds,
        "think_ms": args.think_ms,
        "calls": total.calls,
        "hits": total.hits,
        "hit_rate": round(total.hits / total.calls, 4) if total.calls else 0.0,
        "hits_per_second": round(total.hits / seconds, 1),
        "hit_p50_ms": percentile_ms(total.hit_seconds, 50),
        "hit_p99_ms": percentile_ms(total.hit_seconds, 99),
        "miss_p50_ms": percentile_ms(total.miss_seconds, 50),
        "miss_p99_ms": percentile_ms(total.miss_seconds, 99),
        "errors": total.errors,
        "error_samples": total.error_samples,
        "wrong": total.wrong,
        "answered_nodes": len(total.answered),
        "lost": lost,
        "left_behind": left,
        "server_exit_code": exit_code,
        "server_rss_peak_mib": round(max(rss, default=0) / 2**20, 1),
        "server_rss_last_mib": round(rss[-1] / 2**20, 1) if rss else None,
        "server_hit_p50_ms_at_most": stats["hit_bounds_ms"]["p50"],
        "server_hit_p99_ms_at_most": stats["hit_bounds_ms"]["p99"],
        "server": {k: stats[k] for k in SERVER_STATS},
    }

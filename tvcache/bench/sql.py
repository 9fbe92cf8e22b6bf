"""``tvcache bench sql``: the same GRPO-style rollouts, side by side, in one run.

Modes: (1) no cache, a fresh sandbox per rollout; (2) a naive cache keyed by the call alone,
ignoring history; (3) tvcache. The modes take turns group by group (see :func:`interleave`), so
a change in the machine's load during the run falls on every mode alike. In each group the
no-cache mode goes first, and since every one of its observations comes from a fresh
environment with exactly the rollout's history, it is the reference: every observation a cache
serves is compared with it, and a difference is a **wrong observation**.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from sandbox import Backend, Observation, RootSpec, Sandbox, ToolCall
from tvcache._cli_service import tool_flags, tools_of
from tvcache._engine import Engine
from tvcache._factory import backend_with_tools, local_backend
from tvcache._session import Session
from tvcache._settings import Settings, StateAwareness
from tvcache._store import Store
from tvcache.bench import _isolation_cost as isolation_cost
from tvcache.bench._report import ModeResult, Row, plot, table
from tvcache.bench._sql_workload import SqlTaskGroup, build_groups, extract_database

if TYPE_CHECKING:
    from tvcache._factory import AnyTool

DB_FILE = "db.sqlite"
QUICK = {"recorded_tasks": 12, "edit_tasks": 6, "raw_tasks": 12}


@dataclass(frozen=True)
class Workload:
    """The groups, their roots, and the ``--tools`` (loaded, and as given for a server)."""

    groups: list[SqlTaskGroup]
    specs: list[RootSpec]
    tools: tuple[AnyTool, ...] = ()
    tool_flags: tuple[str, ...] = ()

    def backend(self, home: Path) -> Backend:
        """The local backend of one mode, with the workload's tools."""
        return backend_with_tools(Settings(home=home), tools=self.tools)

    def steps(self) -> Iterator[tuple[int, int, int, str]]:
        """Every group's :meth:`group_steps`, group after group."""
        for g in range(len(self.groups)):
            yield from self.group_steps(g)

    def group_steps(self, g: int) -> Iterator[tuple[int, int, int, str]]:
        """Round-robin within group ``g``: step t of every rollout, then step t+1.

        This is the order in which a group's rollouts reach the sandbox when they run
        concurrently, one policy step at a time.
        """
        group = self.groups[g]
        depth = max(len(r.actions) for r in group.rollouts)
        for step in range(depth):
            for r, rollout in enumerate(group.rollouts):
                if step < len(rollout.actions):
                    yield g, r, step, rollout.actions[step]

    @property
    def total_calls(self) -> int:
        return sum(len(r.actions) for g in self.groups for r in g.rollouts)


def make_workload(args: argparse.Namespace, workdir: Path) -> Workload:
    sizes = QUICK if args.quick else {}
    groups = build_groups(group_size=args.group_size, seed=args.seed, **sizes)
    specs = []
    for group in groups:
        template = workdir / "templates" / group.db
        if not template.exists():
            template.mkdir(parents=True)
            extract_database(group.db, template).rename(template / DB_FILE)
        specs.append(RootSpec(task_id=group.task_id, backend="local", template=str(template)))
    return Workload(groups, specs, tuple(tools_of(args)), tuple(tool_flags(args)))


def _sql(action: str) -> ToolCall:
    return ToolCall("sqlite", {"sql": action})


Turns = Iterator[None]
"""A mode's run, one step at a time: the first ``next`` sets the mode up, each of the next
ones runs one group, and the last one (which ends the iterator) closes it and fills in what
is measured once at the end. Only the group turns are timed (:func:`interleave`)."""


def interleave(
    modes: Sequence[tuple[ModeResult, Turns]],
    groups: int,
    clock: Callable[[], float] = time.perf_counter,
) -> None:
    """Run the modes' turns round-robin, group by group, in the order given.

    A change in the machine's load during the run then falls on every mode alike, instead of
    on whichever mode ran while it lasted. Each mode's ``wall_seconds`` is the sum of its own
    group turns; its setup and its closing are outside, as in a mode run alone.
    """
    for _, turns in modes:
        next(turns)
    for _ in range(groups):
        for result, turns in modes:
            t0 = clock()
            next(turns)
            result.wall_seconds += clock() - t0
    for result, turns in modes:
        if next(turns, result) is not result:
            raise RuntimeError(f"{result.name}: took more turns than the {groups} groups")


def run_alone(result: ModeResult, turns: Turns, groups: int) -> ModeResult:
    """One mode's run by itself (to profile it): ``result`` once its turns are done."""
    interleave([(result, turns)], groups)
    return result


def no_cache_turns(work: Workload, home: Path, bar: tqdm, result: ModeResult) -> Turns:  # type: ignore[type-arg]
    """Every call executed in a sandbox started fresh for its rollout."""
    backend = work.backend(home)
    sandboxes: dict[tuple[int, int], Sandbox] = {}
    yield
    for group in range(len(work.groups)):
        for g, r, step, action in work.group_steps(group):
            t0 = time.perf_counter()
            sandbox = sandboxes.get((g, r))
            if sandbox is None:
                sandbox = sandboxes[(g, r)] = backend.start(work.specs[g])
            obs = sandbox.run(_sql(action))
            elapsed = time.perf_counter() - t0
            result.call_latencies.append(elapsed)
            result.miss_overheads.append(elapsed - obs.seconds)
            result.tool_seconds += obs.seconds
            result.calls += 1
            result.executed_calls += 1
            result.outputs[(g, r, step)] = obs
            if step == len(work.groups[g].rollouts[r].actions) - 1:
                sandboxes.pop((g, r)).close()
            bar.update()
        yield
    for sandbox in sandboxes.values():
        sandbox.close()


def naive_turns(
    work: Workload,
    home: Path,
    truth: ModeResult,
    bar: tqdm,  # type: ignore[type-arg]
    result: ModeResult,
) -> Turns:
    """A cache keyed by (task, call), blind to history: fast, and wrong where history matters.

    ``truth`` is the no-cache mode's result, which has run the group before this turn."""
    backend = work.backend(home)
    cache: dict[tuple[int, str], Observation] = {}
    sandboxes: dict[tuple[int, int], Sandbox] = {}
    yield
    for group in range(len(work.groups)):
        for g, r, step, action in work.group_steps(group):
            t0 = time.perf_counter()
            cached = cache.get((g, action))
            if cached is not None:
                result.hit_latencies.append(time.perf_counter() - t0)
                result.hits += 1
                result.wrong += not cached.same_as(truth.outputs[(g, r, step)])
            else:
                sandbox = sandboxes.get((g, r))
                if sandbox is None:
                    sandbox = sandboxes[(g, r)] = backend.start(work.specs[g])
                cached = cache[(g, action)] = sandbox.run(_sql(action))
                result.tool_seconds += cached.seconds
                result.executed_calls += 1
                result.miss_overheads.append(time.perf_counter() - t0 - cached.seconds)
            result.call_latencies.append(time.perf_counter() - t0)
            result.calls += 1
            bar.update()
        yield
    for sandbox in sandboxes.values():
        sandbox.close()


TVCACHE_MODES = {
    "tvcache": StateAwareness(),
    "read-only": StateAwareness(read_only=True),
    "fingerprint": StateAwareness(read_only=True, fingerprint_tools=frozenset({"sqlite"})),
}


def tvcache_turns(
    work: Workload,
    home: Path,
    truth: ModeResult,
    bar: tqdm,  # type: ignore[type-arg]
    result: ModeResult,
) -> Turns:
    """tvcache with a SQLite store, as a user would run it: ``tvcache`` is strict prefix
    matching (the default), ``read-only`` adds the sqlite tool's read-only proofs,
    ``fingerprint`` also merges states with equal database content (``result.name``)."""
    backend = work.backend(home)
    store = Store(f"sqlite:///{home / 'cache.db'}")
    engine = Engine(backend, store, settings=Settings(home=home, state=TVCACHE_MODES[result.name]))
    hits_by_kind: dict[str, list[int]] = {"recorded": [0, 0], "edit": [0, 0], "raw": [0, 0]}
    sessions: dict[tuple[int, int], Session] = {}
    steady: list[float] = []  # misses on a bound sandbox at the position
    placing: list[float] = []  # misses that started, forked, replayed or snapshotted
    yield
    for group in range(len(work.groups)):
        for g, r, step, action in work.group_steps(group):
            session = sessions.get((g, r))
            if session is None:
                session = sessions[(g, r)] = engine.session(work.specs[g])
            sandbox_work = _sandbox_work(engine)
            t0 = time.perf_counter()
            served = session.call("sqlite", sql=action)
            elapsed = time.perf_counter() - t0
            result.call_latencies.append(elapsed)
            result.calls += 1
            kind = hits_by_kind[work.groups[g].kind]
            kind[1] += 1
            if served.hit:
                kind[0] += 1
                result.hits += 1
                result.hit_latencies.append(elapsed)
                expected = truth.outputs[(g, r, step)]
                result.wrong += not served.observation.same_as(expected) and not served.tainted
            else:
                overhead = elapsed - served.observation.seconds
                result.miss_overheads.append(overhead)
                (steady if _sandbox_work(engine) == sandbox_work else placing).append(overhead)
            if step == len(work.groups[g].rollouts[r].actions) - 1:
                sessions.pop((g, r)).close()
            bar.update()
        yield
    for session in sessions.values():
        session.close()
    engine.close()
    stats = engine.stats()
    result.tool_seconds = stats.tool_seconds
    result.executed_calls = stats.executed_calls
    nodes = store.node_count()
    size = store.size_bytes()
    store.close()
    result.extra = {
        **{
            f"hit_rate_{kind}": round(hits / calls, 4) if calls else 0.0
            for kind, (hits, calls) in hits_by_kind.items()
        },
        "steady_miss_overhead_p50_us": _p50_us(steady),
        "placing_miss_overhead_p50_us": _p50_us(placing),
        "placing_misses": len(placing),
        "fingerprint_seconds": round(stats.fingerprint_seconds, 4),
        "replayed_calls": stats.replayed_calls,
        "forks": stats.forks,
        "starts": stats.starts,
        "snapshots": stats.snapshots,
        "evictions": stats.evictions,
        "nodes": nodes,
        "store_bytes_per_node": round(size / nodes, 1) if size and nodes else None,
        "memory_bytes_per_node": _memory_per_node(home),
    }


def run_no_cache(work: Workload, home: Path, bar: tqdm) -> ModeResult:  # type: ignore[type-arg]
    """The no-cache mode run by itself."""
    result = ModeResult("no cache")
    return run_alone(result, no_cache_turns(work, home, bar, result), len(work.groups))


def run_naive(work: Workload, home: Path, truth: ModeResult, bar: tqdm) -> ModeResult:  # type: ignore[type-arg]
    """The naive mode run by itself, after ``truth`` (the no-cache mode) has run."""
    result = ModeResult("naive")
    return run_alone(result, naive_turns(work, home, truth, bar, result), len(work.groups))


def run_tvcache(
    name: str,
    work: Workload,
    home: Path,
    truth: ModeResult,
    bar: tqdm,  # type: ignore[type-arg]
) -> ModeResult:
    """The tvcache mode ``name`` run by itself, after ``truth`` (the no-cache mode) has run."""
    result = ModeResult(name)
    return run_alone(result, tvcache_turns(work, home, truth, bar, result), len(work.groups))


def _sandbox_work(engine: Engine) -> int:
    """Starts, forks, replayed calls and snapshots so far: a miss that moved this did more
    than run its tool on a sandbox that was ready."""
    c = engine.counters
    return c.starts + c.forks + c.replayed_calls + c.snapshots


def _p50_us(seconds: list[float]) -> float | None:
    return round(statistics.median(seconds) * 1e6, 1) if seconds else None


def _memory_per_node(home: Path) -> float | None:
    """Python heap retained per cached node, measured by reopening the store in a new engine."""

    store = Store(f"sqlite:///{home / 'cache.db'}")
    try:
        backend = local_backend(Settings(home=home))
        engine = Engine(backend, store, settings=Settings(home=home))
        roots = store.roots()
        engine.open_root(roots[0].spec)  # warm SQLAlchemy's statement cache outside the count
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for root in roots[1:]:
            engine.open_root(root.spec)
        used = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        engine.close()
        count = sum(
            1
            for n in engine.graph.nodes()
            if n.parent is not None and n.root_id != roots[0].root_id
        )
        return round(used / count, 1) if count else None
    finally:
        store.close()


ROWS: list[Row] = [
    ("calls", "calls", "{:d}"),
    ("hit rate", "hit_rate", "{:.1%}"),
    ("  on recorded groups", "hit_rate_recorded", "{:.1%}"),
    ("  on edit groups", "hit_rate_edit", "{:.1%}"),
    ("  on raw recorded groups", "hit_rate_raw", "{:.1%}"),
    ("calls executed", "executed_calls", "{:d}"),
    ("tool seconds executed", "tool_seconds", "{:.3f}"),
    ("wall seconds", "wall_seconds", "{:.3f}"),
    ("hit latency p50 (ms)", "hit_p50_ms", "{:.4f}"),
    ("hit latency p95 (ms)", "hit_p95_ms", "{:.4f}"),
    ("call latency p50 (ms)", "call_p50_ms", "{:.4f}"),
    ("wall / no cache", "wall_vs_no_cache", "{:.3f}"),
    ("miss overhead p50 (us)", "miss_overhead_p50_us", "{:.1f}"),
    ("  steady misses (us)", "steady_miss_overhead_p50_us", "{:.1f}"),
    ("  misses placing a sandbox", "placing_miss_overhead_p50_us", "{:.1f}"),
    ("wrong observations", "wrong_observations", "{:d}"),
]


def run_sql_bench(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="tvcache-bench-") as tmp:
        workdir = Path(tmp)
        work = make_workload(args, workdir)
        results = [ModeResult(name) for name in ("no cache", "naive", *TVCACHE_MODES)]
        truth = results[0]
        homes = [workdir / r.name.replace(" ", "-") for r in results]
        for home in homes:
            home.mkdir()
        with tqdm(
            total=work.total_calls * len(results),
            desc="all modes",
            file=sys.stderr,
            disable=None,
            leave=False,
        ) as bar:
            modes = [
                (truth, no_cache_turns(work, homes[0], bar, truth)),
                (results[1], naive_turns(work, homes[1], truth, bar, results[1])),
            ]
            for home, result in zip(homes[2:], results[2:], strict=True):
                modes.append((result, tvcache_turns(work, home, truth, bar, result)))
            interleave(modes, len(work.groups))
        for each in results:
            each.extra["wall_vs_no_cache"] = round(each.wall_seconds / truth.wall_seconds, 3)
        isolation = isolation_cost.measure(Path(work.specs[0].template or tmp), workdir / "iso")
    if args.json:
        summary = {r.name.replace(" ", "_"): r.summary() for r in results}
        print(json.dumps({**summary, "isolation_cost": isolation}))
    else:
        groups = len(work.groups)
        rollouts = sum(len(g.rollouts) for g in work.groups)
        print(f"{groups} groups, {rollouts} rollouts, {work.total_calls} calls per mode")
        print(table(results, ROWS, first_cached=2))
        print(isolation_cost.format_report(isolation))
    if args.plot:
        plot(results, args.plot, "tvcache bench sql")
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0

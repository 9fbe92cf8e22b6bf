"""``tvcache bench terminal``: GRPO groups on the project's terminal tasks, in containers.

Modes, side by side on the same rollouts: (1) no cache, a fresh container per rollout;
(2) strict prefix cache without snapshots: every miss replays the history in a fresh
container; (3) tvcache at level ``fs`` (committed images), strict prefix matching;
(4) the same, read-only aware: a bash call that leaves the container's fingerprint as it was
does not advance the state; (5) the same with fingerprint merging: states of equal
fingerprints share their futures; (6) tvcache at level ``full`` (images plus CRIU checkpoints
of the running processes). ``--modes`` picks some. The no-cache mode runs first and is the
reference for wrong observations: a hit that differs from it only in durations (a test
runner's "in 0.05s", see :mod:`tvcache.bench._durations`) is counted apart; any other
difference is run fresh twice more and is wrong only if every fresh run agrees (see
:func:`judge`). At the end of every rollout its checker runs (as one more tool call) and the
scores must be equal across modes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from sandbox import Observation, RootSpec, ToolCall
from snapshots import TvcacheError
from tvcache._engine import Engine
from tvcache._factory import docker_backend
from tvcache._policy import CostAwarePolicy, NeverSnapshot, SnapshotPolicy
from tvcache._settings import Settings, StateAwareness
from tvcache._store import Store
from tvcache.bench._durations import Difference, JudgedKey, compare, judged_key
from tvcache.bench._report import ModeResult, Row, percentile_ms, plot, table
from tvcache.bench._terminal_workload import (
    TASKS_DIR,
    TerminalGroup,
    build_groups,
    list_tasks,
    parse_score,
)

QUICK_TASKS = ("csv-report", "job-worker", "sqlite-shop")
"""The tasks of ``--quick``: those whose calls are cheapest (7-22 s a rollout on a loaded 2-core
host). c-stats builds a generated C file for tens of seconds (and its checker rebuilds it),
http-service waits 20 s for a server on the wrong port, py-package, py-inventory and
rust-wordfreq build and test for 40-80 s a rollout: with them a quick run took 851 s."""
QUICK_GROUP = 4
QUICK_MODES = "tvcache fs,tvcache full"
"""The cached modes of ``--quick`` (no cache always runs); ``--modes`` picks others."""
CHECK = "\0checker"
"""Stands for a rollout's checker call in a history (it runs after the rollout's last call)."""
ROWS: list[Row] = [
    ("calls", "calls", "{:d}"),
    ("hit rate", "hit_rate", "{:.1%}"),
    ("calls executed (+replays)", "executed_calls", "{:d}"),
    ("tool seconds", "tool_seconds", "{:.1f}"),
    ("call time p50 (ms)", "call_p50_ms", "{:.1f}"),
    ("call time p95 (ms)", "call_p95_ms", "{:.1f}"),
    ("environment seconds", "environment_seconds", "{:.1f}"),
    ("  vs distinct-call floor", "environment_vs_floor", "{:.2f}x"),
    ("wall seconds", "wall_seconds", "{:.1f}"),
    ("fork p50 (ms)", "fork_p50_ms", "{:.0f}"),
    ("fork p95 (ms)", "fork_p95_ms", "{:.0f}"),
    ("snapshot p50 (ms)", "snapshot_p50_ms", "{:.0f}"),
    ("snapshot p95 (ms)", "snapshot_p95_ms", "{:.0f}"),
    ("snapshots", "snapshots", "{:d}"),
    ("snapshot bytes on disk", "snapshot_bytes", "{:,d}"),
    ("read-only nodes", "read_only_nodes", "{:d}"),
    ("merged nodes", "merged_nodes", "{:d}"),
    ("fingerprint seconds", "fingerprint_seconds", "{:.1f}"),
    ("wrong observations", "wrong_observations", "{:d}"),
    ("nondeterministic diffs", "nondeterministic_differences", "{:d}"),
    ("differ in durations only", "duration_only_differences", "{:d}"),
    ("mean checker score", "mean_score", "{:.3f}"),
]


@dataclass(frozen=True)
class Mode:
    """One cached mode: snapshot level, policy, and how state-aware its matching is."""

    name: str
    level: str
    policy: SnapshotPolicy
    state: StateAwareness = field(default_factory=StateAwareness)
    restore_ahead: int = 0
    """Forks of each hot ``full`` snapshot kept restored and paused by the backend."""


BASH_FINGERPRINTS = frozenset({"bash"})
MODES = [
    Mode("strict prefix", "fs", NeverSnapshot()),
    Mode("tvcache fs", "fs", CostAwarePolicy()),
    Mode(
        "fs read-only",
        "fs",
        CostAwarePolicy(),
        StateAwareness(fingerprint_tools=BASH_FINGERPRINTS, merge=False),
    ),
    Mode(
        "fs fingerprint",
        "fs",
        CostAwarePolicy(),
        StateAwareness(fingerprint_tools=BASH_FINGERPRINTS),
    ),
    Mode("tvcache full", "full", CostAwarePolicy(), restore_ahead=1),
]
"""Every cached mode, in the order they run (after no cache)."""


@dataclass(frozen=True)
class Plan:
    """The rollouts of every group and the root each group runs on."""

    groups: list[TerminalGroup]
    specs: list[RootSpec]

    @property
    def total_calls(self) -> int:
        return sum(len(r) + 1 for g in self.groups for r in g.rollouts)


def ensure_images(groups: list[TerminalGroup]) -> None:
    """Build the task images that are missing (``docker/tasks/build.sh``), showing its output."""
    missing = []
    for group in groups:
        probe = subprocess.run(
            ["docker", "image", "inspect", group.task.image], capture_output=True, check=False
        )
        if probe.returncode != 0:
            missing.append(group.task.name)
    if missing:
        print(f"building task images: {', '.join(missing)}", file=sys.stderr)
        subprocess.run(["bash", str(TASKS_DIR / "build.sh"), *missing], check=True)


def make_plan(args: argparse.Namespace) -> Plan:
    tasks = list_tasks()
    if args.tasks:
        wanted = set(args.tasks.split(","))
        tasks = [t for t in tasks if t.name in wanted]
    elif args.quick:
        tasks = [t for t in tasks if t.name in QUICK_TASKS]
    size = QUICK_GROUP if args.quick and args.group_size == 8 else args.group_size
    groups = build_groups(group_size=size, seed=args.seed, tasks=tasks)
    specs = [RootSpec(task_id=g.task.name, backend="docker", template=g.task.image) for g in groups]
    return Plan(groups, specs)


def _score(observation: Observation) -> float:
    try:
        return parse_score(observation.output)
    except ValueError:
        return 0.0


class _Recorder:
    """Thread-safe accumulation of one mode's measurements."""

    def __init__(self, name: str, reference: _Recorder | None, bar: tqdm) -> None:  # type: ignore[type-arg]
        self.result = ModeResult(name)
        self.reference = reference
        self.truth = reference.result if reference is not None else None
        self.scores: dict[tuple[int, int], float] = {}
        self.checks: dict[tuple[int, int], Observation] = {}
        self.tainted_differences = 0
        self.nondeterministic_differences = 0
        # hits that differ from the reference's output only in durations: (key, served, fresh)
        self.duration_only: list[tuple[tuple[int, int, int], Observation, Observation]] = []
        # hits that differ from the reference's output of their history: judged afterwards
        self.suspects: list[tuple[tuple[int, int, int], tuple[str, ...], Observation]] = []
        # every fresh output seen per history, but for its durations: a history whose fresh
        # runs disagree has no single right answer (temp names, directory times)
        self.fresh: dict[tuple[int, tuple[str, ...]], set[JudgedKey]] = {}
        self._bar = bar
        self._lock = threading.Lock()

    def call(
        self,
        key: tuple[int, int, int],
        history: tuple[str, ...],
        obs: Observation,
        seconds: float,
        hit: bool,
        tainted: bool = False,
    ) -> None:
        """Record one call. A hit that differs from the no-cache run of the same history only
        in durations is counted apart; otherwise it is a suspect unless it is marked ``tainted``
        or the no-cache run's fresh executions of that history already disagree among
        themselves (beyond durations); :func:`judge` settles suspects by running their history
        fresh again (a state-aware hit's exact history may have run only once).
        """
        with self._lock:
            r = self.result
            r.calls += 1
            r.call_latencies.append(seconds)
            if self.truth is None:
                self.fresh.setdefault((key[0], history), set()).add(judged_key(obs))
            if hit:
                r.hits += 1
                r.hit_latencies.append(seconds)
                expected = self.truth.outputs[key] if self.truth is not None else obs
                fresh = (
                    self.reference.fresh.get((key[0], history), set()) if self.reference else set()
                )
                difference = compare(obs, expected)
                if difference is Difference.DURATIONS_ONLY:
                    self.duration_only.append((key, obs, expected))
                elif difference is Difference.DIFFERENT:
                    self.tainted_differences += tainted
                    unstable = len(fresh) > 1
                    self.nondeterministic_differences += unstable and not tainted
                    if not tainted and not unstable:
                        self.suspects.append((key, history, obs))
            else:
                r.executed_calls += 1
                r.tool_seconds += obs.seconds
            r.outputs[key] = obs
            self._bar.update()

    def score(self, g: int, i: int, obs: Observation) -> None:
        with self._lock:
            self.scores[(g, i)] = _score(obs)
            self.checks[(g, i)] = obs
            self._bar.update()


FRESH_RERUNS = 2
"""Fresh executions of a suspect's history, beside the no-cache run's, before judging it."""
SHOWN_DURATION_DIFFERENCES = 3
"""Durations-only differences printed per mode (all are counted)."""


def judge(plan: Plan, home: Path, rec: _Recorder) -> None:
    """Print the first durations-only differences, then settle ``rec``'s suspects: run each
    history fresh :data:`FRESH_RERUNS` more times in new containers. Fresh runs that disagree
    among themselves beyond durations make the difference nondeterministic (there is no single
    right answer); fresh runs that all agree but for durations make what was served a wrong
    observation (printed, so it can be looked into)."""
    for key, served, fresh in rec.duration_only[:SHOWN_DURATION_DIFFERENCES]:
        difference = _difference(served.output, fresh.output)
        print(
            f"{rec.result.name}: differs in durations only at {key}:\n{difference}", file=sys.stderr
        )
    if len(rec.duration_only) > SHOWN_DURATION_DIFFERENCES:
        more = len(rec.duration_only) - SHOWN_DURATION_DIFFERENCES
        print(f"{rec.result.name}: {more} more differ in durations only", file=sys.stderr)
    if not rec.suspects or rec.truth is None:
        return
    backend = docker_backend(Settings(home=home), "fs")
    try:
        for key, history, served in rec.suspects:
            outputs = {judged_key(rec.truth.outputs[key])}
            for _ in range(FRESH_RERUNS):
                with backend.start(plan.specs[key[0]]) as sandbox:
                    for command in history:
                        fresh = sandbox.run(ToolCall("bash", {"command": command}))
                outputs.add(judged_key(fresh))
            if len(outputs) > 1:
                rec.nondeterministic_differences += 1
                continue
            rec.result.wrong += 1
            difference = _difference(served.output, rec.truth.outputs[key].output)
            print(
                f"{rec.result.name}: wrong observation at {key}, served vs fresh:\n{difference}",
                file=sys.stderr,
            )
    finally:
        backend.close()  # its background work ends before its home is removed


def _difference(served: str, fresh: str, context: int = 120) -> str:
    """Both texts around their first difference, to look into it."""
    at = next((n for n, (a, b) in enumerate(zip(served, fresh, strict=False)) if a != b), None)
    at = min(len(served), len(fresh)) if at is None else at
    start = max(0, at - context)
    return f"  {served[start : at + context]!r}\n  {fresh[start : at + context]!r}"


Rollout = Callable[[int, int], Iterator[None]]


def _run_groups(plan: Plan, rollout: Rollout, workers: int) -> None:
    """Run every group's rollouts; groups one after another.

    ``workers == 1``: round-robin, one call of each rollout in turn, the order in which a
    group's rollouts reach the sandbox when their policy steps take similar time (what the SQL
    benchmark does). ``workers > 1``: rollouts in threads, arriving at the same call at the
    same instant, so single flight makes the later ones wait for the first.
    """
    for g, group in enumerate(plan.groups):
        steps = [rollout(g, i) for i in range(len(group.rollouts))]
        if workers == 1:
            while steps:
                steps = [s for s in steps if next(s, StopIteration) is not StopIteration]
            continue
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for future in [pool.submit(list, s) for s in steps]:
                future.result()


def run_no_cache(plan: Plan, home: Path, workers: int, bar: tqdm) -> tuple[ModeResult, _Recorder]:  # type: ignore[type-arg]
    backend = docker_backend(Settings(home=home), "fs")
    rec = _Recorder("no cache", None, bar)
    starts: list[float] = []

    def rollout(g: int, i: int) -> Iterator[None]:
        # the container's start counts in the first call's time, as a cache's first miss
        # counts its fork: both modes pay for their sandbox when the first call needs it
        t0 = time.perf_counter()
        sandbox = backend.start(plan.specs[g])
        starts.append(time.perf_counter() - t0)
        try:
            for step, command in enumerate(plan.groups[g].rollouts[i]):
                t1 = t0 if step == 0 else time.perf_counter()
                obs = sandbox.run(ToolCall("bash", {"command": command}))
                history = plan.groups[g].rollouts[i][: step + 1]
                rec.call((g, i, step), history, obs, time.perf_counter() - t1, hit=False)
                yield
            rec.score(
                g, i, sandbox.run(ToolCall("bash", {"command": plan.groups[g].task.check_command}))
            )
        finally:
            sandbox.close()

    started = time.perf_counter()
    try:
        _run_groups(plan, rollout, workers)
        rec.result.wall_seconds = time.perf_counter() - started
    finally:
        backend.close()  # its background work ends before its home is removed
    rec.result.extra = {
        "environment_seconds": round(rec.result.tool_seconds + sum(starts), 2),
        "fork_p50_ms": percentile_ms(starts, 50),
        "fork_p95_ms": percentile_ms(starts, 95),
    }
    return rec.result, rec


def run_cached(
    mode: Mode,
    plan: Plan,
    home: Path,
    reference: _Recorder,
    workers: int,
    bar: tqdm,  # type: ignore[type-arg]
) -> tuple[ModeResult, _Recorder]:
    settings = Settings(home=home, state=mode.state)
    backend = docker_backend(settings, mode.level, restore_ahead=mode.restore_ahead)
    store = Store(f"sqlite:///{home / 'cache.db'}")
    engine = Engine(backend, store, settings=settings, policy=mode.policy)
    rec = _Recorder(mode.name, reference, bar)

    def rollout(g: int, i: int) -> Iterator[None]:
        with engine.session(plan.specs[g]) as session:
            for step, command in enumerate(plan.groups[g].rollouts[i]):
                t0 = time.perf_counter()
                served = session.call("bash", command=command)
                elapsed = time.perf_counter() - t0
                history = plan.groups[g].rollouts[i][: step + 1]
                rec.call(
                    (g, i, step), history, served.observation, elapsed, served.hit, served.tainted
                )
                yield
            rec.score(
                g, i, session.call("bash", command=plan.groups[g].task.check_command).observation
            )

    started = time.perf_counter()
    try:
        _run_groups(plan, rollout, workers)
        rec.result.wall_seconds = time.perf_counter() - started
        stats = engine.stats()
        snapshot_bytes = stats.snapshot_bytes
    finally:
        engine.close()
        backend.close()
        for node in engine.graph.snapshotted():
            if node.snapshot is not None:
                backend.delete_snapshot(node.snapshot)
        store.close()
    timings = engine.timings()
    forks, snaps = timings["fork"] + timings["start"], timings["snapshot"]
    r = rec.result
    r.executed_calls = stats.executed_calls
    r.tool_seconds = stats.tool_seconds
    ahead = backend.ahead.restore_seconds if backend.ahead is not None else 0.0
    r.extra = {
        # restores done ahead of time ran in the background: their seconds count too
        "environment_seconds": round(r.tool_seconds + sum(forks) + sum(snaps) + ahead, 2),
        "restore_ahead_seconds": round(ahead, 2),
        "restore_ahead_takes": backend.counters.get("full_ahead_takes", 0),
        "fork_p50_ms": percentile_ms(forks, 50),
        "fork_p95_ms": percentile_ms(forks, 95),
        "snapshot_p50_ms": percentile_ms(snaps, 50),
        "snapshot_p95_ms": percentile_ms(snaps, 95),
        "snapshots": stats.snapshots,
        "snapshot_bytes": snapshot_bytes,
        "replayed_calls": stats.replayed_calls,
        "forks": stats.forks,
        "starts": stats.starts,
        "divergences": stats.divergences,
        "restore_fallbacks": backend.counters.get("full_restore_fallbacks", 0),
        "read_only_nodes": stats.read_only_nodes,
        "merged_nodes": stats.merged_nodes,
        "fingerprint_seconds": round(stats.fingerprint_seconds, 2),
        "flattens": backend.counters.get("flattens", 0),
    }
    return r, rec


def distinct_floor(plan: Plan, truth: _Recorder) -> tuple[float, int]:
    """Seconds that executing each distinct call once costs, and how many there are.

    A call is distinct by its whole history within its group (a rollout's checker by the whole
    rollout); its cost is the mean of its fresh executions in the no-cache run ``truth``.
    """
    seconds: dict[tuple[int, tuple[str, ...]], list[float]] = {}
    for (g, i, step), obs in truth.result.outputs.items():
        history = plan.groups[g].rollouts[i][: step + 1]
        seconds.setdefault((g, history), []).append(obs.seconds)
    for (g, i), obs in truth.checks.items():
        seconds.setdefault((g, (*plan.groups[g].rollouts[i], CHECK)), []).append(obs.seconds)
    return sum(sum(v) / len(v) for v in seconds.values()), len(seconds)


def select_modes(names: str | None) -> list[Mode]:
    """The cached modes named in ``names`` (comma-separated), all when None."""
    if not names:
        return MODES
    known = {mode.name: mode for mode in MODES}
    wanted = [name.strip() for name in names.split(",")]
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise TvcacheError(
            f"unknown terminal bench mode(s): {', '.join(unknown)}",
            f"choose from: {', '.join(known)} (no cache always runs, as the reference)",
        )
    return [known[name] for name in wanted]


def run_terminal_bench(args: argparse.Namespace) -> int:
    began = time.perf_counter()
    try:
        plan = make_plan(args)
    except FileNotFoundError as error:
        raise TvcacheError(str(error), "run it from a checkout of the repository") from error
    ensure_images(plan.groups)
    workers = max(args.concurrency, 1)
    modes = select_modes(args.modes or (QUICK_MODES if args.quick else None))
    results: list[ModeResult] = []
    recorders: list[_Recorder] = []
    with tempfile.TemporaryDirectory(prefix="tvcache-bench-terminal-") as tmp:
        for index, name in enumerate(["no cache", *(m.name for m in modes)]):
            home = Path(tmp) / f"mode{index}"
            with tqdm(
                total=plan.total_calls, desc=f"{name:>13}", file=sys.stderr, leave=False
            ) as bar:
                if index == 0:
                    result, rec = run_no_cache(plan, home, workers, bar)
                else:
                    result, rec = run_cached(
                        modes[index - 1], plan, home, recorders[0], workers, bar
                    )
            judge(plan, Path(tmp) / "judge", rec)  # after the bar: it prints what it finds
            results.append(result)
            recorders.append(rec)
    reference = recorders[0].scores
    floor, distinct = distinct_floor(plan, recorders[0])
    for result, rec in zip(results, recorders, strict=True):
        result.extra["mean_score"] = round(sum(rec.scores.values()) / max(len(rec.scores), 1), 3)
        result.extra["tainted_differences"] = rec.tainted_differences
        result.extra["nondeterministic_differences"] = rec.nondeterministic_differences
        result.extra["duration_only_differences"] = len(rec.duration_only)
        mismatches = [k for k, v in reference.items() if rec.scores[k] != v]
        result.extra["score_mismatches"] = len(mismatches)
        result.extra["distinct_call_floor_seconds"] = round(floor, 2)
        environment = float(result.extra["environment_seconds"])  # type: ignore[arg-type]
        result.extra["environment_vs_floor"] = round(environment / max(floor, 1e-9), 3)
        for key in mismatches:
            difference = _difference(rec.checks[key].output, recorders[0].checks[key].output)
            print(
                f"{result.name}: checker of rollout {key} scored {rec.scores[key]} "
                f"(no cache: {reference[key]}):\n{difference}",
                file=sys.stderr,
            )
    if args.json:
        print(json.dumps({r.name.replace(" ", "_"): r.summary() for r in results}))
    else:
        rollouts = sum(len(g.rollouts) for g in plan.groups)
        print(f"{len(plan.groups)} tasks, {rollouts} rollouts, {plan.total_calls} calls per mode")
        print(
            f"distinct-call floor: {floor:.1f} s (each of the {distinct} distinct calls executed "
            f"once, at its no-cache time); whole run {time.perf_counter() - began:.0f} s"
        )
        print(table(results, ROWS, first_cached=1))
    if args.plot:
        plot(results, args.plot, "tvcache bench terminal")
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0 if all(r.wrong == 0 for r in results[1:]) else 1

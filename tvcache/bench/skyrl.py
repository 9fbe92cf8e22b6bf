"""``tvcache bench skyrl``: SkyRL-gym's SQL environment, unwrapped and through tvcache.

GRPO groups of G rollouts over the Spider tasks. The policy is replayed, not sampled: each
rollout sends the SQL of a recorded group of ``tvcache bench sql`` (real agents' queries,
shared prefixes, then divergence) as ``<sql>`` steps to skyrl-gym's ``SQLEnv`` and answers
with its last query as ``<solution>`` (rewarded against the task's gold SQL). The same steps
run side by side: the unwrapped env (the reference), the env wrapped by
:class:`~tvcache.adapters.skyrl.CachedTextEnv` on an in-process engine, and wrapped on a
``tvcache serve`` (the env's tools served with ``--tools``) from N worker processes; each
cached mode strict and read-only. Every observation and reward is compared with the unwrapped
env's: a difference fails the run.

skyrl-gym's SQL tool prints the rows of a ``frozenset``, whose order follows the process's
hashes (string hashes follow ``PYTHONHASHSEED``; Python 3.11 hashes ``None`` by address), so
the env itself shows one query's rows in another order in another process. The unwrapped and
in-process modes run in this process and must be byte-identical; the service executes the
tool in the server's process, so its observations are compared byte for byte and, where they
differ, as the same rows in another order, or, for a result the env cuts to its first 50
rows ("Truncated to 50 lines"), as 50 rows of the same shape (``env_order_only``); only a
difference beyond the env's own order fails. In every cached mode, each observation must
also equal byte for byte the one that mode gave first for the same history (``inconsistent``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any

from sandbox import JSON
from snapshots import TvcacheError
from tvcache._session import CallResult
from tvcache._settings import Settings, StateAwareness
from tvcache.adapters._common import SessionSource
from tvcache.adapters._host import HostTool
from tvcache.adapters.skyrl import CachedTextEnv, skyrl_engine, skyrl_tools
from tvcache.bench._report import Key, Row, grid, percentile_ms
from tvcache.bench._sql_workload import SqlRollout, SqlTaskGroup, build_groups
from tvcache.bench.sql import Workload
from tvcache.client import Client, ToolSession
from tvcache.data import spider_database, spider_tasks
from tvcache.service import ServerProcess

TASKS, QUICK_TASKS = 60, 6
DATA_ENV = "TVCACHE_BENCH_SKYRL_DATA"  # the env's db_path, for the server's tools
THINK = "<think>Next.</think>\n"  # the SQL env rewards only answers whose turns all think
PROMPT = [{"role": "user", "content": "Answer the question with SQL."}]
AWARENESS = {"strict": StateAwareness(), "read-only": StateAwareness(read_only=True)}
# (group, rollout, step), what the env returned (observations, reward, done), the step's
# seconds, and whether its tool call was a hit (None: no cache, or no tool call)
Answer = tuple[Key, list[dict[str, str]], float, bool, float, bool | None]


@dataclass(frozen=True)
class SkyrlWork:
    """The groups (their rollouts' actions are the env's action texts), each task's gold SQL,
    and ``data``, the env's ``db_path`` (Spider databases under ``spider/database``)."""

    data: str
    groups: tuple[SqlTaskGroup, ...]
    golds: tuple[str, ...]

    def steps(self, groups: Sequence[int] | None = None) -> Iterator[tuple[int, int, int, str]]:
        """Round-robin within each group, as ``tvcache bench sql`` orders its steps."""
        wanted = set(range(len(self.groups)) if groups is None else groups)
        for g, r, step, action in Workload(list(self.groups), []).steps():
            if g in wanted:
                yield g, r, step, action

    def make_env(self, g: int) -> Any:
        """Group ``g``'s env as skyrl-gym's trainer makes it: a DictConfig and the row's extras."""
        from omegaconf import DictConfig
        from skyrl_gym.envs.sql.env import SQLEnv

        group = self.groups[g]
        turns = max(len(r.actions) for r in group.rollouts) + 1  # every rollout gets to answer
        extras: dict[str, object] = {"db_id": group.db, "data": "spider", "max_turns": turns}
        extras["reward_spec"] = {"ground_truth": self.golds[g]}
        return SQLEnv(DictConfig({"db_path": self.data}), extras)


def make_work(tasks: int, group_size: int, seed: int, workdir: Path) -> SkyrlWork:
    """Recorded groups of ``bench sql`` as env actions; their databases under ``workdir``."""
    data = workdir / "data"
    groups, golds = [], []
    gold_of = {f"spider:{t.task_id}": t.gold for t in spider_tasks()}
    for group in build_groups(group_size, tasks, edit_tasks=0, seed=seed, raw_tasks=0):
        rollouts = tuple(
            SqlRollout((*(f"{THINK}<sql>{a}</sql>" for a in r.actions), _answer(r.actions[-1])))
            for r in group.rollouts
        )
        groups.append(
            SqlTaskGroup(group.task_id, group.db, "recorded", group.instruction, rollouts)
        )
        golds.append(gold_of[group.task_id])
        target = data / "spider" / "database" / group.db
        if not target.exists():
            spider_database(group.db, target)
    return SkyrlWork(str(data), tuple(groups), tuple(golds))


def _answer(sql: str) -> str:
    return f"{THINK}<solution>{sql}</solution>"


def server_tools() -> list[HostTool]:
    """The SQL env's tools for ``tvcache serve --tools tvcache.bench.skyrl:server_tools``,
    on the databases under ``$TVCACHE_BENCH_SKYRL_DATA`` (the env's ``db_path``)."""
    data = os.environ.get(DATA_ENV)
    if not data:
        raise TvcacheError(f"{DATA_ENV} is not set", "set it to the SQL env's db_path")
    from skyrl_gym.tools import SQLCodeExecutorToolGroup

    return skyrl_tools(
        [SQLCodeExecutorToolGroup(db_file_path=os.path.join(data, "spider/database"))]
    )


class _Recorder:
    """A session source that remembers whether the last tool call was a hit."""

    def __init__(self, source: SessionSource) -> None:
        self.source = source
        self.hit: bool | None = None

    def session(
        self,
        task_id: str,
        /,
        *,
        template: str | None = None,
        options: Mapping[str, JSON] | None = None,
    ) -> ToolSession:
        inner = self.source.session(task_id, template=template, options=options or {})
        return _RecordingSession(self, inner)


class _RecordingSession:
    def __init__(self, recorder: _Recorder, inner: ToolSession) -> None:
        self.recorder, self.inner = recorder, inner

    def call(self, tool: str, /, **args: JSON) -> CallResult:
        result = self.inner.call(tool, **args)
        self.recorder.hit = result.hit
        return result

    def close(self) -> None:
        self.inner.close()


def drive(
    work: SkyrlWork, source: SessionSource | None, groups: Sequence[int] | None = None
) -> tuple[list[Answer], float, float]:
    """Run the steps of ``groups`` on the env, wrapped on ``source`` unless it is None; the
    answers and when driving started and ended (``time.time()``)."""
    recorder = _Recorder(source) if source is not None else None
    envs: dict[tuple[int, int], Any] = {}
    answers: list[Answer] = []
    started = time.time()
    for g, r, step, action in work.steps(groups):
        env = envs.get((g, r))
        if env is None:
            env = work.make_env(g)
            if recorder is not None:
                env = CachedTextEnv(env, recorder, work.groups[g].task_id)  # the one line
            env.init(PROMPT)
            envs[(g, r)] = env
        if recorder is not None:
            recorder.hit = None
        t0 = time.perf_counter()
        out = env.step(action)
        elapsed = time.perf_counter() - t0
        hit = recorder.hit if recorder is not None else None
        answers.append(
            ((g, r, step), out["observations"], out["reward"], out["done"], elapsed, hit)
        )
        if out["done"]:
            envs.pop((g, r)).close()
    for env in envs.values():
        env.close()
    return answers, started, time.time()


def counters(stats: object) -> dict[str, float]:
    """The engine counters this benchmark reports: the one place it reads ``stats()``."""
    names = ("misses", "replayed_calls", "executed_seconds", "replayed_seconds")
    if isinstance(stats, Mapping):
        return {name: float(stats[name]) for name in names}
    return {name: float(getattr(stats, name)) for name in names}


def _in_process(work: SkyrlWork, home: Path, cache: str | None) -> Run:
    """One mode in this process: the unwrapped env, or the env on an in-process engine."""
    if cache is None:
        answers, start, end = drive(work, None)
        return Run(answers, end - start)
    settings = Settings(home=home, state=AWARENESS[cache])
    engine = skyrl_engine(work.make_env(0), settings)
    try:
        answers, start, end = drive(work, engine)
        return Run(answers, end - start, counters(engine.stats()))
    finally:
        engine.close()


def _service_worker(
    url: str, work: SkyrlWork, groups: list[int]
) -> tuple[list[Answer], float, float]:
    with Client(url) as client:
        return drive(work, client, groups)


def _through_service(work: SkyrlWork, home: Path, cache: str, pool: Pool, workers: int) -> Run:
    """The env wrapped on a ``tvcache serve`` that serves its tools, from ``workers`` processes
    of ``pool``; each takes every ``workers``-th group."""
    flags = ["--log-level", "warning", "--tools", f"{__name__}:server_tools"]
    flags += ["--read-only"] if AWARENESS[cache].read_only else []
    shares = [[g for g in range(len(work.groups)) if g % workers == w] for w in range(workers)]
    with ServerProcess(home, *flags, env={DATA_ENV: work.data}) as server:
        done = pool.starmap(_service_worker, [(server.url, work, s) for s in shares if s])
        with Client(server.url) as client:
            stats = counters(client.stats())
        server.stop(signal.SIGTERM)
    answers = [a for share, _, _ in done for a in share]
    return Run(answers, max(end for *_, end in done) - min(start for _, start, _ in done), stats)


def _call_latencies(run: Run) -> list[float]:
    """Seconds of the steps that called a tool (every step but a rollout's answer)."""
    return [a[4] for a in run.answers if not a[3]]


def _differences(answers: list[Answer], reference: list[Answer]) -> dict[str, int]:
    """Steps whose observations or reward and done differ from the reference's (a step
    missing on either side counts in both), and how many differ only in the env's row order."""
    ours, truth = {a[0]: a for a in answers}, {a[0]: a for a in reference}
    missing = len(ours.keys() ^ truth.keys())
    both = ours.keys() & truth.keys()
    differ = [k for k in both if ours[k][1] != truth[k][1]]
    return {
        "observation_differences": missing + len(differ),
        "env_order_only": sum(_rows(ours[k][1]) == _rows(truth[k][1]) for k in differ),
        "reward_differences": missing + sum(ours[k][2:4] != truth[k][2:4] for k in both),
    }


TRUNCATED = "Truncated to 50 lines since returned response too long: "  # skyrl-gym's words


def _rows(observations: list[dict[str, str]]) -> list[object]:
    """Each observation as the env's row order leaves it: its lines sorted; for a result
    the env cut to the first 50 rows of its set, the line count and the last line."""
    out: list[object] = []
    for observation in observations:
        lines = observation["content"].splitlines()
        cut = any(TRUNCATED in line for line in lines)
        out.append((len(lines), lines[-1]) if cut else sorted(lines))
    return out


@dataclass
class Run:
    """What one mode returned: every step's answer, wall seconds, engine counters."""

    answers: list[Answer]
    wall_seconds: float
    counters: dict[str, float] = field(default_factory=dict)

    def summary(self, reference: Run | None, work: SkyrlWork) -> dict[str, object]:
        """Hit rate, latency of the steps that called a tool and what it adds to the
        reference's, wall seconds, and the observations and rewards that differ from it."""
        calls = [a for a in self.answers if not a[3]]
        hits = sum(bool(a[5]) for a in calls)
        latency = {p: percentile_ms(_call_latencies(self), p) for p in (50, 99)}
        out: dict[str, object] = {
            "calls": len(calls),
            "hit_rate": round(hits / len(calls), 4) if calls else 0.0,
            "call_p50_ms": latency[50],
            "call_p99_ms": latency[99],
            "wall_seconds": round(self.wall_seconds, 4),
        }
        if reference is None:
            return out
        base = _call_latencies(reference)
        for p in (50, 99):
            ours, theirs = latency[p], percentile_ms(base, p)
            added = None if ours is None or theirs is None else round(ours - theirs, 4)
            out[f"added_p{p}_ms"] = added
        out |= _differences(self.answers, reference.answers)
        out["inconsistent"] = self.inconsistent(work)
        if self.counters:
            out["executed_calls"] = int(self.counters["misses"] + self.counters["replayed_calls"])
            out["tool_seconds"] = round(
                self.counters["executed_seconds"] + self.counters["replayed_seconds"], 4
            )
        return out

    def inconsistent(self, work: SkyrlWork) -> int:
        """Observations unequal to the first one this mode gave for the same history (a hit
        must be byte for byte what its history's execution returned)."""
        first: dict[tuple[int, tuple[str, ...]], list[dict[str, str]]] = {}
        count = 0
        for (g, r, step), observations, *_ in sorted(self.answers, key=lambda a: a[0]):
            history = (g, work.groups[g].rollouts[r].actions[: step + 1])
            count += first.setdefault(history, observations) != observations
        return count


ROWS: list[Row] = [
    ("tool calls", "calls", "{:d}"),
    ("hit rate", "hit_rate", "{:.1%}"),
    ("calls executed", "executed_calls", "{:d}"),
    ("call latency p50 (ms)", "call_p50_ms", "{:.3f}"),
    ("call latency p99 (ms)", "call_p99_ms", "{:.3f}"),
    ("added p50 vs unwrapped (ms)", "added_p50_ms", "{:+.3f}"),
    ("added p99 vs unwrapped (ms)", "added_p99_ms", "{:+.3f}"),
    ("wall seconds", "wall_seconds", "{:.3f}"),
    ("observations differing", "observation_differences", "{:d}"),
    ("  of which env's row order", "env_order_only", "{:d}"),
    ("rewards differing", "reward_differences", "{:d}"),
    ("unequal to same history's", "inconsistent", "{:d}"),
]


def run_skyrl_bench(args: argparse.Namespace) -> int:
    """Every mode side by side; exit 1 when any observation or reward differs."""
    try:
        import omegaconf  # noqa: F401
        import skyrl_gym.envs.sql.env  # noqa: F401  (before the workers fork: they need it)
    except ImportError as error:
        raise TvcacheError(
            f"bench skyrl needs skyrl-gym ({error})", "pip install 'tvcache[skyrl]'"
        ) from error
    workers = args.workers or 4
    runs: dict[str, Run] = {}
    # Forked now, before any engine starts a thread: idle until the service modes need them.
    pool = multiprocessing.get_context("fork").Pool(workers)
    with tempfile.TemporaryDirectory(prefix="tvcache-bench-skyrl-") as tmp, pool:
        workdir = Path(tmp)
        work = make_work(QUICK_TASKS if args.quick else TASKS, args.group_size, args.seed, workdir)
        for cache in (None, *AWARENESS):
            name = "unwrapped" if cache is None else f"in-process {cache}"
            print(f"bench skyrl: {name}", file=sys.stderr)
            runs[name] = _in_process(work, workdir / name.replace(" ", "-"), cache)
        for cache in AWARENESS:
            name = f"service x{workers} {cache}"
            print(f"bench skyrl: {name}", file=sys.stderr)
            home = workdir / name.replace(" ", "-")
            runs[name] = _through_service(work, home, cache, pool, workers)
    reference = runs["unwrapped"]
    summaries = {n: r.summary(None if r is reference else reference, work) for n, r in runs.items()}
    differences = sum(_failures(n, s) for n, s in summaries.items())
    rollouts = sum(len(g.rollouts) for g in work.groups)
    if args.json:
        print(json.dumps({n.replace(" ", "_"): s for n, s in summaries.items()}))
    else:
        print(f"{len(work.groups)} groups, {rollouts} rollouts of skyrl-gym's SQLEnv per mode")
        print("\n".join(grid(summaries, ROWS, label_width=30)))
    if differences:
        print(
            f"bench skyrl: {differences} observation(s) or reward(s) differ from the unwrapped "
            "env's (beyond its own row order) or from the same history's first observation",
            file=sys.stderr,
        )
        return 1
    return 0


def _failures(name: str, summary: Mapping[str, object]) -> int:
    """Differences the cache is to blame for: in this process every byte counts; from the
    server's process, the env's own row order does not."""
    counts = {k: int(v) for k, v in summary.items() if isinstance(v, int)}
    observations = counts.get("observation_differences", 0)
    if name.startswith("service"):
        observations -= counts.get("env_order_only", 0)
    return observations + counts.get("reward_differences", 0) + counts.get("inconsistent", 0)

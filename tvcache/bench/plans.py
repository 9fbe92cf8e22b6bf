"""``tvcache bench plans``: agentic plan caching against its baselines, side by side.

Every method answers the same warm-up stream (which fills its cache) and then the same
evaluation stream, which is what is reported: cost ($ and tokens by model), accuracy (execution
match against the gold query), plan-cache and tool-cache hit rates, the overhead share of the
cache's own LM calls (keyword extraction, template generation), and latency; each also as a
ratio to the accuracy-optimal baseline (always the large planner). Models are the embedded
SmolLM2-135M by default (priced by role with a table, since the weights are the same), or real
endpoints with ``--planner-url/--small-url/--actor-url``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sandbox import RootSpec
from tvcache._engine import Engine
from tvcache._factory import local_backend
from tvcache._settings import Settings
from tvcache._store import Store
from tvcache.bench._plans_workload import (
    Request,
    execution_match,
    load_jsonl,
    spider_streams,
)
from tvcache.plans import (
    LM,
    CostOptimal,
    FullHistory,
    Ledger,
    LocalLM,
    Method,
    MiniLM,
    Models,
    OpenAICompatibleLM,
    PlanCache,
    PlanCaching,
    Price,
    Prices,
    RunLog,
    SemanticCache,
    SessionDatabase,
    Task,
    finished,
)

METHODS = ("accuracy-optimal", "cost-optimal", "plan-cache", "semantic-cache", "full-history")
#: The embedded model plays every role; its roles are priced as the paper's models are.
LOCAL_PRICES = Prices(
    {
        "local-large": Price(2.50, 10.00),  # as GPT-4o
        "local-small": Price(0.15, 0.60),  # as GPT-4o-mini
        "local-actor": Price(0.15, 0.60),
    }
)
QUICK = {"warmup": 4, "eval": 4, "max_rounds": 3}
FULL = {"warmup": 40, "eval": 40, "max_rounds": 5}


def add_plan_options(bench: argparse.ArgumentParser) -> None:
    """The options of ``bench plans`` (the other workloads ignore them)."""
    group = bench.add_argument_group("plans (tvcache bench plans; docs/plans.md)")
    group.add_argument("--warmup", type=int, help="warm-up requests (default 40, quick 4)")
    group.add_argument("--eval", type=int, help="evaluation requests (default 40, quick 4)")
    group.add_argument("--max-rounds", type=int, help="plan/act rounds (default 5, quick 3)")
    group.add_argument(
        "--workload-file", help="a JSONL workload instead of the bundled Spider tasks"
    )
    group.add_argument("--methods", help=f"comma-separated, from {', '.join(METHODS)}")
    for role, default in (("planner", "the large"), ("small", "the small"), ("actor", "the")):
        group.add_argument(
            f"--{role}-url", help=f"OpenAI-compatible API base of {default} planner/actor"
        )
        group.add_argument(f"--{role}-model", help=f"model name at --{role}-url")
    group.add_argument(
        "--prices", help='JSON price table: {"<model>": {"input": $/M, "output": $/M}}'
    )
    group.add_argument(
        "--store-on",
        choices=["correct", "finished"],
        default="correct",
        help="a run is a success to cache when its answer is correct (a verifier, as an RL reward"
        " is) or when the planner finished (no ground truth)",
    )


def _lm(args: argparse.Namespace, role: str, local_name: str) -> LM:
    url = getattr(args, f"{role}_url")
    if url:
        return OpenAICompatibleLM(url, getattr(args, f"{role}_model") or "default")
    return LocalLM(local_name)


@dataclass
class MethodResult:
    name: str
    requests: int = 0
    correct: int = 0
    plan_hits: int = 0
    stored: int = 0
    tool_calls: int = 0
    tool_hits: int = 0
    seconds: float = 0.0
    ledger: Ledger = field(default_factory=Ledger)

    def summary(self) -> dict[str, object]:
        total = self.ledger.totals()
        n = max(self.requests, 1)
        return {
            "method": self.name,
            "requests": self.requests,
            "accuracy": round(self.correct / n, 4),
            "plan_hit_rate": round(self.plan_hits / n, 4),
            "tool_hit_rate": round(self.tool_hits / max(self.tool_calls, 1), 4),
            "dollars": round(total.dollars, 6),
            "tokens": total.prompt_tokens + total.completion_tokens,
            "overhead_share": round(self.ledger.overhead_share(), 4),
            "seconds_per_request": round(self.seconds / n, 3),
            "templates_stored": self.stored,
            "by_model": {
                model: {
                    "calls": t.calls,
                    "prompt_tokens": t.prompt_tokens,
                    "completion_tokens": t.completion_tokens,
                    "dollars": round(t.dollars, 6),
                }
                for model, t in sorted(self.ledger.by_model().items())
            },
        }


def _method(
    name: str, models: Models, ledger: Ledger, store: Store, rounds: int, embedder: MiniLM | None
) -> Method:
    if name == "accuracy-optimal":
        return Method(models, ledger, max_rounds=rounds)
    if name == "cost-optimal":
        return CostOptimal(models, ledger, max_rounds=rounds)
    if name == "plan-cache":
        return PlanCaching(models, ledger, PlanCache(store, "bench/plan-cache"), max_rounds=rounds)
    if name == "full-history":
        cache = PlanCache(store, "bench/full-history")
        return FullHistory(models, ledger, cache, max_rounds=rounds)
    assert embedder is not None
    return SemanticCache(models, ledger, embedder, max_rounds=rounds)


class _Runner:
    def __init__(self, args: argparse.Namespace, workdir: Path, store: Store) -> None:
        self.args = args
        self.embedder: MiniLM | None = None
        self.workdir = workdir
        settings = Settings(home=workdir)
        self.engine = Engine(local_backend(settings), store, settings=settings)
        self.store = store

    def template(self, request: Request) -> str:
        name = request.db or Path(request.db_path or "db").stem
        folder = self.workdir / "databases" / name
        if not folder.exists():
            request.write_database(folder)
        return str(folder)

    def judge(self, request: Request) -> Callable[[RunLog], bool]:
        if self.args.store_on == "finished":
            return finished
        return lambda log: execution_match(request, log.answer_sql)

    def run(
        self, name: str, models: Models, prices: Prices, streams: list[list[Request]]
    ) -> MethodResult:
        warm = Ledger(prices)
        method = _method(name, models, warm, self.store, self.args.max_rounds, self.embedder)
        result = MethodResult(name, ledger=Ledger(prices))
        for phase, stream in enumerate(streams):
            evaluating = phase == 1
            if evaluating:  # only the evaluation stream is reported
                method.ledger = method.agent.ledger = result.ledger
            for request in stream:
                spec = RootSpec(
                    task_id=f"bench-plans/{name}/{request.db or request.db_path}",
                    backend="local",
                    template=self.template(request),
                )
                started = time.perf_counter()
                with self.engine.session(spec) as session:
                    task = Task(request.request_id, request.question)
                    outcome = method.solve(task, SessionDatabase(session), self.judge(request))
                elapsed = time.perf_counter() - started
                result.stored += outcome.stored
                if evaluating:
                    self._count(result, request, outcome.log, outcome.hit, elapsed)
        return result

    @staticmethod
    def _count(
        result: MethodResult, request: Request, log: RunLog, hit: bool, seconds: float
    ) -> None:
        result.requests += 1
        result.correct += execution_match(request, log.answer_sql)
        result.plan_hits += hit
        result.tool_calls += len(log.steps) + 1  # + the schema query
        result.tool_hits += sum(s.tool_hit for s in log.steps) + log.schema_hit
        result.seconds += seconds


def _table(rows: list[dict[str, object]]) -> str:
    base = next((r for r in rows if r["method"] == "accuracy-optimal"), None)
    head = (
        f"{'method':<18}{'accuracy':>9}{'acc/large':>10}{'$':>11}{'$/large':>9}{'plan hit':>9}"
        f"{'tool hit':>9}{'overhead':>9}{'s/req':>8}{'s/large':>8}"
    )
    lines = [head, "-" * len(head)]

    def ratio(row: dict[str, object], key: str) -> str:
        if base is None or not base[key]:
            return "-"
        return f"{float(row[key]) / float(base[key]):.2f}"  # type: ignore[arg-type]

    for r in rows:
        lines.append(
            f"{r['method']:<18}{r['accuracy']:>9.3f}{ratio(r, 'accuracy'):>10}"
            f"{r['dollars']:>11.6f}{ratio(r, 'dollars'):>9}{r['plan_hit_rate']:>9.3f}"
            f"{r['tool_hit_rate']:>9.3f}{r['overhead_share']:>9.3f}"
            f"{r['seconds_per_request']:>8.2f}{ratio(r, 'seconds_per_request'):>8}"
        )
    lines.append("")
    lines.append("tokens and $ by model (evaluation stream):")
    for r in rows:
        for model, t in r["by_model"].items():  # type: ignore[attr-defined]
            lines.append(
                f"  {r['method']:<18}{model:<24}{t['calls']:>6} calls {t['prompt_tokens']:>8} in"
                f" {t['completion_tokens']:>7} out  ${t['dollars']:.6f}"
            )
    return "\n".join(lines)


def run_plans_bench(args: argparse.Namespace) -> int:
    sizes = QUICK if args.quick else FULL
    args.warmup = sizes["warmup"] if args.warmup is None else args.warmup
    args.eval = sizes["eval"] if args.eval is None else args.eval
    args.max_rounds = sizes["max_rounds"] if args.max_rounds is None else args.max_rounds
    names = [m.strip() for m in (args.methods or ",".join(METHODS)).split(",") if m.strip()]
    unknown = sorted(set(names) - set(METHODS))
    if unknown:
        raise SystemExit(f"tvcache bench plans: unknown method(s) {unknown}; use {METHODS}")
    if args.workload_file:
        warm, evals = load_jsonl(Path(args.workload_file), args.warmup)
    else:
        warm, evals = spider_streams(args.warmup, args.eval, args.seed)
    models = Models(
        large=_lm(args, "planner", "local-large"),
        small=_lm(args, "small", "local-small"),
        actor=_lm(args, "actor", "local-actor"),
    )
    prices = Prices.from_json(args.prices) if args.prices else LOCAL_PRICES
    local = any(isinstance(m, LocalLM) for m in (models.large, models.small, models.actor))
    rows = []
    with tempfile.TemporaryDirectory(prefix="tvcache-bench-plans-") as tmp:
        workdir = Path(tmp)
        with Store(f"sqlite:///{workdir / 'cache.db'}") as store:
            runner = _Runner(args, workdir, store)
            if "semantic-cache" in names:  # fail before any method ran, not after
                runner.embedder = MiniLM()
            try:
                for name in names:
                    rows.append(runner.run(name, models, prices, [warm, evals]).summary())
            finally:
                runner.engine.close()
    if args.json:
        print(json.dumps({"warmup": len(warm), "eval": len(evals), "methods": rows}))
        return 0
    print(
        f"tvcache bench plans: {len(warm)} warm-up + {len(evals)} evaluation requests, "
        f"up to {args.max_rounds} plan/act rounds; reported: the evaluation stream"
    )
    print(_table(rows))
    print(
        "prices ($ per M tokens in/out): "
        + ", ".join(f"{m} {p.input}/{p.output}" for m, p in prices.items())
    )
    if local:
        print(
            "note: the embedded SmolLM2-135M plays every role here; at 135M parameters its "
            "accuracy says little. Compare the paper's figures with real endpoints "
            "(--planner-url/--small-url/--actor-url)."
        )
    return 0

"""One small interface for every LM call, and what each call cost.

The plan cache's whole point is cost: every call of every model goes through :class:`LM` and is
recorded in a :class:`Ledger` (tokens in and out, seconds, dollars from a :class:`Prices` table
the user sets), so a benchmark or a deployment can say what the planner cost and what the cache's
own overhead (keyword extraction, template generation) took of it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from snapshots import TvcacheError


class LMError(TvcacheError):
    """A language model could not be reached, loaded or understood."""


@dataclass(frozen=True)
class Completion:
    """What one LM call returned: its text and the tokens it was billed for."""

    text: str
    prompt_tokens: int
    completion_tokens: int


@runtime_checkable
class LM(Protocol):
    """A chat model: one system and one user message in, one answer out.

    ``model`` names the model in price tables and reports.
    """

    model: str

    def complete(self, system: str, user: str, *, max_tokens: int) -> Completion: ...


@dataclass(frozen=True)
class Price:
    """Dollars per million tokens."""

    input: float
    output: float


class Prices:
    """Price per million tokens by model name; unknown models cost ``default``.

    Load a user's table with :meth:`from_json` (``{"model": {"input": 2.5, "output": 10}}``).
    """

    def __init__(self, table: Mapping[str, Price] | None = None, default: Price | None = None):
        self._table = dict(table or {})
        self.default = default or Price(0.0, 0.0)

    def __getitem__(self, model: str) -> Price:
        return self._table.get(model, self.default)

    def items(self) -> list[tuple[str, Price]]:
        return sorted(self._table.items())

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        price = self[model]
        return (prompt_tokens * price.input + completion_tokens * price.output) / 1e6

    @classmethod
    def from_json(cls, path: Path | str) -> Prices:
        """A table from a JSON file: ``{"<model>": {"input": $/M, "output": $/M}, ...}``."""
        try:
            raw = json.loads(Path(path).read_text())
            table = {
                str(model): Price(float(p["input"]), float(p["output"])) for model, p in raw.items()
            }
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
            raise LMError(
                f"cannot read the price table {path}: {error}",
                'write it as {"<model>": {"input": <$ per M tokens>, "output": <$ per M>}}',
            ) from error
        return cls(table)


#: What a call was for. ``keyword`` and ``template`` are the plan cache's own overhead.
STAGES = ("keyword", "template", "adapt", "plan", "act", "embed")
OVERHEAD_STAGES = frozenset({"keyword", "template", "embed"})


@dataclass(frozen=True)
class Usage:
    """One recorded LM call."""

    model: str
    stage: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    dollars: float


@dataclass
class Totals:
    """Sums over recorded calls."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    dollars: float = 0.0

    def add(self, usage: Usage) -> None:
        self.calls += 1
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens
        self.seconds += usage.seconds
        self.dollars += usage.dollars


@dataclass
class Ledger:
    """Every LM call of a run, priced. Thread-safe."""

    prices: Prices = field(default_factory=Prices)
    usages: list[Usage] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def call(self, lm: LM, stage: str, system: str, user: str, *, max_tokens: int) -> str:
        """Run ``lm`` for ``stage`` and record what it cost; its text."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; use one of {', '.join(STAGES)}")
        started = time.perf_counter()
        done = lm.complete(system, user, max_tokens=max_tokens)
        self.record(lm.model, stage, done, time.perf_counter() - started)
        return done.text

    def record(self, model: str, stage: str, done: Completion, seconds: float) -> Usage:
        dollars = self.prices.cost(model, done.prompt_tokens, done.completion_tokens)
        usage = Usage(model, stage, done.prompt_tokens, done.completion_tokens, seconds, dollars)
        with self._lock:
            self.usages.append(usage)
        return usage

    def totals(self, *, stages: Iterable[str] | None = None) -> Totals:
        wanted = None if stages is None else set(stages)
        out = Totals()
        with self._lock:
            for usage in self.usages:
                if wanted is None or usage.stage in wanted:
                    out.add(usage)
        return out

    def by_model(self) -> dict[str, Totals]:
        out: dict[str, Totals] = {}
        with self._lock:
            for usage in self.usages:
                out.setdefault(usage.model, Totals()).add(usage)
        return out

    def overhead_share(self) -> float:
        """Share of all dollars (tokens when nothing is priced) spent on the cache's own calls."""
        total = self.totals()
        extra = self.totals(stages=OVERHEAD_STAGES)
        if total.dollars > 0:
            return extra.dollars / total.dollars
        tokens = total.prompt_tokens + total.completion_tokens
        return (extra.prompt_tokens + extra.completion_tokens) / tokens if tokens else 0.0

"""Agentic plan caching and the baselines it is measured against, behind one interface.

Every method answers a task with the same Plan-Act agent; they differ only in which planner LM
plans and what it is given: nothing (always large, always small), an adapted template found by an
exact keyword (plan caching), a similar earlier query's plan (semantic cache), or a whole earlier
log found by keyword (full-history cache).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from tvcache.plans._agent import Database, PlanActAgent, RunLog, Task
from tvcache.plans._keywords import extract_keyword
from tvcache.plans._lm import LM, Ledger
from tvcache.plans._prompts import prompt
from tvcache.plans._remote import TemplateStore
from tvcache.plans._templates import adapt_template, generate_template, numbered, plan_steps

Judge = Callable[[RunLog], bool]


def finished(log: RunLog) -> bool:
    """The default success signal without ground truth: the planner said DONE on an answer."""
    return log.finished and log.answer_sql is not None


@dataclass(frozen=True)
class Models:
    """The LMs of a Plan-Act agent: the expensive planner, the cheap one, the actor."""

    large: LM
    small: LM
    actor: LM


@dataclass
class Outcome:
    """What a method did for one task."""

    log: RunLog
    success: bool
    hit: bool
    keyword: str = ""
    template_id: str | None = None
    stored: bool = False


@dataclass
class _Choice:
    planner: LM
    plan: str = ""
    hit: bool = False
    keyword: str = ""
    template_id: str | None = None
    extra: dict[str, object] = field(default_factory=dict)


class Method:
    """Always the large planner (accuracy-optimal). Subclasses choose differently."""

    name = "accuracy-optimal"

    def __init__(self, models: Models, ledger: Ledger, *, max_rounds: int = 10) -> None:
        self.models = models
        self.ledger = ledger
        self.agent = PlanActAgent(models.actor, ledger, max_rounds=max_rounds)

    def choose(self, task: Task) -> _Choice:
        return _Choice(self.models.large)

    def learn(self, task: Task, choice: _Choice, log: RunLog, success: bool) -> bool:
        """Update the cache after a run; whether something was stored."""
        return False

    def solve(self, task: Task, db: Database, judge: Judge = finished) -> Outcome:
        choice = self.choose(task)
        log = self.agent.run(task, choice.planner, db, plan=choice.plan)
        success = judge(log)
        stored = self.learn(task, choice, log, success)
        return Outcome(log, success, choice.hit, choice.keyword, choice.template_id, stored)


class CostOptimal(Method):
    """Always the small planner."""

    name = "cost-optimal"

    def choose(self, task: Task) -> _Choice:
        return _Choice(self.models.small)


class PlanCaching(Method):
    """Agentic plan caching: keyword -> template; a hit is adapted by the small planner, a miss
    is planned by the large one and, when it succeeded, becomes a template."""

    name = "plan-cache"

    def __init__(
        self, models: Models, ledger: Ledger, cache: TemplateStore, *, max_rounds: int = 10
    ) -> None:
        super().__init__(models, ledger, max_rounds=max_rounds)
        self.cache = cache

    def choose(self, task: Task) -> _Choice:
        keyword = extract_keyword(self.models.small, self.ledger, task.question)
        found = self.cache.lookup(keyword) if keyword else None
        if found is None:
            return _Choice(self.models.large, keyword=keyword)
        plan = self.plan_from(found.template, task)
        return _Choice(self.models.small, plan, True, keyword, found.template_id)

    def plan_from(self, template: str, task: Task) -> str:
        """What the small planner is given on a hit: the template adapted to ``task``."""
        return adapt_template(self.models.small, self.ledger, template, task.question)

    def template_of(self, keyword: str, log: RunLog) -> tuple[str, str]:
        """What a successful miss stores, and the prompt version that made it."""
        template = generate_template(self.models.small, self.ledger, keyword, log)
        return template, prompt("template").label

    def learn(self, task: Task, choice: _Choice, log: RunLog, success: bool) -> bool:
        if choice.template_id is not None:
            self.cache.record(choice.template_id, success=success)
            return False
        if not success or not choice.keyword:
            return False
        template, version = self.template_of(choice.keyword, log)
        if not template:
            return False
        self.cache.put(choice.keyword, template, source=task.task_id, prompt_version=version)
        return True


class FullHistory(PlanCaching):
    """Keyword match as plan caching, but the whole earlier log is the small planner's example
    (no filtering, no generalising, no adaptation)."""

    name = "full-history"

    def plan_from(self, template: str, task: Task) -> str:
        return f"(a solved similar task)\n{template}"

    def template_of(self, keyword: str, log: RunLog) -> tuple[str, str]:
        return log.render(), "log"


class Embedder(Protocol):
    """Text -> unit vectors (see :class:`tvcache.plans.MiniLM`)."""

    def embed(self, texts: list[str]) -> list[list[float]]: ...


class SemanticCache(Method):
    """GPTCache-style: the plan of the most similar earlier query (cosine of query embeddings at
    least ``threshold``) is handed to the small planner as it is."""

    name = "semantic-cache"

    def __init__(
        self,
        models: Models,
        ledger: Ledger,
        embedder: Embedder,
        *,
        threshold: float = 0.8,
        max_rounds: int = 10,
    ) -> None:
        super().__init__(models, ledger, max_rounds=max_rounds)
        self.embedder = embedder
        self.threshold = threshold
        self.entries: list[tuple[list[float], str]] = []

    def choose(self, task: Task) -> _Choice:
        vector = self.embedder.embed([task.question])[0]
        best, plan = -1.0, ""
        for other, cached in self.entries:
            score = sum(a * b for a, b in zip(vector, other, strict=True))
            if score > best:
                best, plan = score, cached
        if best >= self.threshold:
            return _Choice(self.models.small, plan, True, extra={"vector": vector})
        return _Choice(self.models.large, extra={"vector": vector})

    def learn(self, task: Task, choice: _Choice, log: RunLog, success: bool) -> bool:
        steps = plan_steps(log)
        if choice.hit or not success or not steps:
            return False
        vector = choice.extra["vector"]
        assert isinstance(vector, list)
        self.entries.append((vector, numbered(steps)))
        return True

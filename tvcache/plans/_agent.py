"""The Plan-Act agent (the Minion protocol): a planner LM that never sees the data tells an
actor LM, which does, what to query next; up to ``max_rounds`` rounds.

The actor's queries go through a tvcache session's ``sqlite`` tool, so rollouts of the same task
share the tool cache as well as the plan cache, and the tool cache's hits are counted here too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol

from tvcache._session import Session
from tvcache.plans._lm import LM, Ledger
from tvcache.plans._prompts import prompt

MAX_ROUNDS = 10
RESULT_CHARS = 400  # of each query result the planner sees
SCHEMA_CHARS = 3000

_SQL_BLOCK = re.compile(r"```(?:sql|sqlite)?\s*\n?(.*?)```", re.DOTALL | re.IGNORECASE)
_SQL_START = re.compile(r"\b(SELECT|WITH)\b", re.IGNORECASE)


class Database(Protocol):
    """Where the actor's SQL runs: (output, ran without error, served from the tool cache)."""

    def query(self, sql: str) -> tuple[str, bool, bool]: ...


class SessionDatabase:
    """A :class:`Database` on a tvcache session's ``sqlite`` tool."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def query(self, sql: str) -> tuple[str, bool, bool]:
        result = self.session.call("sqlite", sql=sql)
        return result.observation.output, result.observation.exit_code == 0, result.hit


@dataclass(frozen=True)
class Task:
    """One request: what is asked, and an id for logs and templates."""

    task_id: str
    question: str


@dataclass(frozen=True)
class Step:
    instruction: str
    sql: str
    output: str
    ok: bool
    tool_hit: bool


@dataclass
class RunLog:
    """One run's execution log: the plan it followed, every round, and its answer."""

    question: str
    plan: str = ""
    schema: str = ""
    steps: list[Step] = field(default_factory=list)
    answer_sql: str | None = None
    finished: bool = False  # the planner said DONE (not cut at max_rounds)
    schema_hit: bool = False  # the schema query was a tool-cache hit

    def render(self) -> str:
        """The whole log as text (the full-history baseline's in-context example)."""
        lines = [f"Task: {self.question}"]
        for i, step in enumerate(self.steps, 1):
            lines += [f"Instruction {i}: {step.instruction}", f"SQL {i}: {step.sql}"]
            lines.append(f"Result {i}: {step.output[:RESULT_CHARS]}")
        return "\n".join(lines)


def extract_sql(answer: str) -> str:
    """The query in an actor's answer: a fenced block, else from the first SELECT/WITH on; one
    statement, without the trailing semicolon."""
    block = _SQL_BLOCK.search(answer)
    text = block.group(1) if block else answer
    start = _SQL_START.search(text)
    if start is not None:
        text = text[start.start() :]
    statement = text.strip().split(";")[0]
    return " ".join(statement.split())


def _instruction(answer: str) -> str:
    for line in answer.splitlines():
        line = line.strip().strip("*").strip()
        if line.lower().startswith("instruction"):
            line = line.split(":", 1)[-1].strip()
        if line:
            return line[:300]
    return ""


def _done(answer: str) -> bool:
    first = answer.strip().splitlines()[0] if answer.strip() else ""
    return first.strip(" .*!").upper().startswith("DONE")


class PlanActAgent:
    """Runs one task: ``planner`` plans (with ``plan`` as guidance when given), ``actor`` acts."""

    def __init__(self, actor: LM, ledger: Ledger, *, max_rounds: int = MAX_ROUNDS) -> None:
        if max_rounds < 1:
            raise ValueError(f"max_rounds is {max_rounds}; give at least 1")
        self.actor = actor
        self.ledger = ledger
        self.max_rounds = max_rounds

    def run(self, task: Task, planner: LM, db: Database, *, plan: str = "") -> RunLog:
        schema, ok, hit = db.query("SELECT sql FROM sqlite_master WHERE type = 'table'")
        log = RunLog(task.question, plan=plan, schema=schema[:SCHEMA_CHARS] if ok else "")
        log.schema_hit = hit
        guidance = f"Plan to follow:\n{plan}\n" if plan else ""
        for _ in range(self.max_rounds):
            transcript = "\n".join(_transcript(log)) or "(nothing yet)"
            system, user = prompt("plan").render(
                question=task.question, guidance=guidance, transcript=transcript
            )
            answer = self.ledger.call(planner, "plan", system, user, max_tokens=96)
            if _done(answer) and log.answer_sql is not None:
                log.finished = True
                break
            instruction = _instruction(answer) if not _done(answer) else ""
            instruction = instruction or task.question
            system, user = prompt("act").render(
                schema=log.schema, question=task.question, instruction=instruction
            )
            sql = extract_sql(self.ledger.call(self.actor, "act", system, user, max_tokens=160))
            output, ok, hit = db.query(sql) if sql else ("no SQL in the answer", False, False)
            log.steps.append(Step(instruction, sql, output, ok, hit))
            if ok and _SQL_START.match(sql):
                log.answer_sql = sql
        return log


def _transcript(log: RunLog) -> list[str]:
    lines = []
    for i, step in enumerate(log.steps, 1):
        result = step.output[:RESULT_CHARS] if step.ok else f"error: {step.output[:200]}"
        lines += [f"Instruction {i}: {step.instruction}", f"Result {i}: {result}"]
    return lines

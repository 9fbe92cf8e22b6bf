"""From a successful run to a reusable template, and from a template back to a plan.

Generation is two passes, as in the method: a rule-based filter keeps only the plan-relevant part
of the execution log (the planner's instructions that worked; no data, no failed steps), then a
cheap LM generalises it. A last rule pass replaces whatever entity or number the LM left, so no
template ever carries one task's details into another's plan.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from tvcache.plans._agent import RunLog
from tvcache.plans._lm import LM, Ledger
from tvcache.plans._prompts import prompt

_ENUM = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s*")
_NUMBER = re.compile(r"(?<![\w<])[-+]?\d+(?:[.,]\d+)*(?![\w>])")
_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'|`[^`]*`")
_SQL_LITERAL = re.compile(r"'((?:[^']|'')*)'|\"([^\"]*)\"")


def plan_steps(log: RunLog) -> list[str]:
    """The rule-based filter: the instructions of the steps whose query ran without error."""
    return [step.instruction for step in log.steps if step.ok and step.instruction.strip()]


def task_entities(question: str, sql: Iterable[str] = ()) -> set[str]:
    """The details that make a task specific: quoted parts and capitalised words of the question
    (its first word aside), and string literals in the SQL it ran."""
    found: set[str] = set()
    for match in _QUOTED.finditer(question):
        found.add(match.group(0)[1:-1])
    words = re.findall(r"[A-Za-z][\w'-]*", question)
    found.update(w for w in words[1:] if w[0].isupper())
    for statement in sql:
        for match in _SQL_LITERAL.finditer(statement):
            found.add((match.group(1) or match.group(2) or "").replace("''", "'"))
    return {e.strip() for e in found if len(e.strip()) > 1}


def scrub(text: str, entities: Iterable[str]) -> str:
    """Replace quoted parts and ``entities`` with ``<entity>`` and numbers with ``<number>``."""
    for entity in sorted(entities, key=len, reverse=True):
        text = re.sub(rf"(?<!\w){re.escape(entity)}(?!\w)", "<entity>", text, flags=re.IGNORECASE)
    text = _QUOTED.sub("<entity>", text)
    return _NUMBER.sub("<number>", text)


def numbered(lines: Iterable[str]) -> str:
    """Lines as ``1. ...`` steps, whatever enumeration they had."""
    steps = [_ENUM.sub("", line).strip() for line in lines]
    return "\n".join(f"{i}. {s}" for i, s in enumerate((s for s in steps if s), 1))


def generate_template(lm: LM, ledger: Ledger, keyword: str, log: RunLog) -> str:
    """A template from a successful run: filter, generalise with ``lm``, scrub. '' when the run
    holds no usable step."""
    steps = plan_steps(log)
    if not steps:
        return ""
    system, user = prompt("template").render(keyword=keyword, plan=numbered(steps))
    answer = ledger.call(lm, "template", system, user, max_tokens=256)
    lines = [line for line in answer.splitlines() if _ENUM.match(line)] or answer.splitlines()
    if not numbered(lines):
        lines = steps  # the LM gave nothing usable: the filtered steps, scrubbed, still generalise
    entities = task_entities(log.question, (s.sql for s in log.steps))
    return numbered(scrub(_ENUM.sub("", line), entities) for line in lines)


def adapt_template(lm: LM, ledger: Ledger, template: str, question: str) -> str:
    """The small planner fills the template in for this task; its steps, or the template."""
    system, user = prompt("adapt").render(template=template, question=question)
    answer = ledger.call(lm, "adapt", system, user, max_tokens=256)
    return numbered(answer.splitlines()) or template

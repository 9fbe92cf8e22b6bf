"""The plan cache: exact keyword -> plan templates, with how each fared, in the tvcache store.

Lookups are by exact (normalised) keyword, never by similarity: that is the method's point (a
semantic match on the query text is the baseline it beats). Several templates may share a
keyword; a lookup returns the one with the best success record.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update

from snapshots import TvcacheError
from tvcache import _schema as schema
from tvcache._store import Store

_T = schema.plan_templates
MAX_TEMPLATE_CHARS = 20_000


class PlanCacheError(TvcacheError, ValueError):
    """A template or keyword the plan cache cannot take."""


@dataclass(frozen=True)
class PlanTemplate:
    """A stored template and its statistics."""

    template_id: str
    namespace: str
    keyword: str
    template: str
    source: str | None
    prompt_version: str
    uses: int
    successes: int
    failures: int
    created: float
    last_use: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def normalize_keyword(keyword: str) -> str:
    """Lowercase words of letters and digits, single-spaced: the form that is matched exactly."""
    words = "".join(c if c.isalnum() else " " for c in keyword.lower()).split()
    return " ".join(words)


def _row(row: Any) -> PlanTemplate:
    return PlanTemplate(**{c.name: getattr(row, c.name) for c in _T.columns})


class PlanCache:
    """Keyword -> templates in ``store``'s ``plan_templates`` table (SQLite or PostgreSQL).

    ``namespace`` keeps agents or workloads apart that must not share plans.
    """

    def __init__(self, store: Store, namespace: str = "default") -> None:
        if not namespace:
            raise PlanCacheError("the plan namespace is empty", "use a name, e.g. 'spider'")
        self.store = store
        self.namespace = namespace

    def put(
        self, keyword: str, template: str, *, source: str | None = None, prompt_version: str = ""
    ) -> PlanTemplate:
        """Store a template under ``keyword``; the same template again is kept once."""
        key = normalize_keyword(keyword)
        if not key:
            raise PlanCacheError(
                f"keyword {keyword!r} has no letters or digits", "name the task's intent"
            )
        if not template.strip():
            raise PlanCacheError("the plan template is empty", "store a non-empty template")
        if len(template) > MAX_TEMPLATE_CHARS:
            raise PlanCacheError(
                f"the plan template has {len(template)} characters, over {MAX_TEMPLATE_CHARS}",
                "filter the execution log before storing it",
            )
        digest = hashlib.sha256(f"{self.namespace}\0{key}\0{template}".encode()).hexdigest()
        now = time.time()
        row = {
            "template_id": digest[:32],
            "namespace": self.namespace,
            "keyword": key,
            "template": template,
            "source": source,
            "prompt_version": prompt_version,
            "uses": 0,
            "successes": 0,
            "failures": 0,
            "created": now,
            "last_use": now,
        }
        stmt = self.store.insert(_T).on_conflict_do_nothing(index_elements=["template_id"])
        with self.store.transaction(f"store a plan template for {key!r}", write=True) as conn:
            conn.execute(stmt, row)
            stored = conn.execute(select(_T).where(_T.c.template_id == row["template_id"])).one()
        return _row(stored)

    def lookup(self, keyword: str) -> PlanTemplate | None:
        """The best template stored under exactly this keyword (after normalising), or None."""
        key = normalize_keyword(keyword)
        if not key:
            return None
        with self.store.transaction(f"look up plans for {key!r}", write=False) as conn:
            rows = conn.execute(
                select(_T).where(_T.c.namespace == self.namespace, _T.c.keyword == key)
            ).all()
        if not rows:
            return None
        best = max(rows, key=lambda r: ((r.successes + 1) / (r.uses + 2), r.created))
        return _row(best)

    def record(self, template_id: str, *, success: bool) -> None:
        """Count one use of a template and whether the run that used it succeeded."""
        outcome = _T.c.successes if success else _T.c.failures
        stmt = (
            update(_T)
            .where(_T.c.template_id == template_id)
            .values({_T.c.uses: _T.c.uses + 1, outcome: outcome + 1, _T.c.last_use: time.time()})
        )
        with self.store.transaction("count a plan template's use", write=True) as conn:
            if conn.execute(stmt).rowcount == 0:
                raise PlanCacheError(
                    f"no plan template {template_id!r}", "list them with GET /v1/plans"
                )

    def get(self, template_id: str) -> PlanTemplate | None:
        with self.store.transaction("read a plan template", write=False) as conn:
            row = conn.execute(select(_T).where(_T.c.template_id == template_id)).first()
        return None if row is None else _row(row)

    def templates(self, keyword: str | None = None) -> list[PlanTemplate]:
        """This namespace's templates (of one keyword if given), by keyword then age."""
        query = select(_T).where(_T.c.namespace == self.namespace)
        if keyword is not None:
            query = query.where(_T.c.keyword == normalize_keyword(keyword))
        with self.store.transaction("list plan templates", write=False) as conn:
            rows = conn.execute(query.order_by(_T.c.keyword, _T.c.created)).all()
        return [_row(r) for r in rows]

    def delete(self, template_id: str) -> bool:
        stmt = delete(_T).where(_T.c.namespace == self.namespace, _T.c.template_id == template_id)
        with self.store.transaction("delete a plan template", write=True) as conn:
            return bool(conn.execute(stmt).rowcount)

    def clear(self) -> int:
        with self.store.transaction("clear the plan cache", write=True) as conn:
            return int(conn.execute(delete(_T).where(_T.c.namespace == self.namespace)).rowcount)

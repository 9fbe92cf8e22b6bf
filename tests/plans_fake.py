"""A scripted LM for the plan cache's tests: exact prompts in, known answers out.

Answers come from a table keyed by the exact user prompt, or from a function of it; a prompt the
script does not know fails the test at once, naming the prompt. Tokens are words, so a test can
compute every count and dollar by hand.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping

from tvcache.data import open_spider_database
from tvcache.plans import Completion


def words(text: str) -> int:
    return len(text.split())


class ScriptedLM:
    def __init__(
        self, model: str, script: Mapping[str, str] | Callable[[str], str | None] = ()
    ) -> None:
        self.model = model
        self.script = script
        self.prompts: list[tuple[str, str]] = []

    def complete(self, system: str, user: str, *, max_tokens: int) -> Completion:
        self.prompts.append((system, user))
        script = self.script
        answer = script(user) if callable(script) else dict(script).get(user)
        if answer is None:
            raise AssertionError(f"{self.model} got a prompt the script does not know:\n{user}")
        return Completion(answer, words(system) + words(user), words(answer))

    def stages(self) -> int:
        return len(self.prompts)


class SpiderDatabase:
    """A real in-memory copy of a bundled Spider database as the actor's :class:`Database`."""

    def __init__(self, db: str) -> None:
        self.conn: sqlite3.Connection = open_spider_database(db)
        self.queries: list[str] = []

    def query(self, sql: str) -> tuple[str, bool, bool]:
        self.queries.append(sql)
        try:
            rows = self.conn.execute(sql).fetchall()
        except sqlite3.Error as error:
            return str(error), False, False
        return "\n".join("|".join(str(v) for v in row) for row in rows), True, False

"""The SQL workload of ``tvcache bench sql``: GRPO-style groups of SQLite tool calls.

A pure library (no cache engine imports) so the benchmark runner, the tests and the docs build the
same calls from the same seed. Two kinds of group (docs/sql-workload.md has the numbers):

- **recorded**: rollouts stitched from the real actions that GPT-3.5 (plain and ReAct) and humans
  sent to the Spider databases in InterCode, translated from MySQL to SQLite;
- **edit**: the project's own data-editing tasks, where writes make later reads depend on the whole
  history, so a cache keyed by the call alone serves wrong observations.

The data (20 databases, tasks, trace actions) ships compressed in ``tvcache/data/spider`` because a
user's clone has no ``../shared/data``
(:mod:`tvcache.data` is its public face); ``scripts/package_spider_data.py`` regenerates it.
"""

from __future__ import annotations

import contextlib
import functools
import random
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from tvcache.data._mysql import USER_TABLES, is_submit, translate_mysql
from tvcache.data._spider import (
    DATA_ARCHIVE,
    _tasks,
    _traces,
    extract_database,
    list_databases,
    open_database,
)

__all__ = [
    "DATA_ARCHIVE",
    "SqlRollout",
    "SqlTaskGroup",
    "WorkloadStats",
    "build_groups",
    "extract_database",
    "list_databases",
    "open_database",
    "translate_mysql",
    "workload_stats",
]

#: Trace sources in the package, in the order a rollout's lead is drawn from.
_SOURCES = ("gpt-3.5", "gpt-3.5-react", "human")

P_SWITCH = 0.25
"""Per-step chance that a recorded rollout jumps to another trajectory of its task (divergence)."""
P_STOP = 0.08
"""Per-step chance that a recorded rollout ends early (it submits sooner)."""


# --------------------------------------------------------------------------------------------------
# Groups


@dataclass(frozen=True)
class SqlRollout:
    """One rollout: the SQLite statements it sends, in order, from a fresh copy of its database.

    ``expected_errors`` lists the indices of statements built to fail (edit groups' deliberate
    mistakes); recorded rollouts fail wherever the agents' SQL did, which is not listed. Run them
    with SQLite's defaults: with ``PRAGMA foreign_keys=ON`` some edit DELETEs would fail too.
    """

    actions: tuple[str, ...]
    expected_errors: tuple[int, ...] = ()


@dataclass(frozen=True)
class SqlTaskGroup:
    """A GRPO group: G rollouts of one task, all starting from the same pristine database."""

    task_id: str
    db: str
    kind: Literal["recorded", "edit", "raw"]
    instruction: str
    rollouts: tuple[SqlRollout, ...]


def _recorded_trajectories(task_id: str, db: str) -> list[tuple[str, ...]]:
    """The task's recorded trajectories as SQLite statements, each cut at its first ``submit``."""
    out: list[tuple[str, ...]] = []
    for source in _SOURCES:
        actions = _traces()[source].get(task_id)
        if not actions:
            continue
        sql: list[str] = []
        for action in actions:
            if is_submit(action):
                break
            statement = translate_mysql(action, schema=db)
            if statement is not None:
                sql.append(statement)
        if sql:
            out.append(tuple(sql))
    return out


def _sample_recorded(trajectories: Sequence[tuple[str, ...]], rng: random.Random) -> SqlRollout:
    """Follow a random lead; per step maybe stop, maybe switch to another trajectory's next step."""
    current = rng.randrange(len(trajectories))
    actions: list[str] = []
    step = 0
    while step < len(trajectories[current]):
        actions.append(trajectories[current][step])
        step += 1
        if rng.random() < P_STOP:
            break
        if rng.random() < P_SWITCH:
            others = [i for i, t in enumerate(trajectories) if i != current and len(t) > step]
            if others:
                current = rng.choice(others)
    return SqlRollout(tuple(actions))


def _select_recorded(count: int, rng: random.Random) -> list[tuple[int, list[tuple[str, ...]]]]:
    """Up to ``count`` tasks with >= 2 usable trajectories, round-robin over databases.

    Within a database, tasks with a human trace come first (a third trajectory), then the
    hardness levels take turns, so the selection mixes easy to extra-hard queries.
    """
    human = _traces()["human"]
    by_db: dict[str, dict[str, list[int]]] = {}
    for index, task in enumerate(_tasks()):
        by_db.setdefault(task["db"], {}).setdefault(task["hardness"], []).append(index)
    queues: dict[str, list[int]] = {}
    for db in sorted(by_db):
        levels = [by_db[db][h] for h in sorted(by_db[db])]
        for level in levels:
            rng.shuffle(level)
        rng.shuffle(levels)
        order = [
            level[i] for i in range(max(map(len, levels))) for level in levels if i < len(level)
        ]
        queues[db] = sorted(order, key=lambda i: str(i) not in human)
    db_order = sorted(queues)
    rng.shuffle(db_order)
    chosen: list[tuple[int, list[tuple[str, ...]]]] = []
    while len(chosen) < count and any(queues.values()):
        for db in db_order:
            while queues[db] and len(chosen) < count:
                index = queues[db].pop(0)
                trajectories = _recorded_trajectories(str(index), db)
                if len(trajectories) >= 2:
                    chosen.append((index, trajectories))
                    break
    return chosen


def _q(name: str) -> str:
    """Quote an identifier only when it needs it, as an agent would write it."""
    if re.fullmatch(r"[A-Za-z_]\w*", name):
        return name
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class _EditTarget:
    db: str
    table: str
    column: str
    rows: int
    columns: tuple[str, ...]
    int_pk: str | None  # single positive-integer primary key without other unique indexes
    unique: bool  # some unique index: inserting a copy of a row must fail


@functools.cache
def _edit_targets() -> tuple[_EditTarget, ...]:
    """Tables with >= 4 rows and a numeric, non-key column (integers preferred), one per table."""
    targets: list[_EditTarget] = []
    for db in list_databases():
        conn = open_database(db)
        try:
            tables = [
                row[0]
                for row in conn.execute(f"SELECT name FROM sqlite_master WHERE {USER_TABLES}")
            ]
            for table in sorted(tables):
                t = _q(table)
                rows = conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                if rows < 4:
                    continue
                info = conn.execute(f"PRAGMA table_info({t})").fetchall()
                keys = {r[1] for r in info if r[5]}
                keys |= {r[3] for r in conn.execute(f"PRAGMA foreign_key_list({t})")}
                best: tuple[int, str] | None = None
                for _, name, *_rest in info:
                    if name in keys or re.search(r"(^|_)id$", name, re.I):
                        continue  # keys and id-like columns are not quantities to edit
                    kinds = conn.execute(
                        f"SELECT SUM(typeof({_q(name)}) = 'integer'),"
                        f" SUM(typeof({_q(name)}) IN ('integer', 'real')),"
                        f" COUNT(DISTINCT {_q(name)}) FROM {t}"
                    ).fetchone()
                    if kinds[1] == rows and kinds[2] >= 3:  # constant columns hide edits
                        rank = 0 if kinds[0] == rows else 1
                        if best is None or rank < best[0]:
                            best = (rank, name)
                if best is None:
                    continue
                indexes = conn.execute(f"PRAGMA index_list({t})").fetchall()
                pks = [r[1] for r in info if r[5]]
                int_pk = None
                if len(pks) == 1 and all(ix[3] == "pk" for ix in indexes if ix[2]):
                    ok = conn.execute(
                        f"SELECT COUNT(*) FROM {t} WHERE typeof({_q(pks[0])}) = 'integer'"
                        f" AND {_q(pks[0])} > 0"
                    ).fetchone()[0]
                    int_pk = pks[0] if ok == rows else None
                unique = any(ix[2] for ix in indexes)
                columns = tuple(r[1] for r in info)
                targets.append(_EditTarget(db, table, best[1], rows, columns, int_pk, unique))
        finally:
            conn.close()
    return tuple(targets)


@dataclass(frozen=True)
class _Write:
    sql: str
    fails: bool = False
    modifies: bool = True  # changes the target table (so COUNT/SUM may move)
    creates: str | None = None  # table it creates, read back during verification


def _edit_writes(
    target: _EditTarget, rng: random.Random
) -> tuple[dict[str, _Write], dict[str, _Write]]:
    """The write variants (good, failing) for one edit task; all good ones succeed on the data."""
    t, c = _q(target.table), _q(target.column)
    d = rng.choice([1, 2, 5, 10])
    k = rng.choice([1, 2, 3])
    summary, archive = f"{target.table}_summary", f"{target.table}_archive"
    good = {
        "bump_all": _Write(f"UPDATE {t} SET {c} = {c} + {d}"),
        "bump_above_avg": _Write(
            f"UPDATE {t} SET {c} = {c} + {d} WHERE {c} > (SELECT AVG({c}) FROM {t})"
        ),
        "delete_first": _Write(
            f"DELETE FROM {t} WHERE rowid IN (SELECT rowid FROM {t} ORDER BY rowid LIMIT {k})"
        ),
        "delete_max": _Write(f"DELETE FROM {t} WHERE {c} = (SELECT MAX({c}) FROM {t})"),
        "summary": _Write(
            f"CREATE TABLE {_q(summary)} AS SELECT COUNT(*) AS n, SUM({c}) AS total FROM {t}",
            modifies=False,
            creates=summary,
        ),
        "archive": _Write(
            f"CREATE TABLE {_q(archive)} AS SELECT * FROM {t}"
            f" WHERE {c} >= (SELECT AVG({c}) FROM {t})",
            modifies=False,
            creates=archive,
        ),
    }
    if target.int_pk is not None:
        pk = target.int_pk
        cols = target.columns
        select = ", ".join(
            f"{_q(col)} + (SELECT MAX({_q(pk)}) FROM {t})" if col == pk else _q(col) for col in cols
        )
        good["duplicate"] = _Write(
            f"INSERT INTO {t} ({', '.join(map(_q, cols))})"
            f" SELECT {select} FROM {t} ORDER BY rowid LIMIT {k}"
        )
    bad = {"wrong_column": _Write(f"UPDATE {t} SET {target.column}_total = {c} + {d}", fails=True)}
    if target.unique:
        bad["pk_conflict"] = _Write(
            f"INSERT INTO {t} SELECT * FROM {t} ORDER BY rowid LIMIT 1", fails=True
        )
    return good, bad


def _edit_group(target: _EditTarget, group_size: int, rng: random.Random) -> SqlTaskGroup:
    """G rollouts: shared reads, 1-2 writes (some preceded by a failing one), the same checks."""
    t, c = _q(target.table), _q(target.column)
    count, total = f"SELECT COUNT(*) FROM {t}", f"SELECT SUM({c}) FROM {t}"
    peek, info = f"SELECT * FROM {t} LIMIT 5", f"PRAGMA table_info({t})"
    read_plans = [(count, total, peek), (count, peek, total), (info, count, total, peek)]
    good, bad = _edit_writes(target, rng)
    names = sorted(good)
    rng.shuffle(names)
    weights = [5, 2, 2] + [1] * (len(names) - 3)  # the policy's favourite write, then others

    def rollout(reads: tuple[str, ...], writes: list[str], mistake: str | None) -> SqlRollout:
        actions = list(reads)
        errors: list[int] = []
        if mistake is not None:
            errors.append(len(actions))
            actions.append(bad[mistake].sql)
        actions.extend(good[w].sql for w in writes)
        actions += [count, total]
        actions += [f"SELECT * FROM {_q(good[w].creates or '')}" for w in writes if good[w].creates]
        return SqlRollout(tuple(actions), tuple(errors))

    rollouts: list[SqlRollout] = []
    for _ in range(group_size):
        reads = rng.choices(read_plans, weights=[6, 1, 1])[0]
        writes = [rng.choices(names, weights=weights)[0]]
        if rng.random() < 0.4:
            second = rng.choices(names, weights=weights)[0]
            if second not in writes:
                writes.append(second)
        mistake = rng.choice(sorted(bad)) if rng.random() < 0.2 else None
        if mistake is not None and rng.random() < 0.25:
            writes = []  # the rollout gives up after its mistake
        rollouts.append(rollout(reads, writes, mistake))
    # Guarantee what the group exists to show: two histories whose identical checks disagree.
    finals = {_final_checks(target.db, r, (count, total)) for r in rollouts}
    if group_size > 1 and len(finals) < 2:
        for name in names:
            candidate = rollout(read_plans[0], [name], None)
            if _final_checks(target.db, candidate, (count, total)) not in finals:
                rollouts[-1] = candidate
                break
    instruction = (
        f"In table {target.table} of {target.db}, apply the requested maintenance to column"
        f" {target.column}: raise values, drop stale rows, or save a summary or archive table,"
        f" then verify the result with COUNT(*) and SUM({target.column})."
    )
    return SqlTaskGroup(
        task_id=f"edit:{target.db}.{target.table}.{target.column}",
        db=target.db,
        kind="edit",
        instruction=instruction,
        rollouts=tuple(rollouts),
    )


def _final_checks(db: str, rollout: SqlRollout, checks: Sequence[str]) -> str:
    """Run a rollout on a fresh in-memory copy; return what the checks read at its end."""
    conn = open_database(db)
    try:
        for action in rollout.actions:
            with contextlib.suppress(sqlite3.Error):  # a failing write is history too
                conn.execute(action).fetchall()
        return repr([conn.execute(check).fetchall() for check in checks])
    finally:
        conn.close()


def _select_edit(count: int, rng: random.Random) -> list[_EditTarget]:
    """Up to ``count`` edit targets, round-robin over databases (shuffled by the seed)."""
    by_db: dict[str, list[_EditTarget]] = {}
    for target in _edit_targets():
        by_db.setdefault(target.db, []).append(target)
    for targets in by_db.values():
        rng.shuffle(targets)
    db_order = sorted(by_db)
    rng.shuffle(db_order)
    chosen: list[_EditTarget] = []
    while len(chosen) < count and any(by_db.values()):
        for db in db_order:
            if by_db[db] and len(chosen) < count:
                chosen.append(by_db[db].pop(0))
    return chosen


def build_groups(
    group_size: int = 8,
    recorded_tasks: int | None = None,
    edit_tasks: int | None = None,
    seed: int = 0,
    raw_tasks: int | None = None,
) -> list[SqlTaskGroup]:
    """Build the workload: recorded groups first, then edit groups; deterministic given ``seed``.

    Recorded (default 60 tasks, spread over the databases and hardness levels): each of the
    ``group_size`` rollouts picks a lead among the task's recorded trajectories (GPT-3.5, GPT-3.5
    ReAct, human where present), follows it, and after each step ends early with probability
    ``P_STOP`` or switches with probability ``P_SWITCH`` to another trajectory, continuing at that
    trajectory's next step. Members thus share prefixes, then diverge, as samples of one policy do.

    Edit (default 20 tasks, one table and numeric column each): common reads, one or two writes
    drawn from per-task variants (a favourite and others), sometimes preceded by a failing write,
    then the same ``COUNT(*)``/``SUM`` checks, whose answers depend on the history.
    Raw (default 40 other tasks): one rollout per recorded trajectory of the task, exactly as
    recorded (2 or 3 per task), with no construction at all: the agents' real overlap.

    Fewer groups come back if fewer tasks qualify.
    """
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    recorded_tasks = 60 if recorded_tasks is None else recorded_tasks
    edit_tasks = 20 if edit_tasks is None else edit_tasks
    raw_tasks = 40 if raw_tasks is None else raw_tasks
    groups: list[SqlTaskGroup] = []
    rng = random.Random(f"tvcache-sql-recorded-{seed}")
    selected = _select_recorded(recorded_tasks + raw_tasks, rng)
    for position, (index, trajectories) in enumerate(selected):
        task = _tasks()[index]
        if position < recorded_tasks:
            kind: Literal["recorded", "raw"] = "recorded"
            rollouts = tuple(_sample_recorded(trajectories, rng) for _ in range(group_size))
        else:
            kind, rollouts = "raw", tuple(SqlRollout(actions) for actions in trajectories)
        groups.append(
            SqlTaskGroup(
                task_id=f"spider:{index}",
                db=task["db"],
                kind=kind,
                instruction=task["query"],
                rollouts=rollouts,
            )
        )
    rng = random.Random(f"tvcache-sql-edit-{seed}")
    groups.extend(_edit_group(target, group_size, rng) for target in _select_edit(edit_tasks, rng))
    return groups


# --------------------------------------------------------------------------------------------------
# Numbers


@dataclass(frozen=True)
class WorkloadStats:
    """How much a cache could serve, counted on the calls alone (no execution).

    ``history_repeats``: calls whose whole history, this call included, already occurred earlier in
    the same group: what a history-keyed cache serves. ``call_repeats``: calls whose SQL text
    occurred earlier in the group, whatever came before: what a history-blind cache serves (and
    where it can be wrong).
    """

    groups: int
    rollouts: int
    calls: int
    history_repeats: int
    call_repeats: int

    @property
    def history_repeat_fraction(self) -> float:
        return self.history_repeats / self.calls if self.calls else 0.0

    @property
    def call_repeat_fraction(self) -> float:
        return self.call_repeats / self.calls if self.calls else 0.0


def workload_stats(groups: Sequence[SqlTaskGroup]) -> WorkloadStats:
    """Count groups, rollouts, calls and within-group repeats (see ``WorkloadStats``)."""
    rollouts = calls = history_repeats = call_repeats = 0
    for group in groups:
        prefixes: set[tuple[str, ...]] = set()
        texts: set[str] = set()
        for rollout in group.rollouts:
            rollouts += 1
            for i, action in enumerate(rollout.actions):
                calls += 1
                prefix = rollout.actions[: i + 1]
                history_repeats += prefix in prefixes
                call_repeats += action in texts
                prefixes.add(prefix)
                texts.add(action)
    return WorkloadStats(len(groups), rollouts, calls, history_repeats, call_repeats)

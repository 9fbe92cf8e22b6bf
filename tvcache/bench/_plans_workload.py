"""The workload of ``tvcache bench plans``: text-to-SQL requests in a warm-up and an evaluation
stream, from the bundled Spider tasks or a user's JSONL file, and execution-match scoring.

JSONL: one object a line, ``{"id": "...", "question": "...", "gold": "<SQL>", "db": "<bundled
Spider database>"}`` or ``"db_path": "<a SQLite file>"`` instead of ``db``; optional ``"split":
"warmup"`` or ``"eval"`` (default: the first ``--warmup`` lines warm up). docs/plans.md.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from snapshots import TvcacheError
from tvcache.data import open_spider_database, spider_database, spider_tasks


class WorkloadError(TvcacheError, ValueError):
    """A workload file that cannot be used."""


@dataclass(frozen=True)
class Request:
    request_id: str
    question: str
    gold: str
    db: str | None = None  # a bundled Spider database
    db_path: str | None = None  # or a SQLite file
    split: str | None = None

    def database_bytes(self) -> bytes:
        if self.db_path is not None:
            return Path(self.db_path).read_bytes()
        conn = open_spider_database(self.db or "")
        try:
            return conn.serialize()
        finally:
            conn.close()

    def write_database(self, directory: Path) -> Path:
        """A fresh copy as ``directory/db.sqlite`` (the sqlite tool's default file)."""
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / "db.sqlite"
        if self.db_path is not None:
            target.write_bytes(Path(self.db_path).read_bytes())
        else:
            spider_database(self.db or "", directory).rename(target)
        return target


def spider_streams(warmup: int, evaluation: int, seed: int) -> tuple[list[Request], list[Request]]:
    """Warm-up and evaluation requests from the bundled Spider tasks, drawn from the databases
    with the most tasks (so intents recur, as in a deployment's stream)."""
    tasks = spider_tasks()
    busiest = {db for db, _ in Counter(t.db for t in tasks).most_common(4)}
    pool = [t for t in tasks if t.db in busiest]
    random.Random(seed).shuffle(pool)
    chosen = [Request(str(t.task_id), t.query, t.gold, db=t.db) for t in pool]
    if warmup + evaluation > len(chosen):
        raise WorkloadError(
            f"{warmup}+{evaluation} requests asked for, {len(chosen)} available",
            "ask for fewer with --warmup/--eval",
        )
    return chosen[:warmup], chosen[warmup : warmup + evaluation]


def load_jsonl(path: Path, warmup: int) -> tuple[list[Request], list[Request]]:
    """A user's workload (format in the module docstring)."""
    requests: list[Request] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise WorkloadError(
            f"cannot read the workload {path}: {error.strerror}", "give a readable JSONL file"
        ) from error
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            request = Request(
                str(item.get("id", number)),
                str(item["question"]),
                str(item["gold"]),
                db=item.get("db"),
                db_path=item.get("db_path"),
                split=item.get("split"),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise WorkloadError(
                f"{path}:{number} is not a workload line ({error!r})",
                'write {"question": ..., "gold": <SQL>, "db": <name> or "db_path": <file>}',
            ) from error
        if (request.db is None) == (request.db_path is None):
            raise WorkloadError(
                f"{path}:{number} needs exactly one of db and db_path",
                "name a bundled Spider database (db) or a SQLite file (db_path)",
            )
        if request.split not in (None, "warmup", "eval"):
            raise WorkloadError(
                f"{path}:{number}: split is {request.split!r}", "use 'warmup' or 'eval'"
            )
        requests.append(request)
    if any(r.split for r in requests):
        return [r for r in requests if r.split == "warmup"], [
            r for r in requests if r.split != "warmup"
        ]
    return requests[:warmup], requests[warmup:]


def execution_match(request: Request, predicted: str | None) -> bool:
    """Do the predicted and the gold query return the same rows (in order when the gold query
    orders them) on a fresh copy of the database?"""
    if not predicted:
        return False
    conn = sqlite3.connect(":memory:")
    try:
        conn.deserialize(request.database_bytes())
        gold = conn.execute(request.gold).fetchall()
        try:
            got = conn.execute(predicted).fetchall()
        except sqlite3.Error:
            return False
    finally:
        conn.close()
    if "order by" in request.gold.lower():
        return [tuple(map(str, r)) for r in got] == [tuple(map(str, r)) for r in gold]
    return Counter(tuple(map(str, r)) for r in got) == Counter(tuple(map(str, r)) for r in gold)

#!/usr/bin/env python3
"""Regenerate tvcache/data/spider/ from the shared Spider/InterCode data.

A user's clone has no ../shared/data beside it, so the SQL benchmark carries its own compressed
copy. This script is how that copy was made; the output is byte-for-byte reproducible (fixed member
order, zero mtimes and owners, fixed xz preset).

    .venv/bin/python scripts/package_spider_data.py [--source ../shared/data/spider]

Kept: the 20 SQLite databases; per task (list index = task id) db, query, gold, hardness; per
trace file the raw recorded actions by task id. Dropped: observations, rewards, thoughts,
db_tables and the MySQL dump, which the workload does not need.

Repaired: a table the shared SQLite conversion lost (``employee_hire_evaluation`` lacks
``evaluation``, ``hiring`` and ``shop``: the MySQL key prefix ``Year_awarded(255)`` broke it) is
converted from the MySQL dump here, in the style of the others, and added to the database; the
tables that were converted keep their bytes.
"""

from __future__ import annotations

import argparse
import io
import json
import lzma
import re
import shutil
import sqlite3
import tarfile
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "spider"
DEST = ROOT / "tvcache" / "data" / "spider"
ARCHIVE = "spider.tar.xz"

# trace file -> source name used in the package
TRACE_FILES = {
    "gpt-3.5_10_turns.json": "gpt-3.5",
    "gpt-3.5_react_10_turns.json": "gpt-3.5-react",
    "human_10_turns.json": "human",
}


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def _traces(source: Path) -> dict[str, dict[str, list[str]]]:
    out: dict[str, dict[str, list[str]]] = {}
    for filename, name in TRACE_FILES.items():
        raw = json.loads((source / "traces" / filename).read_text())
        per_task: dict[str, list[str]] = {}
        for key, entry in raw.items():
            if (
                "trajectory" in entry
            ):  # human file: {query_idx, trajectory: [{action, observation}]}
                task_id = str(entry["query_idx"])
                actions = [step["action"] for step in entry["trajectory"]]
            else:
                task_id = str(entry.get("task_id", key))
                actions = list(entry["turn_history"]["actions"])
            per_task[task_id] = actions
        out[name] = per_task
    return out


_MYSQL_ESCAPES = {"0": "\0", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a", "b": "\b"}


def _mysql_section(dump: str, db: str) -> str:
    """The part of the dump after ``USE `db`;`` up to the next database."""
    start = dump.index(f"USE `{db}`;")
    end = dump.find("CREATE DATABASE", start)
    return dump[start : end if end >= 0 else len(dump)]


def _mysql_tables(section: str) -> dict[str, tuple[str, list[str]]]:
    """Table name -> (its CREATE TABLE, its INSERT statements), as MySQL wrote them."""
    tables: dict[str, tuple[str, list[str]]] = {}
    for match in re.finditer(r"^CREATE TABLE `(\w+)` \(.*?^\).*?;$", section, re.M | re.S):
        inserts = re.findall(rf"^INSERT INTO `{match[1]}` VALUES .*?;$", section, re.M | re.S)
        tables[match[1]] = (match[0], inserts)
    return tables


def sqlite_create(mysql: str) -> str:
    """A MySQL ``CREATE TABLE`` as the shared conversion wrote the others: no collations,
    AUTO_INCREMENT, key prefix lengths, plain KEY lines or table options."""
    text = re.sub(r" (?:COLLATE|CHARACTER SET) \w+", " ", mysql)
    text = text.replace(" AUTO_INCREMENT", "")
    text = re.sub(r"^  KEY `\w+` \(.*\),?$", "", text, flags=re.M)
    text = re.sub(r"(`\w+`)\(\d+\)", r"\1", text)  # PRIMARY KEY (`a`,`b`(255))
    text = re.sub(r" {2,}", " ", text.replace("\n  ", "\n\t")).replace("\n\t", "\n  ")
    return re.sub(r"\n\).*;$", "\n)", text, flags=re.S)


def sqlite_insert(mysql: str) -> str:
    """A MySQL ``INSERT`` with its backslash escapes as SQLite string literals."""
    out, i, quoted = [], 0, False
    while i < len(mysql):
        char = mysql[i]
        if quoted and char == "\\":
            following = mysql[i + 1]
            out.append("''" if following == "'" else _MYSQL_ESCAPES.get(following, following))
            i += 2
            continue
        if char == "'":
            quoted = not quoted
        out.append(char)
        i += 1
    return "".join(out)


def repaired(database: Path, section: str) -> tuple[bytes, list[str]]:
    """The database's bytes with the tables of ``section`` it lacks added; their names."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / database.name
        shutil.copyfile(database, path)
        conn = sqlite3.connect(path)
        try:
            have = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
            added = [name for name in _mysql_tables(section) if name not in have]
            for name in added:
                create, inserts = _mysql_tables(section)[name]
                conn.execute(sqlite_create(create))
                for insert in inserts:
                    conn.execute(sqlite_insert(insert))
            conn.commit()
        finally:
            conn.close()
        return path.read_bytes(), added


def _members(source: Path) -> dict[str, bytes]:
    tasks = json.loads((source / "tasks.json").read_text())
    slim = [{k: t[k] for k in ("db", "query", "gold", "hardness")} for t in tasks]
    members = {
        "tasks.json": _json_bytes(slim),
        "traces.json": _json_bytes(_traces(source)),
    }
    dump = (source / "spider_dev_mysql.sql").read_text(encoding="utf-8")
    for db in sorted((source / "sqlite").glob("*.sqlite")):
        data, added = repaired(db, _mysql_section(dump, db.stem))
        if added:
            print(f"{db.stem}: added {', '.join(added)} from the MySQL dump")
        members[f"sqlite/{db.name}"] = data if added else db.read_bytes()
    return members


def build_archive(members: dict[str, bytes]) -> bytes:
    """Return a deterministic tar.xz of the members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(members):
            data = members[name]
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return lzma.compress(buf.getvalue(), preset=9 | lzma.PRESET_EXTREME)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--dest", type=Path, default=DEST)
    args = parser.parse_args()
    source: Path = args.source
    dest: Path = args.dest
    if not (source / "tasks.json").is_file():
        raise SystemExit(f"{source} has no tasks.json: pass --source <path to shared/data/spider>")
    dest.mkdir(parents=True, exist_ok=True)
    archive = build_archive(_members(source))
    (dest / ARCHIVE).write_bytes(archive)
    shutil.copyfile(source / "LICENSE-intercode.txt", dest / "LICENSE-intercode.txt")
    print(f"wrote {dest / ARCHIVE} ({len(archive):,} bytes)")


if __name__ == "__main__":
    main()

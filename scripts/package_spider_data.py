#!/usr/bin/env python3
"""Regenerate tvcache/data/spider/ from the shared Spider/InterCode data.

A user's clone has no ../shared/data beside it, so the SQL benchmark carries its own compressed
copy. This script is how that copy was made; the output is byte-for-byte reproducible (fixed member
order, zero mtimes and owners, fixed xz preset).

    .venv/bin/python scripts/package_spider_data.py [--source ../shared/data/spider]

Kept: the 20 SQLite databases; per task (list index = task id) db, query, gold, hardness; per
trace file the raw recorded actions by task id. Dropped: observations, rewards, thoughts,
db_tables and the MySQL dump, which the workload does not need.
"""

from __future__ import annotations

import argparse
import io
import json
import lzma
import shutil
import tarfile
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


def _members(source: Path) -> dict[str, bytes]:
    tasks = json.loads((source / "tasks.json").read_text())
    slim = [{k: t[k] for k in ("db", "query", "gold", "hardness")} for t in tasks]
    members = {
        "tasks.json": _json_bytes(slim),
        "traces.json": _json_bytes(_traces(source)),
    }
    for db in sorted((source / "sqlite").glob("*.sqlite")):
        members[f"sqlite/{db.name}"] = db.read_bytes()
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

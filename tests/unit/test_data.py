"""``tvcache.data``: the bundled Spider tasks and databases and the MySQL translation, public."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tvcache import TvcacheError
from tvcache.data import (
    SpiderTask,
    open_spider_database,
    spider_database,
    spider_databases,
    spider_tasks,
    translate_mysql,
)


def test_tasks_name_bundled_databases_and_their_gold_runs(tmp_path: Path) -> None:
    tasks = spider_tasks()
    assert len(tasks) == 1034 and all(t.task_id == i for i, t in enumerate(tasks))
    assert {t.db for t in tasks} <= set(spider_databases())
    task = tasks[0]
    assert isinstance(task, SpiderTask) and task.hardness in {"easy", "medium", "hard", "extra"}
    path = spider_database(task.db, tmp_path / "template")
    assert path == tmp_path / "template" / f"{task.db}.sqlite"
    with sqlite3.connect(path) as conn:
        assert conn.execute(task.gold).fetchall()
        conn.execute("DELETE FROM people")
    again = spider_database(task.db, tmp_path / "template")  # fresh: the delete is gone
    with sqlite3.connect(again) as conn:
        assert conn.execute("SELECT count(*) FROM people").fetchone()[0] > 0
    memory = open_spider_database(task.db)
    assert (
        memory.execute(task.gold).fetchall() == sqlite3.connect(again).execute(task.gold).fetchall()
    )


def test_without_a_directory_the_copy_goes_into_a_new_temporary_one() -> None:
    first, second = spider_database("singer"), spider_database("singer")
    try:
        assert first.exists() and first.parent != second.parent
    finally:
        for path in (first, second):
            path.unlink()
            path.parent.rmdir()


def test_an_unknown_database_says_which_exist(tmp_path: Path) -> None:
    with pytest.raises(TvcacheError, match="unknown Spider database 'nope'") as raised:
        spider_database("nope", tmp_path)
    assert "singer" in str(raised.value) and not list(tmp_path.iterdir())


def test_translate_mysql_is_public() -> None:
    assert translate_mysql("DESCRIBE singer;") == "PRAGMA table_info(singer)"
    assert translate_mysql("submit") is None

"""The packaged Spider databases hold every table their tasks' gold queries read."""

from __future__ import annotations

import sqlite3

from tvcache.bench._sql_workload import _tasks, list_databases, open_database


def test_every_gold_query_runs_on_the_packaged_databases() -> None:
    connections = {db: open_database(db) for db in list_databases()}
    failures = []
    for task_id, task in enumerate(_tasks()):
        try:
            connections[task["db"]].execute(task["gold"]).fetchall()
        except sqlite3.Error as error:
            failures.append((task_id, task["db"], str(error)))
    for conn in connections.values():
        conn.close()
    assert len(_tasks()) == 1034
    assert failures == []


def test_employee_hire_evaluation_has_the_rows_of_the_mysql_dump() -> None:
    conn = open_database("employee_hire_evaluation")
    counts = {
        table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        for table in ("employee", "evaluation", "hiring", "shop")
    }
    assert counts == {"employee": 10, "evaluation": 6, "hiring": 7, "shop": 9}
    assert conn.execute("SELECT Bonus FROM evaluation WHERE Employee_ID = 10").fetchone() == (
        4000.0,
    )
    assert conn.execute("SELECT District FROM shop WHERE Shop_ID = 1").fetchone() == (
        "Tehtaan kenttä",
    )
    conn.close()

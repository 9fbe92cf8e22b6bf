#!/usr/bin/env bash
# Checker of task sqlite-shop: compares /work/shop.db with the expected state computed from the
# pristine /task/shop.db. Three equal parts: deduplication (customers kept, order owners), the view,
# the indexes. Prints the score in [0,1] on its last line, always exits 0.
set -u
python3 - <<'PY'
import sqlite3
import sys
sys.path.insert(0, "/task")
from reference import expected

want = expected()
score = 0.0
try:
    db = sqlite3.connect("file:/work/shop.db?mode=ro", uri=True)
    ids = [r[0] for r in db.execute("SELECT id FROM customers ORDER BY id")]
    owner = dict(db.execute("SELECT id, customer_id FROM orders"))
    ok = ids == want["customers"] and owner == want["owner"]
    print("dedup:", "ok" if ok else f"{len(ids)} customers (want {len(want['customers'])}),"
          f" {sum(owner.get(o) != c for o, c in want['owner'].items())} orders with a wrong owner")
    score += ok
    try:
        rows = db.execute("SELECT customer_id, email, revenue FROM customer_revenue").fetchall()
        got = {c: (e, r) for c, e, r in rows}
        ok = len(rows) == len(got) == len(want["revenue"]) and all(
            c in got and got[c][0] == want["emails"][c] and abs(got[c][1] - v) <= 0.011
            for c, v in want["revenue"].items())
        print("view:", "ok" if ok else f"{len(rows)} rows, differs from the expected")
    except (sqlite3.Error, TypeError) as exc:
        ok = False
        print("view:", exc)
    score += ok
    ok = True
    for sql in ("SELECT * FROM orders WHERE customer_id = 7",
                "SELECT * FROM order_items WHERE order_id = 7"):
        plan = " ".join(str(r[-1]) for r in db.execute("EXPLAIN QUERY PLAN " + sql))
        ok = ok and plan.upper().startswith("SEARCH") and " INDEX " in plan.upper()
    print("indexes:", "ok" if ok else "a lookup scans its table")
    score += ok
except sqlite3.Error as exc:
    print("database:", exc)
print(round(score / 3, 3))
PY

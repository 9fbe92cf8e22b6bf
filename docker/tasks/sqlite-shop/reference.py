#!/usr/bin/env python3
"""Expected state of task sqlite-shop, computed from the pristine /task/shop.db."""
import sqlite3
from collections import defaultdict


def expected(path="/task/shop.db"):
    db = sqlite3.connect(path)
    keep = {}
    remap = {}
    emails = {}
    for cid, email in db.execute("SELECT id, email FROM customers ORDER BY id"):
        key = email.strip().lower()
        if key in keep:
            remap[cid] = keep[key]
        else:
            keep[key] = cid
            emails[cid] = email
    owner = {oid: remap.get(c, c) for oid, c in db.execute("SELECT id, customer_id FROM orders")}
    revenue = defaultdict(float)
    for oid, amount in db.execute(
        "SELECT o.id, SUM(i.qty * i.unit_price) FROM orders o JOIN order_items i ON i.order_id = o.id"
        " WHERE o.status IN ('paid', 'shipped') GROUP BY o.id"
    ):
        revenue[owner[oid]] += amount
    db.close()
    return {
        "customers": sorted(emails),
        "owner": owner,
        "revenue": {c: round(v, 2) for c, v in revenue.items()},
        "emails": emails,
    }

#!/usr/bin/env python3
"""Writes the task's deterministic shop database: gen_db.py OUT.db"""
import random
import sqlite3
import sys

rng = random.Random(1234)
db = sqlite3.connect(sys.argv[1])
db.executescript("""
CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT NOT NULL, name TEXT NOT NULL,
                        created_at TEXT NOT NULL);
CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL NOT NULL);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id),
                     status TEXT NOT NULL CHECK (status IN ('paid', 'shipped', 'cancelled', 'refunded')),
                     created_at TEXT NOT NULL);
CREATE TABLE order_items (order_id INTEGER NOT NULL REFERENCES orders(id),
                          product_id INTEGER NOT NULL REFERENCES products(id),
                          qty INTEGER NOT NULL, unit_price REAL NOT NULL);
""")
FIRST = ["ana", "ben", "carl", "dina", "emil", "frida", "gus", "hanna", "ivan", "jon", "kari", "lars"]
LAST = ["berg", "dahl", "holm", "lund", "moe", "nilsen", "strand", "vik", "haug", "bakke"]
DOMAINS = ["example.com", "mail.test", "shop.invalid", "post.example"]
customers = []
cid = 0
for i in range(15000):
    cid += 1
    first, last = rng.choice(FIRST), rng.choice(LAST)
    email = f"{first}.{last}{i}@{rng.choice(DOMAINS)}"
    customers.append((cid, email, f"{first.title()} {last.title()}", f"2022-{rng.randint(1, 12):02d}-01"))
    if rng.random() < 0.04:  # the same person signed up again with a differently typed address
        for _ in range(rng.choice([1, 1, 1, 2])):
            cid += 1
            variant = rng.choice([email.upper(), " " + email, email + " ", email.title(),
                                  email.replace(first, first.title())])
            customers.append((cid, variant, f"{first.title()} {last.title()}", "2023-06-01"))
db.executemany("INSERT INTO customers VALUES (?, ?, ?, ?)", customers)
products = [(p, f"product {p}", round(rng.uniform(2, 250), 2)) for p in range(1, 801)]
db.executemany("INSERT INTO products VALUES (?, ?, ?)", products)
orders, lines = [], []
for oid in range(1, 180001):
    status = rng.choices(["paid", "shipped", "cancelled", "refunded"], [0.35, 0.5, 0.1, 0.05])[0]
    orders.append((oid, rng.randint(1, cid), status, f"2023-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"))
    for _ in range(rng.randint(1, 5)):
        p = rng.randrange(800)
        price = products[p][2] if rng.random() > 0.1 else round(products[p][2] * 0.8, 2)  # sales
        lines.append((oid, p + 1, rng.randint(1, 4), price))
db.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)", orders)
db.executemany("INSERT INTO order_items VALUES (?, ?, ?, ?)", lines)
db.commit()
db.execute("VACUUM")
db.close()

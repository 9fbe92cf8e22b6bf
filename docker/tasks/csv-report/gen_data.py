#!/usr/bin/env python3
"""Writes the task's deterministic data set: gen_data.py OUT_DIR."""
import os
import random
import sys

REGIONS = {
    "north": ["Oslo", "Bergen", "Trondheim", "Tromso"],
    "south": ["Kristiansand", "Arendal", "Mandal"],
    "east": ["Fredrikstad", "Hamar", "Lillehammer", "Drammen"],
    "west": ["Stavanger", "Haugesund", "Alesund"],
    "central": ["Roros", "Steinkjer"],
}

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = random.Random(424242)
stores = []
sid = 100
for region, cities in REGIONS.items():
    for city in cities:
        for _ in range(rng.randint(1, 3)):
            stores.append((f"S{sid}", city, region))
            sid += 2
# Exported from a spreadsheet on Windows: CRLF line endings.
with open(os.path.join(out, "stores.csv"), "w", newline="") as fh:
    fh.write("store_id,city,region\r\n")
    for s in stores:
        fh.write(",".join(s) + "\r\n")
store_ids = [s[0] for s in stores] + ["S901", "S903"]  # two stores closed and no longer listed
skus = [f"SKU-{n:04d}" for n in rng.sample(range(1, 10000), 180)]
prices = {s: rng.choice([1.99, 4.5, 9.99, 12.0, 19.95, 24.99, 49.0, 99.9, 149.0]) for s in skus}
with open(os.path.join(out, "sales.csv"), "w", newline="") as fh:
    fh.write("order_id,date,store_id,sku,qty,unit_price\n")
    for oid in range(1, 1000001):
        year = rng.choices([2022, 2023, 2024], [0.3, 0.45, 0.25])[0]
        date = f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        sku = rng.choice(skus)
        qty = rng.randint(1, 6) if rng.random() > 0.04 else -rng.randint(1, 3)  # returns
        store = rng.choice(store_ids) if rng.random() > 0.002 else rng.choice(["S901", "S903"])
        fh.write(f"{100000 + oid},{date},{store},{sku},{qty},{prices[sku]:.2f}\n")

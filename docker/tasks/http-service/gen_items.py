#!/usr/bin/env python3
"""Writes the deterministic catalogue: gen_items.py OUT.json"""
import json
import random
import sys

rng = random.Random(8080)
CATEGORIES = ["tools", "garden", "kitchen", "toys", "books", "office", "sports", "audio"]
NOUNS = ["hammer", "rake", "kettle", "robot", "atlas", "stapler", "ball", "speaker", "lamp", "drill"]
ADJ = ["red", "compact", "deluxe", "classic", "smart", "mini", "pro", "eco", "vintage", "giant"]
items = []
for i in range(1, 40001):
    items.append({
        "id": i,
        "name": f"{rng.choice(ADJ)} {rng.choice(NOUNS)} {rng.randint(1, 999)}",
        "category": rng.choice(CATEGORIES),
        "price": round(rng.uniform(0.5, 400), 2),
        "quantity": rng.randint(0, 60),
    })
with open(sys.argv[1], "w") as fh:
    json.dump(items, fh, indent=1)

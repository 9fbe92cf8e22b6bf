#!/usr/bin/env python3
"""Writes the deterministic input documents: gen_docs.py DIR"""
import os
import random
import sys

WORDS = ("queue worker job result file line word digest spool poll retry batch status log error "
         "start stop service process data text report record entry value").split()
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = random.Random(99)
for i, name in enumerate(["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf",
                          "hotel", "india", "juliet"]):
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 14)))
             for _ in range(rng.randint(200, 3000))]
    text = "\n".join(lines)
    if i % 3 != 1:  # some files end without a trailing newline
        text += "\n"
    with open(os.path.join(out, f"{name}.txt"), "w") as fh:
        fh.write(text)

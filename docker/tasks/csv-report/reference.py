#!/usr/bin/env python3
"""Expected outputs of task csv-report: reference.py DATA_DIR OUT.json (run when the image is built)."""
import csv
import json
import sys
from collections import defaultdict
from decimal import Decimal


def expected(data_dir):
    with open(f"{data_dir}/stores.csv", newline="") as fh:
        region = {row["store_id"]: row["region"] for row in csv.DictReader(fh)}
    revenue = defaultdict(Decimal)
    units = defaultdict(int)
    with open(f"{data_dir}/sales.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if not row["date"].startswith("2023"):
                continue
            qty = int(row["qty"])
            revenue[region.get(row["store_id"], "unknown")] += qty * Decimal(row["unit_price"])
            units[row["sku"]] += qty
    rev = sorted(revenue.items(), key=lambda kv: (-kv[1], kv[0]))
    top = sorted(units.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    return rev, top


if __name__ == "__main__":
    rev, top = expected(sys.argv[1])
    with open(sys.argv[2], "w") as fh:
        json.dump({"revenue": [[r, str(v)] for r, v in rev], "top_skus": top}, fh, indent=1)

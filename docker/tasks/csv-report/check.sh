#!/usr/bin/env bash
# Checker of task csv-report: compares /work/out/*.csv with the expected values computed from the
# pristine data when the image was built (/task/expected.json; revenues within 0.01). Half a point
# per report. Prints the score in [0,1] on its last line, always exits 0.
set -u
python3 - <<'PY'
import json
from decimal import Decimal, InvalidOperation

with open("/task/expected.json") as fh:
    want = json.load(fh)
rev = [(r, Decimal(v)) for r, v in want["revenue"]]
top = [(s, u) for s, u in want["top_skus"]]


def rows(path, header):
    try:
        with open(path, newline="") as fh:
            lines = [line.rstrip("\r\n") for line in fh if line.strip()]
    except OSError:
        return None
    if not lines or lines[0].replace(" ", "") != header:
        return None
    return [line.split(",") for line in lines[1:]]


score = 0.0
got = rows("/work/out/revenue_2023.csv", "region,revenue")
ok = got is not None and len(got) == len(rev)
if ok:
    for (region, value), want in zip(got, rev):
        try:
            ok = ok and region == want[0] and abs(Decimal(value) - want[1]) <= Decimal("0.01")
        except InvalidOperation:
            ok = False
print("revenue_2023.csv:", "ok" if ok else "wrong or missing")
score += 0.5 * ok
got = rows("/work/out/top_skus_2023.csv", "sku,units")
ok = got is not None and [(s.strip(), u.strip()) for s, u, *_ in got] == [(s, str(u)) for s, u in top]
print("top_skus_2023.csv:", "ok" if ok else "wrong or missing")
score += 0.5 * ok
print(score)
PY

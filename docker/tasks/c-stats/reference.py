#!/usr/bin/env python3
"""Reference output of `stats FILE` (used by check.sh and to write tests/*.expected)."""
import math
import sys


def numbers(path):
    out = []
    with open(path) as fh:
        for line in fh:
            s = line.strip()
            if s and not s.startswith("#"):
                out.append(float(s))
    return out


def summary(values):
    v = sorted(values)
    n = len(v)
    total = 0.0
    for x in v:
        total += x
    mean = total / n
    sq = 0.0
    for x in v:
        sq += (x - mean) * (x - mean)
    median = v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2
    std = math.sqrt(sq / (n - 1)) if n > 1 else 0.0
    rows = [("count", None, n), ("min", v[0], 0), ("max", v[-1], 0), ("mean", mean, 0),
            ("median", median, 0), ("stddev", std, 0)]
    lines = []
    for name, val, cnt in rows:
        lines.append(f"{name:<6} {cnt}" if val is None else f"{name:<6} {val:.4f}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(summary(numbers(sys.argv[1])))

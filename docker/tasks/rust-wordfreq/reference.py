#!/usr/bin/env python3
"""Reference output of `wordfreq FILE N` (used by check.sh and to write the tests)."""
import collections
import re
import sys


def top(text, n):
    counts = collections.Counter(w.lower() for w in re.findall(r"[A-Za-z]+", text))
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return "".join(f"{c}\t{w}\n" for w, c in ranked)


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as fh:
        sys.stdout.write(top(fh.read(), int(sys.argv[2]) if len(sys.argv) > 2 else 10))

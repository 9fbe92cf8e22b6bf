#!/usr/bin/env bash
# Checker of task git-bisect. Three equal parts: /work/first_bad.txt names the first bad commit of
# the pristine history (/task/calc.git); mathx.py of the new main passes hidden tests; the repository
# is on main, clean, not bisecting, and main descends from the original main. Prints the score in
# [0,1] on its last line, always exits 0.
set -u
repo=/work/calc
parts=0
want=$(git -C /task/calc.git log --format=%H --grep '^percentile: simplify' main)
if [ -n "$want" ] && [ "$(tr -d ' \n' 2>/dev/null </work/first_bad.txt)" = "$want" ]; then
    parts=$((parts + 1)); echo "first bad commit: ok"
else
    echo "first bad commit: wrong or missing"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if git -C "$repo" show main:mathx.py >"$tmp/mathx.py" 2>/dev/null &&
    (cd "$tmp" && timeout 60 python3 - <<'PY'
import random, sys
import mathx as m
def ref(values, p):
    s = sorted(values); k = (len(s) - 1) * p / 100; lo = int(k); hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)
rng = random.Random(77)
for _ in range(3000):
    v = [rng.uniform(-5, 5) for _ in range(rng.randint(1, 40))]
    p = rng.uniform(0, 100)
    assert abs(m.percentile(v, p) - ref(v, p)) < 1e-9
assert m.iqr([1, 2, 3, 4, 5, 6, 7, 8, 9]) == 4
assert m.rescale([0, 5, 10], 10, 20) == [10.0, 15.0, 20.0]
assert abs(m.correlation([1, 2, 3], [3, 2, 1]) + 1) < 1e-12
assert m.span([3, 9, 4]) == 6 and m.cumulative_sum([1, 2]) == [1, 3]
PY
    ) >"$tmp/log" 2>&1; then
    parts=$((parts + 1)); echo "main's mathx.py: ok"
else
    echo "main's mathx.py: fails the hidden tests"; tail -3 "$tmp/log"
fi

orig=$(git -C /task/calc.git rev-parse main)
branch=$(git -C "$repo" symbolic-ref -q --short HEAD)
if [ "$branch" = main ] && [ -z "$(git -C "$repo" status --porcelain 2>/dev/null)" ] &&
    [ ! -e "$repo/.git/BISECT_LOG" ] && git -C "$repo" merge-base --is-ancestor "$orig" main 2>/dev/null &&
    [ "$(git -C "$repo" rev-parse main)" != "$orig" ]; then
    parts=$((parts + 1)); echo "repository state: ok"
else
    echo "repository state: not on a clean main built on the original history (branch '${branch}')"
fi
python3 -c "print(round($parts / 3, 3))"

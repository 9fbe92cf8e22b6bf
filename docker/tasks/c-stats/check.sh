#!/usr/bin/env bash
# Checker of task c-stats. Rebuilds /work/stats from a clean copy and compares the tool's output on
# hidden inputs with the reference implementation. Prints the score in [0,1] on its last line and
# always exits 0.
set -u
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
finish() { echo "$1"; exit 0; }

[ -f /work/stats/Makefile ] || { echo "no /work/stats/Makefile"; finish 0; }
cp -r /work/stats "$tmp/src"
make -s -C "$tmp/src" clean >/dev/null 2>&1
if ! make -s -C "$tmp/src" stats >"$tmp/build.log" 2>&1; then
    echo "build failed:"; tail -5 "$tmp/build.log"; finish 0
fi
python3 - "$tmp" <<'PY'
import random, subprocess, sys
sys.path.insert(0, "/task")
from reference import numbers, summary
tmp = sys.argv[1]
rng = random.Random(20240611)
passed = total = 0
for i, n in enumerate([1, 2, 3, 4, 7, 10, 101, 500, 999, 4000]):
    path = f"{tmp}/case{i}.txt"
    with open(path, "w") as fh:
        fh.write("# hidden case\n\n")
        for _ in range(n):
            fh.write(f"{round(rng.uniform(-1000, 1000), rng.randint(0, 4))}\n")
    want = summary(numbers(path))
    got = subprocess.run([f"{tmp}/src/stats", path], capture_output=True, text=True, timeout=10).stdout
    total += 1
    if got == want:
        passed += 1
    else:
        print(f"case {i} (n={n}) differs")
print(f"{passed}/{total} hidden cases pass")
print(round(passed / total, 3))
PY

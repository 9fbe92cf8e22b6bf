#!/usr/bin/env bash
# Checker of task rust-wordfreq: recompiles /work/wordfreq from a copy, runs it on hidden texts and
# compares with the reference; also checks /work/top20.txt. Prints the score in [0,1] on its last
# line and always exits 0.
set -u
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
finish() { echo "$1"; exit 0; }

[ -f /work/wordfreq/src/main.rs ] || { echo "no /work/wordfreq/src/main.rs"; finish 0; }
cp -r /work/wordfreq/src "$tmp/src"
if ! rustc -O --edition 2021 -o "$tmp/wordfreq" "$tmp/src/main.rs" >"$tmp/build.log" 2>&1; then
    echo "build failed:"; grep -m3 '^error' "$tmp/build.log"; finish 0
fi
python3 - "$tmp" <<'PY'
import subprocess, sys
sys.path.insert(0, "/task")
from gen_corpus import corpus
from reference import top
tmp = sys.argv[1]
texts = [corpus(seed, n) for seed, n in [(101, 50), (102, 700), (103, 5000), (104, 20000)]]
texts.append("Don't stop--believing! 42 dogs, 7cats; CATS cats\tdog's e-mail\n")
passed = 0
for i, text in enumerate(texts):
    path = f"{tmp}/hidden{i}.txt"
    with open(path, "w") as fh:
        fh.write(text)
    for n in (10, 3):
        got = subprocess.run([f"{tmp}/wordfreq", path, str(n)], capture_output=True, text=True,
                             timeout=20).stdout
        ok = got == top(text, n)
        passed += ok
        if not ok:
            print(f"hidden text {i}, N={n}: output differs")
total = 2 * len(texts)
with open("/task/corpus.txt") as fh:
    want = top(fh.read(), 20)
try:
    with open("/work/top20.txt") as fh:
        top_ok = fh.read() == want
except OSError:
    top_ok = False
print(f"{passed}/{total} hidden runs pass; /work/top20.txt {'ok' if top_ok else 'wrong or missing'}")
print(round((passed / total + top_ok) / 2, 3))
PY

#!/usr/bin/env bash
# Checker of task job-worker: 3/4 of the score for correct results of every (op, document) in
# /work/queue/done, 1/4 for a live worker that processes a probe job (no priority, a last line
# without newline) within 6 s. Prints the score in [0,1] on its last line, always exits 0.
set -u
python3 - <<'PY'
import glob, json, os, subprocess, sys, tempfile, time
sys.path.insert(0, "/task")
from reference import result

docs = sorted(glob.glob("/task/docs/*.txt"))
good = 0
for path in docs:
    stem = os.path.splitext(os.path.basename(path))[0]
    for op in ("lines", "wordcount", "sha256"):
        try:
            with open(f"/work/queue/done/{op}-{stem}.json") as fh:
                got = json.load(fh).get("result")
        except (OSError, ValueError, AttributeError):
            got = None
        good += got == result(op, path)
total = 3 * len(docs)
print(f"{good}/{total} results correct")
probe_dir = tempfile.mkdtemp()
probe = os.path.join(probe_dir, "zz-probe-check.txt")
with open(probe, "w") as fh:
    fh.write("one two\nthree\nfour five six")
done = "/work/queue/done/lines-zz-probe-check.json"
if os.path.exists(done):
    os.remove(done)
subprocess.run([sys.executable, "/work/worker/submit.py", "--op", "lines", probe],
               capture_output=True, timeout=10)
live = False
deadline = time.monotonic() + 6
while time.monotonic() < deadline and not live:
    try:
        with open(done) as fh:
            live = json.load(fh).get("result") == 3
    except (OSError, ValueError):
        time.sleep(0.2)
print("live worker:", "ok" if live else "no correct answer to a new job within 6 s")
# Leave no trace of the probe (a job nobody processed would crash a buggy worker started later).
for leftover in (probe, done, "/work/queue/incoming/lines-zz-probe-check.json",
                 "/work/queue/processed/lines-zz-probe-check.json"):
    if os.path.exists(leftover):
        os.remove(leftover)
os.rmdir(probe_dir)
print(round(0.75 * good / total + 0.25 * live, 3))
PY

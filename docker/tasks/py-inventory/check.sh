#!/usr/bin/env bash
# Checker of task py-inventory: runs the original test suite (/task/tests) against the library in
# /work/inventory. Score = fraction of tests passing. Prints it on its last line, always exits 0.
set -u
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
[ -d /work/inventory/inventory ] || { echo "no /work/inventory/inventory"; echo 0; exit 0; }
cp -r /work/inventory/inventory "$tmp/inventory"
cp -r /task/tests "$tmp/tests"
cp /task/pyproject.toml "$tmp/pyproject.toml"
(cd "$tmp" && timeout 120 python3 -m pytest -q -p no:cacheprovider --junitxml="$tmp/junit.xml" \
    >"$tmp/pytest.log" 2>&1)
tail -1 "$tmp/pytest.log"
python3 - "$tmp/junit.xml" <<'PY'
import sys
import xml.etree.ElementTree as ET
try:
    suite = ET.parse(sys.argv[1]).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    total = int(suite.get("tests", 0))
    bad = sum(int(suite.get(k, 0)) for k in ("failures", "errors", "skipped"))
    print(round((total - bad) / total, 3) if total else 0)
except Exception as exc:  # no report: the suite did not even start
    print(f"no test report: {exc}")
    print(0)
PY

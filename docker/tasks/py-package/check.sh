#!/usr/bin/env bash
# Checker of task py-package. Four equal parts: the wheel in /work/dist; the `textkit` command of
# /work/venv; `textkit stats` (needs the package data) on a hidden text; the package imported by the
# venv comes from its site-packages (not from the source tree). Prints the score in [0,1] on its
# last line, always exits 0.
set -u
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 0
parts=0

wheel=/work/dist/textkit-1.2.0-py3-none-any.whl
if [ -f "$wheel" ] && python3 -m zipfile -l "$wheel" | grep -q 'textkit/cli.py'; then
    parts=$((parts + 1)); echo "wheel: ok"
else
    echo "wheel: missing or without the package"
fi

tk=/work/venv/bin/textkit
if [ -x "$tk" ] && [ "$("$tk" slug "Ünïcode, Slugs & More!" 2>/dev/null)" = "unicode-slugs-more" ]; then
    parts=$((parts + 1)); echo "slug: ok"
else
    echo "slug: textkit command missing or wrong"
fi

printf 'It was the best of times, it was the worst of times; the age of wisdom,\nthe age of foolishness, the epoch of belief. Times change.\n' >hidden.txt
want=$'words 26\ndistinct 9\ntop times 3\ntop age 2\ntop belief 1'
if [ -x "$tk" ] && [ "$("$tk" stats hidden.txt 2>/dev/null)" = "$want" ]; then
    parts=$((parts + 1)); echo "stats: ok"
else
    echo "stats: wrong or failing"
fi

where=$(/work/venv/bin/python -c 'import textkit; print(textkit.__version__, textkit.__file__)' 2>/dev/null)
case "$where" in
    "1.2.0 /work/venv/lib/"*/site-packages/textkit/__init__.py) parts=$((parts + 1)); echo "install: ok" ;;
    *) echo "install: textkit not installed in /work/venv (${where:-not importable})" ;;
esac

python3 -c "print(round($parts / 4, 3))"

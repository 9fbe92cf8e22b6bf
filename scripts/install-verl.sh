#!/bin/sh
# verl's tool interface (verl.tools.base_tool) without its GPU stack: verl itself without
# dependencies, then only what importing verl needs (torch CPU, ray, tensordict, transformers).
# About 1.3 GB and 2 minutes; the verl adapter's tests skip without it (and fail under CI).
set -e
PY=${PYTHON:-.venv/bin/python}
"$PY" -m pip install --quiet --no-deps 'verl==0.9.1'
"$PY" -m pip install --quiet 'torch==2.13.0' -e '.[verl]'
"$PY" -c 'import verl.tools.base_tool' && echo "verl tool interface importable"

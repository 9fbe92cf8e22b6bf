#!/usr/bin/env python3
"""Submits jobs to the worker's queue: one job per (op, file).

usage: submit.py --op {lines,wordcount,sha256} [--priority N] [--queue DIR] FILE...

The job id is <op>-<file name without extension>; submitting the same op and file again replaces
the earlier result when the worker gets to it.
"""

from __future__ import annotations

import argparse
import json
import os


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--op", required=True, choices=["lines", "wordcount", "sha256"])
    parser.add_argument("--priority", type=int)
    parser.add_argument("--queue", default="/work/queue")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    incoming = os.path.join(args.queue, "incoming")
    os.makedirs(incoming, exist_ok=True)
    for path in args.files:
        stem = os.path.splitext(os.path.basename(path))[0]
        job = {"id": f"{args.op}-{stem}", "op": args.op, "path": os.path.abspath(path)}
        if args.priority is not None:
            job["priority"] = args.priority
        tmp = os.path.join(incoming, f".{job['id']}.tmp")
        with open(tmp, "w") as fh:
            json.dump(job, fh)
        os.replace(tmp, os.path.join(incoming, f"{job['id']}.json"))
        print(f"submitted {job['id']}")


if __name__ == "__main__":
    main()

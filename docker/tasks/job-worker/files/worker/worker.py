#!/usr/bin/env python3
"""Job queue worker: polls a spool directory and processes text-file jobs.

A job is a JSON file in QUEUE/incoming/ (written by submit.py):
    {"id": "...", "op": "wordcount" | "lines" | "sha256", "path": "/abs/file", "priority": int}
`priority` is optional (default 5; lower runs first). The result goes to QUEUE/done/<id>.json as
    {"id": ..., "op": ..., "path": ..., "result": ...}
and the job file moves to QUEUE/processed/. Progress is logged to QUEUE/worker.log.

    lines      number of lines; a last line without a trailing newline counts too
    wordcount  number of whitespace-separated words
    sha256     hex digest of the file's bytes

usage: worker.py [--queue DIR] [--poll SECONDS]      (default queue: /work/queue)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import time


def process(job: dict) -> object:
    with open(job["path"], "rb") as fh:
        data = fh.read()
    if job["op"] == "sha256":
        return hashlib.sha256(data).hexdigest()
    text = data.decode("utf-8")
    if job["op"] == "wordcount":
        return len(text.split())
    if job["op"] == "lines":
        return text.count("\n")
    raise ValueError(f"unknown op {job['op']!r}")


def pending(incoming: str) -> list[tuple[int, str, dict]]:
    jobs = []
    for name in sorted(os.listdir(incoming)):
        if not name.endswith(".json"):
            continue
        with open(os.path.join(incoming, name)) as fh:
            job = json.load(fh)
        jobs.append((job["priority"], name, job))
    jobs.sort(key=lambda j: (j[0], j[1]))
    return jobs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queue", default="/work/queue")
    parser.add_argument("--poll", type=float, default=0.5)
    args = parser.parse_args()
    dirs = {d: os.path.join(args.queue, d) for d in ("incoming", "done", "processed")}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)
    logging.basicConfig(filename=os.path.join(args.queue, "worker.log"), level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    logging.info("worker %d started, polling %s every %.1fs", os.getpid(), dirs["incoming"], args.poll)
    while True:
        for _, name, job in pending(dirs["incoming"]):
            try:
                result = process(job)
            except (OSError, ValueError) as exc:
                logging.error("job %s failed: %s", job["id"], exc)
                result = {"error": str(exc)}
            out = {"id": job["id"], "op": job["op"], "path": job["path"], "result": result}
            tmp = os.path.join(dirs["done"], f".{job['id']}.tmp")
            with open(tmp, "w") as fh:
                json.dump(out, fh)
            os.replace(tmp, os.path.join(dirs["done"], f"{job['id']}.json"))
            os.replace(os.path.join(dirs["incoming"], name), os.path.join(dirs["processed"], name))
            logging.info("job %s (%s %s) done", job["id"], job["op"], job["path"])
        time.sleep(args.poll)


if __name__ == "__main__":
    try:
        main()
    except Exception:
        logging.exception("worker crashed")
        raise

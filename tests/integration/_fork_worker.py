"""Opens a store, forks, and writes from both sides; prints what each side saw as JSON.

Run in a fresh interpreter by ``test_store``: in pytest's own process the child inherited
whatever earlier tests had loaded (Ray's gRPC, llama.cpp) and once died of a segfault in
code that was not the store's. The child's faulthandler says where, should it crash here.
Usage: python _fork_worker.py STORE_URL
"""

from __future__ import annotations

import faulthandler
import gc
import json
import os
import sys

from _crash_writer import ROOT, make_node
from sqlalchemy import text

from tvcache._store import Store


def _backend_pid(store: Store) -> int | None:
    if not store.url.startswith("postgres"):
        return None
    with store._engine.connect() as conn:
        return int(conn.scalar(text("SELECT pg_backend_pid()")))


def main(url: str) -> None:
    store = Store(url)
    store.put_root(ROOT)
    base = make_node(None, 0, "root")
    store.put_node(base)
    before = store.node_count()  # the pool now holds an open connection
    backend = _backend_pid(store)
    pid = os.fork()
    if pid == 0:  # the child reports through its exit code
        code = 1
        try:
            faulthandler.enable(sys.stderr)
            store.put_node(make_node(base.node_id, 1, "from-child"))
            code = 0 if store.node_count() == before + 1 else 2
            store.close()
            gc.collect()  # what exiting does: must not close the parent's connections
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    store.put_node(make_node(base.node_id, 1, "from-parent"))
    seen = {
        "child_exit": os.waitstatus_to_exitcode(status),
        "added": store.node_count() - before,
        "same_backend": _backend_pid(store) == backend,
    }
    store.close()
    print(json.dumps(seen))


if __name__ == "__main__":
    main(sys.argv[1])

"""Work run off the request path that tests, benchmarks and ``close`` can wait for as a whole."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any


class Background:
    """A thread pool whose submitted work :meth:`drain` waits for, including work that work
    submitted meanwhile (a removal that queues a refill)."""

    def __init__(self, workers: int, name: str) -> None:
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._pending: list[Future[Any]] = []

    def submit(self, work: Callable[..., Any], *args: Any) -> Future[Any]:
        future = self._pool.submit(work, *args)
        with self._lock:
            self._pending.append(future)
        return future

    def drain(self, timeout: float) -> None:
        """Return once everything submitted so far has finished (``timeout`` per round)."""
        while True:
            with self._lock:
                pending, self._pending = self._pending, []
            if not pending:
                return
            wait(pending, timeout)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)

"""State fingerprints: digests of everything that can change a later observation.

Two environments with equal fingerprints must answer every future call alike, so tvcache
may merge them. Files count by their bytes, SQLite databases included: SQL itself observes
what a "logical content" digest would leave out (``PRAGMA freelist_count``, ``page_count``,
``schema_version``, ``application_id``, ``journal_mode``, the ``rootpage`` column of
``sqlite_master``), and bash observes every byte (``md5sum``). Byte-identical databases
still merge.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

from snapshots.directory import tree_digest

K = TypeVar("K")


def order_times(times: Mapping[K, int], since: int, until: int) -> dict[K, tuple[str, int]]:
    """Modification times as a state holds them: clock times by rank, the others as they are.

    Times taken from the clock (in ``[since, until]``) differ between any two runs of one
    history, as ``date`` does, so their values are not state; their order is (``make``,
    ``ls -t`` and ``find -newer`` read it). Times set on purpose (``touch -d``, ``tar x``,
    files of the image) count by value. Seconds: ``fs`` snapshots keep no more (Docker's tar).
    """
    clock = sorted({t for t in times.values() if since <= t <= until})
    rank = {t: i for i, t in enumerate(clock)}
    return {key: ("rank", rank[t]) if t in rank else ("at", t) for key, t in times.items()}


def directory_fingerprint(home: Path, shell_state: str, times_since: int = 0) -> str:
    """A directory's content (every file by its bytes), the order of its modification times
    (see :func:`order_times`; ``times_since``: the newest time of the template), and the
    shell's state."""
    mtimes: dict[str, int] = {}
    content = tree_digest(home, mtimes=mtimes)
    times = order_times(mtimes, times_since, int(time.time()) + 1)
    text = f"{content}\0{sorted(times.items())!r}\0{shell_state}"
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:32]

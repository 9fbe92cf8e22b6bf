"""Settings as data: one frozen object, readable from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

GiB = 1024**3


def default_home() -> Path:
    """``$TVCACHE_HOME``, else ``~/.cache/tvcache``: store file and snapshots live here."""
    return Path(os.environ.get("TVCACHE_HOME", Path.home() / ".cache" / "tvcache"))


@dataclass(frozen=True, slots=True)
class StateAwareness:
    """Opt-in relaxations of strict history matching; each one is verified, never assumed.

    - ``read_only``: a call whose tool *proves* it changed nothing (the ``sqlite`` tool does,
      exactly) does not advance the state: its observation is stored against the state it
      ran in, and any history reaching that state hits it.
    - ``fingerprint_tools``: after calls of these tools (``"*"``: all) the sandbox's state is
      fingerprinted; a call that leaves the fingerprint unchanged is read-only, and nodes of
      one root with equal fingerprints are merged, so commuting actions share their futures.
      Fingerprinting costs time (counted in ``stats()['fingerprint_seconds']``).
    - ``merge``: with ``fingerprint_tools``, merge nodes of equal fingerprints (default); False
      keeps only the read-only detection (fewer shared futures, a tree instead of a DAG).
    - ``pure_tools``: tools whose output depends on their arguments only; their observations
      are shared by every state of a root. Where fingerprints are available the claim is
      checked on execution, and a call that changed the state is treated as a write.
    - ``shadow_fraction``: this fraction of hits is re-executed in the background on a fork
      of the state; a mismatch withdraws the observation from service.
    """

    read_only: bool = False
    fingerprint_tools: frozenset[str] = frozenset()
    merge: bool = True
    pure_tools: frozenset[str] = frozenset()
    shadow_fraction: float = 0.0

    def fingerprints(self, tool: str) -> bool:
        return tool in self.fingerprint_tools or "*" in self.fingerprint_tools


@dataclass(frozen=True, slots=True)
class Settings:
    """Engine settings. ``store_url=None`` means the SQLite file ``home/cache.db``."""

    home: Path = field(default_factory=default_home)
    store_url: str | None = field(default_factory=lambda: os.environ.get("TVCACHE_STORE_URL"))
    snapshot_budget_bytes: int = 4 * GiB
    call_timeout: float = 600.0
    verify_replays: bool = True
    stats_flush_seconds: float = 0.5
    ema_alpha: float = 0.3
    state: StateAwareness = field(default_factory=StateAwareness)

    @property
    def snapshot_dir(self) -> Path:
        return self.home / "snapshots"

    @property
    def sandbox_dir(self) -> Path:
        return self.home / "sandboxes"

    def resolved_store_url(self) -> str:
        return self.store_url or f"sqlite:///{self.home / 'cache.db'}"

"""Settings as data: one frozen object, readable from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from snapshots import TvcacheError

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
    - ``fingerprint_tasks``: fingerprint only in roots of these task ids (None: every root),
      for the tasks where it pays off (``tvcache stats`` shows what it costs and saves).
    - ``pure_tools``: tools whose output depends on their arguments only; their observations
      are shared by every state of a root. Where fingerprints are available the claim is
      checked on execution, and a call that changed the state is treated as a write.
    - ``shadow_fraction``: this fraction of hits is re-executed in the background on a fork
      of the state; a mismatch withdraws the observation from service.
    """

    read_only: bool = False
    fingerprint_tools: frozenset[str] = frozenset()
    merge: bool = True
    fingerprint_tasks: frozenset[str] | None = None
    pure_tools: frozenset[str] = frozenset()
    shadow_fraction: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.shadow_fraction <= 1.0:
            raise TvcacheError(
                f"shadow_fraction must be within [0, 1], got {self.shadow_fraction!r}",
                "e.g. 0.05 re-executes one hit in twenty",
            )
        for name in ("fingerprint_tools", "pure_tools", "fingerprint_tasks"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, str) or not all(isinstance(v, str) and v for v in value)
            ):
                raise TvcacheError(
                    f"{name} must be a set of names, got {value!r}",
                    f'e.g. {name}=frozenset({{"bash"}})',
                )

    def fingerprints(self, tool: str, task_id: str | None = None) -> bool:
        """Whether calls of ``tool`` in a root of ``task_id`` are fingerprinted."""
        if self.fingerprint_tasks is not None and task_id not in self.fingerprint_tasks:
            return False
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

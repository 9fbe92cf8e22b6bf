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
class Settings:
    """Engine settings. ``store_url=None`` means the SQLite file ``home/cache.db``."""

    home: Path = field(default_factory=default_home)
    store_url: str | None = field(default_factory=lambda: os.environ.get("TVCACHE_STORE_URL"))
    snapshot_budget_bytes: int = 4 * GiB
    call_timeout: float = 600.0
    verify_replays: bool = True
    stats_flush_seconds: float = 0.5
    ema_alpha: float = 0.3

    @property
    def snapshot_dir(self) -> Path:
        return self.home / "snapshots"

    @property
    def sandbox_dir(self) -> Path:
        return self.home / "sandboxes"

    def resolved_store_url(self) -> str:
        return self.store_url or f"sqlite:///{self.home / 'cache.db'}"

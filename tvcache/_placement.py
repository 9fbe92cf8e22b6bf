"""Which server a root belongs on: consistent hashing with bounded loads (issue 14).

Pure functions of (roots, servers), so every client and server computes the same placement
from the same live-server list without asking anyone. A ring with virtual nodes moves few
roots when a server joins or leaves (only those whose ring position changes hands); bounded
loads (Mirrokni, Thorup, Zadimoghaddam 2018) cap every server at ``ceil((1 + eps) * average)``
roots, so a few hot hash ranges cannot pile a GRPO run's tasks onto one server.

Who *actually* serves a root is decided by the lease in the store (tvcache._ownership); the
placement is who should try first.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Iterable, Iterator

__all__ = ["Ring", "assign", "capacity"]

_VNODES = 100  # points per server: load spread within ~10-15 % of even for plain hashing


def _point(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class Ring:
    """A hash ring of servers, each at ``vnodes`` points."""

    def __init__(self, servers: Iterable[str], *, vnodes: int = _VNODES) -> None:
        self.servers = sorted(set(servers))
        if not self.servers:
            raise ValueError(
                "a placement needs at least one server; start a `tvcache serve` or check "
                "that the servers' heartbeats reach the store"
            )
        if vnodes < 1:
            raise ValueError(f"vnodes must be at least 1, not {vnodes}")
        points = sorted((_point(f"{s}#{i}"), s) for s in self.servers for i in range(vnodes))
        self._points = [p for p, _ in points]
        self._owners = [s for _, s in points]

    def walk(self, key: str) -> Iterator[str]:
        """Every server once, in ring order from ``key``'s position: the preferred server
        first, then where the key goes if that one is full or gone."""
        start = bisect.bisect(self._points, _point(key))
        seen: set[str] = set()
        size = len(self._points)
        for step in range(size):
            server = self._owners[(start + step) % size]
            if server not in seen:
                seen.add(server)
                yield server
                if len(seen) == len(self.servers):
                    return

    def lookup(self, key: str) -> str:
        """The server ``key`` belongs on when loads are not bounded."""
        return next(self.walk(key))


def capacity(keys: int, servers: int, eps: float) -> int:
    """The most keys one server may hold: ``ceil((1 + eps) * keys / servers)``."""
    if not eps > 0:
        raise ValueError(f"eps must be positive (0.25 is typical), not {eps!r}")
    return max(1, math.ceil((1 + eps) * keys / servers))


def assign(keys: Iterable[str], ring: Ring, *, eps: float = 0.25) -> dict[str, str]:
    """Key -> server, no server above ``capacity``. Keys are placed in the order of their
    own hash (not the caller's order), each on the first server along its walk with room,
    so the result depends only on the set of keys and servers."""
    unique = sorted(set(keys), key=lambda k: (_point("order:" + k), k))
    cap = capacity(len(unique), len(ring.servers), eps)
    load = dict.fromkeys(ring.servers, 0)
    placed: dict[str, str] = {}
    for key in unique:
        server = next(s for s in ring.walk(key) if load[s] < cap)
        load[server] += 1
        placed[key] = server
    return placed

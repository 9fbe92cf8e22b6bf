"""Root leases on real SQLite files and a real PostgreSQL server, raced by threads and by
processes: a root never has two owners; an expired lease hands over; the old owner is fenced."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from tvcache._ownership import Lease, LeaseLost, Ownership
from tvcache._store import Store

ROOTS = [f"root-{i}" for i in range(12)]

_RACER = """
import json, sys
from tvcache._ownership import Ownership
from tvcache._store import Store
url, owner, go = sys.argv[1], sys.argv[2], float(sys.argv[3])
import time
with Store(url) as store:
    own = Ownership(store, ttl=60)
    while time.time() < go:
        time.sleep(0.005)
    won = [root for root in json.loads(sys.stdin.read()) if own.acquire(root, owner)]
print(json.dumps(won))
"""


def test_threads_racing_for_roots_never_both_own_one(store_url: str) -> None:
    with Store(store_url) as store:
        own = Ownership(store, ttl=60)
        won: list[Lease] = []
        start = threading.Barrier(6)

        def race(owner: str) -> None:
            start.wait()
            for root in ROOTS:
                lease = own.acquire(root, owner)
                if lease is not None:
                    won.append(lease)

        threads = [threading.Thread(target=race, args=(f"s{i}",)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert Counter(lease.root_id for lease in won) == Counter(ROOTS)
        assert {lease.epoch for lease in won} == {1}
        for lease in won:
            current = own.owner_of(lease.root_id)
            assert current is not None and current.owner == lease.owner


def test_processes_racing_for_roots_never_both_own_one(store_url: str) -> None:
    Store(store_url).close()  # the schema exists before the racers start
    go = time.time() + 2.0
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, store_url, f"p{i}", str(go)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    won: list[str] = []
    for racer in racers:
        out, _ = racer.communicate(json.dumps(ROOTS), timeout=120)
        assert racer.returncode == 0
        won += json.loads(out)
    assert sorted(won) == sorted(ROOTS)


def test_an_expired_lease_hands_over_and_fences_the_old_owner(store_url: str) -> None:
    with Store(store_url) as store:
        own = Ownership(store, ttl=0.5)  # the database's own clock
        old = own.acquire("r", "a")
        assert old is not None
        assert own.acquire("r", "b") is None
        deadline = time.time() + 10
        new = None
        while new is None and time.time() < deadline:
            time.sleep(0.1)
            new = own.acquire("r", "b", ttl=60)
        assert new is not None and new.epoch == old.epoch + 1
        with pytest.raises(LeaseLost, match="no longer owns root 'r'"):
            own.renew(old)
        with pytest.raises(LeaseLost), own.fenced(old, "write as owner"):
            pytest.fail("a fenced write ran under a lost lease")
        with own.fenced(new, "write as owner"):
            pass
        assert not own.release(old)
        current = own.owner_of("r")
        assert current is not None and (current.owner, current.epoch) == ("b", new.epoch)


@pytest.mark.postgres
def test_a_takeover_waits_for_the_fenced_write_in_flight(postgres_url: str) -> None:
    """PostgreSQL: a fenced transaction locks the lease row, so a takeover that starts while
    the old owner writes waits for that write to end instead of overlapping it."""
    with Store(postgres_url) as store:
        clock_now = [1000.0]
        own = Ownership(store, ttl=5, clock=lambda: clock_now[0])
        lease = own.acquire("r", "a")
        assert lease is not None
        order: list[str] = []
        inside = threading.Event()

        def take_over() -> None:
            inside.wait()
            clock_now[0] += 10  # the lease has expired by now
            got = own.acquire("r", "b")
            order.append(f"acquired {got is not None}")

        thief = threading.Thread(target=take_over)
        thief.start()
        with own.fenced(lease, "write as owner"):
            inside.set()
            time.sleep(0.5)
            order.append("write committed")
        thief.join(timeout=30)
        assert order == ["write committed", "acquired True"]

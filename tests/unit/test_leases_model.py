"""Root leases against a model, on a real (in-memory) SQLite store with a controlled clock:
at most one live owner per root, epochs grow with every new grant, and a fenced write commits
only under the live lease."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from lease_clock import Clock, Held
from sqlalchemy import func, select

from tvcache._ownership import Lease, LeaseLost, Ownership
from tvcache._schema import root_leases
from tvcache._store import Store

OWNERS = ["a", "b"]
ROOTS = ["r1", "r2"]


ops = st.lists(
    st.one_of(
        st.tuples(st.just("acquire"), st.sampled_from(OWNERS), st.sampled_from(ROOTS)),
        st.tuples(st.just("renew"), st.sampled_from(OWNERS), st.sampled_from(ROOTS)),
        st.tuples(st.just("release"), st.sampled_from(OWNERS), st.sampled_from(ROOTS)),
        st.tuples(st.just("write"), st.sampled_from(OWNERS), st.sampled_from(ROOTS)),
        st.tuples(st.just("tick"), st.sampled_from([0.5, 4.0, 9.5, 11.0]), st.just("")),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(ops)
@example([("acquire", "a", "r1"), ("tick", 9.5, ""), ("acquire", "b", "r1")])
def test_leases_follow_the_model(steps: list[tuple[str, object, str]]) -> None:
    clock = Clock()
    with Store("sqlite://") as store:
        own = Ownership(store, ttl=10.0, clock=clock)
        model: dict[str, Held] = {}
        leases: dict[tuple[str, str], Lease] = {}  # the last lease each owner got per root
        top_epoch: dict[str, int] = {}
        for op, arg, root in steps:
            if op == "tick":
                assert isinstance(arg, float)
                clock.now += arg
                continue
            owner = str(arg)
            held = model.get(root)
            live = held is not None and held.expires > clock.now
            mine = live and held is not None and held.owner == owner
            if op == "acquire":
                got = own.acquire(root, owner)
                if live and not mine:
                    assert got is None
                    continue
                assert got is not None and got.owner == owner
                if mine:
                    assert held is not None and got.epoch == held.epoch
                else:
                    assert got.epoch == top_epoch.get(root, 0) + 1
                top_epoch[root] = got.epoch
                model[root] = Held(owner, got.epoch, got.expires)
                leases[owner, root] = got
                continue
            lease = leases.get((owner, root))
            if lease is None:
                continue
            valid = live and held is not None and (held.owner, held.epoch) == (owner, lease.epoch)
            if op == "renew":
                if valid:
                    leases[owner, root] = own.renew(lease)
                    model[root] = Held(owner, lease.epoch, clock.now + 10.0)
                else:
                    with pytest.raises(LeaseLost, match="no longer owns root"):
                        own.renew(lease)
            elif op == "release":
                assert own.release(lease) is valid
                if valid:
                    model[root] = Held(owner, lease.epoch, 0.0)
            else:
                wrote = False
                try:
                    with own.fenced(lease, "write as owner"):
                        wrote = True
                except LeaseLost:
                    pass
                assert wrote is valid
            current = own.owner_of(root)
            held = model.get(root)
            if held is not None and held.expires > clock.now:
                assert current is not None and (current.owner, current.epoch) == (
                    held.owner,
                    held.epoch,
                )
            else:
                assert current is None


def test_released_root_goes_to_the_next_owner_with_a_higher_epoch() -> None:
    clock = Clock()
    with Store("sqlite://") as store:
        own = Ownership(store, ttl=5.0, clock=clock)
        first = own.acquire("r", "a")
        assert first is not None and first.epoch == 1
        assert own.acquire("r", "b") is None
        assert own.release(first)
        second = own.acquire("r", "b")
        assert second is not None and second.epoch == 2
        with store.transaction("count lease rows", write=False) as conn:
            assert conn.scalar(select(func.count()).select_from(root_leases)) == 1


def test_deregister_frees_the_roots_and_hides_the_server() -> None:
    clock = Clock()
    with Store("sqlite://") as store:
        own = Ownership(store, ttl=5.0, clock=clock)
        own.heartbeat("s1", "http://127.0.0.1:1")
        own.heartbeat("s2", "http://127.0.0.1:2")
        assert own.acquire("r", "s1") is not None
        own.deregister("s1")
        assert [s.server_id for s in own.live_servers()] == ["s2"]
        assert own.owner_of("r") is None
        clock.now += 6
        assert own.live_servers() == []


def test_a_ttl_that_is_not_positive_is_refused() -> None:
    with Store("sqlite://") as store:
        with pytest.raises(ValueError, match="positive number of seconds"):
            Ownership(store, ttl=0)
        with pytest.raises(ValueError, match="positive number of seconds"):
            Ownership(store).acquire("r", "a", ttl=-1)

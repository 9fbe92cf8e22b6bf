"""A server's leases (tvcache._leases) against a model, several servers on one real SQLite
store with one controlled clock: a server serves a root (``epoch`` not None) only while it
holds the live lease, never two servers at once; a renewal reports exactly the roots lost;
a node or statistics write for a root commits only under the writer's live lease of the
epoch it serves with (the store's fence), whatever the interleaving of claims, renewals,
pauses and writes."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from lease_clock import Clock, Held

from sandbox import Observation, RootSpec, ToolCall
from tvcache._leases import Full, Leases, NotOwner
from tvcache._ownership import LeaseLost, Ownership
from tvcache._records import NodeRecord, NodeStats, RootRecord
from tvcache._store import Store

SERVERS = ["a", "b", "c"]
ROOTS = ["r1", "r2"]
TTL = 10.0


def child(root_id: str, n: int, stamp: float) -> NodeRecord:
    return NodeRecord(
        node_id=f"{root_id}-n{n}",
        root_id=root_id,
        parent_id=root_id,
        depth=1,
        call_key=f"k{n}",
        call=ToolCall("bash", {"command": f"echo {n}"}),
        observation=Observation(f"{n}\n"),
        nondeterministic=False,
        read_only=False,
        stats=NodeStats(executions=1, last_use=stamp),
        created=stamp,
    )


def seed(store: Store, roots: list[str]) -> None:
    for root_id in roots:
        spec = RootSpec(task_id=root_id, backend="local", template="/t")
        store.put_root(RootRecord(root_id, spec, "id", 1.0))
        store.put_node(
            NodeRecord(root_id, root_id, None, 0, None, None, None, False, False, NodeStats(), 1.0)
        )
    store.flush()  # the other servers' stores read the file: the journal must be committed


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Store]]:
    """One store per server on one SQLite file, for all examples (each uses roots of its own)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('leases') / 'cache.db'}"
    opened = {s: Store(url) for s in SERVERS}
    yield opened
    for store in opened.values():
        store.close()


_examples = itertools.count()


steps = st.lists(
    st.one_of(
        st.tuples(st.just("claim"), st.sampled_from(SERVERS), st.sampled_from(ROOTS)),
        st.tuples(st.just("renew"), st.sampled_from(SERVERS), st.just("")),
        st.tuples(st.just("write"), st.sampled_from(SERVERS), st.sampled_from(ROOTS)),
        st.tuples(st.just("stats"), st.sampled_from(SERVERS), st.sampled_from(ROOTS)),
        st.tuples(st.just("tick"), st.sampled_from([1.0, 4.0, 6.0, 11.0]), st.just("")),
    ),
    max_size=30,
)


@settings(max_examples=80, deadline=None)
@given(steps)
@example([("claim", "a", "r1"), ("tick", 11.0, ""), ("claim", "b", "r1"), ("write", "a", "r1")])
@example([("claim", "a", "r1"), ("tick", 6.0, ""), ("renew", "a", ""), ("tick", 6.0, ""),
          ("write", "a", "r1"), ("claim", "b", "r1")])  # fmt: skip
def test_servers_serve_and_write_a_root_only_under_its_live_lease(
    stores: dict[str, Store], steps: list[tuple[str, object, str]]
) -> None:
    prefix = f"e{next(_examples)}-"
    renamed = [(op, arg, prefix + root if root else root) for op, arg, root in steps]
    clock = Clock()
    for store in stores.values():
        store.fence = None
    seed(stores["a"], [prefix + r for r in ROOTS])
    leases = {
        s: Leases(Ownership(stores[s], ttl=TTL, clock=clock), s, eps=100.0, monotonic=clock)
        for s in SERVERS
    }
    for s in SERVERS:
        stores[s].fence = leases[s]
    run(renamed, clock, stores, leases, [prefix + r for r in ROOTS])


def run(
    steps: list[tuple[str, object, str]],
    clock: Clock,
    stores: dict[str, Store],
    leases: dict[str, Leases],
    roots: list[str],
) -> None:
    model: dict[str, Held] = {}
    serving: dict[tuple[str, str], int] = {}  # (server, root) -> the epoch it serves with
    numbers = itertools.count()
    for op, arg, root in steps:
        if op == "tick":
            assert isinstance(arg, float)
            clock.now += arg
        else:
            server = str(arg)
            held = model.get(root)
            live = held is not None and held.expires > clock.now
            if op == "claim":
                if live and held is not None and held.owner != server:
                    with pytest.raises(NotOwner):
                        leases[server].claim(root)
                else:
                    got = leases[server].claim(root)
                    if not (live and held is not None and held.owner == server):
                        top = held.epoch if held is not None else 0
                        assert got.epoch == top + 1 and got.fresh
                        model[root] = Held(server, got.epoch, clock.now + TTL)
                    else:
                        assert held is not None and got.epoch == held.epoch
                        if held.expires - clock.now <= TTL / 2:  # else no round trip
                            held.expires = clock.now + TTL
                    serving[server, root] = got.epoch
            elif op == "renew":
                mine = {
                    r: h for r, h in model.items() if h.owner == server and h.expires > clock.now
                }
                expected_lost = {
                    r
                    for (s, r), e in serving.items()
                    if s == server and (r not in mine or mine[r].epoch != e)
                }
                assert leases[server].renew() == expected_lost
                for r in expected_lost:
                    del serving[server, r]
                for h in mine.values():
                    h.expires = clock.now + TTL
            elif op == "write":
                owner_now = live and held is not None and held.owner == server
                valid = owner_now and held is not None and serving.get((server, root)) == held.epoch
                record = child(root, next(numbers), clock.now)
                if valid:
                    stores[server].put_node(record)
                    assert stores[server].get_node(record.node_id) is not None
                else:
                    with pytest.raises(LeaseLost, match="no longer owns root"):
                        stores[server].put_node(record)
                    assert stores[server].get_node(record.node_id) is None
                    serving.pop((server, root), None)
            else:  # statistics of the root's node: dropped unless the writer owns it
                owner_now = live and held is not None and held.owner == server
                valid = owner_now and held is not None and serving.get((server, root)) == held.epoch
                stamp = 10_000.0 + next(numbers)
                stores[server].write_stats({root: NodeStats(hits=1, last_use=stamp)})
                stored = stores[server].get_node(root)
                assert stored is not None and (stored.stats.last_use == stamp) is valid
        # never two servers serving one root; one that serves is the model's owner
        for r in roots:
            serving_now = [s for s in SERVERS if leases[s].epoch(r) is not None]
            assert len(serving_now) <= 1
            for s in serving_now:
                h = model[r]
                assert h.owner == s and h.expires > clock.now and leases[s].epoch(r) == h.epoch


def test_a_server_refuses_roots_beyond_its_bounded_load_share(tmp_path: Path) -> None:
    clock = Clock()
    with Store(f"sqlite:///{tmp_path / 'cache.db'}") as store:
        own = Ownership(store, ttl=TTL, clock=clock)
        for server in ("a", "b"):
            own.heartbeat(server, f"http://{server}")
        a = Leases(own, "a", eps=0.25, monotonic=clock)
        b = Leases(own, "b", eps=0.25, monotonic=clock)
        a.claim("r1")
        a.claim("r2")  # 2 of 2 roots: within ceil(1.25 * 2 / 2) = 2
        with pytest.raises(Full, match="bounded-load share"):
            a.claim("r3")  # 3 of 3 > ceil(1.25 * 3 / 2) = 2
        b.claim("r3")
        a.claim("r4")  # 3 of 4: within ceil(1.25 * 4 / 2) = 3
        assert a.claim("r1").fresh is False  # a root it holds is never refused


def test_a_full_server_still_names_the_owner_of_a_root_held_elsewhere(tmp_path: Path) -> None:
    clock = Clock()
    with Store(f"sqlite:///{tmp_path / 'cache.db'}") as store:
        own = Ownership(store, ttl=TTL, clock=clock)
        for server in ("a", "b", "c"):
            own.heartbeat(server, f"http://{server}")
        a = Leases(own, "a", eps=0.25, monotonic=clock)
        a.claim("r1")
        Leases(own, "b", eps=0.25, monotonic=clock).claim("r2")
        a.claim("r3")  # 2 of 3: within ceil(1.25 * 3 / 3) = 2
        with pytest.raises(Full):
            a.claim("r4")  # 3 of 4 > ceil(1.25 * 4 / 3) = 2
        with pytest.raises(NotOwner) as refused:  # full, but r2 is b's: the client goes there
            a.claim("r2")
        assert refused.value.owner == "http://b"


def test_not_owner_names_the_live_owner_and_none_for_a_silent_one(tmp_path: Path) -> None:
    clock = Clock()
    with Store(f"sqlite:///{tmp_path / 'cache.db'}") as store:
        own = Ownership(store, ttl=TTL, clock=clock)
        own.heartbeat("a", "http://a:1")
        Leases(own, "a", monotonic=clock).claim("r")
        b = Leases(own, "b", monotonic=clock)
        with pytest.raises(NotOwner) as refused:
            b.claim("r")
        assert refused.value.owner == "http://a:1"
        own.heartbeat("a", "http://a:1", ttl=1.0)  # a stops its heartbeats; the lease runs on
        clock.now += 2.0
        with pytest.raises(NotOwner) as silent:
            b.claim("r")
        assert silent.value.owner is None

"""Servers own roots by lease (issue 14), on real ``tvcache serve`` processes sharing a real
PostgreSQL: clients that disagree on the live servers still meet on one server per root
(the others answer ``not_owner`` and name it), and bounded loads spread roots that all hash
to one server."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from cluster_env import COMMANDS, cluster
from sqlalchemy import select

from tvcache._placement import Ring, capacity
from tvcache._schema import cluster_servers, root_leases
from tvcache._store import Store
from tvcache.cluster import ClusterClient, routing_key

pytestmark = pytest.mark.postgres


def owners(store_url: str) -> dict[str, str]:
    """Root id -> the address of the server holding its lease (every lease row)."""
    with Store(store_url) as store, store.transaction("read leases", write=False) as conn:
        rows = conn.execute(
            select(root_leases.c.root_id, cluster_servers.c.address).join(
                cluster_servers, root_leases.c.owner == cluster_servers.c.server_id
            )
        ).all()
    return {row.root_id: row.address for row in rows}


def test_clients_with_different_server_lists_meet_on_one_server_per_root(
    tmp_path: Path, template: Path, postgres_url: str
) -> None:
    with cluster(tmp_path, postgres_url, 3) as servers:
        urls = [server.url for server in servers]
        tasks = [f"t{i}" for i in range(6)]
        placed: dict[str, tuple[str, str]] = {}  # task -> (server, root id)
        with ClusterClient(urls) as full:
            for task in tasks:
                with full.session(task, template=str(template)) as session:
                    first = [session.call("bash", command=c) for c in COMMANDS]
                    placed[task] = (session.server, session.root_id)
                assert [r.hit for r in first] == [False] * 3
        # a client that missed a server (its list is stale) and one that lists them in
        # another order: each root is still served where it is owned, from one trie
        for stale_urls in (urls[:1], urls[::-1]):
            with ClusterClient(stale_urls) as stale:
                for task in tasks:
                    with stale.session(task, template=str(template)) as session:
                        again = [session.call("bash", command=c) for c in COMMANDS]
                        assert session.server == placed[task][0]
                    assert [r.hit for r in again] == [True] * 3
                    assert again[-1].output.strip() == "2"
        held = owners(postgres_url)
        assert {root: held[root] for _, root in placed.values()} == {
            root: server for server, root in placed.values()
        }
        assert len(set(placed.values())) == len(tasks)


def test_roots_that_all_hash_to_one_server_spread_by_bounded_loads(
    tmp_path: Path, template: Path, postgres_url: str
) -> None:
    with cluster(tmp_path, postgres_url, 2) as servers:
        urls = [server.url for server in servers]
        ring = Ring(urls)
        key = lambda task: routing_key(  # noqa: E731
            {"task_id": task, "template": str(template), "options": {}}
        )
        tasks = [t for t in (f"hot-{i}" for i in range(200)) if ring.lookup(key(t)) == urls[0]]
        tasks = tasks[:6]
        with ClusterClient(urls) as client:
            for task in tasks:
                with client.session(task, template=str(template)) as session:
                    assert not session.call("bash", command=COMMANDS[0]).hit
        load = Counter(owners(postgres_url).values())
        assert sum(load.values()) == 6
        assert max(load.values()) <= capacity(6, 2, 0.25)  # 4, though all 6 prefer one
        assert load[urls[1]] >= 2

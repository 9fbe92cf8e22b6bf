"""Clients routing by root over three real ``tvcache serve`` processes on loopback that share
one real PostgreSQL store: roots spread over the servers and stay put, hits are a single
server's, and a killed server's sessions move on without an error or a lost answer."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_env import COMMANDS, cluster

from tvcache._ownership import Ownership
from tvcache._placement import Ring
from tvcache._store import Store
from tvcache.client import Client
from tvcache.cluster import AsyncClusterClient, ClusterClient, routing_key
from tvcache.service import ServerProcess

pytestmark = pytest.mark.postgres

TASKS = [f"task-{i}" for i in range(9)]


@pytest.fixture
def servers(tmp_path: Path, postgres_url: str) -> Iterator[list[ServerProcess]]:
    with cluster(tmp_path, postgres_url, 3) as started:
        yield started


def test_roots_spread_over_the_servers_stay_put_and_hit_as_on_one(
    servers: list[ServerProcess], template: Path, postgres_url: str
) -> None:
    urls = sorted(server.url for server in servers)
    with ClusterClient(store_url=postgres_url) as cluster:
        placed: dict[str, str] = {}
        for task in TASKS:
            with cluster.session(task, template=str(template)) as session:
                first = [session.call("bash", command=c) for c in COMMANDS]
                placed[task] = session.server
            assert [r.hit for r in first] == [False] * 3
            assert first[-1].output.strip() == "2"
        assert len(set(placed.values())) >= 2  # 9 roots on 3 servers: not all on one
    with ClusterClient(store_url=postgres_url) as other:  # any client finds the same server
        for task in TASKS:
            key = routing_key({"task_id": task, "template": str(template), "options": {}})
            assert placed[task] in Ring(urls).walk(key)  # its first choice, unless that was full
            with other.session(task, template=str(template)) as again:
                second = [again.call("bash", command=c) for c in COMMANDS]
                assert again.server == placed[task]
            assert [r.hit for r in second] == [True] * 3
            assert [r.output for r in second] == [r.output for r in first]
    with Store(postgres_url) as store:
        live = Ownership(store)
        assert sorted(s.address for s in live.live_servers()) == urls
        servers[0].stop()  # a clean stop leaves the list at once, not after the ttl
        assert sorted(s.address for s in live.live_servers()) == urls_without(urls, servers[0])


def urls_without(urls: list[str], server: ServerProcess) -> list[str]:
    return [url for url in urls if url != server.url]


def test_a_killed_server_s_sessions_move_on_and_lose_no_answer(
    servers: list[ServerProcess], template: Path
) -> None:
    with ClusterClient([server.url for server in servers]) as cluster:
        session = cluster.session("moving", template=str(template))
        answered = [session.call("bash", command=c) for c in COMMANDS[:2]]
        doomed = next(server for server in servers if server.url == session.server)
        doomed.stop(signal.SIGKILL)
        last = session.call("bash", command=COMMANDS[2])  # no error: reopened elsewhere
        assert session.server != doomed.url
        assert not last.hit and last.output.strip() == "2"
        with cluster.session("moving", template=str(template)) as fresh:
            replayed = [fresh.call("bash", command=c) for c in COMMANDS]
            assert fresh.server == session.server
        assert [r.hit for r in replayed] == [True] * 3
        assert [r.output for r in replayed[:2]] == [r.output for r in answered]
        session.close()


def test_the_async_client_routes_like_the_sync_one(
    servers: list[ServerProcess], template: Path, postgres_url: str
) -> None:
    async def run() -> list[tuple[str, bool]]:
        async with AsyncClusterClient(store_url=postgres_url) as cluster:
            out = []
            for _ in range(2):
                async with await cluster.session("a", template=str(template)) as session:
                    result = await session.acall("bash", command=COMMANDS[0])
                    out.append((session.server, result.hit))
            return out

    (first, hit1), (second, hit2) = asyncio.run(run())
    assert first == second and (hit1, hit2) == (False, True)
    urls = [server.url for server in servers]
    with ClusterClient(urls) as sync, sync.session("a", template=str(template)) as session:
        assert session.server == first


def test_a_session_moves_to_a_server_that_loaded_its_root_before(
    servers: list[ServerProcess], template: Path, postgres_url: str
) -> None:
    urls = [server.url for server in servers]
    spec = {"task_id": "stale", "template": str(template), "options": {}}
    first, second = list(Ring(urls).walk(routing_key(spec)))[:2]
    with Client(second) as direct, direct.session("stale", template=str(template)) as early:
        early.call("bash", command=COMMANDS[0])  # the second server loads the root now
        root_id = early.root_id
    with Store(postgres_url) as store:  # and gives it up, keeping what it loaded in memory
        ownership = Ownership(store)
        held = ownership.owner_of(root_id)
        assert held is not None and ownership.release(held)
    with ClusterClient(urls) as cluster:
        session = cluster.session("stale", template=str(template))
        assert session.server == first
        for command in COMMANDS[:2]:
            session.call("bash", command=command)
        next(s for s in servers if s.url == first).stop(signal.SIGKILL)
        last = session.call("bash", command=COMMANDS[2])
        assert session.server == second and last.output.strip() == "2"
        with cluster.session("stale", template=str(template)) as fresh:
            replayed = [fresh.call("bash", command=c) for c in COMMANDS]
        assert [r.hit for r in replayed] == [True] * 3  # reloaded on taking it over, none lost
        session.close()

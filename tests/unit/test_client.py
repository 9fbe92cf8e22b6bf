"""Clients and the service app in-process: retries, resumption, error mapping, dedup.

The app runs on the fake environment with an in-memory store; transport failures are
injected with httpx's mock transport, so nothing here needs a network or a sandbox.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator

import httpx
import pytest
from fake_env import FakeBackend
from fastapi.testclient import TestClient

from sandbox import ToolCallError
from tvcache._engine import Engine, RootNotFoundError
from tvcache._store import Store
from tvcache.client import AsyncClient, Client, ServiceError
from tvcache.service import create_app

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def engine() -> Iterator[Engine]:
    store = Store("sqlite://")
    engine = Engine(FakeBackend(call_seconds=0.0), store)
    yield engine
    engine.close()
    store.close()


def through(
    app_client: TestClient, fail: Callable[[httpx.Request, int], httpx.Response | None]
) -> Client:
    """A client whose requests reach the app unless ``fail(request, n)`` answers first."""
    seen: list[int] = [0]

    def handler(request: httpx.Request) -> httpx.Response:
        seen[0] += 1
        injected = fail(request, seen[0])
        if injected is not None:
            return injected
        answer = app_client.request(request.method, request.url.path, content=request.content,
                                    headers={"content-type": "application/json"})  # fmt: skip
        return httpx.Response(answer.status_code, content=answer.content, headers=answer.headers)

    return Client("http://tvcache", transport=httpx.MockTransport(handler), backoff=0.0)


def test_calls_hit_across_clients_and_errors_map_to_tvcache_errors(engine: Engine) -> None:
    with TestClient(create_app(engine)) as app:
        client = through(app, lambda _r, _n: None)
        with client.session("t") as a:
            assert not a.call("add", k="x", v=2).hit
        with client.session("t") as b:
            got = b.call("add", k="x", v=2)
            assert got.hit and got.output == "x=2" and got.node_id == a.node_id
            with pytest.raises(ToolCallError, match="unknown tool 'nope'"):
                b.call("nope")
            assert b.call("get", k="x").output == "x=2"  # the refused call changed nothing
        with pytest.raises(RootNotFoundError):
            client.tree("no-such-root")
        assert client.tree(b.root_id)["nodes"][1]["hits"] >= 0


def test_a_retried_call_resends_the_same_request_and_runs_once(engine: Engine) -> None:
    bodies: list[dict[str, object]] = []

    def drop_first_answer(request: httpx.Request, _n: int) -> httpx.Response | None:
        if request.url.path.endswith("/calls"):
            bodies.append(json.loads(request.content))
            if len(bodies) == 1:
                app.request("POST", request.url.path, content=request.content,
                            headers={"content-type": "application/json"})  # fmt: skip
                raise httpx.ReadTimeout("answer lost", request=request)
        return None

    with TestClient(create_app(engine)) as app, through(app, drop_first_answer).session("t") as s:
        assert s.call("add", k="x", v=1).output == "x=1"
    assert bodies[0] == bodies[1]
    assert [c.tool for c in engine.backend.runs] == ["add"]  # type: ignore[attr-defined]


def test_a_forgotten_session_reopens_at_its_last_node(engine: Engine) -> None:
    with TestClient(create_app(engine)) as app:
        client = through(app, lambda _r, _n: None)
        s = client.session("t")
        s.call("add", k="x", v=5)
        old = s.session_id
        app.delete(f"/v1/sessions/{old}")  # as if the server restarted or reaped it
        assert s.call("add", k="x", v=1).output == "x=6"
        assert s.session_id != old
        s.close()


def test_unreachable_server_is_reported_and_the_session_resumes_later(engine: Engine) -> None:
    down = [False]

    def outage(request: httpx.Request, _n: int) -> httpx.Response | None:
        if down[0]:
            raise httpx.ConnectError("refused", request=request)
        return None

    with TestClient(create_app(engine)) as app:
        s = through(app, outage).session("t")
        s.call("add", k="x", v=5)
        down[0] = True
        with pytest.raises(ServiceError) as error:
            s.call("add", k="x", v=1)
        assert error.value.code == "unreachable" and error.value.status == 0
        down[0] = False
        assert s.call("add", k="x", v=1).output == "x=6"


def test_gateway_errors_are_retried(engine: Engine) -> None:
    def flaky(request: httpx.Request, n: int) -> httpx.Response | None:
        return httpx.Response(503) if n <= 2 else None

    with TestClient(create_app(engine)) as app:
        assert through(app, flaky).health()["status"] == "ok"


def test_shutdown_closes_every_session_and_its_sandbox(engine: Engine) -> None:
    fake = engine.backend
    assert isinstance(fake, FakeBackend)
    with TestClient(create_app(engine)) as app:
        client = through(app, lambda _r, _n: None)
        for i in range(3):
            client.session(f"t{i}").call("add", k="x", v=i)
        assert app.get("/v1/health").json()["sessions"] == 3
    assert fake.closed == fake.starts + fake.forks


def test_async_client_shares_one_flight(engine: Engine) -> None:
    async def main() -> list[bool]:
        transport = httpx.ASGITransport(app=create_app(engine))
        async with AsyncClient("http://tvcache", transport=transport) as client:
            sessions = [await client.session("t") for _ in range(4)]
            got = await asyncio.gather(*(s.acall("add", k="x", v=3) for s in sessions))
            assert {r.output for r in got} == {"x=3"}
            for s in sessions:
                await s.aclose()
            return [r.hit for r in got]

    assert asyncio.run(main()).count(False) == 1
    assert [c.tool for c in engine.backend.runs] == ["add"]  # type: ignore[attr-defined]


def test_metrics_count_state_aware_hits_and_shadow_mismatches() -> None:
    from sandbox import Observation
    from tvcache._settings import Settings, StateAwareness

    aware = StateAwareness(fingerprint_tools=frozenset({"*"}), shadow_fraction=1.0)
    engine = Engine(FakeBackend(call_seconds=0.0), None, settings=Settings(state=aware))
    with engine.session("t") as a:
        a.call("set", k="x", v=1)
        served = a.call("get", k="x")  # read-only by fingerprint
    node = engine.graph.get(served.node_id)
    assert node is not None
    node.observation = Observation("x=42", 0, 1.0)  # a corrupted cache entry
    with engine.session("t") as b:
        b.call("set", k="x", v=1)
        assert b.call("get", k="x").output == "x=42"
    assert engine.shadow is not None
    engine.shadow.drain()
    with TestClient(create_app(engine)) as app:
        text = app.get("/metrics").text
    assert "tvcache_shadow_mismatches_total 1.0" in text
    assert "tvcache_read_only_nodes_total 1.0" in text
    assert "tvcache_fingerprints_total" in text
    engine.close()

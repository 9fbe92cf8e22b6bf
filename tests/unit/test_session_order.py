"""Calls of one session issued concurrently execute one at a time, in the order issued.

Every client (in-process, sync remote from threads, async remote under ``asyncio.gather``,
raw HTTP) must give the observations the same calls give issued one after another; a
refused call consumes no ``seq``. The fake environment's ``add`` returns the running sum,
so any reordering or overlap shows in the outputs.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fake_env import FakeBackend, fresh_output
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox import JSON, ToolCall, ToolCallError
from tvcache import CallResult
from tvcache._engine import Engine
from tvcache._store import Store
from tvcache._turns import Turns
from tvcache.client import AsyncClient, Client, ServiceError, ToolSession
from tvcache.service import create_app

N = 12
SUMS = [f"x={sum(range(1, i + 2))}" for i in range(N)]  # add 1, add 2, ... one after another


@pytest.fixture
def engine() -> Iterator[Engine]:
    store = Store("sqlite://")
    engine = Engine(FakeBackend(call_seconds=0.0), store)
    yield engine
    engine.close()
    store.close()


def proxy(app: TestClient, fail: Callable[[httpx.Request], httpx.Response | None]) -> Client:
    """A sync client whose requests reach ``app`` unless ``fail`` answers first."""
    lock = threading.Lock()  # the TestClient portal is not meant for many threads at once

    def handler(request: httpx.Request) -> httpx.Response:
        injected = fail(request)
        if injected is not None:
            return injected
        with lock:
            answer = app.request(request.method, request.url.path, content=request.content,
                                 headers={"content-type": "application/json"})  # fmt: skip
        return httpx.Response(answer.status_code, content=answer.content, headers=answer.headers)

    return Client("http://tvcache", transport=httpx.MockTransport(handler), backoff=0.0)


def test_in_process_session_under_gather_runs_calls_in_issue_order(engine: Engine) -> None:
    async def main() -> list[str]:
        with engine.session("t") as session:
            got = await asyncio.gather(*(session.acall("add", k="x", v=i + 1) for i in range(N)))
            return [r.output for r in got]

    assert asyncio.run(main()) == SUMS
    with engine.session("t") as again:  # and they were stored as one path: all hits now
        assert all(again.call("add", k="x", v=i + 1).hit for i in range(N))


def add_one_from_threads(session: ToolSession) -> None:
    """N threads each add 1 at once: one at a time, they see 1, 2, ... N in some order."""
    outputs: list[str] = []
    threads = [
        threading.Thread(target=lambda: outputs.append(session.call("add", k="x", v=1).output))
        for _ in range(N)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outputs, key=lambda o: int(o[2:])) == [f"x={i + 1}" for i in range(N)]


def test_in_process_session_from_threads_runs_one_call_at_a_time(engine: Engine) -> None:
    with engine.session("t") as session:
        add_one_from_threads(session)


def test_async_remote_session_under_gather_gives_the_sequential_observations(
    engine: Engine,
) -> None:
    async def main() -> tuple[list[str], list[str]]:
        transport = httpx.ASGITransport(app=create_app(engine))
        async with AsyncClient("http://tvcache", transport=transport) as client:
            session = await client.session("t")
            got = await asyncio.gather(*(session.acall("add", k="x", v=i + 1) for i in range(N)))
            then = await session.acall("get", k="x")  # the session goes on afterwards
            await session.aclose()
            sequential = await client.session("t")
            alone = [(await sequential.acall("add", k="x", v=i + 1)).output for i in range(N)]
            await sequential.aclose()
        assert then.output == f"x={sum(range(1, N + 1))}"
        return [r.output for r in got], alone

    concurrent, sequential = asyncio.run(main())
    assert concurrent == sequential == SUMS


def test_sync_remote_session_from_threads_and_acall_keep_order(engine: Engine) -> None:
    with TestClient(create_app(engine)) as app:
        session = proxy(app, lambda _r: None).session("t")
        add_one_from_threads(session)

        async def gathered() -> list[str]:
            got = await asyncio.gather(*(session.acall("add", k="y", v=i + 1) for i in range(N)))
            return [r.output.replace("y", "x") for r in got]

        assert asyncio.run(gathered()) == SUMS
        session.close()


def test_a_refused_call_consumes_no_seq(engine: Engine) -> None:
    refuse_next = [0]
    seqs: list[int] = []

    def refuse(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.endswith("/calls"):
            seqs.append(json.loads(request.content)["seq"])
            if refuse_next[0]:
                refuse_next[0] -= 1
                error = {"code": "unauthorized", "message": "no", "hint": None, "field": None}
                return httpx.Response(401, json={"error": error})
        return None

    with TestClient(create_app(engine)) as app:
        session = proxy(app, refuse).session("t")
        assert session.call("add", k="x", v=1).output == "x=1"
        with pytest.raises(ServiceError) as too_long:  # refused by the server's validation
            session.call("a" * 200, k="x")
        assert too_long.value.code == "invalid_request"
        with pytest.raises(ToolCallError):  # refused: no such tool
            session.call("nope", k="x")
        refuse_next[0] = 1
        with pytest.raises(ServiceError) as unauthorized:  # refused in front of the app
            session.call("add", k="x", v=2)
        assert unauthorized.value.status == 401
        with pytest.raises(ToolCallError, match="not JSON"):  # never sent
            session.call("add", k="x", v=object())  # type: ignore[arg-type]
        assert session.call("add", k="x", v=2).output == "x=3"
        assert seqs == [1, 2, 2, 2, 2]
        session.close()


def test_raw_http_calls_sent_at_once_in_any_order_apply_in_seq_order(engine: Engine) -> None:
    async def main() -> list[str]:
        transport = httpx.ASGITransport(app=create_app(engine))
        async with httpx.AsyncClient(transport=transport, base_url="http://tvcache") as http:
            opened = (await http.post("/v1/sessions", json={"task_id": "t"})).json()
            calls = f"/v1/sessions/{opened['session_id']}/calls"
            order = list(range(N))
            random.Random(7).shuffle(order)

            async def send(i: int) -> httpx.Response:
                await asyncio.sleep(order.index(i) * 0.002)  # arrive shuffled
                body = {"tool": "add", "args": {"k": "x", "v": i + 1}, "request_id": f"r{i}"}
                return await http.post(calls, json={**body, "seq": i + 1})

            answers = await asyncio.gather(*(send(i) for i in range(N)))
            assert [a.status_code for a in answers] == [200] * N, [a.text for a in answers]
            return [a.json()["observation"]["output"] for a in answers]

    assert asyncio.run(main()) == SUMS


def test_server_reuses_the_seq_of_a_refused_or_failed_call(engine: Engine) -> None:
    with TestClient(create_app(engine, order_seconds=0.2)) as app:
        opened = app.post("/v1/sessions", json={"task_id": "t"}).json()
        calls = f"/v1/sessions/{opened['session_id']}/calls"
        call = {"tool": "add", "args": {"k": "x", "v": 1}, "request_id": "a", "seq": 1}
        assert app.post(calls, json={**call, "tool": "nope"}).status_code == 422
        assert app.post(calls, json={**call, "args": {}}).status_code == 422
        first = app.post(calls, json=call)
        assert first.status_code == 200 and first.json()["observation"]["output"] == "x=1"
        assert app.post(calls, json=call).json() == first.json()  # a retry: the same answer
        other = app.post(calls, json={**call, "request_id": "b"})
        assert other.status_code == 409  # seq 1 is taken by another call
        gap = app.post(calls, json={**call, "request_id": "c", "seq": 5})
        assert gap.status_code == 409 and "seq 5" in gap.text  # waited briefly, then refused
        second = app.post(calls, json={**call, "request_id": "d", "seq": 2})
        assert second.json()["observation"]["output"] == "x=2"  # the session is not wedged


def test_a_session_whose_seq_was_taken_behind_its_back_reopens_instead_of_wedging(
    engine: Engine,
) -> None:
    with TestClient(create_app(engine)) as app:
        session = proxy(app, lambda _r: None).session("t")
        assert session.call("add", k="x", v=1).output == "x=1"
        intruder = {"tool": "add", "args": {"k": "x", "v": 100}, "request_id": "i", "seq": 2}
        assert app.post(f"/v1/sessions/{session.session_id}/calls", json=intruder).is_success
        old = session.session_id
        assert session.call("add", k="x", v=2).output == "x=3"  # not x=103, not a 409
        assert session.session_id != old
        assert session.call("add", k="x", v=3).output == "x=6"
        session.close()


CALLS = st.lists(
    st.one_of(
        st.builds(lambda k, v: ("add", {"k": k, "v": v}), st.sampled_from("xy"), st.integers(1, 9)),
        st.builds(lambda k, v: ("set", {"k": k, "v": v}), st.sampled_from("xy"), st.integers(0, 9)),
        st.builds(lambda k: ("get", {"k": k}), st.sampled_from("xy")),
        st.just(("nope", {"k": "x"})),  # refused: no such tool, changes nothing
    ),
    max_size=10,
)


def oracle(calls: list[tuple[str, dict[str, JSON]]]) -> list[str | None]:
    """What each call returns issued one after another in a fresh environment."""
    history: list[ToolCall] = []
    out: list[str | None] = []
    for tool, args in calls:
        if tool == "nope":
            out.append(None)
            continue
        history.append(ToolCall(tool, args))
        out.append(fresh_output(history))
    return out


async def gathered(session: Any, calls: list[tuple[str, dict[str, JSON]]]) -> list[str | None]:
    got = await asyncio.gather(
        *(session.acall(tool, **args) for tool, args in calls), return_exceptions=True
    )
    for (tool, _), result in zip(calls, got, strict=True):
        assert isinstance(result, ToolCallError if tool == "nope" else CallResult), result
    return [r.output if isinstance(r, CallResult) else None for r in got]


@settings(max_examples=40, deadline=None)
@given(calls=CALLS)
def test_gathered_calls_observe_exactly_the_calls_issued_before_them(
    calls: list[tuple[str, dict[str, JSON]]],
) -> None:
    """The guarantee under concurrency: in-process and remote, misses then hits, every
    observation is the fresh one for the calls issued before it."""
    expected = oracle(calls)
    engine = Engine(FakeBackend(call_seconds=0.0), Store("sqlite://"))

    async def main() -> None:
        for _ in range(2):  # misses, then the same calls as hits
            with engine.session("t") as session:
                assert await gathered(session, calls) == expected
        transport = httpx.ASGITransport(app=create_app(engine))
        async with AsyncClient("http://tvcache", transport=transport) as client:
            remote = await client.session("t")
            assert await gathered(remote, [("set", {"k": "y", "v": 1}), *calls]) == oracle(
                [("set", {"k": "y", "v": 1}), *calls]
            )
            await remote.aclose()

    try:
        asyncio.run(main())
    finally:
        engine.close()
        assert engine.store is not None
        engine.store.close()


def test_a_call_cancelled_while_waiting_for_its_turn_does_not_block_the_next() -> None:
    turns = Turns()

    async def main() -> list[int]:
        first, ran = turns.take(), []
        assert turns.ready(first)  # held here: the calls below must wait
        waiting = [
            asyncio.ensure_future(turns.in_thread(turns.take(), lambda i=i: ran.append(i)))
            for i in (2, 3)
        ]
        await asyncio.sleep(0.05)  # both threads wait for their turn now
        waiting[0].cancel()
        await asyncio.wait([waiting[0]])  # its task has given the ticket up
        turns.release(first)
        await asyncio.wait_for(waiting[1], 5)
        assert waiting[0].cancelled()
        with turns.turn():  # and the order goes on
            ran.append(4)
        return ran

    assert asyncio.run(main()) == [3, 4]


class Forgetful(httpx.AsyncBaseTransport):
    """The app, which forgets a session right before each of its first ``times`` calls
    arrive, as a server restarted again and again would."""

    def __init__(self, engine: Engine, times: int) -> None:
        self.inner = httpx.ASGITransport(app=create_app(engine))
        self.times = times

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/calls") and self.times:
            self.times -= 1
            forget = httpx.Request("DELETE", str(request.url).removesuffix("/calls"))
            await (await self.inner.handle_async_request(forget)).aread()
        return await self.inner.handle_async_request(request)


def test_an_async_call_resumes_when_the_server_forgets_its_session_twice_in_a_row(
    engine: Engine,
) -> None:
    async def main() -> list[str]:
        transport = Forgetful(engine, 0)
        async with AsyncClient("http://tvcache", transport=transport) as client:
            session = await client.session("t")
            first = await session.acall("add", k="x", v=1)
            transport.times = 3
            second = await session.acall("add", k="x", v=2)
            assert transport.times == 0  # forgotten before the call, and after two reopens
            await session.aclose()
            return [first.output, second.output]

    assert asyncio.run(main()) == ["x=1", "x=3"]


class Slow(httpx.AsyncBaseTransport):
    """The app, reached ``delay`` seconds after a call is sent (a congested network)."""

    def __init__(self, engine: Engine) -> None:
        self.inner = httpx.ASGITransport(app=create_app(engine))
        self.delay = 0.0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/calls"):
            await asyncio.sleep(self.delay)
        return await self.inner.handle_async_request(request)


def test_a_call_cancelled_before_it_reached_the_server_does_not_wedge_the_session(
    engine: Engine,
) -> None:
    async def main() -> list[str]:
        transport = Slow(engine)
        async with AsyncClient("http://tvcache", transport=transport) as client:
            session = await client.session("t")
            first = await session.acall("add", k="x", v=1)
            transport.delay = 10.0
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(session.acall("add", k="x", v=100), 0.1)
            transport.delay = 0.0
            then = [await session.acall("add", k="x", v=v) for v in (2, 3)]
            await session.aclose()
            return [first.output, *(r.output for r in then)]

    assert asyncio.run(main()) == ["x=1", "x=3", "x=6"]

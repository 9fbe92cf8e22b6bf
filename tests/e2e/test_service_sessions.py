"""Sessions of a real ``tvcache serve`` never wedge: concurrent calls, refusals, restarts.

Each trajectory appends to a file in the sandbox and prints it, so an output names every
call that ran before it in that session: calls reordered or overlapped show at once.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tvcache import CallResult
from tvcache.client import AsyncClient, Client
from tvcache.service import ServerProcess

N = 6


def step(i: int) -> str:
    return f"echo {i} >> log; sleep 0.{i % 3}; cat log"


def expected(n: int) -> list[str]:
    return ["".join(f"{j}\n" for j in range(i + 1)) for i in range(n)]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template")
    (path / "data.txt").write_text("a\n")
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("home"), "--log-level", "warning") as process:
        yield process


def test_gathered_calls_of_an_async_session_give_the_sequential_observations(
    server: ServerProcess, template: Path
) -> None:
    async def main() -> tuple[list[str], list[str]]:
        async with AsyncClient(server.url) as client:
            session = await client.session("gather", template=str(template))
            got = await asyncio.gather(*(session.acall("bash", command=step(i)) for i in range(N)))
            await session.aclose()
            again = await client.session("gather", template=str(template))
            alone = [(await again.acall("bash", command=step(i))) for i in range(N)]
            await again.aclose()
        assert [r.hit for r in alone] == [True] * N  # the gathered calls stored one path
        return [r.output for r in got], [r.output for r in alone]

    gathered, sequential = asyncio.run(main())
    assert gathered == sequential == expected(N)


def test_threads_on_one_sync_session_run_one_call_at_a_time(
    server: ServerProcess, template: Path
) -> None:
    outputs: dict[int, str] = {}
    with Client(server.url) as client, client.session("threads", template=str(template)) as s:

        def worker(i: int) -> None:
            outputs[i] = s.call("bash", command=f"echo {i} >> log; sleep 0.2; cat log").output

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(N)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        final = s.call("bash", command="cat log").output
    # each call saw the calls before it and no other: the outputs are the prefixes of one log
    lines = final.split()
    assert sorted(lines) == [str(i) for i in range(N)]
    assert sorted(outputs.values(), key=len) == [
        "".join(f"{x}\n" for x in lines[: k + 1]) for k in range(N)
    ]


def test_a_call_resumes_after_two_restarts_in_quick_succession(
    tmp_path: Path, template: Path
) -> None:
    home = tmp_path / "home"
    first = ServerProcess(home, "--log-level", "warning")
    port = first.url.rsplit(":", 1)[1]
    client = Client(first.url, retries=20, backoff=0.05)
    session = client.session("restarts", template=str(template))
    assert session.call("bash", command="echo 0 >> log; cat log").output == "0\n"
    first.stop(signal.SIGKILL)
    second = ServerProcess(home, "--port", port, "--log-level", "warning")
    answer: list[str | Exception] = []
    slow = threading.Thread(
        target=lambda: answer.append(
            _try(lambda: session.call("bash", command="echo 1 >> log; sleep 3; cat log"))
        )
    )
    slow.start()  # reopens on the second server and runs there...
    deadline = time.monotonic() + 30
    while Client(second.url).health()["sessions"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    second.stop(signal.SIGKILL)  # ...which dies before answering
    with ServerProcess(home, "--port", port, "--log-level", "warning") as third:
        slow.join(timeout=60)
        assert answer and answer[0] == "0\n1\n", answer
        assert session.call("bash", command="echo 2 >> log; cat log").output == "0\n1\n2\n"
        session.close()
        client.close()
        assert Client(third.url).health()["sessions"] == 0


def _try(call: Callable[[], CallResult]) -> str | Exception:
    """The output of ``call()``, or the exception it raised (a thread cannot raise)."""
    try:
        return call().output
    except Exception as error:
        return error

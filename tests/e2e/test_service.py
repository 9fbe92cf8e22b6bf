"""``tvcache serve`` and its clients as real processes on loopback.

Executions are counted by commands that append to a file outside the sandbox: a count of
one means the call ran once, however many workers asked for it.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from store_dump import journal_committed

from tvcache.client import Client, ServiceError
from tvcache.service import ServerProcess

WORKER = """
import json, pathlib, sys, time
from tvcache.client import Client
url, template, commands, barrier = json.loads(sys.argv[1])
with Client(url) as client, client.session("task", template=template) as session:
    if barrier:
        pathlib.Path(barrier + ".ready." + str(session.session_id)).touch()
        while not pathlib.Path(barrier).exists():
            time.sleep(0.01)
    results = [session.call("bash", command=c) for c in commands]
print(json.dumps([[r.output, r.hit, r.node_id] for r in results]))
"""


def workers(url: str, template: Path, commands: list[str], n: int, barrier: Path | None = None):  # type: ignore[no-untyped-def]
    """Start ``n`` worker processes; returns their Popen objects."""
    argument = json.dumps([url, str(template), commands, str(barrier) if barrier else None])
    return [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, argument], stdout=subprocess.PIPE, text=True
        )
        for _ in range(n)
    ]


def results(procs: list[subprocess.Popen[str]]) -> list[list[list[object]]]:
    out = []
    for proc in procs:
        stdout, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        out.append(json.loads(stdout))
    return out


def counted(path: Path) -> str:
    """A command that records each of its executions in ``path`` (outside the sandbox)."""
    return f"echo run >> {path}; cat data.txt"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template")
    (path / "data.txt").write_text("a\nb\n")
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # trusted commands that count their executions in a host file: isolation would forbid it
    home = tmp_path_factory.mktemp("home")
    with ServerProcess(home, "--log-level", "warning", "--unsafe-no-isolation") as process:
        yield process


def store_counts(home: Path) -> tuple[int, int]:
    journal_committed(home / "cache.db")
    db = sqlite3.connect(f"file:{home / 'cache.db'}?mode=ro", uri=True)
    try:
        return (
            db.execute("SELECT count(*) FROM roots").fetchone()[0],
            db.execute("SELECT count(*) FROM nodes").fetchone()[0],
        )
    finally:
        db.close()


def test_many_worker_processes_share_hits(
    server: ServerProcess, tmp_path: Path, template: Path
) -> None:
    count = tmp_path / "count"
    commands = [counted(count), "echo c >> data.txt; wc -l data.txt", "cat data.txt"]
    (first,) = results(workers(server.url, template, commands, 1))
    assert [hit for _, hit, _ in first] == [False, False, False]
    others = results(workers(server.url, template, commands, 4))
    assert all(run == [[o, True, n] for o, _, n in first] for run in others)
    assert count.read_text() == "run\n"


def test_single_flight_across_processes(
    server: ServerProcess, tmp_path: Path, template: Path
) -> None:
    count, barrier = tmp_path / "count", tmp_path / "go"
    command = f"sleep 1.5; echo run >> {count}; echo slow"
    procs = workers(server.url, template, [command], 2, barrier)
    deadline = time.monotonic() + 30
    while len(list(tmp_path.glob("go.ready.*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    barrier.touch()
    (a,), (b,) = results(procs)
    assert count.read_text() == "run\n"
    assert a[0] == b[0] == "slow\n" and sorted([a[1], b[1]]) == [False, True]


def test_retry_after_a_dropped_connection_does_not_execute_twice(
    server: ServerProcess, tmp_path: Path, template: Path
) -> None:
    count = tmp_path / "count"
    impatient = Client(server.url, timeout=0.4, retries=8, backoff=0.1)
    with impatient, impatient.session("task", template=str(template)) as session:
        got = session.call("bash", command=f"sleep 1.2; echo run >> {count}; echo done")
    assert got.output == "done\n" and not got.hit
    assert count.read_text() == "run\n"  # timed out at least twice, executed once


def test_same_request_id_is_answered_once_and_calls_apply_in_order(
    server: ServerProcess, tmp_path: Path, template: Path
) -> None:
    count = tmp_path / "count"
    with httpx.Client(base_url=server.url) as http:
        opened = http.post("/v1/sessions", json={"task_id": "order", "template": str(template)})
        calls = f"/v1/sessions/{opened.json()['session_id']}/calls"
        body = {
            "tool": "bash",
            "args": {"command": f"echo run >> {count}"},
            "request_id": "r1",
            "seq": 1,
        }
        first, again = http.post(calls, json=body), http.post(calls, json=body)
        assert first.status_code == again.status_code == 200 and first.json() == again.json()
        assert count.read_text() == "run\n"
        other = http.post(calls, json={**body, "request_id": "r2"})
        assert other.status_code == 409 and other.json()["error"]["field"] == "seq"
        gap = http.post(calls, json={**body, "request_id": "r3", "seq": 3})
        assert gap.status_code == 409 and "next call of this session is 2" in gap.text


def test_malformed_requests_are_refused_naming_the_field(
    server: ServerProcess, template: Path
) -> None:
    with httpx.Client(base_url=server.url) as http:
        session = http.post("/v1/sessions", json={"task_id": "bad", "template": str(template)})
        calls = f"/v1/sessions/{session.json()['session_id']}/calls"
        before = store_counts(server.home)
        call = {"tool": "bash", "args": {"command": "true"}, "request_id": "x", "seq": 1}
        cases = [
            ("/v1/sessions", {}, 422, "task_id"),
            ("/v1/sessions", {"task_id": "t", "options": []}, 422, "options"),
            ("/v1/sessions", {"task_id": "t", "colour": 1}, 422, "colour"),
            ("/v1/sessions", {"task_id": "t", "backend": "docker"}, 422, "backend"),
            ("/v1/sessions", {"task_id": "t", "template": "/no/such/dir"}, 422, "template"),
            (
                "/v1/sessions",
                {"task_id": "bad", "template": str(template), "at_node": "nope"},
                404,
                "at_node",
            ),
            (calls, {k: v for k, v in call.items() if k != "tool"}, 422, "tool"),
            (calls, {**call, "args": ["ls"]}, 422, "args"),
            (calls, {**call, "seq": "1"}, 422, "seq"),
            (calls, {**call, "seq": 0}, 422, "seq"),
            (calls, {**call, "request_id": ""}, 422, "request_id"),
            ("/v1/sessions/nope/calls", call, 404, None),
        ]
        for path, body, status, field in cases:
            answer = http.post(path, json=body)
            assert answer.status_code == status, (body, answer.text)
            error = answer.json()["error"]
            assert error["field"] == field and error["message"], (body, error)
            if field is not None and status == 422:
                assert repr(field) in error["message"] or field in error["message"]
        not_json = http.post(
            "/v1/sessions", content=b"{nope", headers={"content-type": "application/json"}
        )
        assert not_json.status_code == 422 and not_json.json()["error"]["field"] == "body"
        unknown_tool = http.post(calls, json={**call, "tool": "rm"})
        assert unknown_tool.status_code == 422 and "unknown tool 'rm'" in unknown_tool.text
        no_command = http.post(calls, json={**call, "args": {}, "request_id": "y", "seq": 2})
        assert no_command.status_code == 422 and "command" in no_command.json()["error"]["message"]
        assert http.get("/v1/roots/nope/tree").status_code == 404
        assert store_counts(server.home) == before


def test_token_is_required_off_loopback(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "tvcache.cli", "--home", str(tmp_path), "serve"]
    refused = subprocess.run(
        [*command, "--host", "0.0.0.0"], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2 and "--token" in refused.stderr
    with ServerProcess(tmp_path, "--host", "0.0.0.0", "--token", "s3cret") as guarded:
        port = guarded.url.rsplit(":", 1)[1]
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/v1/health").status_code == 401
        assert (
            httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer wrong"}).status_code
            == 401
        )
        with Client(url, token="s3cret") as client:
            assert client.health()["status"] == "ok"
        with Client(url) as client, pytest.raises(ServiceError) as refused_call:
            client.session("t")
        assert refused_call.value.status == 401


def test_server_killed_and_restarted_loses_nothing_answered(tmp_path: Path, template: Path) -> None:
    home = tmp_path / "home"
    commands = [f"echo step{i} >> log; cat log" for i in range(4)]
    first = ServerProcess(home, "--log-level", "warning")
    port = first.url.rsplit(":", 1)[1]
    client = Client(first.url, retries=20, backoff=0.05)
    session = client.session("task", template=str(template))
    answered = [session.call("bash", command=c) for c in commands[:3]]
    first.stop(signal.SIGKILL)
    with ServerProcess(home, "--port", port, "--log-level", "warning") as second:
        # the old session resumes at its last answered node and goes on
        last = session.call("bash", command=commands[3])
        assert last.output == "step0\nstep1\nstep2\nstep3\n"
        with Client(second.url) as fresh, fresh.session("task", template=str(template)) as again:
            replayed = [again.call("bash", command=c) for c in commands]
        assert [r.hit for r in replayed] == [True] * 4
        assert [r.observation.output for r in replayed[:3]] == [a.output for a in answered]
        stats = Client(second.url).stats()
        assert (stats["misses"], stats["hits"]) == (1, 4)  # only the unanswered call ran
        session.close()
        client.close()
    assert not list((home / "sandboxes").iterdir())


def test_graceful_shutdown_leaves_nothing_behind(tmp_path: Path, template: Path) -> None:
    home = tmp_path / "home"
    server = ServerProcess(home, "--log-level", "warning")
    client = Client(server.url)
    sessions = [client.session(f"task-{i}", template=str(template)) for i in range(3)]
    for i, session in enumerate(sessions):
        session.call("bash", command=f"echo {i} >> data.txt; cat data.txt")
    assert list((home / "sandboxes").iterdir())  # sessions and the pool hold sandboxes
    assert server.stop(signal.SIGTERM, timeout=60) == 0
    assert not list((home / "sandboxes").iterdir())
    assert store_counts(home) == (3, 6)
    client.close()


def test_idle_sessions_are_reaped_and_their_workers_resume(tmp_path: Path, template: Path) -> None:
    home = tmp_path / "home"
    server = ServerProcess(home, "--idle-timeout", "0.3", "--pool-size", "0")
    client = Client(server.url)
    with server, client, client.session("t", template=str(template)) as session:
        session.call("bash", command="echo x >> data.txt")
        assert list((home / "sandboxes").iterdir())
        time.sleep(1.5)
        assert client.health()["sessions"] == 0
        assert not list((home / "sandboxes").iterdir())
        assert session.call("bash", command="cat data.txt").output == "a\nb\nx\n"


def test_serve_turns_on_state_aware_hits(tmp_path: Path, template: Path) -> None:
    """Reads in another order hit when the server fingerprints bash; a write still decides."""
    home = tmp_path / "home"
    server = ServerProcess(home, "--fingerprint-tools", "bash", "--pool-size", "0")
    client = Client(server.url)
    with server, client:
        with client.session("aware", template=str(template)) as first:
            first.call("bash", command="cat data.txt")
            first.call("bash", command="wc -l data.txt")
        with client.session("aware", template=str(template)) as second:
            reordered = second.call("bash", command="wc -l data.txt")  # a read at the root
            written = second.call("bash", command="echo c >> data.txt; cat data.txt")
        assert reordered.hit and reordered.output == "2 data.txt\n"
        assert not written.hit and written.output == "a\nb\nc\n"
        stats = client.stats()
        assert stats["read_only_nodes"] == 2 and stats["fingerprints"] >= 3

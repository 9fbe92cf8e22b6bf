"""Bad requests to ``tvcache serve`` get a 4xx in the documented format, and change nothing.

Each case was a 500, a 201 followed by failing calls, or a stored root for a refused open. The
store is dumped (every row, hit counters aside) before and after each refused request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from store_dump import store_dump

from tvcache import Settings, open_engine
from tvcache.service import ServerProcess, create_app

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template")
    (path / "data.txt").write_text("a\nb\n")
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("home")
    args = ("--pool-size", "0", "--max-request-bytes", str(LIMIT), "--log-level", "warning")
    with ServerProcess(home, *args) as process:
        yield process


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def refused(answer: httpx.Response, status: int, field: str | None) -> dict[str, Any]:
    """The answer is ``status`` in the documented error format, naming ``field``."""
    assert answer.status_code == status, answer.text
    error: dict[str, Any] = answer.json()["error"]
    assert set(error) == {"code", "message", "hint", "field"} and error["message"], error
    assert error["field"] == field, error
    return error


def post(http: httpx.Client, path: str, body: object) -> httpx.Response:
    """POST ``body`` as JSON with ASCII escapes: the only way to send a lone surrogate."""
    return http.post(path, content=json.dumps(body), headers={"content-type": "application/json"})


def open_session(http: httpx.Client, template: Path, **body: Any) -> str:
    answer = http.post("/v1/sessions", json={"task_id": "ok", "template": str(template), **body})
    assert answer.status_code == 201, answer.text
    session_id: str = answer.json()["session_id"]
    return session_id


def test_unknown_root_options_are_refused_at_open(
    server: ServerProcess, http: httpx.Client, template: Path
) -> None:
    before = store_dump(server.home)
    for options in ({"colour": "red"}, {"env": {"A": 1}}, {"sqlite_db": ["x"]}):
        body = {"task_id": "opts", "template": str(template), "options": options}
        error = refused(http.post("/v1/sessions", json=body), 422, "options")
        assert "option" in error["message"] and error["hint"]
    assert store_dump(server.home) == before
    # known options still open, and their calls run
    session = open_session(http, template, options={"env": {"GREETING": "hi"}})
    call = {"tool": "bash", "args": {"command": "echo $GREETING"}, "request_id": "a", "seq": 1}
    answer = http.post(f"/v1/sessions/{session}/calls", json=call)
    assert answer.status_code == 200 and answer.json()["observation"]["output"] == "hi\n"


def test_a_refused_open_stores_nothing(
    server: ServerProcess, http: httpx.Client, template: Path
) -> None:
    open_session(http, template, session_id="taken")
    before = store_dump(server.home)
    fresh = {"task_id": "never-stored", "template": str(template)}
    refused(http.post("/v1/sessions", json={**fresh, "at_node": "nope"}), 404, "at_node")
    refused(http.post("/v1/sessions", json={**fresh, "session_id": "taken"}), 409, "session_id")
    assert store_dump(server.home) == before
    # the same open retried with the same session id is the same session
    assert open_session(http, template, session_id="taken") == "taken"


def test_bad_templates_are_refused(
    server: ServerProcess, http: httpx.Client, template: Path
) -> None:
    home = server.home
    cases = ["/", "/proc/self", "/proc", "/sys/kernel", "", "relative/dir", "data", "$TVCACHE_HOME"]
    cases += [str(home), str(home.parent), str(home / "snapshots"), str(home / "sandboxes")]
    before = store_dump(home)
    for bad in cases:
        error = refused(
            http.post("/v1/sessions", json={"task_id": "tpl", "template": bad}), 422, "template"
        )
        assert repr(bad) in error["message"], error
    assert store_dump(home) == before


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ({"command": "true", "timeout": 1e308}, "timeout"),
        ({"command": "true", "timeout": 1e6}, "timeout"),
        ({"command": "echo \ud800"}, "surrogate"),
        ({"command": "true", "\udfff": "x"}, "surrogate"),
    ],
)
def test_bad_call_arguments_are_refused_without_a_500(
    server: ServerProcess, http: httpx.Client, template: Path, args: dict[str, Any], words: str
) -> None:
    session = open_session(http, template)
    before = store_dump(server.home)
    call = {"tool": "bash", "args": args, "request_id": "bad", "seq": 1}
    answer = post(http, f"/v1/sessions/{session}/calls", call)
    assert answer.status_code == 422, answer.text
    assert words in answer.json()["error"]["message"]
    assert store_dump(server.home) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"task_id": "\ud800"}, "task_id"),
        ({"task_id": "t", "options": {"env": {"A": "x\udc80"}}}, "options"),
        ({"task_id": "t", "template": "/tmp/\ud800"}, "template"),
        ({"task_id": "t", "template": "/tmp/a\0b"}, "template"),
        ({"task_id": "t\0"}, "task_id"),
    ],
)
def test_lone_surrogates_and_nul_in_an_open_are_refused(
    server: ServerProcess, http: httpx.Client, body: dict[str, Any], field: str
) -> None:
    before = store_dump(server.home)
    error = refused(post(http, "/v1/sessions", body), 422, field)
    assert any(w in error["message"] for w in ("surrogate", "unicode string", "NUL")), error
    assert store_dump(server.home) == before


def test_a_body_that_is_not_utf8_is_refused_in_the_error_format(
    server: ServerProcess, http: httpx.Client
) -> None:
    before = store_dump(server.home)
    for raw in (b'{"task_id": "\xff\xfe"}', b"\xc3\x28", b"[" * 10_000 + b"]" * 10_000):
        answer = http.post(
            "/v1/sessions", content=raw, headers={"content-type": "application/json"}
        )
        assert 400 <= answer.status_code < 500, answer.text
        assert answer.json()["error"]["field"] == "body"
    refused(http.get("/v1/no-such-endpoint"), 404, None)
    refused(http.put("/v1/sessions"), 405, None)
    assert store_dump(server.home) == before


def test_a_request_over_the_size_limit_is_refused_with_413(
    server: ServerProcess, http: httpx.Client, template: Path
) -> None:
    before = store_dump(server.home)
    big = {"task_id": "big", "options": {"env": {"X": "a" * LIMIT}}}
    error = refused(http.post("/v1/sessions", json=big), 413, None)
    assert str(LIMIT) in error["message"] and "--max-request-bytes" in error["hint"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
        yield b'{"task_id": "big", "options": {"env": {"X": "'
        for _ in range(LIMIT // 1024 + 1):
            yield b"a" * 1024
        yield b'"}}}'

    with httpx.Client(base_url=server.url, timeout=60) as other:
        answer = other.post(
            "/v1/sessions", content=chunks(), headers={"content-type": "application/json"}
        )
    refused(answer, 413, None)
    session = open_session(http, template)
    call = {"tool": "bash", "args": {"command": "#" + "x" * LIMIT}, "request_id": "r", "seq": 1}
    refused(http.post(f"/v1/sessions/{session}/calls", json=call), 413, None)
    assert http.get("/v1/health").status_code == 200
    after = store_dump(server.home)
    assert after["nodes"] == before["nodes"] and len(after["roots"]) <= len(before["roots"]) + 1


def test_an_unexpected_error_is_a_500_in_the_error_format_and_not_raised(
    tmp_path: Path,
) -> None:
    """An exception that reached uvicorn would reset the keep-alive connection."""
    engine = open_engine(Settings(home=tmp_path))
    app = create_app(engine)

    async def boom() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/boom", boom)

    async def ask() -> httpx.Response:
        transport = httpx.ASGITransport(app, raise_app_exceptions=True)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get("/boom")

    try:
        answer = asyncio.run(ask())
    finally:
        engine.close()
        assert engine.store is not None
        engine.store.close()
    assert answer.status_code == 500
    assert answer.json()["error"] == {
        "code": "internal",
        "message": "RuntimeError: a bug",
        "hint": "see the server log",
        "field": None,
    }


def test_the_token_scheme_is_case_insensitive_and_a_401_names_it(tmp_path: Path) -> None:
    with ServerProcess(tmp_path, "--pool-size", "0", env={"TVCACHE_TOKEN": "s3cret"}) as guarded:
        for scheme in ("Bearer", "bearer", "BEARER"):
            answer = httpx.get(
                f"{guarded.url}/v1/health", headers={"Authorization": f"{scheme} s3cret"}
            )
            assert answer.status_code == 200, (scheme, answer.text)
        missing = httpx.get(f"{guarded.url}/v1/health")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == 'Bearer realm="tvcache"'
        wrong = httpx.get(f"{guarded.url}/v1/health", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "invalid_token" in wrong.headers["www-authenticate"]
        assert json.loads(wrong.text)["error"]["code"] == "unauthorized"


def test_the_token_can_come_from_a_file(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("from-a-file\n")
    home = tmp_path / "home"
    with ServerProcess(home, "--pool-size", "0", "--token-file", str(token)) as guarded:
        auth = {"Authorization": "Bearer from-a-file"}
        assert httpx.get(f"{guarded.url}/v1/health", headers=auth).status_code == 200
        assert httpx.get(f"{guarded.url}/v1/health").status_code == 401

"""The HTTP API fuzzed from its own OpenAPI schema (schemathesis) against a real server.

Every generated request, valid by the schema or not: no 5xx, every error in the documented
format, and a refused request (4xx) leaves every stored row as it was (the store is dumped
before and after each one), and the server logs no internal error. Bounded: a fixed seed and
a fixed number of examples per operation; the server's local backend runs in a throwaway home
and the commands it runs are ``echo`` of generated text.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.schemas import BaseSchema
from store_dump import store_dump

from tvcache.service import ServerProcess

EXAMPLES = 80
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,  # a fixed seed: CI sees the same requests every run
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
ERROR_FIELDS = {"code", "message", "hint", "field"}
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("fuzz-home")
    args = ("--pool-size", "0", "--max-request-bytes", "65536", "--log-level", "warning")
    with ServerProcess(home, *args, env={"TVCACHE_HOME": str(home)}) as process:
        yield process
        assert "internal error" not in process.log(), process.log()


@pytest.fixture(scope="module")
def schema(server: ServerProcess) -> BaseSchema:
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fuzz-template")
    (path / "data.txt").write_text("a\nb\n")
    return path


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def checked(server: ServerProcess, http: requests.Session, case: Case) -> requests.Response:
    """Send ``case``; no 5xx, errors as documented, and a refusal stores nothing."""
    before = store_dump(server.home)
    response = case.call(base_url=server.url, session=http, timeout=60)
    shown = f"{case.as_curl_command()}\n-> {response.status_code} {response.text[:2000]}"
    assert response.status_code < 500, shown
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == ERROR_FIELDS and error["message"] and error["hint"], shown
        assert store_dump(server.home) == before, f"a refused request changed the store\n{shown}"
    return response  # type: ignore[no-any-return]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation(
    server: ServerProcess, schema: BaseSchema, http: requests.Session, mode: GenerationMode
) -> None:
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/sessions", "/v1/sessions/{session_id}/calls"}
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and not operation.body:
            continue  # nothing to break: every request to it is a valid one

        @FUZZ
        @given(case=operation.as_strategy(generation_mode=mode))
        def fuzz(case: Case) -> None:
            checked(server, http, case)

        fuzz()


def _open(server: ServerProcess, http: requests.Session, template: Path) -> str:
    answer = http.post(
        f"{server.url}/v1/sessions", json={"task_id": "fuzz", "template": str(template)}
    )
    assert answer.status_code == 201, answer.text
    session_id: str = answer.json()["session_id"]
    return session_id


_BAD_TIMEOUTS = st.one_of(st.floats(), st.integers(), st.booleans(), st.text(max_size=3))
_TIMEOUTS = st.sampled_from(["none", "valid", "any"]).flatmap(
    lambda kind: {
        "none": st.none(),
        "valid": st.floats(min_value=0.5, max_value=86_400),
        "any": _BAD_TIMEOUTS,
    }[kind]
)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_calls_on_an_open_session(
    server: ServerProcess,
    schema: BaseSchema,
    http: requests.Session,
    template: Path,
    mode: GenerationMode,
) -> None:
    """Calls in order on a live session, most of them ``bash`` or ``sqlite`` with fuzzed
    arguments and timeouts, so that the tools themselves see the generated values."""
    operation = schema["/v1/sessions/{session_id}/calls"]["POST"]

    @FUZZ
    @given(
        case=operation.as_strategy(generation_mode=mode, path_parameters={"session_id": "x"}),
        tool=st.sampled_from(["generated", "bash", "sqlite"]),
        text=st.text(max_size=40),
        timeout=_TIMEOUTS,
    )
    def fuzz(case: Case, tool: str, text: str, timeout: Any) -> None:
        session_id = _open(server, http, template)
        case.path_parameters = {"session_id": session_id}
        body = case.body
        if isinstance(body, dict) and mode is GenerationMode.POSITIVE:
            body["seq"] = 1
            args: dict[str, Any] = {}
            if tool == "bash":
                args = {"command": f"echo {shlex.quote(text)}"}
            elif tool == "sqlite":
                args = {"sql": "SELECT " + "'" + text.replace("'", "''") + "'"}
            if args:
                body["tool"] = tool
                body["args"] = args if timeout is None else {**args, "timeout": timeout}
        checked(server, http, case)
        closed = http.delete(f"{server.url}/v1/sessions/{session_id}")
        assert closed.status_code == 200, closed.text

    fuzz()

"""The HTTP API (``/v1``): sessions, calls, trees, stats, health; ``/metrics``.

One engine per server process, shared by every worker's sessions: that is what makes single
flight hold across workers. Hits are answered on the event loop (no I/O, no thread hop);
misses and anything else that touches a sandbox or the store run in a thread pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException

import tvcache
from sandbox import RootSpec
from snapshots import TvcacheError
from tvcache._engine import Engine, RootNotFoundError
from tvcache._session import CallResult
from tvcache.pool import PreforkPool
from tvcache.service._admit import admit
from tvcache.service._dashboard import add_dashboard
from tvcache.service._errors import (
    ApiError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    SessionConflict,
    SessionNotFound,
    UnreadableBody,
)
from tvcache.service._errors import error_response as _error
from tvcache.service._errors import json_response as _json
from tvcache.service._guard import DEFAULT_MAX_REQUEST_BYTES, BodyTooLarge, Guard, too_large
from tvcache.service._metrics import Metrics
from tvcache.service._models import CallRequest, OpenSession
from tvcache.service._plans import add_plan_routes
from tvcache.service._sessions import Registry

log = logging.getLogger("tvcache.service")


def _validation_error(_request: Request, error: Exception) -> Response:
    """FastAPI's 422, reworded: which field, what was wrong, and no echo of the input."""
    assert isinstance(error, RequestValidationError)
    problems = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"] if p != "body") or "body"
        if item["type"] == "json_invalid":
            where = "body"
        problems.append((where, item["msg"]))
    field = problems[0][0]
    text = "; ".join(f"field {f!r}: {m}" for f, m in problems)
    hint = "see docs/service.md for the request bodies"
    return _error(InvalidRequest(f"invalid request: {text}", hint, field=field))


def _http_error(_request: Request, error: Exception) -> Response:
    """Starlette's own refusals (no such route or method, an unreadable body) in our format."""
    assert isinstance(error, HTTPException)
    answer: ApiError
    if isinstance(error, BodyTooLarge):
        answer = too_large(error.limit)
    elif error.status_code == 404:
        answer = NotFound("no such endpoint", "see docs/service.md for the endpoints")
    elif error.status_code == 405:
        answer = MethodNotAllowed("this endpoint does not take that method", "see docs/service.md")
    else:  # FastAPI's 400 for a body its JSON parser fails on other than by syntax
        answer = UnreadableBody(
            f"the request body cannot be read: {error.detail}",
            "send a JSON object encoded as UTF-8",
            field="body",
        )
    return _error(answer, error.headers)


def _call_result(result: CallResult, seq: int) -> dict[str, Any]:
    return {
        "observation": result.observation.to_dict(),
        "hit": result.hit,
        "node_id": result.node_id,
        "seconds_saved": result.seconds_saved,
        "tainted": result.tainted,
        "seq": seq,
    }


def _tree(engine: Engine, root_id: str) -> dict[str, Any]:
    """The root's nodes as stored (hit counters are written behind, within a second)."""
    store = engine.store
    assert store is not None
    root = store.get_root(root_id)
    if root is None:
        raise RootNotFoundError(f"no root with id {root_id!r}", "list roots with GET /v1/roots")
    snapped = {s.node_id for s in store.snapshots(root_id)}
    nodes = [
        {
            "node_id": n.node_id,
            "parent_id": n.parent_id,
            "depth": n.depth,
            "call": None if n.call is None else {"tool": n.call.tool, "args": dict(n.call.args)},
            "observation": None if n.observation is None else n.observation.to_dict(),
            "executions": n.stats.executions,
            "hits": n.stats.hits,
            "seconds_saved": n.stats.seconds_saved,
            "nondeterministic": n.nondeterministic,
            "snapshot": n.node_id in snapped,
        }
        for n in store.load_nodes(root_id)
    ]
    return {"root_id": root_id, "spec": root.spec.to_dict(), "nodes": nodes}


def cluster_metrics(engine: Engine, token: str | None) -> str:
    """The cluster's ``/metrics`` summed over the servers on the store's live list."""
    from tvcache._cluster_stats import gather, live_urls, sum_metrics

    assert engine.store is not None
    view = gather(live_urls(engine.store), token)
    return sum_metrics(view.metrics, list(view.failed))


def create_app(
    engine: Engine,
    *,
    token: str | None = None,
    idle_seconds: float = 600.0,
    grace: float = 60.0,
    threads: int = 64,
    order_seconds: float = 2.0,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
) -> FastAPI:
    """The service on ``engine`` (which needs a store). Shutting the app down closes every
    session; the engine, its pool and its store stay open for their owner to close.
    ``order_seconds`` bounds how long a call waits for the call before it to arrive."""
    sessions = Registry(engine, idle_seconds, order_seconds)

    def pool_stats() -> dict[str, int] | None:
        return engine.pool.stats() if isinstance(engine.pool, PreforkPool) else None

    def gauges() -> dict[str, float]:
        ready = (pool_stats() or {}).get("ready", 0)
        return {"sessions_open": float(len(sessions)), "pool_ready": float(ready)}

    metrics = Metrics(engine, gauges)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(threads, thread_name_prefix="tvcache-call"))
        reaper = asyncio.create_task(sessions.reap_forever())
        try:
            yield
        finally:
            reaper.cancel()
            await sessions.close_all(grace)
            engine.flush()

    app = FastAPI(title="tvcache", version=tvcache.__version__, lifespan=lifespan)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(TvcacheError, lambda _r, e: _error(e))
    # anything else is answered by the guard (a 500 in the same format, connection kept)
    app.add_middleware(Guard, token=token, max_request_bytes=max_request_bytes)

    add_dashboard(app, engine, lambda: len(sessions))

    @app.get("/v1/health")
    async def health() -> Response:
        return _json(
            {
                "status": "ok",
                "version": tvcache.__version__,
                "backend": engine.backend.name,
                "sessions": len(sessions),
            }
        )

    @app.post("/v1/sessions", status_code=201)
    async def open_session(body: OpenSession) -> Response:
        backend = body.backend or engine.backend.name
        if backend != engine.backend.name:
            raise InvalidRequest(
                f"this server runs backend {engine.backend.name!r}, not {backend!r}",
                "leave 'backend' out, or send the request to a server of that backend",
                field="backend",
            )
        spec = RootSpec(body.task_id, backend, body.template, body.options)
        rid = await asyncio.to_thread(admit, engine, spec, body.at_node)  # nothing stored yet
        if body.session_id is not None:
            with contextlib.suppress(SessionNotFound):
                if sessions.get(body.session_id).session.root_id != rid:
                    raise SessionConflict(
                        f"session {body.session_id!r} is open on another root",
                        "use a new session_id for another task, template or options",
                        field="session_id",
                    )
        remote = await sessions.open(spec, body.session_id, body.at_node)
        position = remote.session.position
        return _json(
            {
                "session_id": remote.session_id,
                "root_id": remote.session.root_id,
                "node_id": position.node_id,
                "seq": remote.seq,
            },
            201,
        )

    @app.post("/v1/sessions/{session_id}/calls")
    async def call(session_id: str, body: CallRequest) -> Response:
        started = time.perf_counter()
        try:
            result = await sessions.call(
                session_id, body.seq, body.request_id, body.tool, body.args
            )
        except Exception:
            metrics.calls.labels("error").observe(time.perf_counter() - started)
            raise
        metrics.calls.labels("hit" if result.hit else "miss").observe(time.perf_counter() - started)
        return _json(_call_result(result, body.seq))

    @app.delete("/v1/sessions/{session_id}")
    async def close_session(session_id: str) -> Response:
        await sessions.close(session_id)
        return _json({"closed": session_id})

    @app.get("/v1/roots")
    async def roots() -> Response:
        store = engine.store
        assert store is not None
        records = await asyncio.to_thread(store.roots)
        return _json([{"root_id": r.root_id, **r.spec.to_dict()} for r in records])

    @app.get("/v1/roots/{root_id}/tree")
    async def tree(root_id: str) -> Response:
        return _json(await asyncio.to_thread(_tree, engine, root_id))

    @app.get("/v1/stats")
    async def stats() -> Response:
        data = engine.stats().to_dict()
        data["pool"] = pool_stats()
        data["sessions_open"] = len(sessions)
        return _json(data)

    add_plan_routes(app, engine)

    @app.get("/metrics")
    async def prometheus() -> Response:
        body = await asyncio.to_thread(generate_latest, metrics.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.get("/metrics/cluster")
    async def prometheus_cluster() -> Response:
        """Every live server's ``/metrics`` summed (the store's live list; issue 14)."""
        body = await asyncio.to_thread(cluster_metrics, engine, token)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return app

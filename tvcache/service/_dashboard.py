"""The live dashboard: the page at ``/``, its JSON endpoints and its event stream.

The page is the same file ``tvcache tree --html`` writes (tvcache/_dashboard_page.py), fed
by these endpoints instead of inlined data. The tree is paged from the store (children on
demand), so a 100,000-node root costs what one screen shows. Live numbers come from the
engine itself, pushed as server-sent events once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Query
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from tvcache import _tree_view as view
from tvcache._dashboard_page import render_page
from tvcache._engine import Engine
from tvcache._store import Store
from tvcache.service._errors import json_response

EVENT_SECONDS = 1.0
STREAM_SECONDS = 300.0  # a stream ends then; the browser reconnects (bounded server state)
RECENT = 50  # latency samples a chart point summarises

_LIVE_KEYS = (
    "calls", "hits", "misses", "shared_hits", "hit_rate", "seconds_saved", "executed_seconds",
    "replayed_calls", "starts", "forks", "snapshots", "evictions", "divergences", "nodes",
    "snapshot_bytes", "read_only_nodes", "merged_nodes",
)  # fmt: skip


def _median(samples: list[float]) -> float | None:
    recent = samples[-RECENT:]
    return statistics.median(recent) if recent else None


def live_state(engine: Engine, sessions_open: int) -> dict[str, Any]:
    """What the dashboard's counters and charts show now (engine counters are never stale;
    per-root numbers come from the store, at most a write-behind interval old)."""
    stats = engine.stats()
    timings = engine.timings()
    store = engine.store
    assert store is not None
    return {
        "time": time.time(),
        "stats": {key: stats[key] for key in _LIVE_KEYS},
        "sessions_open": sessions_open,
        "budget_bytes": engine.settings.snapshot_budget_bytes,
        "latency": {kind: _median(timings[kind]) for kind in ("fork", "snapshot", "start")},
        "roots": view.root_summaries(store),
    }


def _store(engine: Engine) -> Store:
    store = engine.store
    assert store is not None  # the service needs a store (create_app's contract)
    return store


def add_dashboard(app: FastAPI, engine: Engine, sessions_open: Callable[[], int]) -> None:
    """Mount ``/`` and ``/v1/dashboard/*`` on ``app``. ``app.state.closing`` (an asyncio
    event) ends open event streams, so a shutdown does not wait for them."""
    app.state.closing = asyncio.Event()
    page = render_page(None)

    @app.get("/", include_in_schema=False)
    async def dashboard() -> Response:
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    @app.get("/v1/dashboard/roots")
    async def roots() -> Response:
        return json_response(await asyncio.to_thread(view.root_summaries, _store(engine)))

    @app.get("/v1/dashboard/roots/{root_id}/children")
    async def children(
        root_id: str,
        parent: str | None = None,
        offset: int = Query(0, ge=0, le=view.MAX_OFFSET),
        limit: int = Query(view.PAGE, ge=1, le=view.MAX_PAGE),
    ) -> Response:
        page = await asyncio.to_thread(
            view.children, _store(engine), root_id, parent, offset, limit
        )
        return json_response(page)

    @app.get("/v1/dashboard/roots/{root_id}/nodes/{node_id}")
    async def node(root_id: str, node_id: str) -> Response:
        detail = await asyncio.to_thread(
            view.node_detail, _store(engine), root_id, node_id, engine.settings
        )
        return json_response(detail)

    @app.get("/v1/dashboard/live")
    async def live() -> Response:
        return json_response(await asyncio.to_thread(live_state, engine, sessions_open()))

    @app.get("/v1/dashboard/events", include_in_schema=False)  # a stream, not JSON
    async def events(max_events: int = Query(0, ge=0)) -> Response:
        """Server-sent events: one ``live`` state a second (``max_events`` > 0: then stop)."""

        async def stream() -> AsyncIterator[bytes]:
            yield b"retry: 1000\n\n"
            closing: asyncio.Event = app.state.closing
            sent, until = 0, time.monotonic() + STREAM_SECONDS
            while not closing.is_set() and time.monotonic() < until:
                state = await asyncio.to_thread(live_state, engine, sessions_open())
                yield f"event: live\ndata: {json.dumps(state)}\n\n".encode()
                sent += 1
                if sent == max_events:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(closing.wait(), EVENT_SECONDS)

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

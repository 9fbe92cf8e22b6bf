"""``/v1/plans``: the plan cache (tvcache.plans) of the server's store, for remote agents.

Keyword extraction, adaptation and template generation are LM calls the agent makes with its own
models; the server keeps the shared part, the keyword -> template table with its statistics.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from fastapi import FastAPI
from fastapi.responses import Response
from pydantic import Field

from tvcache._engine import Engine
from tvcache.plans._cache import MAX_TEMPLATE_CHARS, PlanCache, PlanCacheError, PlanTemplate
from tvcache.service._errors import ApiError, InvalidRequest, NotFound
from tvcache.service._errors import json_response as _json
from tvcache.service._models import _Body

_NS = r"^[A-Za-z0-9_.:/-]{1,128}$"
T = TypeVar("T")


class NoStore(ApiError):
    status, code = 409, "no_store"


class PutPlan(_Body):
    """A template to store under a keyword (after a successful run)."""

    keyword: str = Field(min_length=1, max_length=256)
    template: str = Field(min_length=1, max_length=MAX_TEMPLATE_CHARS)
    namespace: str = Field(default="default", pattern=_NS)
    source: str | None = Field(default=None, max_length=512)
    prompt_version: str = Field(default="", max_length=64)


class Lookup(_Body):
    keyword: str = Field(min_length=1, max_length=256)
    namespace: str = Field(default="default", pattern=_NS)


class Outcome(_Body):
    success: bool
    namespace: str = Field(default="default", pattern=_NS)


def add_plan_routes(app: FastAPI, engine: Engine) -> None:
    """Mount ``/v1/plans`` on ``app``, on ``engine``'s store."""

    def cache(namespace: str) -> PlanCache:
        if engine.store is None:
            raise NoStore(
                "this server keeps no store (started without persistence)",
                "start it with a store to use the plan cache",
            )
        return PlanCache(engine.store, namespace)

    async def run(work: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(work)
        except PlanCacheError as error:
            raise InvalidRequest(error.message, error.hint) from error

    @app.get("/v1/plans")
    async def list_plans(namespace: str = "default", keyword: str | None = None) -> Response:
        found = await run(lambda: cache(namespace).templates(keyword))
        return _json({"namespace": namespace, "templates": [t.to_dict() for t in found]})

    @app.post("/v1/plans", status_code=201)
    async def put_plan(body: PutPlan) -> Response:
        stored = await run(
            lambda: cache(body.namespace).put(
                body.keyword,
                body.template,
                source=body.source,
                prompt_version=body.prompt_version,
            )
        )
        return _json(stored.to_dict(), 201)

    @app.post("/v1/plans/lookup")
    async def lookup(body: Lookup) -> Response:
        found = await run(lambda: cache(body.namespace).lookup(body.keyword))
        return _json({"hit": found is not None, "template": found and found.to_dict()})

    @app.post("/v1/plans/{template_id}/outcome")
    async def outcome(template_id: str, body: Outcome) -> Response:
        plans = cache(body.namespace)

        def record() -> PlanTemplate:
            if plans.get(template_id) is None:
                raise NotFound(f"no plan template {template_id!r}", "list them: GET /v1/plans")
            plans.record(template_id, success=body.success)
            found = plans.get(template_id)
            assert found is not None
            return found

        return _json((await run(record)).to_dict())

    @app.delete("/v1/plans/{template_id}")
    async def delete(template_id: str, namespace: str = "default") -> Response:
        if not await run(lambda: cache(namespace).delete(template_id)):
            raise NotFound(f"no plan template {template_id!r} in {namespace!r}", "GET /v1/plans")
        return _json({"deleted": template_id})

"""``/v1/plans`` of the service in-process: store, look up (exact keyword), count outcomes, list,
delete; bad input answered with what to fix; the remote client against the same app."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fake_env import FakeBackend
from fastapi.testclient import TestClient

from tvcache._engine import Engine
from tvcache._store import Store
from tvcache.plans import PlanCache, PlanCacheError, RemotePlanCache
from tvcache.service import create_app


@pytest.fixture
def store() -> Iterator[Store]:
    with Store("sqlite://") as store:
        yield store


@pytest.fixture
def app(store: Store) -> Iterator[TestClient]:
    engine = Engine(FakeBackend(call_seconds=0.0), store)
    with TestClient(create_app(engine)) as client:
        yield client
    engine.close()


def test_put_lookup_outcome_list_delete(app: TestClient, store: Store) -> None:
    body = {"keyword": "Mean calculation", "template": "1. Sum <column>", "namespace": "a"}
    put = app.post("/v1/plans", json=body)
    assert put.status_code == 201
    stored = put.json()
    assert stored["keyword"] == "mean calculation" and stored["uses"] == 0

    hit = app.post("/v1/plans/lookup", json={"keyword": "mean  CALCULATION", "namespace": "a"})
    assert hit.json() == {"hit": True, "template": stored}
    miss = app.post("/v1/plans/lookup", json={"keyword": "mean", "namespace": "a"})
    assert miss.json() == {"hit": False, "template": None}
    other = app.post("/v1/plans/lookup", json={"keyword": "mean calculation"})
    assert other.json()["hit"] is False  # the default namespace holds nothing

    tid = stored["template_id"]
    counted = app.post(f"/v1/plans/{tid}/outcome", json={"success": False, "namespace": "a"})
    assert (counted.json()["uses"], counted.json()["failures"]) == (1, 1)
    assert PlanCache(store, "a").templates()[0].failures == 1  # in the same store

    listed = app.get("/v1/plans", params={"namespace": "a"}).json()
    assert [t["template_id"] for t in listed["templates"]] == [tid]
    assert app.delete(f"/v1/plans/{tid}", params={"namespace": "a"}).json() == {"deleted": tid}
    assert app.get("/v1/plans", params={"namespace": "a"}).json()["templates"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"template": "1. x"}, "keyword"),
        ({"keyword": "k", "template": ""}, "template"),
        ({"keyword": "k", "template": "x", "namespace": "bad name"}, "namespace"),
        ({"keyword": "k", "template": 3}, "template"),
    ],
)
def test_bad_bodies_name_the_field(app: TestClient, body: dict[str, object], field: str) -> None:
    answer = app.post("/v1/plans", json=body)
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == field


def test_a_keyword_without_letters_is_refused_and_nothing_is_stored(app: TestClient) -> None:
    answer = app.post("/v1/plans", json={"keyword": "?!", "template": "1. x"})
    assert answer.status_code == 422
    assert "no letters or digits" in answer.json()["error"]["message"]
    assert app.get("/v1/plans").json()["templates"] == []


def test_unknown_template_is_a_404(app: TestClient) -> None:
    answer = app.post("/v1/plans/nope/outcome", json={"success": True})
    assert answer.status_code == 404 and "GET /v1/plans" in answer.json()["error"]["hint"]
    assert app.delete("/v1/plans/nope").status_code == 404


def test_no_store_is_a_clear_409() -> None:
    engine = Engine(FakeBackend(call_seconds=0.0), None)
    with TestClient(create_app(engine)) as app:
        answer = app.get("/v1/plans")
    engine.close()
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "no_store"


def test_remote_plan_cache_is_the_same_cache(app: TestClient, store: Store) -> None:
    remote = RemotePlanCache("http://testserver", "r", client=app)
    stored = remote.put("count rows", "1. Count <entity>", source="t1")
    assert remote.lookup("Count rows") == stored == PlanCache(store, "r").lookup("count rows")
    assert remote.lookup("count") is None
    remote.record(stored.template_id, success=True)
    assert [t.successes for t in remote.templates()] == [1]
    with pytest.raises(PlanCacheError, match="no plan template"):
        remote.record("nope", success=True)

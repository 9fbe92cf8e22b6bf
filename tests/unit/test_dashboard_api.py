"""The dashboard's JSON endpoints, its cookie login and its page, in-process.

The app runs on the fake environment (real SQLite store); trees too big to grow by calls are
written straight into the store (tests/dashboard_support.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from dashboard_support import Shape, build, wide_tree
from fake_env import FakeBackend
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tvcache import AlwaysSnapshot, NeverSnapshot, Settings
from tvcache import _tree_view as view
from tvcache._dashboard_page import render_page
from tvcache._engine import Engine
from tvcache._store import Store
from tvcache.service import create_app
from tvcache.service._guard import COOKIE

TOKEN = "s3cret-token"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    store = Store(f"sqlite:///{tmp_path / 'cache.db'}")
    engine = Engine(FakeBackend(call_seconds=0.5), store, policy=NeverSnapshot())
    yield engine
    engine.close()
    store.close()


def run(engine: Engine, *calls: tuple[str, dict[str, object]]) -> list[str]:
    """One rollout of task ``t``; the node ids it reached."""
    with engine.session("t") as session:
        return [session.call(tool, **args).node_id for tool, args in calls]


def test_roots_count_nodes_calls_hits_and_seconds_saved(engine: Engine) -> None:
    run(engine, ("add", {"k": "x", "v": 1}), ("add", {"k": "x", "v": 2}))
    run(engine, ("add", {"k": "x", "v": 1}), ("get", {"k": "x"}))  # one hit, one miss
    engine.flush()
    with TestClient(create_app(engine)) as http:
        [root] = http.get("/v1/dashboard/roots").json()
    assert root["task_id"] == "t" and root["nodes"] == 3
    assert (root["calls"], root["hits"]) == (4, 1) and root["hit_rate"] == 0.25
    assert root["seconds_saved"] == pytest.approx(0.5)
    assert (root["snapshots"], root["snapshot_bytes"]) == (0, 0)


def test_children_come_in_pages_with_their_own_counts(tmp_path: Path) -> None:
    rid = build(tmp_path / "cache.db", wide_tree(120, 10))
    engine = Engine(FakeBackend(), Store(f"sqlite:///{tmp_path / 'cache.db'}"))
    with TestClient(create_app(engine)) as http:
        first = http.get(f"/v1/dashboard/roots/{rid}/children").json()
        assert first["total"] == 10 and [n["children"] for n in first["nodes"]] == [10] * 10
        url = f"/v1/dashboard/roots/{rid}/children?parent=n0000000&offset=4&limit=3"
        page = http.get(url).json()
        assert page["total"] == 10 and [n["id"] for n in page["nodes"]] == [
            "n0000014", "n0000015", "n0000016"
        ]  # fmt: skip
        assert page["nodes"][0]["passes"] == 1 + 14 % 3
        unknown = http.get(f"/v1/dashboard/roots/{rid}/children?parent=nope")
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "node_not_found"
        no_root = http.get("/v1/dashboard/roots/nope/children")
        assert no_root.status_code == 404 and no_root.json()["error"]["code"] == "root_not_found"
        too_many = http.get(f"/v1/dashboard/roots/{rid}/children?limit=100000")
        assert too_many.status_code == 422 and too_many.json()["error"]["field"] == "query.limit"
        far = http.get(f"/v1/dashboard/roots/{rid}/children?offset={2**70}")  # past SQLite's ints
        assert far.status_code == 422 and far.json()["error"]["field"] == "query.offset"
    engine.close()
    assert engine.store is not None
    engine.store.close()


def test_a_node_in_full_with_its_snapshot_and_restore_command(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'cache.db'}")
    engine = Engine(FakeBackend(call_seconds=0.5), store, policy=AlwaysSnapshot())
    first, second = run(engine, ("set", {"k": "x", "v": 7}), ("get", {"k": "x"}))
    engine.flush()
    rid = store.roots()[0].root_id
    with TestClient(create_app(engine)) as http:
        detail = http.get(f"/v1/dashboard/roots/{rid}/nodes/{second}").json()
        other_root = http.get(f"/v1/dashboard/roots/elsewhere/nodes/{second}")
    assert detail["call"] == {"tool": "get", "args": {"k": "x"}}
    assert detail["observation"]["output"] == "x=7" and detail["parent"] == first
    assert detail["stats"]["executions"] == 1 and detail["stats"]["exec_seconds"] == 0.5
    held = {s.node_id: s for s in store.snapshots(rid)}
    if second in held:
        assert detail["snapshot"]["level"] == held[second].handle.level
        assert detail["snapshot"]["bytes"] == held[second].handle.size_bytes
        assert detail["snapshot"]["age_seconds"] >= 0
    assert detail["restore"].endswith(f"restore {rid} --node {second}")
    assert f"--home {engine.settings.home}" in detail["restore"] or (
        engine.settings.home == Settings().home
    )
    assert other_root.status_code == 404
    engine.close()
    store.close()


def test_markers_snapshot_nondeterministic_read_only_merged_tainted_withdrawn(
    tmp_path: Path,
) -> None:
    # 0 -> 1 -> 2 (nondeterministic) -> 3; 4 and 5 leaves with one fingerprint; 6 read-only
    shape = Shape([-1, 0, 1, 2, 0, 0, 0], nondeterministic={2}, read_only={6}, snapshots={1},
                  fingerprints={4: "same", 5: "same"}, withdrawn={3})  # fmt: skip
    rid = build(tmp_path / "cache.db", shape)
    with Store(f"sqlite:///{tmp_path / 'cache.db'}") as store:
        by_id = {n["id"]: n for n in view.children(store, rid, "n0000000")["nodes"]}
        deep = view.children(store, rid, "n0000002")["nodes"]
        lone = view.node_detail(store, rid, "n0000003", Settings(home=tmp_path))
    assert by_id["n0000001"]["snapshot"] and not by_id["n0000001"]["tainted"]
    assert by_id["n0000006"]["read_only"]
    assert (by_id["n0000004"]["merged"], by_id["n0000005"]["merged"]) == (False, True)
    assert [n["tainted"] for n in deep] == [True] and deep[0]["withdrawn"]
    assert lone["tainted"] and lone["observation"] is None and not lone["nondeterministic"]


def tree_shapes() -> st.SearchStrategy[Shape]:
    def shape(draw: st.DrawFn) -> Shape:
        n = draw(st.integers(1, 40))
        parents = [draw(st.integers(-1, i - 1)) for i in range(n)]
        subset = st.sets(st.integers(0, n - 1), max_size=n)
        prints = draw(st.dictionaries(st.integers(0, n - 1), st.sampled_from("ab"), max_size=n))
        return Shape(parents, draw(subset), draw(subset), draw(subset), prints)

    return st.composite(shape)()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(shape=tree_shapes(), limit=st.integers(1, 7))
def test_pages_and_the_html_export_show_every_node_once_as_stored(
    tmp_path_factory: pytest.TempPathFactory, shape: Shape, limit: int
) -> None:
    """Walking the tree page by page reaches every stored node exactly once, with the flags
    the whole-tree export computes independently (the file and the live page agree)."""
    path = tmp_path_factory.mktemp("tree") / "cache.db"
    rid = build(path, shape)
    with Store(f"sqlite:///{path}") as store:
        exported = view.export(store, rid, Settings(home=path.parent))
        seen: dict[str, dict[str, object]] = {}
        frontier = [rid]
        while frontier:
            parent = frontier.pop()
            offset, total = 0, None
            while total is None or offset < total:
                page = view.children(store, rid, parent, offset, limit)
                total = page["total"]
                for node in page["nodes"]:
                    assert node["id"] not in seen
                    seen[node["id"]] = node
                    if node["children"]:
                        frontier.append(node["id"])
                offset += limit
    assert set(seen) == {shape.node_id(i) for i in range(len(shape.parents))}
    rows = {n["id"]: n for page in exported["children"].values() for n in page}
    for node_id, node in seen.items():
        assert {k: rows[node_id][k] for k in node} == node
    for i, parent in enumerate(shape.parents):
        chain, tainted = i, False
        while chain >= 0:
            tainted = tainted or chain in shape.nondeterministic
            chain = shape.parents[chain]
        assert seen[shape.node_id(i)]["tainted"] == tainted
        expected_parent = rid if parent < 0 else shape.node_id(parent)
        assert seen[shape.node_id(i)]["parent"] == expected_parent


def test_the_cookie_login_reads_but_never_writes(engine: Engine) -> None:
    with TestClient(create_app(engine, token=TOKEN)) as http:
        page = http.get("/")
        assert page.status_code == 401 and "token needed" in page.text
        wrong = http.get("/?token=guess", follow_redirects=False)
        assert wrong.status_code == 401 and "wrong token" in wrong.text
        assert not http.cookies
        assert http.get("/v1/dashboard/roots").status_code == 401
        login = http.get(f"/?token={TOKEN}", follow_redirects=False)
        assert login.status_code == 303 and login.headers["location"] == "/"
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and TOKEN not in cookie
        assert http.get("/").status_code == 200
        assert http.get("/v1/dashboard/roots").status_code == 200
        write = http.post("/v1/sessions", json={"task_id": "t"})
        assert write.status_code == 401  # the cookie only reads
        [name] = list(http.cookies)
        assert name.startswith(COOKIE)
        http.cookies.clear()  # set() beside it would send two cookies of one name
        http.cookies.set(name, "0" * 64)
        assert http.get("/v1/dashboard/roots").status_code == 401


def test_events_stream_live_counters(engine: Engine) -> None:
    run(engine, ("add", {"k": "x", "v": 1}))
    with TestClient(create_app(engine)) as http:
        body = http.get("/v1/dashboard/events?max_events=2").text
    events = [json.loads(m) for m in re.findall(r"^data: (.*)$", body, re.M)]
    assert len(events) == 2 and body.count("event: live") == 2
    assert events[-1]["stats"]["calls"] == 1 and events[-1]["stats"]["misses"] == 1
    assert events[-1]["budget_bytes"] == engine.settings.snapshot_budget_bytes
    assert events[-1]["roots"][0]["task_id"] == "t"


def test_tool_output_cannot_break_out_of_the_page(tmp_path: Path) -> None:
    """An observation is model-controlled text: inlined in the exported page it must stay data."""
    hostile = "</script><script>alert(1)</script><!-- /*@DASHBOARD_JS@*/ \u2028"
    store = Store(f"sqlite:///{tmp_path / 'cache.db'}")
    engine = Engine(FakeBackend(), store)
    run(engine, ("echo", {"k": hostile}))
    engine.flush()
    rid = store.roots()[0].root_id
    page = render_page(view.export(store, rid, Settings(home=tmp_path)))
    plain = render_page({"roots": [], "children": {}, "details": {}, "generated": 0.0})
    assert page.count("</script>") == plain.count("</script>") == 3
    assert page.count("<script>") == plain.count("<script>")
    assert page.count("// tvcache dashboard: roots") == 1  # the script went in once
    boot = re.search(r"window\.TVCACHE_BOOT = (.*);</script>", page)
    assert boot is not None
    details = json.loads(boot.group(1))["data"]["details"]
    assert any(hostile in json.dumps(d["call"], ensure_ascii=False) for d in details.values())
    engine.close()
    store.close()

"""The plan cache's table on SQLite and PostgreSQL: created in a store made before it existed
(nothing stored is lost), shared by two openers, NUL-safe, counted under concurrency."""

from __future__ import annotations

import threading

from sqlalchemy import create_engine, text

from sandbox import RootSpec
from tvcache._records import RootRecord
from tvcache._store import Store
from tvcache.plans import PlanCache


def test_an_older_store_gains_the_plan_table_and_keeps_its_rows(store_url: str) -> None:
    with Store(store_url) as store:
        store.put_root(RootRecord("r1", RootSpec("t1", "local"), "identity", 1.0))
    raw = create_engine(store_url.replace("postgresql://", "postgresql+psycopg://"))
    with raw.begin() as conn:  # as a store written before the plan cache existed
        conn.execute(text("DROP TABLE plan_templates"))
    raw.dispose()
    with Store(store_url) as store:
        assert [r.root_id for r in store.roots()] == ["r1"]
        cache = PlanCache(store)
        stored = cache.put("mean calculation", "1. Sum\x00 <column>")  # NUL survives PostgreSQL
        assert cache.lookup("Mean calculation") == stored


def test_two_openers_share_templates_and_count_every_use(store_url: str) -> None:
    with Store(store_url) as first, Store(store_url) as second:
        stored = PlanCache(first, "ns").put("count rows", "1. Count <entity>")
        assert PlanCache(second, "ns").lookup("count rows") == stored

        def use(store: Store) -> None:
            for _ in range(10):
                PlanCache(store, "ns").record(stored.template_id, success=True)

        threads = [threading.Thread(target=use, args=(s,)) for s in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        found = PlanCache(first, "ns").get(stored.template_id)
        assert found is not None and (found.uses, found.successes) == (20, 20)

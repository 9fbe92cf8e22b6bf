"""Which server a cluster client sends a root to, from a fixed list or a store's live list."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tvcache._ownership import Ownership
from tvcache._store import Store
from tvcache.client import ServiceError
from tvcache.cluster import Servers

URLS = ["http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"]


def test_a_failed_server_is_routed_around_then_tried_again() -> None:
    servers = Servers(URLS, down_for=0.2)
    keys = [f"task-{i}" for i in range(30)]
    before = {key: servers.pick(key) for key in keys}
    victim = before[keys[0]]
    servers.failed(victim)
    during = {key: servers.pick(key) for key in keys}
    assert victim not in during.values()
    assert all(during[k] == before[k] for k in keys if before[k] != victim)  # others stay put
    time.sleep(0.25)
    assert {key: servers.pick(key) for key in keys} == before


def test_the_store_s_live_list_is_read_and_re_read_after_a_failure(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cache.db'}"
    with Store(url) as store:
        own = Ownership(store, ttl=60)
        servers = Servers(store_url=url)
        with pytest.raises(ServiceError, match="no tvcache server is advertised"):
            servers.pick("k")
        own.heartbeat("s1", URLS[0])
        servers.failed(URLS[0])  # forces a re-read
        assert servers.pick("k") == URLS[0]  # down, but the only one there is
        own.heartbeat("s2", URLS[1])
        servers.failed(URLS[0])
        assert servers.pick("k") == URLS[1]
        servers.close()


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((), {}, "either a list of server URLs or the store_url"),
        ((URLS,), {"store_url": "sqlite://"}, "not both"),
        (([],), {}, "list of servers is empty"),
    ],
)
def test_bad_server_lists_are_refused(
    args: tuple[object, ...], kwargs: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Servers(*args, **kwargs)  # type: ignore[arg-type]

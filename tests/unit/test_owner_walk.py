"""Where a cluster client opens a session when servers own roots by lease (the logic of
``tvcache.cluster._Walk``, with scripted servers): it follows ``not_owner`` to the owner
named and remembers it for the root, walks on along the ring past ``full`` servers, waits
while a silent owner's lease runs out, and gives up after ``owner_wait``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from sandbox import JSON
from tvcache._placement import Ring
from tvcache.client import Client, ServiceError
from tvcache.cluster import ClusterClient, routing_key

URLS = ["http://a", "http://b", "http://c"]
OPENED = {"session_id": "s", "root_id": "r", "node_id": "r", "seq": 0}


class Scripted:
    """A server that answers opens with ``refusals`` in turn, then opens."""

    def __init__(self, url: str, log: list[str], refusals: list[ServiceError]) -> None:
        self.url, self._log, self._refusals = url, log, refusals

    def request(self, method: str, path: str, body: Mapping[str, JSON] | None = None) -> Any:
        self._log.append(self.url)
        if self._refusals:
            raise self._refusals.pop(0)
        return OPENED


def refusal(code: str, owner: str | None = None) -> ServiceError:
    return ServiceError(code, None, status=409, code=code, owner=owner)


class Cluster(ClusterClient):
    def __init__(self, script: dict[str, list[ServiceError]], **kwargs: Any) -> None:
        super().__init__(URLS, **kwargs)
        self.log: list[str] = []
        self.scripted = {url: Scripted(url, self.log, script.get(url, [])) for url in URLS}

    def client(self, url: str) -> Client:
        return self.scripted[url]  # type: ignore[return-value]


def _walk(spec: dict[str, Any]) -> list[str]:
    return list(Ring(URLS).walk(routing_key(spec)))


def test_not_owner_is_followed_once_and_the_owner_remembered() -> None:
    first, _, third = _walk({"task_id": "t", "template": None, "options": {}})
    cluster = Cluster({first: [refusal("not_owner", third + "/")]})
    cluster.session("t").close()
    assert cluster.log[:2] == [first, third]  # one hop, to the owner named
    cluster.log.clear()
    cluster.session("t")
    assert cluster.log == [third]  # remembered for the root: straight there


def test_full_servers_are_walked_past_along_the_ring() -> None:
    first, second, third = _walk({"task_id": "t", "template": None, "options": {}})
    cluster = Cluster({first: [refusal("full")], second: [refusal("full")]})
    session = cluster.session("t")
    assert cluster.log == [first, second, third] and session.server == third


def test_a_silent_owner_is_waited_for_then_given_up_on() -> None:
    first, *_ = _walk({"task_id": "t", "template": None, "options": {}})
    waited = Cluster({first: [refusal("not_owner"), refusal("not_owner")]})
    assert waited.session("t").server == first  # its lease ran out: the first server took it
    assert waited.log == [first] * 3
    never = Cluster({first: [refusal("not_owner")] * 100}, owner_wait=0.3)
    with pytest.raises(ServiceError, match="not_owner"):
        never.session("t")
    assert 3 <= len(never.log) < 100


def test_other_refusals_are_not_retried() -> None:
    first, *_ = _walk({"task_id": "t", "template": None, "options": {}})
    cluster = Cluster({first: [refusal("bad_root")]})
    with pytest.raises(ServiceError, match="bad_root"):
        cluster.session("t")
    assert cluster.log == [first]

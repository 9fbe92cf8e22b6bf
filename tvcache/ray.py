"""tvcache servers on a Ray cluster: one server actor per node (issue 14), first cut.

``deploy(store_url, token=...)`` places on every alive node (or every node offering the
custom ``resource``, e.g. nodes started with ``--resources '{"tvcache": 1}'`` because they
have Docker) an actor that runs ``tvcache serve --advertise`` bound to the node's address.
All servers share ``store_url`` (PostgreSQL), and publish themselves there, so clients route
with ``ClusterClient(store_url=...)`` or ``Deployment.client()``. Ray places and restarts
processes; tvcache adds no cluster manager of its own.

Needs ``pip install ray`` (not a dependency of tvcache; see docs/cluster.md).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snapshots import TvcacheError
from tvcache.cluster import ClusterClient
from tvcache.service import ServerProcess

__all__ = ["Deployment", "deploy"]


def _ray() -> Any:
    try:
        import ray
    except ImportError as error:
        raise TvcacheError(
            "tvcache.ray needs Ray, which is not installed", "pip install ray"
        ) from error
    return ray


class _Server:
    """The actor: one ``tvcache serve`` process on this node, stopped with the actor."""

    def __init__(
        self, store_url: str, token: str, host: str | None, home: str | None, args: list[str]
    ) -> None:
        ray = _ray()
        host = host or ray.util.get_node_ip_address()
        self.scratch = None if home else Path(tempfile.mkdtemp(prefix="tvcache-ray-"))
        where = Path(home) if home else self.scratch
        assert where is not None
        env = {"TVCACHE_STORE_URL": store_url, "TVCACHE_TOKEN": token}
        self.process = ServerProcess(where, "--host", host, "--advertise", *args, env=env)

    def url(self) -> str:
        return self.process.url

    def stop(self) -> int:
        """Stop the server; a home of its own (no ``home`` given) goes with it."""
        try:
            code = self.process.stop(timeout=30)
        except subprocess.TimeoutExpired:  # stuck: its entry expires from the list after ttl
            code = self.process.stop(signal.SIGKILL)
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
        return code


@dataclass
class Deployment:
    """The server actors of one :func:`deploy`, and their URLs (one per node)."""

    actors: list[Any]
    urls: list[str]
    token: str
    store_url: str
    nodes: list[str] = field(default_factory=list)

    def client(self) -> ClusterClient:
        """A client routing over the store's live list of these servers."""
        return ClusterClient(store_url=self.store_url, token=self.token)

    def shutdown(self) -> None:
        """Stop every server (each leaves the live list at once), then its actor."""
        ray = _ray()
        ray.get([actor.stop.remote() for actor in self.actors])
        for actor in self.actors:
            ray.kill(actor)


def deploy(
    store_url: str,
    *,
    token: str,
    resource: str | None = None,
    host: str | None = None,
    home: str | None = None,
    serve_args: tuple[str, ...] = (),
) -> Deployment:
    """One tvcache server per alive Ray node (with ``resource``, if given); Ray must be
    initialised (``ray.init(address=...)``). ``host``: bind address (default: the node's IP;
    a token is required off loopback). ``home``: each node's tvcache home (snapshots, sandboxes;
    default: a temporary directory removed on shutdown). ``serve_args``: more ``tvcache serve``
    options."""
    ray = _ray()
    if not store_url.startswith("postgres"):
        raise TvcacheError(
            f"servers on several nodes must share a PostgreSQL store, not {store_url!r}",
            "pass store_url='postgresql+psycopg://user:pw@host/db'",
        )
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [
        node["NodeID"]
        for node in ray.nodes()
        if node["Alive"] and (resource is None or node["Resources"].get(resource, 0) > 0)
    ]
    if not nodes:
        raise TvcacheError(
            f"no alive Ray node{' offers the resource ' + repr(resource) if resource else ''}",
            "start nodes with e.g. ray start --resources '{\"tvcache\": 1}', or drop resource=",
        )
    actor_class = ray.remote(num_cpus=0)(_Server)
    actors = [
        actor_class.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=False)
        ).remote(store_url, token, host, home, list(serve_args))
        for node in nodes
    ]
    urls = ray.get([actor.url.remote() for actor in actors])
    return Deployment(actors, list(urls), token, store_url, nodes)

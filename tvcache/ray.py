"""tvcache servers on a Ray cluster: one server actor per node (issue 14).

``deploy(store_url, token=...)`` places on every alive node (or every node offering the
custom ``resource``, e.g. nodes started with ``--resources '{"tvcache": 1}'`` because they
have Docker) an actor that runs ``tvcache serve --advertise`` bound to the node's address.
All servers share ``store_url`` (PostgreSQL), and publish themselves there, so clients route
with ``ClusterClient(store_url=...)`` or ``Deployment.client()``. Ray places and restarts
processes; tvcache adds no cluster manager of its own:

- the actors are *detached* and *named* ``tvcache-server-<node id>`` in the namespace
  ``tvcache``, so ``tvcache cluster status``/``down`` find them from any other process, and
  ``deploy`` run again only adds servers on nodes that joined since (idempotent);
- an actor whose server process exits ends itself, and Ray restarts it (``max_restarts``),
  which starts a new server; a server whose actor dies stops with it (``TVCACHE_EXIT_WITH_PARENT``).

Needs ``pip install 'tvcache[ray]'`` (see docs/cluster.md).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snapshots import TvcacheError
from tvcache.cluster import ClusterClient
from tvcache.service import ServerProcess

__all__ = [
    "NAMESPACE",
    "PREFIX",
    "Deployment",
    "ServerState",
    "deploy",
    "find",
    "status",
    "teardown",
]

NAMESPACE = "tvcache"
PREFIX = "tvcache-server-"
log = logging.getLogger(__name__)


def _ray() -> Any:
    try:
        import ray
    except ImportError as error:
        raise TvcacheError(
            "tvcache.ray needs Ray, which is not installed", "pip install 'tvcache[ray]'"
        ) from error
    return ray


class _Server:
    """The actor: one ``tvcache serve`` process on this node, stopped with the actor."""

    def __init__(
        self, store_url: str, token: str, host: str | None, home: str | None, args: list[str]
    ) -> None:
        ray = _ray()
        host = host or ray.util.get_node_ip_address()
        self.node = ray.get_runtime_context().get_node_id()
        self.scratch = None if home else Path(tempfile.mkdtemp(prefix="tvcache-ray-"))
        where = Path(home) if home else self.scratch
        assert where is not None
        env = {
            "TVCACHE_STORE_URL": store_url,
            "TVCACHE_TOKEN": token,
            "TVCACHE_EXIT_WITH_PARENT": str(os.getpid()),  # no orphan server if Ray kills us
        }
        self.process = self._start(where, ["--host", host, "--advertise", *args], env)
        self.stopping = False
        threading.Thread(target=self._watch, name="tvcache-watch", daemon=True).start()

    @staticmethod
    def _start(home: Path, args: list[str], env: dict[str, str]) -> ServerProcess:
        """Start the server, trying three times: an error in an actor's constructor is not
        restarted by Ray (the actor is dead for good), and a start can fail for a passing
        reason (a port, the store restarting)."""
        for attempt in range(3):
            try:
                return ServerProcess(home, *args, env=env)
            except TvcacheError as error:
                if attempt == 2:
                    raise
                log.warning("tvcache serve did not start (%s); trying again", error.message)
                time.sleep(2.0)
        raise AssertionError

    def _watch(self) -> None:
        """A server that exits unasked takes the actor down with it, so Ray restarts both."""
        code = self.process.proc.wait()
        if not self.stopping:
            log.error("tvcache serve exited with %s; ending the actor so Ray restarts it", code)
            os._exit(1)

    def url(self) -> str:
        return self.process.url

    def info(self) -> dict[str, Any]:
        return {"url": self.process.url, "node": self.node, "pid": self.process.pid}

    def stop(self) -> int:
        """Stop the server; a home of its own (no ``home`` given) goes with it."""
        self.stopping = True
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
        _stop(self.actors)


def _stop(actors: list[Any]) -> None:
    ray = _ray()
    pending = [actor.stop.remote() for actor in actors]
    for ref in pending:
        try:
            ray.get(ref, timeout=90)
        except Exception as error:  # dead or stuck: the kill below ends it either way
            log.warning("tvcache: a server actor did not stop cleanly: %s", error)
    for actor in actors:
        ray.kill(actor, no_restart=True)


def _nodes(resource: str | None) -> list[str]:
    ray = _ray()
    return [
        node["NodeID"]
        for node in ray.nodes()
        if node["Alive"] and (resource is None or node["Resources"].get(resource, 0) > 0)
    ]


def deploy(
    store_url: str,
    *,
    token: str,
    resource: str | None = None,
    host: str | None = None,
    home: str | None = None,
    serve_args: tuple[str, ...] = (),
    namespace: str = NAMESPACE,
) -> Deployment:
    """One tvcache server per alive Ray node (with ``resource``, if given); Ray must be
    initialised (``ray.init(address=...)``). A node that already has its server keeps it (the
    arguments then apply only to new ones). ``host``: bind address (default: the node's IP;
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

    nodes = _nodes(resource)
    if not nodes:
        raise TvcacheError(
            f"no alive Ray node{' offers the resource ' + repr(resource) if resource else ''}",
            "start nodes with e.g. ray start --resources '{\"tvcache\": 1}', or drop resource=",
        )
    actor_class = ray.remote(num_cpus=0, max_restarts=-1)(_Server)
    actors = [
        actor_class.options(
            name=PREFIX + node,
            namespace=namespace,
            lifetime="detached",
            get_if_exists=True,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=False),
        ).remote(store_url, token, host, home, list(serve_args))
        for node in nodes
    ]
    urls = ray.get([actor.url.remote() for actor in actors])
    return Deployment(actors, list(urls), token, store_url, nodes)


def find(namespace: str = NAMESPACE) -> dict[str, Any]:
    """The server actors of ``namespace`` by name (from any process connected to the cluster)."""
    ray = _ray()
    names = [
        entry["name"]
        for entry in ray.util.list_named_actors(all_namespaces=True)
        if entry["namespace"] == namespace and entry["name"].startswith(PREFIX)
    ]
    found = {}
    for name in names:
        try:
            found[name] = ray.get_actor(name, namespace=namespace)
        except ValueError:  # gone since it was listed
            continue
    return found


@dataclass(frozen=True)
class ServerState:
    """One server actor as :func:`status` sees it."""

    name: str
    state: str  # "alive", "not answering" (restarting, or its node is away), "dead"
    url: str | None = None
    pid: int | None = None
    detail: str = ""


def status(namespace: str = NAMESPACE, timeout: float = 10.0) -> list[ServerState]:
    """Every server actor of ``namespace`` and whether it answers."""
    ray = _ray()
    from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError

    actors = find(namespace)
    refs = {name: actor.info.remote() for name, actor in actors.items()}
    out = []
    for name, ref in sorted(refs.items()):
        try:
            info = ray.get(ref, timeout=timeout)
        except GetTimeoutError:
            out.append(ServerState(name, "not answering", detail=f"no answer in {timeout:g} s"))
        except ActorUnavailableError:  # Ray is restarting it
            out.append(ServerState(name, "not answering", detail="restarting"))
        except RayActorError as error:
            out.append(ServerState(name, "dead", detail=str(error).splitlines()[0]))
        else:
            out.append(ServerState(name, "alive", info["url"], info["pid"]))
    return out


def teardown(namespace: str = NAMESPACE) -> list[str]:
    """Stop every server actor of ``namespace`` (each leaves the live list); their names."""
    actors = find(namespace)
    _stop(list(actors.values()))
    return sorted(actors)

"""``tvcache cluster up|status|down``: tvcache servers on a Ray cluster (tvcache.ray).

``up`` places one detached server actor per node and returns; ``status`` and ``down`` find
them by name from any process connected to the same Ray cluster.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from typing import Any

from snapshots import TvcacheError
from tvcache._cli_service import token_of


def add_cluster_commands(sub: Any) -> None:
    """Register ``cluster up``, ``cluster status`` and ``cluster down``."""
    cluster = sub.add_parser("cluster", help="tvcache servers on a Ray cluster (one per node)")
    actions = cluster.add_subparsers(dest="action", required=True)
    up = actions.add_parser("up", help=cmd_up.__doc__)
    status = actions.add_parser("status", help=cmd_status.__doc__)
    down = actions.add_parser("down", help=cmd_down.__doc__)
    for parser in (up, status, down):
        parser.add_argument(
            "--address",
            default=os.environ.get("RAY_ADDRESS", "auto"),
            help="the Ray cluster: ray://head:10001, host:port, or auto (default: $RAY_ADDRESS "
            "or auto, the cluster `ray start` runs on this machine)",
        )
        parser.add_argument("--namespace", default="tvcache", help="Ray namespace of the actors")
        parser.add_argument("--json", action="store_true")
    up.add_argument("--store", help="PostgreSQL URL shared by the servers (default: --store-url)")
    up.add_argument("--resource", help="only nodes offering this custom Ray resource")
    up.add_argument("--token-file", help="file holding the token (default: $TVCACHE_TOKEN)")
    up.add_argument("--bind", help="address each server binds (default: its node's IP)")
    up.add_argument("--node-home", help="each node's tvcache home (default: a temporary one)")
    up.add_argument("serve_args", nargs="*", help="after --: more `tvcache serve` options")
    up.set_defaults(func=cmd_up)
    status.set_defaults(func=cmd_status)
    down.set_defaults(func=cmd_down)


def _connect(args: argparse.Namespace) -> Any:
    from tvcache.ray import _ray

    ray = _ray()
    try:
        ray.init(address=args.address, namespace=args.namespace, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise TvcacheError(
            f"cannot connect to the Ray cluster at {args.address!r}: {error}",
            "start one with `ray start --head`, or pass --address ray://HEAD:10001",
        ) from error
    return ray


def cmd_up(args: argparse.Namespace) -> int:
    """One tvcache server per Ray node, sharing one PostgreSQL store; again: new nodes only."""
    from tvcache.ray import deploy

    store = args.store or args.store_url or os.environ.get("TVCACHE_STORE_URL")
    if not store:
        raise TvcacheError(
            "cluster up needs the PostgreSQL store the servers share",
            "pass --store postgresql+psycopg://user:pw@host/db (or set TVCACHE_STORE_URL)",
        )
    token = token_of(args.token_file, os.environ.get("TVCACHE_TOKEN"))
    if not token:
        raise TvcacheError(
            "cluster up needs a token: the servers listen on the nodes' addresses",
            "pass --token-file FILE (e.g. `openssl rand -hex 16 > FILE`) or set TVCACHE_TOKEN",
        )
    serve_args = [a for a in args.serve_args if a != "--"] if args.serve_args else []
    ray = _connect(args)
    try:
        deployment = deploy(
            store,
            token=token,
            resource=args.resource,
            host=args.bind,
            home=args.node_home,
            serve_args=tuple(serve_args),
            namespace=args.namespace,
        )
    finally:
        ray.shutdown()
    if args.json:
        print(json.dumps({"servers": dict(zip(deployment.nodes, deployment.urls, strict=True))}))
    else:
        for node, url in zip(deployment.nodes, deployment.urls, strict=True):
            print(f"{url}  (node {node[:12]})")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """The server actors and whether each answers; exit 1 if one does not."""
    from tvcache.ray import status

    ray = _connect(args)
    try:
        states = status(args.namespace)
    finally:
        ray.shutdown()
    if args.json:
        print(json.dumps([dataclasses.asdict(s) for s in states]))
    elif not states:
        print(f"no tvcache server actors in the namespace {args.namespace!r}")
    for state in [] if args.json else states:
        print(f"{state.name}  {state.state:<14} {state.url or ''} {state.detail}".rstrip())
    return 0 if all(s.state == "alive" for s in states) else 1


def cmd_down(args: argparse.Namespace) -> int:
    """Stop every server actor (each leaves the store's live list at once)."""
    from tvcache.ray import teardown

    ray = _connect(args)
    try:
        names = teardown(args.namespace)
    finally:
        ray.shutdown()
    print(json.dumps(names) if args.json else f"stopped {len(names)} tvcache server(s)")
    return 0

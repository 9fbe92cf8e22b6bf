"""The ``tvcache`` subcommands of the service issue: serve, restore, replay, bench --workers."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox import ToolCall
from snapshots import TvcacheError
from tvcache._settings import StateAwareness

if TYPE_CHECKING:
    from tvcache._factory import AnyTool


def _backends() -> list[str]:
    """``local``, and ``docker`` once its backend module exists."""
    return ["local"] + (["docker"] if importlib.util.find_spec("sandbox.docker") else [])


def add_service_commands(sub: Any) -> None:
    """Register ``serve``, ``restore`` and ``replay`` on the ``tvcache`` subparsers."""
    serve = sub.add_parser("serve", help=cmd_serve.__doc__)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    serve.add_argument("--port", type=int, default=8710, help="port (0: any free port)")
    token = serve.add_mutually_exclusive_group()
    token.add_argument(
        "--token-file",
        type=Path,
        help="file holding the bearer token every request must carry (default: $TVCACHE_TOKEN); "
        "required when not bound to loopback",
    )
    token.add_argument(
        "--token",
        default=os.environ.get("TVCACHE_TOKEN"),
        help="the token itself (visible to every local user in the process list: prefer "
        "$TVCACHE_TOKEN or --token-file)",
    )
    serve.add_argument("--backend", choices=_backends(), default="local")
    add_tools_option(serve)
    serve.add_argument(
        "--level", choices=["fs", "full"], default="fs", help="docker: snapshot level (default fs)"
    )
    state = serve.add_argument_group("state-aware hits (opt-in; see the README)")
    state.add_argument(
        "--read-only", action="store_true", help="reads a tool proves (sqlite) keep the state"
    )
    state.add_argument(
        "--fingerprint-tools", default="", help="comma-separated tools to fingerprint, e.g. bash"
    )
    state.add_argument(
        "--fingerprint-tasks", help="comma-separated task ids to fingerprint in (default: all)"
    )
    state.add_argument(
        "--no-merge", action="store_true", help="fingerprints detect reads only, never merge"
    )
    state.add_argument("--pure-tools", default="", help="comma-separated tools of pure outputs")
    state.add_argument(
        "--shadow-fraction", type=float, default=0.0, help="fraction of hits re-executed"
    )
    serve.add_argument(
        "--idle-timeout",
        type=float,
        default=600.0,
        help="close sessions idle this many seconds (default 600)",
    )
    serve.add_argument(
        "--pool-size", type=int, default=8, help="pre-forked sandboxes kept at most (0: no pool)"
    )
    serve.add_argument("--threads", type=int, default=64, help="threads running misses")
    serve.add_argument(
        "--grace", type=float, default=60.0, help="on shutdown, seconds to let running calls finish"
    )
    serve.add_argument(
        "--max-request-bytes",
        type=int,
        help="refuse larger request bodies with 413 (default 8 MiB)",
    )
    serve.add_argument(
        "--advertise",
        metavar="URL",
        nargs="?",
        const="auto",
        help="publish this server in the store (TVCACHE_STORE_URL, shared by a cluster) for "
        "ClusterClient(store_url=...) to route to; URL is how clients reach it (default: the "
        "bound address)",
    )
    serve.add_argument(
        "--lease-ttl",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="with --advertise: how long this server's root leases and live-list entry last "
        "unrenewed; a dead server's roots move to others after it (default 10)",
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    serve.add_argument(
        "--unsafe-no-isolation",
        action="store_true",
        help="local backend: run commands without isolation (the default refuses to serve where "
        "bubblewrap does not work); they then have this process's rights and can rewrite the "
        "cache. Only for trusted commands, never for a model being trained",
    )
    serve.set_defaults(func=cmd_serve)

    restore = sub.add_parser("restore", help=cmd_restore.__doc__)
    restore.add_argument("root", nargs="?", help="root id, unique id prefix, or task id")
    where = restore.add_mutually_exclusive_group()
    where.add_argument("--node", help="node id (or unique prefix) to restore")
    where.add_argument("--path", help="JSON or JSONL file: the tool calls from the root")
    where.add_argument("--list", action="store_true", help="list restored sandboxes")
    where.add_argument("--remove", metavar="NAME", help="delete a restored sandbox ('all': all)")
    restore.add_argument("--json", action="store_true")
    add_tools_option(restore)
    restore.set_defaults(func=cmd_restore)

    replay = sub.add_parser("replay", help=cmd_replay.__doc__)
    replay.add_argument("trajectories", help="JSONL file, one trajectory per line")
    replay.add_argument("--json", action="store_true", help="print one JSON report")
    add_tools_option(replay)
    replay.set_defaults(func=cmd_replay)


def add_tools_option(parser: argparse.ArgumentParser) -> None:
    """``--tools package.module:factory`` (repeatable, or comma-separated): tools to add."""
    parser.add_argument(
        "--tools",
        action="append",
        default=[],
        metavar="MODULE:FACTORY",
        help="add the tools FACTORY makes (a @tool function, a tool class or instance, or a "
        "function returning a list of them), e.g. myproject.tools:make_tools; see docs/tools.md; "
        "host tools (a spec and run(args), e.g. SkyRL's) run in this process: docs/adapters.md",
    )


def tools_of(args: argparse.Namespace) -> list[AnyTool]:
    """The tools ``--tools`` names (none when the flag is absent)."""
    from tvcache._factory import load_tools

    names = [n.strip() for value in getattr(args, "tools", []) for n in value.split(",")]
    return load_tools([n for n in names if n])


def tool_flags(args: argparse.Namespace) -> list[str]:
    """``--tools`` as given, for a ``tvcache serve`` started on the user's behalf (loaded here
    first, so that a bad one is reported before any server starts)."""
    tools_of(args)
    return [flag for value in getattr(args, "tools", []) for flag in ("--tools", value)]


def add_bench_options(bench: argparse.ArgumentParser) -> None:
    """``--workers N``: run the workload through ``tvcache serve`` from N client processes;
    ``--tools``: tools that join or replace the built-in ones the workload calls."""
    add_tools_option(bench)
    bench.add_argument(
        "--workers",
        type=int,
        default=0,
        help="client processes talking to a `tvcache serve` (load: default 8)",
    )
    bench.add_argument("--sessions", type=int, default=64, help="load: concurrent sessions")
    bench.add_argument("--duration", type=float, default=300.0, help="load: seconds to run")
    bench.add_argument(
        "--cluster",
        type=int,
        default=0,
        metavar="N",
        help="load: 1, 2, ... N servers sharing a private PostgreSQL, side by side, plus the "
        "routing overhead and the failover time (needs PostgreSQL's server binaries)",
    )
    bench.add_argument(
        "--think-ms",
        type=float,
        default=1000.0,
        help="load: mean pause between a session's calls, the LLM's turn (default 1000)",
    )


def run_bench(args: argparse.Namespace) -> int:
    """``bench load`` or ``bench sql --workers N`` (the in-process benchmark otherwise)."""
    if args.workload == "load" and args.cluster:
        from tvcache.bench.cluster_routing import run_cluster_bench

        return run_cluster_bench(args)
    if args.workload == "load":
        from tvcache.bench.load import run_load_bench

        return run_load_bench(args)
    if args.workload != "sql":
        raise TvcacheError(f"--workers is not supported by `bench {args.workload}` yet", "use sql")
    from tvcache.bench.sql_service import run_sql_workers

    return run_sql_workers(args)


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the cache over HTTP to many rollout workers (one engine, shared by all)."""
    from tvcache.cli import _settings
    from tvcache.service import ServeOptions, serve

    limit = {} if args.max_request_bytes is None else {"max_request_bytes": args.max_request_bytes}
    if args.max_request_bytes is not None and args.max_request_bytes < 1:
        raise TvcacheError("--max-request-bytes must be at least 1", "e.g. 8388608 (8 MiB)")
    if not args.lease_ttl > 0:
        raise TvcacheError(
            f"--lease-ttl must be a positive number of seconds, not {args.lease_ttl}", "e.g. 10"
        )
    if args.backend == "local":
        _check_isolation(args.unsafe_no_isolation)
    options = ServeOptions(
        host=args.host,
        port=args.port,
        token=_token(args),
        backend=args.backend,
        level=args.level,
        idle_seconds=args.idle_timeout,
        pool_size=args.pool_size,
        threads=args.threads,
        grace=args.grace,
        log_level=args.log_level,
        tools=tuple(tools_of(args)),
        advertise=args.advertise,
        lease_ttl=args.lease_ttl,
        **limit,
    )
    state = StateAwareness(
        read_only=args.read_only,
        fingerprint_tools=_names(args.fingerprint_tools),
        merge=not args.no_merge,
        fingerprint_tasks=_names(args.fingerprint_tasks) if args.fingerprint_tasks else None,
        pure_tools=_names(args.pure_tools),
        shadow_fraction=args.shadow_fraction,
    )
    return serve(dataclasses.replace(_settings(args), state=state), options)


def _token(args: argparse.Namespace) -> str | None:
    """``--token-file``'s content (one line), else ``--token`` / ``$TVCACHE_TOKEN``."""
    return token_of(args.token_file, args.token)


def token_of(path: Path | str | None, given: str | None) -> str | None:
    """The token in the file ``path`` (one line), else ``given``."""
    if path is None:
        return str(given) if given else None
    path = Path(path)
    try:
        token = path.read_text().strip()
    except OSError as error:
        raise TvcacheError(
            f"cannot read the token file {path}: {error.strerror}",
            "pass a readable file holding the token",
        ) from error
    if not token or any(c.isspace() for c in token):
        raise TvcacheError(
            f"the token file {path} must hold one token (no spaces)",
            "write it with e.g. `openssl rand -hex 16 > FILE`",
        )
    return token


def _check_isolation(unsafe: bool) -> None:
    """Refuse the local backend unless its commands run isolated or the opt-out is explicit."""
    from sandbox._isolation import Isolation, probe

    if unsafe:
        os.environ["TVCACHE_SANDBOX_ISOLATION"] = "off"  # what LocalBackend reads
        banner = "!" * 78
        print(
            f"{banner}\nWARNING --unsafe-no-isolation: local commands run WITHOUT isolation.\n"
            "They can read and write anything this process can, including the cache store: "
            f"never serve commands from a model being trained.\n{banner}",
            file=sys.stderr,
        )
        return
    found = probe(Isolation.from_env())
    if not found.ok:
        raise TvcacheError(
            f"refusing to serve the local backend: its commands cannot be isolated here "
            f"({found.detail}); an untrusted command could read the host and rewrite the cache",
            f"{found.fix}; check with `tvcache doctor`; or use --backend docker; or, for trusted "
            "commands only, pass --unsafe-no-isolation",
        )
    print(f"local backend: commands run isolated ({found.detail})", file=sys.stderr)


def _names(text: str) -> frozenset[str]:
    return frozenset(name.strip() for name in text.split(",") if name.strip())


def _read_calls(path: Path) -> list[ToolCall]:
    """A JSON list of ``{tool, args}`` or one per line (JSONL)."""
    text = path.read_text()
    try:
        stripped = text.strip()
        items = (
            json.loads(stripped)
            if stripped.startswith("[")
            else [json.loads(line) for line in text.splitlines() if line.strip()]
        )
        return [ToolCall(str(item["tool"]), dict(item.get("args") or {})) for item in items]
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise TvcacheError(
            f"{path} is not a list of tool calls: {error}",
            'write a JSON list (or one per line) of {"tool": "bash", "args": {"command": "..."}}',
        ) from error


def cmd_restore(args: argparse.Namespace) -> int:
    """A live sandbox in the state of any node of a recorded trajectory (snapshot + replay)."""
    from tvcache._restore import find_node, list_restored, remove_restored, restore, walk
    from tvcache._store import Store
    from tvcache.cli import _settings, find_root
    from tvcache.service._server import engine_for

    settings = _settings(args)
    if args.list or args.remove:
        home = settings.home
        names = (
            [p.name for p in list_restored(home)]
            if args.list
            else remove_restored(home, args.remove)
        )
        print(json.dumps(names) if args.json else "\n".join(names))
        return 0
    if not args.root or not (args.node or args.path):
        raise TvcacheError("restore needs ROOT and --node ID or --path FILE", "see --help")
    with Store(settings.resolved_store_url()) as store:
        spec = find_root(store, args.root).spec
    calls = _read_calls(Path(args.path)) if args.path else []
    engine = engine_for(settings, spec.backend, tools=tools_of(args))
    try:
        rid = engine.open_root(spec)
        root = engine.graph.root(rid)
        assert root is not None
        answered = walk(engine, rid, calls)
        target = find_node(engine, rid, args.node) if args.node else (answered or [root])[-1]
        done = restore(engine, rid, target, calls[len(answered) :])
    finally:
        engine.close()
        if engine.store is not None:
            engine.store.close()
    if args.json:
        print(json.dumps(dataclasses.asdict(done)))
        return 0
    print(done.location)
    print(
        f"node {done.node_id[:12]}: forked {done.forked_from[:12]}, replayed {done.replayed} "
        f"call(s), then ran {done.executed} call(s) not in the cache",
        file=sys.stderr,
    )
    if spec.backend == "local":
        print(f"open it with: bash --rcfile {Path(done.location).parent}/shell.sh", file=sys.stderr)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    """Re-execute recorded trajectories in fresh sandboxes; exit 1 if any output diverges."""
    from tvcache._engine import Engine
    from tvcache._replay import load, replay
    from tvcache.cli import _settings
    from tvcache.service._server import engine_for

    settings = _settings(args)
    trajectories = load(Path(args.trajectories))
    engines: dict[str, Engine] = {}
    tools = tools_of(args)

    def engine_of(backend: str) -> Engine:
        if backend not in engines:
            engines[backend] = engine_for(settings, backend, tools=tools)
        return engines[backend]

    try:
        report = replay(trajectories, engine_of)
    finally:
        for engine in engines.values():
            engine.close()
            if engine.store is not None:
                engine.store.close()
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        for d in report.divergences:
            note = " (nondeterministic node: not a failure)" if d.nondeterministic else ""
            call = json.dumps(d.tool_call, ensure_ascii=False)
            print(
                f"trajectory {d.trajectory}, call {d.call}: {call} differs from {d.against}{note}"
            )
            print(d.diff)
        for t in report.uncompared:
            print(
                f"trajectory {t}: nothing to compare: no recorded observations, and the cache "
                "holds none of its calls (record observations, or pass the --home/--store-url "
                "of the cache that served it)"
            )
        print(
            f"{report.trajectories} trajectories, {report.calls} calls, {report.compared} "
            f"compared, {len(report.divergences)} divergence(s)"
        )
    return 1 if report.failed else 0

"""The ``tvcache`` command: doctor, stats, tree, bench, gc."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from snapshots import TvcacheError
from tvcache._cli_cluster import add_cluster_commands
from tvcache._cli_service import add_bench_options, add_service_commands, run_bench
from tvcache._records import NodeRecord, RootRecord
from tvcache._settings import Settings
from tvcache._stats import RootStats
from tvcache._store import Store
from tvcache.bench._report import plot_path
from tvcache.bench.plans import add_plan_options


def _settings(args: argparse.Namespace) -> Settings:
    kwargs: dict[str, object] = {}
    if args.home:
        kwargs["home"] = Path(args.home)
    if args.store_url:
        kwargs["store_url"] = args.store_url
    return Settings(**kwargs)  # type: ignore[arg-type]


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


# ------------------------------------------------------------------ doctor
def cmd_doctor(args: argparse.Namespace) -> int:
    """Which backends and snapshot levels work here; for each that does not, why and the fix."""
    from tvcache._doctor import run_doctor

    checks = run_doctor(_settings(args))
    if args.json:
        print(json.dumps([dataclasses.asdict(c) for c in checks], indent=2))
    else:
        for check in checks:
            mark = "ok  " if check.ok else "FAIL"
            print(f"[{mark}] {check.name}: {check.detail}")
            if not check.ok and check.fix:
                print(f"       fix: {check.fix}")
    return 0


# ------------------------------------------------------------------- stats
def _root_summary(store: Store, root: RootRecord) -> RootStats:
    nodes = store.load_nodes(root.root_id)
    snaps = store.snapshots(root.root_id)
    executions = sum(n.stats.executions for n in nodes)
    hits = sum(n.stats.hits for n in nodes)
    return RootStats(
        root_id=root.root_id,
        task_id=root.spec.task_id,
        backend=root.spec.backend,
        nodes=sum(1 for n in nodes if n.parent_id is not None),
        calls=executions + hits,
        hits=hits,
        hit_rate=hits / (executions + hits) if executions + hits else 0.0,
        exec_seconds=sum(n.stats.exec_seconds for n in nodes),
        seconds_saved=sum(n.stats.seconds_saved for n in nodes),
        nondeterministic=sum(1 for n in nodes if n.nondeterministic),
        read_only=sum(1 for n in nodes if n.read_only),
        fingerprinted=sum(1 for n in nodes if n.fingerprint is not None),
        # shadow verification (or a replay) found them wrong: out of service
        withdrawn=sum(1 for n in nodes if n.parent_id is not None and n.observation is None),
        snapshots=len(snaps),
        snapshot_bytes=sum(s.handle.size_bytes for s in snaps),
    )


def cmd_stats(args: argparse.Namespace) -> int:
    """Per root: nodes, hit rate, seconds saved, snapshots, read-only and withdrawn nodes;
    with servers on the store's live list (or --cluster), their counters summed too."""
    from tvcache._cluster_stats import gather, live_urls

    store = Store(_settings(args).resolved_store_url())
    try:
        rows = [_root_summary(store, root) for root in store.roots()]
        urls = live_urls(store)
    finally:
        store.close()
    view = gather(urls, os.environ.get("TVCACHE_TOKEN"), metrics=False) if urls else None
    if args.cluster and view is None:
        raise TvcacheError(
            "no server is on the store's live list",
            "start servers with `tvcache serve --advertise` (or `tvcache cluster up`) on this "
            "store, or pass its URL with --store-url",
        )
    if args.json:
        roots = [r.to_dict() for r in rows]
        shown = {"cluster": view.to_dict(), "roots": roots} if args.cluster and view else roots
        print(json.dumps(shown, indent=2))
        return 0
    if view is not None:
        _print_cluster(view.to_dict())
    if not rows:
        print("no roots yet: run some sessions (e.g. `tvcache bench sql --quick --keep`)")
        return 0
    print(
        f"{'root':<14}{'task':<28}{'nodes':>7}{'calls':>8}{'hit rate':>10}"
        f"{'saved s':>10}{'snaps':>7}{'snap bytes':>12}{'r/o':>6}{'withdrawn':>11}"
    )
    for r in rows:
        print(
            f"{r.root_id[:12]:<14}{r.task_id[:26]:<28}{r.nodes:>7}{r.calls:>8}"
            f"{r.hit_rate:>10.1%}{r.seconds_saved:>10.2f}{r.snapshots:>7}"
            f"{_human_bytes(float(r.snapshot_bytes)):>12}{r.read_only:>6}{r.withdrawn:>11}"
        )
    return 0


def _print_cluster(view: dict[str, Any]) -> None:
    total = view["total"]
    print(f"cluster: {len(view['servers_answered'])} server(s) answered", end="")
    failed = view["servers_failed"]
    print(f", {len(failed)} did not: {', '.join(failed)}" if failed else "")
    keys = [k for k in ("calls", "hits", "misses", "sessions_open", "nodes") if k in total]
    print("  " + ", ".join(f"{key} {total[key]}" for key in keys))


# -------------------------------------------------------------------- tree
def find_root(store: Store, name: str) -> RootRecord:
    """A root by id, unique id prefix, or task id."""
    roots = store.roots()
    matches = [r for r in roots if r.root_id == name] or [
        r for r in roots if r.root_id.startswith(name) or r.spec.task_id == name
    ]
    if len(matches) == 1:
        return matches[0]
    from tvcache._engine import RootNotFoundError

    if not matches:
        raise RootNotFoundError(
            f"no root matches {name!r}",
            "list roots with `tvcache stats` and pass a root id or task id",
        )
    raise RootNotFoundError(
        f"{len(matches)} roots match {name!r}", "pass a longer root id prefix (see `tvcache stats`)"
    )


def _label(node: NodeRecord, snapped: set[str], width: int) -> str:
    call = node.call
    assert call is not None
    args = json.dumps(dict(call.args), ensure_ascii=False)
    text = f"{call.tool} {args}"
    if len(text) > width:
        text = text[: width - 1] + "…"
    marks = [f"hits {node.stats.hits}", f"{node.stats.exec_seconds:.3f}s"]
    if node.node_id in snapped:
        marks.append("SNAPSHOT")
    if node.nondeterministic:
        marks.append("nondeterministic")
    if node.read_only:
        marks.append("read-only")
    if node.fingerprint is not None:
        marks.append(f"state {node.fingerprint[:8]}")
    return f"{text}  [{', '.join(marks)}]"


def _write_html(store: Store, root: RootRecord, settings: Settings, path: Path) -> None:
    """The dashboard's view of ``root`` as one self-contained file (data, script and styles)."""
    from tvcache._dashboard_page import render_page
    from tvcache._tree_view import export

    page = render_page(export(store, root.root_id, settings))
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as error:
        raise TvcacheError(
            f"cannot write {path}: {error.strerror}", "pass --html a path in a writable directory"
        ) from error
    print(f"wrote {path} ({_human_bytes(len(page.encode()))}); open it in a browser")


def cmd_tree(args: argparse.Namespace) -> int:
    """The graph of one root as indented text, with hits and snapshot markers (or, with
    --html FILE, the dashboard's view of it as one self-contained page)."""
    settings = _settings(args)
    store = Store(settings.resolved_store_url())
    try:
        root = find_root(store, args.root)
        if args.html:
            _write_html(store, root, settings, Path(args.html))
            return 0
        nodes = store.load_nodes(root.root_id)
        snapped = {s.node_id for s in store.snapshots(root.root_id)}
    finally:
        store.close()
    children: dict[str | None, list[NodeRecord]] = {}
    for node in nodes:
        children.setdefault(node.parent_id, []).append(node)
    print(f"root {root.root_id}  task {root.spec.task_id}  ({len(nodes) - 1} nodes)")
    stack = [(n, 1) for n in reversed(children.get(root.root_id, []))]
    while stack:
        node, depth = stack.pop()
        if args.depth and depth > args.depth:
            continue
        print("  " * depth + "- " + _label(node, snapped, args.width))
        stack.extend((c, depth + 1) for c in reversed(children.get(node.node_id, [])))
    return 0


# ---------------------------------------------------------------------- gc
def cmd_gc(args: argparse.Namespace) -> int:
    """Reconcile store and disk after a crash, then enforce the snapshot byte budget."""
    from tvcache._factory import open_engine

    settings = _settings(args)
    if args.budget is not None:
        settings = dataclasses.replace(settings, snapshot_budget_bytes=args.budget)
    engine = open_engine(settings)
    try:
        assert engine.store is not None
        report = dict(engine.recovery)  # opening the engine reconciled store and disk
        for root in engine.store.roots():
            engine.load_root(root)  # as stored: its template may be gone or edited
        before = engine.graph.snapshot_bytes()
        engine.enforce_budget()
        report["snapshot_bytes_before"] = before
        report["snapshot_bytes_after"] = engine.graph.snapshot_bytes()
        report["evicted"] = engine.counters.evictions
    finally:
        engine.close()  # and the store it opened
    print(json.dumps(report) if args.json else "\n".join(f"{k}: {v}" for k, v in report.items()))
    return 0


# ------------------------------------------------------------------- bench
_OWN_WORKLOADS = {
    "skyrl": "tvcache.bench.skyrl:run_skyrl_bench",
    "forks": "tvcache.bench.forks:run_forks_bench",
    "plans": "tvcache.bench.plans:run_plans_bench",
}
"""Workloads with a runner of their own, imported only when chosen (heavy dependencies)."""


def cmd_bench(args: argparse.Namespace) -> int:
    plotted = args.workload in ("sql", "terminal") and not args.workers and not args.levels
    if args.plot and not plotted:
        raise TvcacheError(
            f"--plot is not drawn by `bench {args.workload}`"
            + (" --workers" if args.workers else " --levels" if args.levels else ""),
            "plots are drawn by `bench sql` and `bench terminal`; leave out --plot",
        )
    if args.workload in _OWN_WORKLOADS:
        module, name = _OWN_WORKLOADS[args.workload].split(":")
        runner: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(module), name)
        return runner(args)
    if args.workload == "load" or args.workers:
        return run_bench(args)
    if args.workload == "terminal" and args.levels:
        from tvcache.bench.levels import run_levels_bench

        return run_levels_bench(args)
    if args.workload == "terminal":
        from tvcache.bench.terminal import run_terminal_bench

        return run_terminal_bench(args)
    from tvcache.bench.sql import run_sql_bench

    return run_sql_bench(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tvcache", description=__doc__)
    parser.add_argument(
        "--home", help="cache directory (default $TVCACHE_HOME or ~/.cache/tvcache)"
    )
    parser.add_argument("--store-url", help="SQLAlchemy URL of the store (default: SQLite in home)")
    sub = parser.add_subparsers(dest="command", required=True)

    doctor = sub.add_parser("doctor", help=cmd_doctor.__doc__)
    doctor.add_argument("--json", action="store_true")
    doctor.set_defaults(func=cmd_doctor)

    stats = sub.add_parser("stats", help=cmd_stats.__doc__)
    stats.add_argument("--json", action="store_true")
    stats.add_argument(
        "--cluster",
        action="store_true",
        help="require the live servers' counters (TVCACHE_TOKEN: their token); --json then "
        "prints {cluster: {servers_answered, servers_failed, total, by_server}, roots}",
    )
    stats.set_defaults(func=cmd_stats)

    tree = sub.add_parser("tree", help=cmd_tree.__doc__)
    tree.add_argument("root", help="root id, unique id prefix, or task id")
    tree.add_argument("--depth", type=int, default=0, help="show at most this many levels")
    tree.add_argument("--width", type=int, default=100, help="cut call text at this width")
    tree.add_argument(
        "--html", metavar="FILE", help="write the dashboard's view as one self-contained HTML file"
    )
    tree.set_defaults(func=cmd_tree)

    gc = sub.add_parser("gc", help=cmd_gc.__doc__)
    gc.add_argument("--budget", type=int, help="snapshot byte budget to enforce now")
    gc.add_argument("--json", action="store_true")
    gc.set_defaults(func=cmd_gc)

    bench = sub.add_parser("bench", help="run a benchmark side by side: no cache, naive, tvcache")
    bench.add_argument(
        "workload",
        choices=["sql", "terminal", "load", "skyrl", "forks", "plans"],
        help="which workload",
    )
    bench.add_argument(
        "--quick",
        action="store_true",
        help="a small run (sql: under a minute; terminal: 3 tasks x 4 rollouts in no cache, "
        "tvcache fs and full, 3-4 minutes on a loaded 2-core host)",
    )
    bench.add_argument(
        "--levels",
        action="store_true",
        help="terminal: full fork (cold, restored ahead) and snapshot beside the runc floors",
    )
    bench.add_argument("--reps", type=int, default=10, help="--levels: rounds (default 10)")
    bench.add_argument("--json", action="store_true", help="print one JSON object, no table")
    bench.add_argument("--group-size", type=int, default=8, help="rollouts per task (G)")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument(
        "--plot",
        type=plot_path,
        help="sql, terminal: write a PNG of call time and tool seconds per mode (its directory "
        "is created; checked before the run)",
    )
    bench.add_argument("--tasks", help="terminal: comma-separated task names (default: all)")
    bench.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="terminal: rollouts in flight; 1 (default) interleaves them call by call",
    )
    bench.add_argument(
        "--modes",
        help="terminal: comma-separated cached modes (default: all), e.g. "
        "'strict prefix,fs read-only,fs fingerprint'",
    )
    bench.set_defaults(func=cmd_bench)
    add_bench_options(bench)
    add_plan_options(bench)
    add_service_commands(sub)
    add_cluster_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except TvcacheError as error:
        print(f"tvcache: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tvcache: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

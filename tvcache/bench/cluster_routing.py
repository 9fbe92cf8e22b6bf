"""``tvcache bench load --cluster N``: the load workload (tvcache.bench.load) against 1..N
servers sharing one private PostgreSQL store, side by side in one run, on the local backend.

For each server count: calls/s, hits/s and hit p50/p99 as the clients saw them, with the
same audit as ``bench load`` (no wrong answer, nothing answered missing from the store).
PostgreSQL's own counters give the store's transactions (reads too) and rows written per
call (for every count but the largest, whose database also holds the next runs). Then, on the
largest cluster: what routing by root costs per call (hits through ``Client`` to one server and
through ``ClusterClient`` over all of them, interleaved) and the failover time (SIGKILL a
server → the first answered call of each session it held, on the server its root moved to).
Every count starts from an empty database: the runs are comparable.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
import timeit
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from tvcache.bench._postgres import PrivatePostgres
from tvcache.bench._report import percentile_ms
from tvcache.bench.load import audit, command, expected, make_templates, run_clients
from tvcache.client import Client
from tvcache.cluster import ClusterClient, Servers
from tvcache.service import ServerProcess

QUICK_SECONDS, QUICK_SESSIONS, QUICK_WORKERS = 8.0, 16, 2
QUICK_HITS = (3, 20)  # routing overhead: tasks x recorded calls replayed


def _progress(message: str) -> None:
    print(f"[bench load --cluster] {message}", file=sys.stderr, flush=True)


@contextmanager
def _servers(admin_url: str, name: str, count: int, tmp: Path) -> Iterator[list[ServerProcess]]:
    """``count`` servers sharing a fresh database ``name`` of the private PostgreSQL."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    env = {"TVCACHE_STORE_URL": admin_url.rsplit("/", 1)[0] + f"/{name}"}
    started: list[ServerProcess] = []
    try:
        for i in range(count):
            home = tmp / f"{name}-home{i}"
            started.append(ServerProcess(home, "--log-level", "warning", env=env))
        yield started
    finally:
        for server in started:
            if server.proc.poll() is None:
                server.stop(signal.SIGTERM, timeout=60)


def _store_writes(admin_url: str, name: str, calls: int) -> dict[str, float]:
    """Transactions (reads too) and rows written in the database ``name`` per answered call
    (PostgreSQL's own counters, read after its servers stopped: their last writes are in)."""
    admin = create_engine(admin_url)
    time.sleep(1.0)  # backends report their counters when they end; give them a moment
    try:
        with admin.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted "
                    "FROM pg_stat_database WHERE datname = :name"
                ),
                {"name": name},
            ).one()
    finally:
        admin.dispose()
    per = max(calls, 1)
    return {
        "store_transactions_per_call": round(row[0] / per, 2),
        "rows_written_per_call": round(row[1] / per, 2),
    }


def hit_seconds(
    make: Callable[[], AbstractContextManager[Any]], template: Path, tasks: int, calls: int
) -> list[float]:
    """Seconds of each replayed call (every one a hit) of ``tasks`` recorded trajectories."""
    out: list[float] = []
    with make() as client:
        for task in range(tasks):
            with client.session(f"route{task}", template=str(template)) as session:
                for i in range(calls):
                    session.call("bash", command=f"echo {i}")
            with client.session(f"route{task}", template=str(template)) as session:
                for i in range(calls):
                    start = time.perf_counter()
                    result = session.call("bash", command=f"echo {i}")
                    out.append(time.perf_counter() - start)
                    if not result.hit:
                        raise AssertionError(f"call {i} of route{task} replayed as a miss")
    return out


def _routing(urls: list[str], template: Path, tasks: int, calls: int) -> dict[str, Any]:
    ways: dict[str, Callable[[], AbstractContextManager[Any]]] = {
        "client": lambda: Client(urls[0]),
        "cluster_client": lambda: ClusterClient(urls),
    }
    rows: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(2):  # interleaved rounds: a loaded machine hurts both alike
        for name, make in ways.items():
            rows[name] += hit_seconds(make, template, tasks, calls)
    p50 = {name: percentile_ms(samples, 50) or 0.0 for name, samples in rows.items()}
    ring = Servers(urls)
    pick = timeit.timeit(lambda: ring.pick("task0"), number=20_000) / 20_000
    return {
        "client_hit_p50_ms": p50["client"],
        "cluster_client_hit_p50_ms": p50["cluster_client"],
        "overhead_per_call_ms": round(p50["cluster_client"] - p50["client"], 3),
        "ratio_p50": round(p50["cluster_client"] / (p50["client"] or 1.0), 2),
        "placement_us": round(pick * 1e6, 2),
    }


def _failover(servers: list[ServerProcess], templates: list[str]) -> dict[str, Any]:
    """SIGKILL the server holding the first session; time each of its sessions' next call."""
    urls = [server.url for server in servers]
    with ClusterClient(urls, timeout=60) as cluster:
        sessions = [
            cluster.session(f"failover-{task}", template=templates[task % len(templates)])
            for task in range(3 * len(urls))
        ]
        for session in sessions:
            session.call("bash", command=command(0, 0))
        victim = sessions[0].server
        moved = [s for s in sessions if s.server == victim]
        next(s for s in servers if s.url == victim).stop(signal.SIGKILL)
        killed = time.perf_counter()
        seconds, wrong = [], 0
        for session in moved:
            result = session.call("bash", command=command(1, 0))
            seconds.append(time.perf_counter() - killed)
            wrong += result.output != expected([(0, 0), (1, 0)]) or session.server == victim
        for session in sessions:
            session.close()
    return {
        "sessions_moved": len(moved),
        "first_answer_ms": round(seconds[0] * 1000, 1),
        "all_answered_ms": round(seconds[-1] * 1000, 1),
        "wrong": wrong,
    }


def _load_row(
    urls: list[str], args: argparse.Namespace, templates: list[str], store: str
) -> dict[str, Any]:
    seconds, sessions, workers = args.duration, args.sessions, args.workers
    total = run_clients(urls, sessions, workers, seconds, args.think_ms / 1000, templates)
    return {
        "servers": len(urls),
        "calls": total.calls,
        "calls_per_second": round(total.calls / seconds, 1),
        "hits_per_second": round(total.hits / seconds, 1),
        "hit_rate": round(total.hits / total.calls, 4) if total.calls else 0.0,
        "hit_p50_ms": percentile_ms(total.hit_seconds, 50),
        "hit_p99_ms": percentile_ms(total.hit_seconds, 99),
        "errors": total.errors,
        "error_samples": total.error_samples,
        "wrong": total.wrong,
        "lost": audit(store, total.answered),
    }


def run_cluster_bench(args: argparse.Namespace) -> int:
    """The whole run; exit 1 on any error, wrong answer or lost observation."""
    if args.quick:
        args.duration, args.sessions, args.workers = QUICK_SECONDS, QUICK_SESSIONS, QUICK_WORKERS
    args.workers = args.workers or 4
    tasks, calls = QUICK_HITS if args.quick else (6, 100)
    report: dict[str, Any] = {"seconds_per_count": args.duration, "sessions": args.sessions,
                              "client_processes": args.workers, "think_ms": args.think_ms,
                              "rows": []}  # fmt: skip
    with (
        tempfile.TemporaryDirectory(prefix="tvcache-load-cluster-") as tmp,
        PrivatePostgres() as pg,
    ):
        _progress("starting a private PostgreSQL")
        admin = pg.start()
        templates = make_templates(Path(tmp))
        (Path(tmp) / "route").mkdir()
        for count in range(1, args.cluster + 1):
            _progress(f"{count} server(s): {args.sessions} sessions for {args.duration:g} s")
            with _servers(admin, f"load_{count}", count, Path(tmp)) as servers:
                store = admin.rsplit("/", 1)[0] + f"/load_{count}"
                urls = [server.url for server in servers]
                report["rows"].append(_load_row(urls, args, templates, store))
                if count == args.cluster:
                    _progress(f"routing overhead ({tasks} tasks x {calls} hits, two rounds)")
                    report["routing"] = _routing(urls, Path(tmp) / "route", tasks, calls)
                    if count > 1:
                        _progress("failover: SIGKILL a server")
                        report["failover"] = _failover(servers, templates)
            if count < args.cluster:  # the last database also holds the routing and failover runs
                row = report["rows"][-1]
                row.update(_store_writes(admin, f"load_{count}", row["calls"]))
    _print(report, args.json)
    bad = sum(row["errors"] + row["wrong"] + row["lost"] for row in report["rows"])
    return 1 if bad or report.get("failover", {}).get("wrong") else 0


def _print(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(report))
        return
    base = report["rows"][0]["calls_per_second"] or 1.0
    print(f"{'servers':>7} {'calls/s':>9} {'hits/s':>8} {'hit p50':>9} {'hit p99':>9} "
          f"{'calls/s x':>9} {'errors':>6} {'wrong':>5} {'lost':>4} {'xacts/call':>12} "
          f"{'rows/call':>9}")  # fmt: skip
    for row in report["rows"]:
        print(
            f"{row['servers']:>7} {row['calls_per_second']:>9} {row['hits_per_second']:>8} "
            f"{row['hit_p50_ms'] or 0:>7.2f}ms {row['hit_p99_ms'] or 0:>7.2f}ms "
            f"{row['calls_per_second'] / base:>9.2f} {row['errors']:>6} {row['wrong']:>5} "
            f"{row['lost']:>4} {row.get('store_transactions_per_call', '-'):>12} "
            f"{row.get('rows_written_per_call', '-'):>9}"
        )
    routing = report["routing"]
    print(
        f"routing: hit p50 Client {routing['client_hit_p50_ms']:.3f} ms, ClusterClient "
        f"{routing['cluster_client_hit_p50_ms']:.3f} ms (x{routing['ratio_p50']}, "
        f"{routing['overhead_per_call_ms']:+.3f} ms/call); placement {routing['placement_us']} us"
    )
    if "failover" in report:
        fail = report["failover"]
        print(
            f"failover: SIGKILL -> first answered call on a moved root {fail['first_answer_ms']} "
            f"ms ({fail['sessions_moved']} sessions moved, all answered after "
            f"{fail['all_answered_ms']} ms, wrong {fail['wrong']})"
        )


def main(argv: list[str] | None = None) -> int:
    """``python -m tvcache.bench.cluster_routing``: the same as ``bench load --cluster``."""
    from tvcache.cli import main as cli

    return cli(["bench", "load", "--cluster", "3", *(argv or sys.argv[1:])])


if __name__ == "__main__":
    raise SystemExit(main())

"""Failover of root ownership (issue 14) on real ``tvcache serve`` processes sharing a real
PostgreSQL, with 1 s leases: a paused owner's roots move and its late write is refused; a
killed owner's roots move under several client processes with no error and no answered
observation lost; all servers restarted still hit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_env import COMMANDS, cluster, start_servers, stop_all

from tvcache._ownership import Ownership
from tvcache._store import Store
from tvcache.client import Client, ServiceError
from tvcache.cluster import ClusterClient

pytestmark = pytest.mark.postgres

HERE = Path(__file__).parent


def test_a_paused_owner_loses_its_root_and_its_late_write_is_refused(
    tmp_path: Path, template: Path, postgres_url: str
) -> None:
    with cluster(tmp_path, postgres_url, 2, lease_ttl=1) as (paused, other):
        outcome: dict[str, Any] = {}
        with Client(paused.url, retries=0) as direct:
            session = direct.session("paused", template=str(template))
            first = session.call("bash", command=COMMANDS[0])

            def late() -> None:  # a miss in flight when its server pauses
                try:
                    outcome["answer"] = session.call("bash", command="sleep 1.5; echo late")
                except ServiceError as error:
                    outcome["error"] = error

            thread = threading.Thread(target=late)
            thread.start()
            time.sleep(0.5)
            os.kill(paused.pid, signal.SIGSTOP)
            try:
                time.sleep(2.5)  # past the 1 s lease, and the sandbox finished meanwhile
                with (
                    ClusterClient([other.url]) as client,
                    client.session("paused", template=str(template)) as moved,
                ):
                    again = moved.call("bash", command=COMMANDS[0])
                    assert moved.server == other.url
            finally:
                os.kill(paused.pid, signal.SIGCONT)
            thread.join(60)
        assert again.hit and again.output == first.output  # taken over, reloaded, hit
        assert "answer" not in outcome  # the paused server served nothing after its lease
        assert outcome["error"].code in ("moved", "not_owner")
        with Store(postgres_url) as store:
            assert store.node_count(session.root_id) == 2  # root, first call: the late one
            held = Ownership(store).owner_of(session.root_id)  # was refused (fenced)
            assert held is not None and held.epoch == 2
            (entry,) = [s for s in Ownership(store).live_servers() if s.server_id == held.owner]
            assert entry.address == other.url


def answers(lines: str) -> Iterator[dict[str, Any]]:
    for line in lines.splitlines():
        if line.startswith("{"):
            yield json.loads(line)


def test_a_killed_owner_s_roots_move_with_no_error_and_no_answer_lost(
    tmp_path: Path, template: Path, postgres_url: str
) -> None:
    tasks = [f"k{i}" for i in range(6)]
    with cluster(tmp_path, postgres_url, 3, lease_ttl=1) as servers:
        urls = ",".join(server.url for server in servers)
        env = {**os.environ, "PYTHONPATH": str(HERE)}
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(HERE / "_failover_worker.py"),
                    urls,
                    str(template),
                    ",".join(tasks[i:] + tasks[:i]),
                    "2",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for i in range(3)
        ]
        seen: list[dict[str, Any]] = []
        assert workers[0].stdout is not None
        while len(seen) < 6:  # mid-run: kill the server that answered most so far
            line = workers[0].stdout.readline()
            assert line, workers[0].stderr.read() if workers[0].stderr else "worker died"
            seen.extend(answers(line))
        busiest = max(servers, key=lambda s: sum(a["server"] == s.url for a in seen))
        moved = {a["task"]: a["root"] for a in seen if a["server"] == busiest.url}
        busiest.stop(signal.SIGKILL)
        killed_at = time.time()
        with ClusterClient(urls.split(",")) as probe:  # time a call on a moved root
            with probe.session(next(iter(moved)), template=str(template)) as session:
                session.call("bash", command=COMMANDS_OF_WORKER[0])
            took = time.time() - killed_at
            print(f"\nfailover: kill -> first answered call on a moved root: {took:.2f} s")
        outputs = [worker.communicate(timeout=300) for worker in workers]
        for worker, (_out, err) in zip(workers, outputs, strict=True):
            assert worker.returncode == 0, err  # the clients saw no error
        got = seen + [a for out, _err in outputs for a in answers(out)]
        after = [
            a["t"] - killed_at for a in got if a["root"] in moved.values() and a["t"] > killed_at
        ]
        print(f"failover: first worker answer on a moved root after {max(0, min(after)):.2f} s")
        assert len(got) == 3 * 2 * len(tasks) * 3
        with Store(postgres_url) as store:  # every answered observation is stored as answered
            for answer in got:
                node = store.get_node(answer["node"])
                assert node is not None and node.observation is not None
                assert node.observation.output == answer["output"]
        with ClusterClient(urls.split(",")) as client:  # and hits continue
            for task in tasks:
                with client.session(task, template=str(template)) as session:
                    replay = [session.call("bash", command=c) for c in COMMANDS_OF_WORKER]
                    assert session.server != busiest.url
                assert all(r.hit for r in replay)


COMMANDS_OF_WORKER = ["echo a >> log; wc -l < log", "sleep 0.1; echo b >> log; cat log"]


def test_restarting_every_server_keeps_the_cache(
    tmp_path: Path, template: Path, postgres_url: str
) -> None:
    tasks = ["r0", "r1", "r2"]
    servers = start_servers(tmp_path, postgres_url, 2, lease_ttl=1)
    try:
        with ClusterClient([s.url for s in servers]) as client:
            first = {}
            for task in tasks:
                with client.session(task, template=str(template)) as session:
                    first[task] = [session.call("bash", command=c).output for c in COMMANDS]
    finally:
        stop_all(servers)
    servers = start_servers(tmp_path, postgres_url, 2, lease_ttl=1)  # same homes, new ports
    try:
        with ClusterClient([s.url for s in servers]) as client:
            for task in tasks:
                with client.session(task, template=str(template)) as session:
                    replay = [session.call("bash", command=c) for c in COMMANDS]
                assert [r.hit for r in replay] == [True] * 3  # the first call too
                assert [r.output for r in replay] == first[task]
    finally:
        stop_all(servers)

"""A rollout worker for the failover test: runs every task's calls through a ClusterClient,
printing each answer as a JSON line (with the wall time, so the test can time a failover)."""

from __future__ import annotations

import json
import sys
import time

from tvcache.cluster import ClusterClient

COMMANDS = ["echo a >> log; wc -l < log", "sleep 0.1; echo b >> log; cat log", "wc -l < log"]


def main(urls: str, template: str, tasks: str, rounds: int) -> None:
    with ClusterClient(urls.split(","), timeout=30) as cluster:
        for _ in range(rounds):
            for task in tasks.split(","):
                with cluster.session(task, template=template) as session:
                    for command in COMMANDS:
                        result = session.call("bash", command=command)
                        answer = {
                            "t": time.time(),
                            "task": task,
                            "root": session.root_id,
                            "node": result.node_id,
                            "output": result.output,
                            "hit": result.hit,
                            "server": session.server,
                        }
                        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))

"""Several worker processes share one cache through `tvcache serve`; the agent loop's sandbox
is a `CachedExecutor`, the one line that changes in an existing loop.

Run: python examples/remote_executor.py

It starts a server on a free loopback port in a temporary home, runs four workers that each
perform the same rollout, and shows that the commands ran once and were hits afterwards.
"""

from __future__ import annotations

import multiprocessing
import tempfile
from pathlib import Path

from tvcache.client import CachedExecutor, Client
from tvcache.service import ServerProcess


def agent_loop(url: str, template: str, worker: int) -> str:
    with Client(url) as client:
        sandbox = CachedExecutor(client.session("count-lines", template=template))  # the one line
        with sandbox:
            lines = []
            for command in ["ls", "wc -l data.csv", "sleep 0.5; sort data.csv | head -n 2"]:
                out = sandbox.execute(command)
                lines.append(
                    f"worker {worker} {'hit ' if out.hit else 'miss'} {command!r}: {out!r}"
                )
            return "\n".join(lines)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tvcache-example-") as tmp:
        template = Path(tmp) / "task"
        template.mkdir()
        (template / "data.csv").write_text("b,2\na,1\nc,3\n")
        with ServerProcess(Path(tmp) / "home", "--log-level", "warning") as server:
            print(agent_loop(server.url, str(template), 0))
            jobs = [(server.url, str(template), worker) for worker in range(1, 4)]
            with multiprocessing.get_context("spawn").Pool(3) as pool:
                for report in pool.starmap(agent_loop, jobs):
                    print(report)
            with Client(server.url) as client:
                stats = client.stats()
            print(f"calls {stats['calls']}, hits {stats['hits']}, misses {stats['misses']}")


if __name__ == "__main__":
    main()

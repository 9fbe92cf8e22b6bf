"""A rollout worker for the crash test: runs calls forever, printing each answered node."""

from __future__ import annotations

import sys
from pathlib import Path

from tvcache import AlwaysSnapshot, Settings, open_engine


def main(home: str) -> None:
    template = Path(home) / "template"
    engine = open_engine(Settings(home=Path(home)), policy=AlwaysSnapshot())
    rollout = 0
    while True:
        rollout += 1
        with engine.session("crash-task", template=str(template)) as session:
            for step in range(1 + rollout % 7):
                # rollouts share prefixes and diverge: step-dependent, rollout-dependent tails
                command = f"echo s{step}-{rollout % (step + 2)} >> log.txt; wc -l < log.txt"
                result = session.call("bash", command=command)
                print(f"ANSWERED {result.node_id} {result.output.strip()}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])

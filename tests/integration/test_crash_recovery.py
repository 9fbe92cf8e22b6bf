"""SIGKILL the engine at random moments: nothing answered is lost, nothing is left behind."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest

from tvcache import Settings, Store, open_engine

WORKER = Path(__file__).with_name("crash_worker.py")


def _run_and_kill(home: Path, answers: int, extra: float) -> list[tuple[str, str]]:
    """Run the worker until it has answered ``answers`` calls, then ``extra`` seconds more
    (a random moment: mid-call, mid-write), then SIGKILL it. Counting answers rather than
    sleeping a fixed time keeps the test meaningful on a loaded machine, where start-up alone
    can take seconds."""
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), str(home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.stdout is not None
    lines: list[str] = []
    enough = threading.Event()

    def read(stream: IO[str]) -> None:
        for line in stream:
            lines.append(line)
            if sum(x.startswith("ANSWERED ") for x in lines) >= answers:
                enough.set()
        enough.set()

    reader = threading.Thread(target=read, args=(proc.stdout,), daemon=True)
    reader.start()
    assert enough.wait(120), f"the worker answered fewer than {answers} calls in 120 s"
    time.sleep(extra)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    reader.join(10)
    assert proc.returncode == -signal.SIGKILL, err
    answered = []
    for line in lines:
        parts = line.rstrip("\n").split(" ", 2)
        if len(parts) == 3 and parts[0] == "ANSWERED":
            answered.append((parts[1], parts[2]))
    return answered


@pytest.mark.slow
def test_sigkill_loses_nothing_answered_and_reconciles(tmp_path: Path) -> None:
    (tmp_path / "template").mkdir()
    rng = random.Random(7)
    answered: dict[str, str] = {}
    for round_ in range(8):
        # each run repeats the earlier runs' calls (hits), then goes further
        for node_id, output in _run_and_kill(tmp_path, 5 * (round_ + 1), rng.uniform(0, 0.5)):
            answered[node_id] = output
        store = Store(f"sqlite:///{tmp_path / 'cache.db'}")
        try:
            nodes = {}
            for root in store.roots():
                nodes.update({n.node_id: n for n in store.load_nodes(root.root_id)})
            for node_id, output in answered.items():
                assert node_id in nodes, f"answered node {node_id} lost after SIGKILL"
                obs = nodes[node_id].observation
                assert obs is not None and obs.output.strip() == output
                parent = nodes[node_id].parent_id
                assert parent is not None and parent in nodes
        finally:
            store.close()
        # a restart reconciles: orphan snapshot dirs and dead sandboxes go, records stay valid
        engine = open_engine(Settings(home=tmp_path))
        assert engine.store is not None
        records = {r.handle.snapshot_id for r in engine.store.snapshots()}
        on_disk = {p.name for p in (tmp_path / "snapshots").iterdir()}
        assert on_disk == records
        assert not any((tmp_path / "sandboxes").iterdir())
        engine.close()
        engine.store.close()
    assert len(answered) > 20, len(answered)

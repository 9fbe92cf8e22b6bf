"""SIGKILL the engine at random moments: nothing answered is lost, nothing is left behind."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tvcache import Settings, Store, open_engine

WORKER = Path(__file__).with_name("crash_worker.py")


def _run_and_kill(home: Path, seconds: float) -> list[tuple[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), str(home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    time.sleep(seconds)
    proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err
    answered = []
    for line in out.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[0] == "ANSWERED":
            answered.append((parts[1], parts[2]))
    return answered


@pytest.mark.slow
def test_sigkill_loses_nothing_answered_and_reconciles(tmp_path: Path) -> None:
    (tmp_path / "template").mkdir()
    rng = random.Random(7)
    answered: dict[str, str] = {}
    for _round in range(8):
        # the worker needs ~1.2 s to import and start an isolated sandbox on a loaded 2-core VM
        for node_id, output in _run_and_kill(tmp_path, rng.uniform(1.5, 3.0)):
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

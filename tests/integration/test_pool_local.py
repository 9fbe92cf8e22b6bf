"""The pre-forked pool on the local backend: real forks in the background, nothing left over."""

from __future__ import annotations

from pathlib import Path

from sandbox import LocalBackend
from tvcache import Settings, open_engine
from tvcache._policy import NeverSnapshot
from tvcache.pool import PreforkPool


def test_misses_at_a_hot_node_start_on_pre_forked_sandboxes(tmp_path: Path) -> None:
    template = tmp_path / "task"
    template.mkdir()
    (template / "log").write_text("")
    engine = open_engine(Settings(home=tmp_path / "home"), policy=NeverSnapshot())
    pool = PreforkPool(engine, hot_misses=1, per_node=2, max_size=4)
    engine.pool = pool
    prefix = ["echo a >> log", "echo b >> log"]
    for branch in range(4):
        with engine.session("t", template=str(template)) as session:
            for command in prefix:
                session.call("bash", command=command)
            assert pool.settle()
            got = session.call("bash", command=f"echo {branch} >> log; cat log")
            assert got.output == f"a\nb\n{branch}\n" and not got.hit
    assert engine.stats()["pool_takes"] >= 3
    assert pool.stats()["ready"] >= 1
    engine.close()
    assert engine.store is not None
    engine.store.close()
    assert isinstance(engine.backend, LocalBackend)
    engine.backend.close()  # closed sandboxes' files are deleted in the background until then
    assert not list((tmp_path / "home" / "sandboxes").iterdir())

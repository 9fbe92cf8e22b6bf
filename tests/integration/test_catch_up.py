"""``Engine.catch_up``: two engines sharing one store (as two servers do); one records
calls after the other loaded the root, and the other adds them as stored, no more."""

from __future__ import annotations

from pathlib import Path

from tvcache import NeverSnapshot, Settings, open_engine


def test_an_engine_catches_up_with_nodes_another_one_stored(store_url: str, tmp_path: Path) -> None:
    template = tmp_path / "template"
    template.mkdir()
    engines = [
        open_engine(
            Settings(home=tmp_path / f"home{i}", store_url=store_url), policy=NeverSnapshot()
        )
        for i in range(2)
    ]
    early, late = engines
    try:
        with early.session("t", template=str(template)) as session:
            first = session.call("bash", command="echo a > f; cat f")
        assert early.store is not None
        early.store.flush()  # another store sees them within the journal's delay; now, here
        with late.session("t", template=str(template)) as session:
            assert session.call("bash", command="echo a > f; cat f").hit
            deeper = [session.call("bash", command=f"echo {i} >> f; cat f") for i in range(2)]
        assert late.store is not None
        late.store.flush()  # another store sees them within the journal's delay; now, here
        assert early.graph.get(deeper[-1].node_id) is None  # loaded before they were stored
        caught = early.catch_up(deeper[-1].node_id)
        assert caught is not None and caught.node_id == deeper[-1].node_id
        assert caught.observation is not None
        assert caught.observation.output == deeper[-1].output == "a\n0\n1\n"
        assert caught.parent is not None and caught.parent.node_id == deeper[0].node_id
        assert caught.parent.parent is early.graph.get(first.node_id)
        assert early.catch_up("0" * 32) is None  # stored nowhere
        with early.session("t", template=str(template)) as session:
            replay = [session.call("bash", command="echo a > f; cat f")]
            replay += [session.call("bash", command=f"echo {i} >> f; cat f") for i in range(2)]
        assert [r.hit for r in replay] == [True] * 3
    finally:
        for engine in engines:
            engine.close()
            if engine.store is not None:
                engine.store.close()

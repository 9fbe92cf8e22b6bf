"""Where a handle's checkpoint is on this host: names relative to the snapshot directory map onto
each host's own; absolute paths (records from before) are kept; names leaving it are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from snapshots import SnapshotError
from snapshots._checkpoint_blob import locate, name_in


def test_a_checkpoint_is_recorded_relative_to_its_store_and_mapped_on_another() -> None:
    name = name_in(Path("/a/snapshots"), Path("/a/snapshots/runc-criu/tvcache-snapshot-s"))
    assert name == "runc-criu/tvcache-snapshot-s"
    assert locate(Path("/b/store"), name) == Path("/b/store/runc-criu/tvcache-snapshot-s")


def test_an_old_absolute_record_keeps_its_path_and_bad_ones_name_nothing() -> None:
    assert locate(Path("/b/store"), "/a/snapshots/tvcache-snapshot-s") == Path(
        "/a/snapshots/tvcache-snapshot-s"
    )
    assert locate(Path("/b/store"), None) is None
    assert locate(Path("/b/store"), "") is None
    assert locate(Path("/b/store"), "../elsewhere") is None
    with pytest.raises(SnapshotError, match="not inside the snapshot store"):
        name_in(Path("/a/snapshots"), Path("/a/other/tvcache-snapshot-s"))


_SEGMENT = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True).filter(
    lambda s: s not in (".", "..")
)


@given(st.lists(_SEGMENT, min_size=1, max_size=4))
def test_any_checkpoint_under_a_store_maps_to_the_same_place_under_another(
    parts: list[str],
) -> None:
    name = name_in(Path("/host-a/snapshots"), Path("/host-a/snapshots", *parts))
    assert not Path(name).is_absolute()
    assert locate(Path("/host-b/store"), name) == Path("/host-b/store", *parts)

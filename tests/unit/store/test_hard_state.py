"""Raft hard state on disk: round trip, atomic replacement, and damage detection.

A damaged file must be an error, never a silent term 0: a node that forgot its vote
could vote twice in one term.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dledgermq.store.errors import CorruptHardState
from dledgermq.store.hard_state import StoredHardState, load_hard_state, save_hard_state


@given(term=st.integers(0, 2**63 - 1), vote=st.none() | st.integers(0, 2**63 - 1))
def test_round_trip(tmp_path_factory: pytest.TempPathFactory, term: int, vote: int | None) -> None:
    path = tmp_path_factory.mktemp("hs") / "hard_state"
    save_hard_state(path, StoredHardState(term, vote))
    assert load_hard_state(path) == StoredHardState(term, vote)


def test_missing_file_means_never_saved(tmp_path: Path) -> None:
    assert load_hard_state(tmp_path / "hard_state") is None


def test_replacement_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "hard_state"
    save_hard_state(path, StoredHardState(1, None))
    save_hard_state(path, StoredHardState(2, 3))
    assert load_hard_state(path) == StoredHardState(2, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hard_state"]


@pytest.mark.parametrize("position", range(26))
def test_any_flipped_byte_is_detected(tmp_path: Path, position: int) -> None:
    path = tmp_path / "hard_state"
    save_hard_state(path, StoredHardState(7, 2))
    data = bytearray(path.read_bytes())
    data[position] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptHardState):
        load_hard_state(path)


def test_truncated_file_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "hard_state"
    save_hard_state(path, StoredHardState(7, 2))
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(CorruptHardState):
        load_hard_state(path)

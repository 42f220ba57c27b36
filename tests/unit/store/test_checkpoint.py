"""Checkpoint file: round trip and damage detection.

Goal: a saved checkpoint loads back equal; a missing file is None; any damage (a flipped
byte anywhere, truncation, trailing junk) raises CorruptCheckpoint instead of being trusted.
Method: save under tmp_path, then edit the bytes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dledgermq.store.checkpoint import (
    Checkpoint,
    CorruptCheckpoint,
    load_checkpoint,
    save_checkpoint,
)


def test_missing_is_none(tmp_path: Path) -> None:
    assert load_checkpoint(tmp_path / "checkpoint") is None


@settings(max_examples=30, deadline=None)
@given(offset=st.integers(0, 2**64 - 1), state=st.binary(max_size=300))
def test_round_trip(tmp_path_factory: pytest.TempPathFactory, offset: int, state: bytes) -> None:
    path = tmp_path_factory.mktemp("cp") / "checkpoint"
    save_checkpoint(path, Checkpoint(offset, state))
    assert load_checkpoint(path) == Checkpoint(offset, state)
    save_checkpoint(path, Checkpoint(1, b"newer"))  # replaces atomically
    assert load_checkpoint(path) == Checkpoint(1, b"newer")
    assert not path.with_name("checkpoint.tmp").exists()


def test_every_single_byte_flip_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint"
    save_checkpoint(path, Checkpoint(123456, b"state blob"))
    good = path.read_bytes()
    for pos in range(len(good)):
        damaged = bytearray(good)
        damaged[pos] ^= 0x01
        path.write_bytes(bytes(damaged))
        with pytest.raises(CorruptCheckpoint):
            load_checkpoint(path)


@pytest.mark.parametrize(
    "edit", [lambda b: b[:-1], lambda b: b + b"x", lambda b: b[:5], lambda b: b""]
)
def test_wrong_length_is_detected(tmp_path: Path, edit: object) -> None:
    path = tmp_path / "checkpoint"
    save_checkpoint(path, Checkpoint(7, b"abc"))
    path.write_bytes(edit(path.read_bytes()))  # type: ignore[operator]
    with pytest.raises(CorruptCheckpoint):
        load_checkpoint(path)

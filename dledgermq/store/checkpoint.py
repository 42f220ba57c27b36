"""The broker's recovery checkpoint: how far the CommitLog is dispatched, plus a state blob.

Written with `atomic_write` (a crash leaves the old or the new file, never a mix); carries a
magic, a version and a CRC so that a damaged file is detected rather than trusted. It does
not decide when to checkpoint or what `state` means: that is the owner's business.

Layout (big-endian): magic u32, version u16, dispatched_offset u64, state_len u32, state,
crc u32 (CRC32 of everything before it).
"""

from __future__ import annotations

import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

from dledgermq.store.errors import CorruptCheckpoint
from dledgermq.store.fileio import atomic_write
from dledgermq.store.sealed import SEAL_SIZE, seal, unseal

__all__ = ["Checkpoint", "CorruptCheckpoint", "load_checkpoint", "save_checkpoint"]

MAGIC = 0xC4EC6B01
VERSION = 1
_HEAD = struct.Struct(">IHQI")


@dataclass(frozen=True)
class Checkpoint:
    """`dispatched_offset`: every record below it is in the ConsumeQueues and IndexStore,
    and those were fsynced before this was written. `state`: the state machine snapshot."""

    dispatched_offset: int
    state: bytes


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Durably replace the checkpoint file."""
    assert checkpoint.dispatched_offset >= 0, checkpoint.dispatched_offset
    body = (
        _HEAD.pack(MAGIC, VERSION, checkpoint.dispatched_offset, len(checkpoint.state))
        + checkpoint.state
    )
    atomic_write(path, seal(body))


def load_checkpoint(path: Path) -> Checkpoint | None:
    """The saved checkpoint, or None if there is none yet.

    Raises:
        CorruptCheckpoint: the file exists but fails a check.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if len(data) < _HEAD.size + SEAL_SIZE:
        raise CorruptCheckpoint(f"{path}: {len(data)} bytes is too short")
    magic, version, dispatched, state_len = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise CorruptCheckpoint(f"{path}: bad magic {magic:#x}")
    if version != VERSION:
        raise CorruptCheckpoint(f"{path}: unknown version {version}")
    if len(data) != _HEAD.size + state_len + SEAL_SIZE:
        raise CorruptCheckpoint(f"{path}: length {len(data)} disagrees with the header")
    if unseal(data) is None:
        raise CorruptCheckpoint(f"{path}: CRC mismatch")
    return Checkpoint(dispatched, data[_HEAD.size : _HEAD.size + state_len])


def discard_derived(directories: tuple[Path, ...], checkpoint: Path) -> None:
    """Remove files derived from the CommitLog (queues, index, their checkpoint), to be
    rebuilt from it: the log is the truth, these only speed reading it."""
    for directory in directories:
        shutil.rmtree(directory, ignore_errors=True)
    checkpoint.unlink(missing_ok=True)

"""The Raft hard state of one node on disk: current term and the vote cast in it.

Saved with `atomic_write` (temp file, fsync, rename, fsync of the directory) *before* a
vote or an append answer leaves the node (DESIGN.md §2): a crash leaves the old or the new
file, never a mix, and a vote once sent is never forgotten. A magic, a version and a CRC
make a damaged file an error rather than a silent term 0 (which could let the node vote
twice in one term). It does not decide when to save: the Raft driver does.

Layout (big-endian): magic u32, version u16, term u64, vote i64 (-1: none), crc u32
(CRC32 of everything before it).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from dledgermq.store.errors import CorruptHardState
from dledgermq.store.fileio import atomic_write
from dledgermq.store.sealed import SEAL_SIZE, seal, unseal

MAGIC = 0x4A5D57A7
VERSION = 1
_BODY = struct.Struct(">IHQq")
NO_VOTE = -1


@dataclass(frozen=True, slots=True)
class StoredHardState:
    term: int
    vote: int | None  # The node id voted for in `term`, if any.


def save_hard_state(path: Path, state: StoredHardState) -> None:
    """Durably replace the hard state (returns once it is on disk)."""
    assert state.term >= 0, state
    assert state.vote is None or state.vote >= 0, state
    vote = NO_VOTE if state.vote is None else state.vote
    body = _BODY.pack(MAGIC, VERSION, state.term, vote)
    atomic_write(path, seal(body))


def load_hard_state(path: Path) -> StoredHardState | None:
    """The saved hard state, or None if the node never saved one.

    Raises:
        CorruptHardState: the file exists but is damaged (never guess a term).
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if len(data) != _BODY.size + SEAL_SIZE:
        raise CorruptHardState(f"{path}: {len(data)} bytes, expected {_BODY.size + SEAL_SIZE}")
    if unseal(data) is None:
        raise CorruptHardState(f"{path}: CRC mismatch")
    magic, version, term, vote = _BODY.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        raise CorruptHardState(f"{path}: magic {magic:#x} version {version} not understood")
    return StoredHardState(term, None if vote == NO_VOTE else vote)

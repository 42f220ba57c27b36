"""The entry index's summary on disk, so that a Raft node's restart re-reads only its log's tail.

Without it a restart rebuilds the `EntryIndex` by reading and CRC-checking every record
of the log (about 8 s per GB). The summary holds what the index keeps of its older
entries anyway: the term runs and a sparse list of marks (index, end offset) of
committed entries, at most `SUMMARY_MARKS_MAX` of them (a few tens of KB whatever the
log's size). At start the node trusts the marks below its checkpoint (fsynced, committed:
never rewritten), checks the newest of them against the log and scans on from there
(`node.load_entries`). It is a hint, never the truth: missing or damaged, the node scans
the whole log as before.

Layout: magic u32, version u16, body_len u32, body (msgpack: base, runs, marks), crc u32
(CRC32 of everything before it).
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass
from pathlib import Path

import msgpack

from dledgermq.store.sealed import SEAL_SIZE, seal, unseal

MAGIC = 0xE1D5_0001
VERSION = 1
SUMMARY_MARKS_MAX = 4096
_HEAD = struct.Struct(">IHI")


class CorruptSummary(ValueError):
    """The summary file exists but fails a check: it is ignored (the log is scanned)."""


@dataclass(frozen=True, slots=True)
class EntrySummary:
    """Entries (base_index, mark_index[-1]]: their terms as runs (`run_first[k]` starts a
    run of `run_term[k]`) and marks (index, end offset), both ascending; the base entry
    (of `base_term`) ends at `base_end`."""

    base_index: int
    base_term: int
    base_end: int
    run_first: tuple[int, ...]
    run_term: tuple[int, ...]
    mark_index: tuple[int, ...]
    mark_end: tuple[int, ...]


def encode_summary(summary: EntrySummary) -> bytes:
    body = msgpack.packb(
        [
            [summary.base_index, summary.base_term, summary.base_end],
            [list(summary.run_first), list(summary.run_term)],
            [list(summary.mark_index), list(summary.mark_end)],
        ]
    )
    return seal(_HEAD.pack(MAGIC, VERSION, len(body)) + body)


def decode_summary(data: bytes) -> EntrySummary:
    """Raises:
    CorruptSummary: a failed check (magic, version, length, CRC, shape, order)."""
    if len(data) < _HEAD.size + SEAL_SIZE:
        raise CorruptSummary(f"{len(data)} bytes is too short")
    magic, version, body_len = _HEAD.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        raise CorruptSummary(f"magic {magic:#x} version {version}: not a summary this reads")
    if len(data) != _HEAD.size + body_len + SEAL_SIZE:
        raise CorruptSummary(f"length {len(data)} disagrees with the header")
    if unseal(data) is None:
        raise CorruptSummary("CRC mismatch")
    try:
        (base_index, base_term, base_end), runs, marks = msgpack.unpackb(
            data[_HEAD.size : -SEAL_SIZE]
        )
        summary = EntrySummary(
            base_index,
            base_term,
            base_end,
            tuple(runs[0]),
            tuple(runs[1]),
            tuple(marks[0]),
            tuple(marks[1]),
        )
    except (ValueError, TypeError, IndexError) as exc:
        raise CorruptSummary(f"unexpected contents: {exc}") from None
    _check_shape(summary)
    return summary


def _check_shape(s: EntrySummary) -> None:
    """What `EntryIndex.resume` relies on: ints; runs and marks pair up and ascend; the
    runs start right after the base and the marks after its end."""
    sequences = (
        (s.base_index, s.base_term, s.base_end),
        s.run_first,
        s.run_term,
        s.mark_index,
        s.mark_end,
    )
    if not all(type(v) is int for seq in sequences for v in seq):
        raise CorruptSummary("a value is not an integer")
    ascending = all(
        all(a < b for a, b in itertools.pairwise(seq))
        for seq in (s.run_first, s.mark_index, s.mark_end)
    )
    paired = len(s.run_first) == len(s.run_term) and len(s.mark_index) == len(s.mark_end)
    if not (ascending and paired):
        raise CorruptSummary("runs or marks do not pair up in ascending order")
    if s.mark_index and not (
        s.run_first
        and s.run_first[0] == s.base_index + 1
        and s.mark_index[0] > s.base_index
        and s.mark_end[0] > s.base_end
    ):
        raise CorruptSummary("the marks do not continue the base")


def load_summary(path: Path) -> EntrySummary | None:
    """The saved summary, or None if there is none.

    Raises:
        CorruptSummary: the file fails a check.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return decode_summary(data)
